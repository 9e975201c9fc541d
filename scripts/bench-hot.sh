#!/bin/sh
# The hot-key workload of `make bench` (part 7; also runs alone):
# 90% of reads on 10 keys (hot:0..hot:9), Zipf (exponent 1) over the other
# keys (bench:10...), gets only, against luagent over four memcached servers
# (named mc0..mc3, so ketama places every key alike in every run), side by
# side with three policies: the pool alone ("pool"), lg.nearcache (ttl_ms 500,
# hot_qps 200) on the hot prefix ("near"), and the same near cache over every
# key ("all": the sketch decides which Zipf keys are hot enough). Each round
# runs all three, for each luagent -t in BENCH_HOT_THREADS. A run is a prefill, a warm-up (BENCH_HOT_WARMUP seconds:
# the sketch finds the hot keys, the near cache takes its first copies), then
# the measured run. For each it reads:
#
# - ops/s (loadgen) and the CPU time luagent spent per request (utime + stime
#   of the process, /proc/PID/stat): what the proxy costs, whatever limits the
#   wall clock on a shared machine;
# - the CPU use of loadgen and of the whole machine (/proc/stat), to see
#   whether something other than luagent is the limit;
# - the reads the server holding hot:0 received (its get_hits + get_misses,
#   memcached's own count: the hot keys it holds and its share of the Zipf
#   keys), and the reads of the hot prefix at all servers (memcached's
#   `stats detail`), both per 1,000 requests and in all;
# - the near cache's hits and misses (`stats routes`);
# - loadgen's p99 latency.
#
# With BENCH_HOT_CAP=N (reads a second; unset or 0: off), each round then runs
# the three policies again with hot:0's server behind build/capserver
# (bench/capserver.c), which lets N reads a second through to it and holds the
# rest back: a server of fixed capacity that the hot keys overload, as on a
# fleet where a hot key's server, not the proxy, is the limit. The capped runs
# also read capserver's counts: the reads it let through and the time it held
# requests back for lack of capacity.
#
# Then, under callgrind (luagent -t 1, one connection), the instructions per
# request of each policy in steady state: Ir of BENCH_HOT_CG_REQUESTS more
# requests after 20,000, so the sketch's warm-up is left out (the sketch and
# ttl_ms run on the wall clock, which callgrind stretches: runs differ by a few
# percent).
#
# Everything listens on 127.0.0.1 on free ports below 32768 and is stopped by
# PID on exit. Tunables: BENCH_HOT_SECONDS (5), BENCH_HOT_WARMUP (1; 3 with a cap),
# BENCH_HOT_ROUNDS (3: medians shown), BENCH_HOT_THREADS ("1 2"), BENCH_CONNS
# (50), BENCH_KEYS (10000), BENCH_HOT_DEPTH (1: loadgen -P),
# BENCH_LOADGEN_THREADS (1), BENCH_HOT_CALLGRIND (1; 0 skips it),
# BENCH_HOT_CG_REQUESTS (30000), BENCH_HOT_CAP (unset), BENCH_LUAGENT (./luagent).
#
# shellcheck disable=SC2086 # flag lists split on purpose
set -u
cd "$(dirname "$0")/.." || exit 1

SECONDS_RUN=${BENCH_HOT_SECONDS:-5}
# Under a cap, the pool is slow enough that a hot key crosses hot_qps at each
# of two workers only after about 1.5 s: a 1 s warm-up would leave the rest of
# the sketch's warm-up inside the measured run.
if [ -n "${BENCH_HOT_CAP:-}" ]; then
    WARMUP=${BENCH_HOT_WARMUP:-3}
else
    WARMUP=${BENCH_HOT_WARMUP:-1}
fi
ROUNDS=${BENCH_HOT_ROUNDS:-3}
THREADS=${BENCH_HOT_THREADS:-1 2}
CONNS=${BENCH_CONNS:-50}
KEYS=${BENCH_KEYS:-10000}
DEPTH=${BENCH_HOT_DEPTH:-1}
LG_THREADS=${BENCH_LOADGEN_THREADS:-1}
DO_CG=${BENCH_HOT_CALLGRIND:-1}
CG_REQUESTS=${BENCH_HOT_CG_REQUESTS:-30000}
CG_SKIP=20000
CAP=${BENCH_HOT_CAP:-0}
POLICIES="pool near all"
LUAGENT=${BENCH_LUAGENT:-./luagent}
LOADGEN=build/loadgen
CAPSERVER=build/capserver
PYTHON=${PYTHON:-/usr/bin/python3}
MEMCACHED=$(command -v memcached || echo /usr/bin/memcached)
VALGRIND=$(command -v valgrind || echo /usr/bin/valgrind)
TIME=/usr/bin/time
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
USER_OPT=""
[ "$(id -u)" = 0 ] && USER_OPT="-u nobody"
WORKLOAD="-k $KEYS -H 10:90 -Q hot:"

