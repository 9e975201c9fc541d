#!/bin/sh
# The hot-key workload of `make bench` (part 7; also runs alone):
# 90% of reads on 10 keys (hot:0..hot:9), Zipf (exponent 1) over the other
# keys (bench:10...), gets only, after a prefill, against luagent -t 1 over
# four memcached servers, with the pool alone and with lg.nearcache (ttl_ms
# 500, hot_qps 200) on the hot prefix. Prints ops/s of each and their ratio;
# the reads the server holding hot:0 received during each run (its
# get_hits + get_misses, memcached's own stats: the hot keys it holds and its
# share of the Zipf keys); and the reads of the hot keys at all servers
# (memcached's per-prefix `stats detail`).
#
# Everything listens on 127.0.0.1 on free ports below 32768 and is stopped by
# PID on exit. Tunables: BENCH_HOT_SECONDS (5), BENCH_CONNS (50),
# BENCH_KEYS (10000), BENCH_HOT_ROUNDS (3: the median round is shown).
set -u
cd "$(dirname "$0")/.." || exit 1

SECONDS_RUN=${BENCH_HOT_SECONDS:-5}
CONNS=${BENCH_CONNS:-50}
KEYS=${BENCH_KEYS:-10000}
ROUNDS=${BENCH_HOT_ROUNDS:-3}
LUAGENT=${BENCH_LUAGENT:-./luagent}
LOADGEN=build/loadgen
PYTHON=${PYTHON:-/usr/bin/python3}
MEMCACHED=$(command -v memcached || echo /usr/bin/memcached)
USER_OPT=""
[ "$(id -u)" = 0 ] && USER_OPT="-u nobody"

make --no-print-directory -s "$LOADGEN" || exit 1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/luagent-benchhot.XXXXXX") || exit 1
pids=""
cleanup() {
    trap - EXIT INT TERM
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports: ask the kernel for them (bound, then released), below 32768.
free_port() {
    "$PYTHON" -c '
import socket, random
for _ in range(200):
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()'
}

wait_port() {       # PORT: up to 10 s
    "$PYTHON" -c '
import socket, sys, time
end = time.time() + 10
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)' "$1"
}

# PORT [PORT...]: "R H": get_hits + get_misses of the first memcached, and
# the gets of prefix "hot" over all of them (stats detail, turned on here).
reads_of() {
    "$PYTHON" -c '
import socket, sys
def ask(port, cmd, end):
    s = socket.create_connection(("127.0.0.1", int(port)), 5)
    s.sendall(cmd)
    buf = b""
    while not buf.endswith(end):
        buf += s.recv(65536)
    s.close()
    return buf.decode()
st = dict(l.split()[1:3] for l in ask(sys.argv[1], b"stats\r\n", b"END\r\n").splitlines()
          if l.startswith("STAT "))
hot = 0
for p in sys.argv[1:]:
    ask(p, b"stats detail on\r\n", b"\r\n")
    for l in ask(p, b"stats detail dump\r\n", b"END\r\n").splitlines():
        w = l.split()
        if len(w) > 3 and w[0] == "PREFIX" and w[1] == "hot":
            hot += int(w[3])
print(int(st["get_hits"]) + int(st["get_misses"]), hot)' "$@"
}

SERVERS=""
PORTS=""
for i in 1 2 3 4; do
    p=$(free_port)
    "$MEMCACHED" $USER_OPT -l 127.0.0.1 -p "$p" -U 0 -t 1 > "$TMP/mc$i.log" 2>&1 &
    pids="$pids $!"
    wait_port "$p" || { echo "bench-hot: memcached did not start" >&2; exit 1; }
    SERVERS="$SERVERS \"127.0.0.1:$p\","
    PORTS="$PORTS $p"
done

policy() {          # FILE ROUTE-EXPRESSION
    cat > "$1" <<EOF
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { $SERVERS } }
return lg.policy{ route = $2 }
EOF
}
policy "$TMP/plain.lua" "main"
policy "$TMP/near.lua" "lg.prefix{
    [\"hot:\"] = lg.nearcache{ to = main, ttl_ms = 500, max_items = 10000, max_bytes = \"64m\",
                               hot_qps = 200 },
    default = main,
}"

