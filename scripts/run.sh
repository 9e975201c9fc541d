#!/bin/bash
# `make run`: two local memcached servers and luagent in front of them, in the
# foreground. Ctrl-C stops all three.
set -e
cd "$(dirname "$0")/.."

PORT=${PORT:-11311}
MC1=${MC1:-21211}
MC2=${MC2:-21212}
MEMCACHED=$(command -v memcached || echo /usr/bin/memcached)
# As root, the servers and luagent drop to nobody once listening (memcached
# refuses to run as root, luagent warns).
USER_OPT=""
[ "$(id -u)" = 0 ] && USER_OPT="-u nobody"

pids=""
cleanup() {
    trap - INT TERM EXIT
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for p in $MC1 $MC2 $PORT; do
    if port_busy "$p"; then
        echo "make run: port $p on 127.0.0.1 is in use; choose others, e.g. PORT=11411 MC1=22211 MC2=22212 make run" >&2
        exit 1
    fi
done
for p in $MC1 $MC2; do
    $MEMCACHED -l 127.0.0.1 -p "$p" -U 0 $USER_OPT &
    pids="$pids $!"
done
for p in $MC1 $MC2; do
    for _ in $(seq 50); do port_busy "$p" && break; sleep 0.1; done
    port_busy "$p" || { echo "make run: memcached did not start on port $p" >&2; exit 1; }
done

echo "luagent: memcached on 127.0.0.1:$MC1 and 127.0.0.1:$MC2 (ketama placement)"
echo "luagent: connect any memcached client to 127.0.0.1:$PORT, for example:"
echo "    memccp --servers=127.0.0.1:$PORT README.md && memccat --servers=127.0.0.1:$PORT README.md"
echo "    memcstat --servers=127.0.0.1:$PORT"
echo "luagent: Ctrl-C stops all three"
./luagent -D -v $USER_OPT -l 127.0.0.1 -p "$PORT" -k -s "127.0.0.1:$MC1" -s "127.0.0.1:$MC2" &
pids="$pids $!"
wait $!