make --no-print-directory -s "$LOADGEN" || exit 1
if [ "$CAP" != 0 ]; then
    make --no-print-directory -s "$CAPSERVER" || exit 1
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/luagent-benchhot.XXXXXX") || exit 1
. scripts/bench-lib.sh
cp "$LUAGENT" "$TMP/luagent" || exit 1
LUAGENT=$TMP/luagent

NPORTS=8
pick_ports
SERVERS=""
PORTS=""
for i in 0 1 2 3; do
    p=$((BASE + i))
    "$MEMCACHED" $USER_OPT -l 127.0.0.1 -p "$p" -U 0 -t 1 > "$TMP/mc$i.log" 2>&1 &
    track $!
    wait_listen "$p" $! memcached || exit 1
    # Named: ketama places keys by the names, so every run has the same placement.
    SERVERS="$SERVERS { host = \"127.0.0.1\", port = $p, name = \"mc$i\" },"
    PORTS="$PORTS $p"
done
LG_PORT=$((BASE + 4))
CG_PORT=$((BASE + 5))
CAP_PORT=$((BASE + 6))
CAP_STATS_PORT=$((BASE + 7))

policy() {          # FILE SERVERS ROUTE-EXPRESSION
    cat > "$1" <<EOF
local lg = require "luagent"
local main = lg.pool{ name = "main", servers = { $2 } }
return lg.policy{ route = $3 }
EOF
}
policies() {        # SUFFIX SERVERS: the three policies, $TMP/NAME$SUFFIX.lua
    policy "$TMP/pool$1.lua" "$2" "main"
    policy "$TMP/near$1.lua" "$2" "lg.prefix{
    [\"hot:\"] = lg.nearcache{ to = main, ttl_ms = 500, max_items = 10000, max_bytes = \"64m\",
                               hot_qps = 200 },
    default = main,
}"
    policy "$TMP/all$1.lua" "$2" "lg.nearcache{ to = main, ttl_ms = 500, max_items = 10000,
                                     max_bytes = \"64m\", hot_qps = 200 }"
}
policies "" "$SERVERS"

# The server holding the hottest key (hot:0), as the policy places it.
HOT_SERVER=$("$LUAGENT" --route "$TMP/pool.lua" "get hot:0" | sed -n 's/.*-> server 127.0.0.1:\([0-9]*\).*/\1/p')
[ -n "$HOT_SERVER" ] || { echo "bench-hot: cannot place hot:0" >&2; exit 1; }
OTHERS=$(echo "$PORTS" | tr ' ' '\n' | grep -v "^$HOT_SERVER\$" | tr '\n' ' ')

# Capped: the same servers by name (so the same placement), hot:0's server
# reached through capserver.
RUNS="$POLICIES"
if [ "$CAP" != 0 ]; then
    "$CAPSERVER" -p "$CAP_PORT" -s "$CAP_STATS_PORT" -u "127.0.0.1:$HOT_SERVER" -r "$CAP" \
        > "$TMP/capserver.log" 2>&1 &
    track $!
    wait_listen "$CAP_STATS_PORT" $! capserver || exit 1
    wait_listen "$CAP_PORT" $! capserver || exit 1
    policies "-cap" "$(echo "$SERVERS" | sed "s/port = $HOT_SERVER,/port = $CAP_PORT,/")"
    RUNS="$POLICIES pool-cap near-cap all-cap"
fi

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

# PORT: "hits misses" of the near cache (0 0 without one), `stats routes`.
near_counts() {
    "$PYTHON" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"stats routes\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    buf += s.recv(65536)
st = {}
for l in buf.decode().splitlines():
    w = l.split()
    if len(w) == 3 and w[1].startswith("route:nearcache#") and w[2].isdigit():
        st[w[1].rsplit(":", 1)[1]] = int(w[2])
print(st.get("hits", 0), st.get("misses", 0))' "$1"
}

