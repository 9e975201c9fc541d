#!/bin/sh
# `make run`: two local memcached servers and luagent in front of them, in the
# foreground. Ctrl-C stops all three.
set -e
cd "$(dirname "$0")/.."

PORT=${PORT:-11311}
MC1=${MC1:-21211}
MC2=${MC2:-21212}
MEMCACHED=$(command -v memcached || echo /usr/bin/memcached)
USER_OPT=""
[ "$(id -u)" = 0 ] && USER_OPT="-u nobody"

pids=""
cleanup() {
    trap - INT TERM EXIT
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

for p in $MC1 $MC2; do
    $MEMCACHED -l 127.0.0.1 -p "$p" -U 0 $USER_OPT &
    pids="$pids $!"
done

echo "luagent: memcached on 127.0.0.1:$MC1 and 127.0.0.1:$MC2"
echo "luagent: connect to 127.0.0.1:$PORT (e.g. 'printf \"set k 0 0 1\\r\\nv\\r\\nget k\\r\\n\" | nc -q1 127.0.0.1 $PORT')"
echo "luagent: Ctrl-C stops all three"
./luagent -D -v -l 127.0.0.1 -p "$PORT" -k -s 127.0.0.1:$MC1 -s 127.0.0.1:$MC2 &
pids="$pids $!"
wait $!