# The server holding the hottest key (hot:0), as the policy places it.
HOT_SERVER=$("$LUAGENT" --route "$TMP/plain.lua" "get hot:0" | sed -n 's/.*-> server 127.0.0.1:\([0-9]*\).*/\1/p')
[ -n "$HOT_SERVER" ] || { echo "bench-hot: cannot place hot:0" >&2; exit 1; }
OTHERS=$(echo "$PORTS" | tr ' ' '\n' | grep -v "^$HOT_SERVER\$" | tr '\n' ' ')

run() {             # NAME POLICY: one round; prints "ops reads hot-reads"
    port=$(free_port)
    "$LUAGENT" -D -l 127.0.0.1 -t 1 -p "$port" -c "$2" --server-stats-interval 0 > "$TMP/$1.log" 2>&1 &
    lg=$!
    pids="$pids $lg"
    wait_port "$port" || { echo "bench-hot: luagent did not start" >&2; exit 1; }
    "$LOADGEN" -s "127.0.0.1:$port" -c "$CONNS" -k "$KEYS" -H 10:90 -Q hot: -f -n 0 \
        > /dev/null || exit 1
    before=$(reads_of $HOT_SERVER $OTHERS)
    line=$("$LOADGEN" -s "127.0.0.1:$port" -c "$CONNS" -k "$KEYS" -r 1:0 -H 10:90 -Q hot: \
           -d "$SECONDS_RUN") || { echo "bench-hot: loadgen failed: $line" >&2; exit 1; }
    after=$(reads_of $HOT_SERVER $OTHERS)
    if ! kill "$lg" 2>/dev/null; then
        echo "bench-hot: luagent ($1) exited during the run:" >&2
        tail -n 20 "$TMP/$1.log" >&2
        exit 1
    fi
    wait "$lg" 2>/dev/null
    ops=$(echo "$line" | sed -n 's/.* ops=\([0-9.]*\).*/\1/p')
    echo "$ops $after $before" | awk '{ print $1, $2 - $4, $3 - $5 }'
}

: > "$TMP/plain.tsv"
: > "$TMP/near.tsv"
r=1
while [ $r -le "$ROUNDS" ]; do
    run plain "$TMP/plain.lua" >> "$TMP/plain.tsv" || exit 1
    run near "$TMP/near.lua" >> "$TMP/near.tsv" || exit 1
    r=$((r + 1))
done

median() {          # FILE COLUMN
    sort -n -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}
P_OPS=$(median "$TMP/plain.tsv" 1); P_READS=$(median "$TMP/plain.tsv" 2)
P_HOT=$(median "$TMP/plain.tsv" 3)
N_OPS=$(median "$TMP/near.tsv" 1); N_READS=$(median "$TMP/near.tsv" 2)
N_HOT=$(median "$TMP/near.tsv" 3)
echo "== hot keys: 90% of gets on 10 keys, Zipf over $((KEYS - 10)) others; luagent -t 1, $CONNS connections, ${SECONDS_RUN} s, median of $ROUNDS =="
printf '%-30s %10s %24s %26s\n' "route for hot:" "ops/s" "reads at hot:0's server" "hot-key reads, all servers"
printf '%-30s %10.0f %24d %26d\n' "pool" "$P_OPS" "$P_READS" "$P_HOT"
printf '%-30s %10.0f %24d %26d\n' "lg.nearcache (500 ms, 200/s)" "$N_OPS" "$N_READS" "$N_HOT"
awk -v po="$P_OPS" -v no="$N_OPS" -v pr="$P_READS" -v nr="$N_READS" -v ph="$P_HOT" -v nh="$N_HOT" 'BEGIN {
    printf "ops/s ratio %.2fx (target >= 2x); reads at hot:0'"'"'s server %.3f of before, hot-key reads %.4f of before (target <= 0.100)\n",
           no / po, (pr > 0 ? nr / pr : 0), (ph > 0 ? nh / ph : 0)
}'