# "units throttled-ms requests" of capserver so far (0 0 0 without one).
cap_counts() {
    [ "$CAP" != 0 ] || { echo 0 0 0; return; }
    "$PYTHON" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(4096)
    if not d:
        break
    buf += d
st = dict(w.split("=") for w in buf.decode().split())
print(st["units"], st["throttled_ms"], st["requests"])' "$CAP_STATS_PORT"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }     # PID: utime + stime
machine() { awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat; }

# run NAME POLICY THREADS ROUND: one run; appends to $TMP/NAME-tN.tsv: ops
# requests hot-server-reads hot-key-reads luagent-ticks loadgen-cpu-s
# machine-busy-% hits misses warm-up-hot-key-reads p99-us capserver-units
# capserver-throttled-ms capserver-requests
run() {
    "$LUAGENT" -D -l 127.0.0.1 -t "$3" -p "$LG_PORT" -c "$2" --server-stats-interval 0 \
        > "$TMP/$1.log" 2>&1 &
    lg=$!
    track $lg
    wait_listen "$LG_PORT" $lg luagent || exit 1
    "$LOADGEN" -s "127.0.0.1:$LG_PORT" -c "$CONNS" $WORKLOAD -f -n 0 > /dev/null || exit 1
    warm0=$(reads_of $HOT_SERVER $OTHERS)
    "$LOADGEN" -s "127.0.0.1:$LG_PORT" -c "$CONNS" $WORKLOAD -r 1:0 -d "$WARMUP" -S "$4" \
        > /dev/null || exit 1
    before=$(reads_of $HOT_SERVER $OTHERS)
    nc0=$(near_counts "$LG_PORT")
    cap0=$(cap_counts)
    cpu0=$(cpu_ticks $lg)
    m0=$(machine)
    timer=""
    [ -x "$TIME" ] && timer="$TIME -f loadgen_cpu=%U+%S -o $TMP/time.out"
    echo "loadgen_cpu=0+0" > "$TMP/time.out"
    line=$($timer "$LOADGEN" -s "127.0.0.1:$LG_PORT" -c "$CONNS" -P "$DEPTH" -T "$LG_THREADS" \
           $WORKLOAD -r 1:0 -d "$SECONDS_RUN" -S "$4")
    rc=$?
    m1=$(machine)
    cpu1=$(cpu_ticks $lg)
    cap1=$(cap_counts)
    nc1=$(near_counts "$LG_PORT")
    after=$(reads_of $HOT_SERVER $OTHERS)
    [ $rc = 0 ] || { echo "bench-hot: loadgen failed: $line" >&2; exit 1; }
    stop_pid $lg
    untrack $lg
    if [ "$STOP_RC" != 0 ]; then
        echo "bench-hot: luagent ($1 -t $3) exited with status $STOP_RC:" >&2
        tail -n 20 "$TMP/$1.log" >&2
        exit 1
    fi
    lcpu=$(sed -n 's/^loadgen_cpu=//p' "$TMP/time.out" | tail -n 1)
    # 1 ops 2 requests 3-4 after 5-6 before 7 ticks 8 loadgen 9-10 m0 11-12 m1
    # 13-14 nc0 15-16 nc1 17-18 warm0 19 p99 20-22 cap0 23-25 cap1
    echo "$(field ops "$line") $(field requests "$line") $after $before $((cpu1 - cpu0)) $lcpu" \
         "$m0 $m1 $nc0 $nc1 $warm0 $(field p99_us "$line") $cap0 $cap1" |
        awk '{ split($8, l, "+"); all = $11 - $9; busy = all - ($12 - $10)
               print $1, $2, $3 - $5, $4 - $6, $7, l[1] + l[2], (all > 0 ? 100 * busy / all : 0),
                     $15 - $13, $16 - $14, $6 - $18, $19, $23 - $20, $24 - $21, $25 - $22 }' \
        >> "$TMP/$1-t$3.tsv"
}

r=1
while [ $r -le "$ROUNDS" ]; do
    for t in $THREADS; do
        for name in $RUNS; do
            run $name "$TMP/$name.lua" "$t" "$r"
        done
    done
    r=$((r + 1))
done

median() {          # FILE COLUMN
    sort -g -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

echo "== hot keys: 90% of gets on 10 keys, Zipf over $((KEYS - 10)) others; $CONNS connections, loadgen -P $DEPTH -T $LG_THREADS; ${WARMUP} s warm-up, then ${SECONDS_RUN} s; medians of $ROUNDS rounds =="
echo "   route for hot:; ops/s; p99 latency; luagent CPU us per request; loadgen CPU %; machine busy %; reads at hot:0's server (per 1,000 requests, in the run); hot-key reads at all servers (per 1,000, in the run); near-cache hits/misses; hot-key reads during the warm-up"

# report SUFFIX: the medians of the runs NAME$SUFFIX, and their ratios to the
# pool's within each round. With capserver: its reads let through a second
# and the share of the run it held requests back.
report() {
    for t in $THREADS; do
        for name in $POLICIES; do
            f="$TMP/$name$1-t$t.tsv"
            # per-round derived columns: 15 us/request, 16 loadgen %, 17 reads/1000,
            # 18 hot/1000, 19 capserver reads/s, 20 capserver throttled %
            awk -v hz="$HZ" -v s="$SECONDS_RUN" '{ print $0, 1e6 * $5 / hz / $2, 100 * $6 / s,
                                                     1000 * $3 / $2, 1000 * $4 / $2, $12 / s,
                                                     $13 / s / 10 }' "$f" > "$f.d"
            printf '%-22s %9.0f ops/s  p99 %6.0f us %7.2f us/req  loadgen %3.0f%%  busy %3.0f%%  hot:0 server %6.1f/1000 (%7d)  hot keys %7.2f/1000 (%6d)  hits %d misses %d  warm-up %d\n' \
                "-t $t $name$1" "$(median "$f.d" 1)" "$(median "$f.d" 11)" "$(median "$f.d" 15)" \
                "$(median "$f.d" 16)" "$(median "$f.d" 7)" "$(median "$f.d" 17)" \
                "$(median "$f.d" 3)" "$(median "$f.d" 18)" "$(median "$f.d" 4)" \
                "$(median "$f.d" 8)" "$(median "$f.d" 9)" "$(median "$f.d" 10)"
            [ -n "$1" ] && printf '%-22s capserver let %.0f reads/s through (cap %s), held requests back %.0f%% of the run\n' \
                "" "$(median "$f.d" 19)" "$CAP" "$(median "$f.d" 20)"
            printf '%-22s each round: ops/s, hot-key reads in the run%s:%s\n' "" \
                "${1:+, capserver held back %}" \
                "$(awk -v c="$1" '{ printf " %.0f %d", $1, $4; if (c != "") printf " %.0f%%", $20
                                    printf ";" }' "$f.d")"
        done
        for name in $POLICIES; do
            [ $name = pool ] && continue
            paste -d ' ' "$TMP/pool$1-t$t.tsv.d" "$TMP/$name$1-t$t.tsv.d" | awk '{
                n = 20; print $(n + 1) / $1, $15 / $(n + 15), ($(n + 17) > 0 ? $17 / $(n + 17) : 0),
                              ($3 > 0 ? $(n + 3) / $3 : 0), ($(n + 18) > 0 ? $18 / $(n + 18) : 0),
                              ($(n + 11) > 0 ? $11 / $(n + 11) : 0) }' \
                > "$TMP/ratio"
            printf -- '-t %s %s vs pool%s: ops/s %.2fx (target >= 2x); p99 %.2fx lower; requests per luagent CPU second %.2fx; reads at hot:0'"'"'s server per request: 1/%.1f (%.3f of them in the same seconds; target <= 0.100); hot-key reads per request: 1/%.0f\n' \
                "$t" "$name$1" "$1" "$(median "$TMP/ratio" 1)" "$(median "$TMP/ratio" 6)" \
                "$(median "$TMP/ratio" 2)" "$(median "$TMP/ratio" 3)" "$(median "$TMP/ratio" 4)" \
                "$(median "$TMP/ratio" 5)"
        done
    done
}
report ""
if [ "$CAP" != 0 ]; then
    echo "== the same, hot:0's server behind capserver: at most $CAP reads a second reach it (BENCH_HOT_CAP) =="
    report "-cap"
fi

# ---- steady-state instructions per request under callgrind ----

cg_ir() {           # POLICY N: total Ir of luagent -t 1 started, prefilled, N requests; IR
    "$VALGRIND" --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$LUAGENT" -D -l 127.0.0.1 \
        -t 1 -p "$CG_PORT" -c "$1" --server-stats-interval 0 > "$TMP/cg.log" 2>&1 &
    cg=$!
    track $cg
    wait_listen "$CG_PORT" $cg "luagent under callgrind" || exit 1
    "$LOADGEN" -s "127.0.0.1:$CG_PORT" -c 1 $WORKLOAD -f -n 0 -W 60 > /dev/null || exit 1
    "$LOADGEN" -s "127.0.0.1:$CG_PORT" -c 1 $WORKLOAD -r 1:0 -n "$2" -S 1 -W 60 > /dev/null || exit 1
    stop_pid $cg
    untrack $cg
    IR=$(awk '/^totals:/ { print $2 }' "$TMP/cg.out")
    [ -n "$IR" ] || IR=$(awk '/^summary:/ { print $2 }' "$TMP/cg.out")
    rm -f "$TMP/cg.out"
    [ -n "$IR" ] || { echo "bench-hot: no callgrind totals" >&2; exit 1; }
}

if [ "$DO_CG" = 1 ] && [ -x "$VALGRIND" ]; then
    for name in $POLICIES; do
        cg_ir "$TMP/$name.lua" "$CG_SKIP"
        a=$IR
        cg_ir "$TMP/$name.lua" $((CG_SKIP + CG_REQUESTS))
        eval "IR_$name=$(awk -v a="$a" -v b="$IR" -v n="$CG_REQUESTS" 'BEGIN { printf "%.0f", (b - a) / n }')"
    done
    printf 'callgrind, luagent -t 1, one connection, %d requests after %d, Ir per request:' \
        "$CG_REQUESTS" "$CG_SKIP"
    for name in $POLICIES; do
        eval "printf ' %s %s' $name \$IR_$name"
    done
    echo
fi
