#!/bin/sh
# `make bench`: luagent, twemproxy (nutcracker) and a direct memcached side by
# side, in one run, with the same load generator (bench/loadgen.c). See
# docs/performance.md for what every figure means.
#
# 1. Wall clock: three workloads (single get/set, 16-deep pipelines, 10-key
#    multi-gets; 10:1 get:set, 100-byte values, BENCH_CONNS connections) against
#    a direct memcached, nutcracker (default log level, and -v 4), luagent -t 1
#    and luagent -t 2, the proxies in front of the same four memcached servers.
#    BENCH_ROUNDS rounds; in each round every workload visits every target in
#    turn (the order rotates per round); the tables show the median round.
# 2. Instructions per request in the proxy process under callgrind: Ir of
#    start + prefill + workload minus Ir of start + prefill alone, divided by the
#    workload's requests (one connection), for luagent and nutcracker; then
#    luagent with four policies (bench/policies/*.lua) on the get/set workload,
#    and luagent on the same three workloads in memcached's binary protocol
#    (loadgen -B: Set, Get, GetKQ... Noop for the multi-get).
# 3. TLS: luagent plain, with TLS on the client side (loadgen -t to --tls-port),
#    on the backend side (four memcached -Z, --backend-tls-ca) and on both;
#    one wall-clock round per workload, then Ir/request for plain, client-side
#    and backend-side TLS under callgrind. Certificates are made with the
#    openssl command line in the run's temporary directory.
# 4. Value sizes (BENCH_SIZES): the three workloads at 9:1 get:set against a
#    direct memcached, nutcracker -v 4 and luagent -t 1, side by side, at each
#    size; ops/s, p99 and the ratios. Servers here are memcached -m 1024 -I 2m
#    (a 1 MiB value does not fit memcached's default 1 MB item). Connections
#    are cut at large sizes so that at most BENCH_SWEEP_MB of values are in
#    flight (prefills included), and the keyspace holds at most BENCH_SWEEP_MB of
#    data. Each proxy's CPU time per request is read over every timed run
#    (loadgen -C), and set against the kernel's floor for passing a value on:
#    build/relayfloor relays one value at each size through a loop with no
#    other work, by read/write and by splice (CPU per get).
# 5. Cost growth under callgrind, luagent -t 1 and nutcracker -v 4: Ir per
#    request against value size, multi-get width (BENCH_WIDTHS) and pool size
#    (BENCH_POOLS: N servers served by four memcached processes listening on
#    N/4 ports each, so every server in the ring is real and is hit); and Ir
#    per call of the two parsers alone (bench/parsecost.c).
# 6. User-space bytes copied per request by luagent -t 1, nutcracker -v 4 and
#    a direct memcached, each run with build/copycount.so preloaded (it counts
#    memcpy/memmove/mempcpy; see bench/copycount.c): gets, 10-key multi-gets
#    and sets, one connection, at each value size.
# 7. Hot keys (scripts/bench-hot.sh): 90% of gets on 10 keys, Zipf over the
#    rest, luagent -t 1 and -t 2 with the pool alone and with lg.nearcache on
#    the hot prefix, side by side: ops/s, luagent's CPU time per request, the
#    reads the hot keys' server receives per request, and Ir per request.
#
# At the end, scripts/plot.sh draws parts 4 and 5 with gnuplot as PNG pictures
# beside the results file (<results>-sizes.png, <results>-growth.png).
#
# Everything listens on 127.0.0.1 on free ports below 32768; every process is
# stopped by its PID on exit. A server or proxy that disappears during a run
# (on a shared machine something may kill it) is restarted and the run is
# repeated, with a note. Tunables (environment):
#   BENCH_SECONDS (5)  BENCH_ROUNDS (3)  BENCH_CONNS (50)  BENCH_KEYS (10000)
#   BENCH_VALUE (100)  BENCH_CG_REQUESTS (20000)  BENCH_CG_RUNS (2)
#   BENCH_WALL (1; 0 skips part 1)  BENCH_CALLGRIND (1; 0 skips part 2)
#   BENCH_TLS (1; 0 skips part 3)  BENCH_SWEEP (1; 0 skips part 4)
#   BENCH_GROWTH (1; 0 skips part 5)  BENCH_COPIES (1; 0 skips part 6)
#   BENCH_HOT (1; 0 skips part 7; its own tunables: scripts/bench-hot.sh)
#   BENCH_SIZES ("100 10240 102400 1048576")  BENCH_WIDTHS ("1 10 100")
#   BENCH_POOLS ("4 64 512")  BENCH_SWEEP_SECONDS (3)  BENCH_SWEEP_ROUNDS (1)
#   BENCH_SWEEP_MB (64)  BENCH_GROWTH_MB (200: value bytes one callgrind
#   measurement moves at most; fewer requests at large sizes)
#   BENCH_LUAGENT (./luagent: another build to measure)
#   BENCH_LOADGEN_THREADS (1)  BENCH_OUT (results file)
#   BENCH_CG_KEEP (a directory to keep the callgrind output files in, for
#   callgrind_annotate; by default they are deleted)
#
# shellcheck disable=SC2086,SC2317 # flag lists ($S_FLAGS, ...) split on purpose; trap handlers
set -u
cd "$(dirname "$0")/.." || exit 1

DURATION=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-50}
KEYS=${BENCH_KEYS:-10000}
VALUE=${BENCH_VALUE:-100}
CG_REQUESTS=${BENCH_CG_REQUESTS:-20000}
CG_RUNS=${BENCH_CG_RUNS:-2}
DO_WALL=${BENCH_WALL:-1}
DO_CG=${BENCH_CALLGRIND:-1}
DO_TLS=${BENCH_TLS:-1}
DO_SWEEP=${BENCH_SWEEP:-1}
DO_GROWTH=${BENCH_GROWTH:-1}
DO_COPIES=${BENCH_COPIES:-1}
SIZES=${BENCH_SIZES:-100 10240 102400 1048576}
WIDTHS=${BENCH_WIDTHS:-1 10 100}
POOLS=${BENCH_POOLS:-4 64 512}
SWEEP_SECONDS=${BENCH_SWEEP_SECONDS:-3}
SWEEP_ROUNDS=${BENCH_SWEEP_ROUNDS:-1}
SWEEP_BYTES=$((${BENCH_SWEEP_MB:-64} * 1048576))
GROWTH_BYTES=$((${BENCH_GROWTH_MB:-200} * 1048576))
SWEEP_RATIO=9:1
LG_THREADS=${BENCH_LOADGEN_THREADS:-1}
CG_KEEP=${BENCH_CG_KEEP:-}          # a directory: keep the callgrind files there
RATIO=10:1
ATTEMPTS=3                          # tries per run when a process disappears

MEMCACHED=$(command -v memcached || echo /usr/bin/memcached)
NUTCRACKER=$(command -v nutcracker || echo /usr/sbin/nutcracker)
VALGRIND=$(command -v valgrind || echo /usr/bin/valgrind)
LUAGENT=${BENCH_LUAGENT:-./luagent}
LOADGEN=build/loadgen
PARSECOST=build/parsecost
COPYCOUNT=build/copycount.so
USER_OPT=""
[ "$(id -u)" = 0 ] && USER_OPT="-u nobody"

WORKLOADS="getset pipe16 mget10"
wl_flags() {
    case $1 in
    getset) echo "-P 1 -m 1" ;;
    pipe16) echo "-P 16 -m 1" ;;
    mget10) echo "-P 1 -m 10" ;;
    bin-getset) echo "-B -P 1 -m 1" ;;
    bin-pipe16) echo "-B -P 16 -m 1" ;;
    bin-mget10) echo "-B -P 1 -m 10" ;;
    esac
}

RELAYFLOOR=build/relayfloor
if [ -n "${BENCH_LUAGENT:-}" ]; then
    make --no-print-directory -s "$LOADGEN" "$RELAYFLOOR" || exit 1
    [ -x "$LUAGENT" ] || { echo "bench: BENCH_LUAGENT=$LUAGENT is not an executable" >&2; exit 1; }
else
    make --no-print-directory -s "$LOADGEN" "$RELAYFLOOR" "$LUAGENT" || exit 1
fi
# The parser harness links the parsers as they are in this tree (without
# LTO, so that callgrind can see proto_parse and reply_parse as functions);
# the copy counter is a preload library. Neither is part of ./luagent.
cc -std=gnu11 -D_GNU_SOURCE -O2 -g -Iinclude -o "$PARSECOST" bench/parsecost.c \
    src/proto.c src/reply.c src/base64.c || exit 1
cc -std=gnu11 -O2 -g -fno-builtin -fno-tree-loop-distribute-patterns -shared -fPIC \
    -o "$COPYCOUNT" bench/copycount.c -ldl || exit 1
if [ -n "$CG_KEEP" ]; then
    mkdir -p "$CG_KEEP" && CG_KEEP=$(cd "$CG_KEEP" && pwd) || exit 1
fi
for tool in "$MEMCACHED" "$NUTCRACKER" "$VALGRIND"; do
    [ -x "$tool" ] || { echo "bench: $tool not found (make deps installs it)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/luagent-bench.XXXXXX") || exit 1
HOST=$(hostname -s 2>/dev/null || hostname)
OUT=${BENCH_OUT:-bench/results/$(date +%Y-%m-%d-%H%M)-$HOST.txt}
mkdir -p "$(dirname "$OUT")"
: > "$OUT.tmp"

# ---- processes (track, stop_pid; cleanup on exit), ports (pick_ports,
# wait_listen) and loadgen fields: shared with bench-hot.sh ----

. scripts/bench-lib.sh

# Run a private copy: a rebuild of ./luagent during the run (another make in
# the same tree) must not change the binary half-way through.
if ldd "$LUAGENT" 2>/dev/null | grep -q 'libasan\|libubsan'; then
    echo "bench: $LUAGENT is a SAN=1 build; run 'make' first" >&2
    exit 1
fi
LUAGENT_SRC=$LUAGENT
cp "$LUAGENT" "$TMP/luagent" || exit 1
LUAGENT=$TMP/luagent

start_bg() {        # LOG CMD...: start in the background; LAST_PID
    sb_log=$1
    shift
    "$@" >> "$sb_log" 2>&1 &
    LAST_PID=$!
    track "$LAST_PID"
}

# ---- output: the results file and stdout get the same lines ----

out() { printf '%s\n' "$*" | tee -a "$OUT.tmp"; }

# ---- ports ----

NPORTS=36
pick_ports
MC1=$BASE; MC2=$((BASE + 1)); MC3=$((BASE + 2)); MC4=$((BASE + 3))
MCD=$((BASE + 4))                   # the direct memcached
NC_PORT=$((BASE + 5)); NC_STATS=$((BASE + 6))
NCQ_PORT=$((BASE + 7)); NCQ_STATS=$((BASE + 8))
LG1_PORT=$((BASE + 9)); LG2_PORT=$((BASE + 10))
CG_PORT=$((BASE + 11)); CG_STATS=$((BASE + 12))
MT1=$((BASE + 13)); MT2=$((BASE + 14)); MT3=$((BASE + 15)); MT4=$((BASE + 16))
LGT_P=$((BASE + 17))                # luagent, plain both sides
LGT_C=$((BASE + 18)); LGT_CT=$((BASE + 19))     # TLS to clients (plain port, TLS port)
LGT_B=$((BASE + 20))                # TLS to the servers
LGT_X=$((BASE + 21)); LGT_XT=$((BASE + 22))     # TLS on both sides
CG_SPARE=$((BASE + 23))             # plain port of the TLS luagent under callgrind
MS1=$((BASE + 24)); MS2=$((BASE + 25)); MS3=$((BASE + 26)); MS4=$((BASE + 27))
MSD=$((BASE + 28))                  # parts 4-6: memcached -m 1024 -I 2m
NCS_PORT=$((BASE + 29)); NCS_STATS=$((BASE + 30)); LGS_PORT=$((BASE + 31))
LGC_PORT=$((BASE + 32)); NCC_PORT=$((BASE + 33)); NCC_STATS=$((BASE + 34))
MCC_PORT=$((BASE + 35))             # part 6: the same three, copies counted
BIG_SERVERS="127.0.0.1:$MS1 127.0.0.1:$MS2 127.0.0.1:$MS3 127.0.0.1:$MS4"
BIG_FLAGS=""
for s in $BIG_SERVERS; do BIG_FLAGS="$BIG_FLAGS -s $s"; done
SERVERS="127.0.0.1:$MC1 127.0.0.1:$MC2 127.0.0.1:$MC3 127.0.0.1:$MC4"
S_FLAGS=""
for s in $SERVERS; do S_FLAGS="$S_FLAGS -s $s"; done
ST_FLAGS="-s 127.0.0.1:$MT1 -s 127.0.0.1:$MT2 -s 127.0.0.1:$MT3 -s 127.0.0.1:$MT4"
TLSDIR=$TMP/tls
LG_EXTRA=""                         # extra loadgen flags (-t CA for TLS targets)

nutcracker_conf() { # PORT FILE [SERVERS]
    {
        echo "bench:"
        echo "  listen: 127.0.0.1:$1"
        echo "  hash: md5"
        echo "  distribution: ketama"
        echo "  timeout: 1000"
        echo "  servers:"
        for s in ${3:-$SERVERS}; do echo "   - $s:1"; done
    } > "$2"
}
nutcracker_conf "$NC_PORT" "$TMP/nutcracker.yml"
nutcracker_conf "$NCQ_PORT" "$TMP/nutcracker-v4.yml"
nutcracker_conf "$CG_PORT" "$TMP/nutcracker-cg.yml"
nutcracker_conf "$NCS_PORT" "$TMP/nutcracker-ncs.yml" "$BIG_SERVERS"
nutcracker_conf "$NCC_PORT" "$TMP/nutcracker-ncc.yml" "$BIG_SERVERS"

for p in plain prefix hook hook_cached; do
    sed "s/@PORT1@/$MC1/g; s/@PORT2@/$MC2/g; s/@PORT3@/$MC3/g; s/@PORT4@/$MC4/g" \
        "bench/policies/$p.lua" > "$TMP/$p.lua"
    "$LUAGENT" --check "$TMP/$p.lua" > "$TMP/$p.check" 2>&1 \
        || { cat "$TMP/$p.check" >&2; echo "bench: policy $p.lua does not load" >&2; exit 1; }
done

# ---- services: the long-running servers and proxies, restarted if they vanish ----

svc_port() {
    case $1 in
    mc1) echo "$MC1" ;; mc2) echo "$MC2" ;; mc3) echo "$MC3" ;; mc4) echo "$MC4" ;;
    mcd) echo "$MCD" ;; nc) echo "$NC_PORT" ;; ncq) echo "$NCQ_PORT" ;;
    lg1) echo "$LG1_PORT" ;; lg2) echo "$LG2_PORT" ;;
    mt1) echo "$MT1" ;; mt2) echo "$MT2" ;; mt3) echo "$MT3" ;; mt4) echo "$MT4" ;;
    lgtp) echo "$LGT_P" ;; lgtc) echo "$LGT_C" ;; lgtb) echo "$LGT_B" ;; lgtx) echo "$LGT_X" ;;
    ms1) echo "$MS1" ;; ms2) echo "$MS2" ;; ms3) echo "$MS3" ;; ms4) echo "$MS4" ;;
    msd) echo "$MSD" ;; ncs) echo "$NCS_PORT" ;; lgs) echo "$LGS_PORT" ;;
    lgc) echo "$LGC_PORT" ;; ncc) echo "$NCC_PORT" ;; mcc) echo "$MCC_PORT" ;;
    esac
}

svc_stats() {
    case $1 in ncs) echo "$NCS_STATS" ;; ncc) echo "$NCC_STATS" ;; esac
}

# Part 6's processes (names ending in c) have their copies counted, in
# $TMP/copies.NAME: a zeroed counter file and the preload before the command.
preload_for() {     # NAME
    case $1 in
    ?cc|lgc)
        : > "$TMP/copies.$1" && truncate -s 16 "$TMP/copies.$1"
        echo env "COPYCOUNT_FILE=$TMP/copies.$1" "LD_PRELOAD=$PWD/$COPYCOUNT" ;;
    esac
}

# shellcheck disable=SC2046 # $(preload_for NAME) is a command prefix or nothing
svc_launch() {      # NAME: start it, wait until it listens; PID_<name>
    sl_port=$(svc_port "$1")
    case $1 in
    mc[1-4d])
        start_bg "$TMP/$1.log" "$MEMCACHED" -p "$sl_port" -l 127.0.0.1 -U 0 -t 1 $USER_OPT ;;
    ms*|mcc)
        start_bg "$TMP/$1.log" $(preload_for "$1") "$MEMCACHED" -p "$sl_port" -l 127.0.0.1 -U 0 \
            -t 1 $USER_OPT -m 1024 -I 2m ;;
    ncs|ncc)
        start_bg "$TMP/$1.log" $(preload_for "$1") "$NUTCRACKER" -v 4 -c "$TMP/nutcracker-$1.yml" \
            -s "$(svc_stats "$1")" -a 127.0.0.1 ;;
    lgs|lgc)
        start_bg "$TMP/$1.log" $(preload_for "$1") "$LUAGENT" -D -l 127.0.0.1 -p "$sl_port" -k \
            $BIG_FLAGS -t 1 ;;
    mt*)
        start_bg "$TMP/$1.log" "$MEMCACHED" -p "$sl_port" -l 127.0.0.1 -U 0 -t 1 $USER_OPT \
            -Z -o "ssl_chain_cert=$TLSDIR/server.pem,ssl_key=$TLSDIR/server.key" ;;
    lgtp)
        start_bg "$TMP/$1.log" "$LUAGENT" -D -l 127.0.0.1 -p "$sl_port" -k $S_FLAGS -t 1 ;;
    lgtc)
        start_bg "$TMP/$1.log" "$LUAGENT" -D -l 127.0.0.1 -p "$sl_port" -k $S_FLAGS -t 1 \
            --tls-port "$LGT_CT" --tls-cert "$TLSDIR/server.pem" --tls-key "$TLSDIR/server.key" ;;
    lgtb)
        start_bg "$TMP/$1.log" "$LUAGENT" -D -l 127.0.0.1 -p "$sl_port" -k $ST_FLAGS -t 1 \
            --backend-tls-ca "$TLSDIR/ca.pem" ;;
    lgtx)
        start_bg "$TMP/$1.log" "$LUAGENT" -D -l 127.0.0.1 -p "$sl_port" -k $ST_FLAGS -t 1 \
            --backend-tls-ca "$TLSDIR/ca.pem" \
            --tls-port "$LGT_XT" --tls-cert "$TLSDIR/server.pem" --tls-key "$TLSDIR/server.key" ;;
    nc)
        start_bg "$TMP/$1.log" "$NUTCRACKER" -c "$TMP/nutcracker.yml" -s "$NC_STATS" -a 127.0.0.1 ;;
    ncq)
        start_bg "$TMP/$1.log" "$NUTCRACKER" -v 4 -c "$TMP/nutcracker-v4.yml" -s "$NCQ_STATS" \
            -a 127.0.0.1 ;;
    lg1)
        start_bg "$TMP/$1.log" "$LUAGENT" -D -l 127.0.0.1 -p "$sl_port" -k $S_FLAGS -t 1 ;;
    lg2)
        start_bg "$TMP/$1.log" "$LUAGENT" -D -l 127.0.0.1 -p "$sl_port" -k $S_FLAGS -t 2 ;;
    esac
    eval "PID_$1=\$LAST_PID"
    wait_listen "$sl_port" "$LAST_PID" "$1"
}

svc_ensure() {      # NAME...: launch those that do not run yet
    for se_s in "$@"; do
        eval "se_p=\${PID_$se_s:-}"
        [ -n "$se_p" ] && alive "$se_p" && continue
        [ -n "$se_p" ] && untrack "$se_p"
        svc_launch "$se_s" || exit 1
    done
}

RESTARTS=0
svc_check() {       # NAME...: restart whichever is gone; status 1 if one was
    sc_rc=0
    for sc_s in "$@"; do
        eval "sc_p=\$PID_$sc_s"
        # shellcheck disable=SC2154
        alive "$sc_p" && continue
        wait "$sc_p" 2>/dev/null
        sc_status=$?
        untrack "$sc_p"
        out "note: $sc_s (pid $sc_p) is gone, exit status $sc_status (killed from outside?): restarting it"
        svc_launch "$sc_s" || exit 1
        RESTARTS=$((RESTARTS + 1))
        sc_rc=1
    done
    [ $sc_rc = 0 ] || sleep 1.5     # let the proxies' retry timers expire
    return $sc_rc
}

BACKENDS="mc1 mc2 mc3 mc4"

# ---- header ----

CPU=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
GITREV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include lua examples Makefile 2>/dev/null || GITREV="$GITREV+changes"
out "luagent benchmark, $(date '+%Y-%m-%d %H:%M:%S %z')"
out "host $HOST: $(nproc) CPU(s), $CPU; load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
[ -n "${BENCH_LUAGENT:-}" ] && GITREV="$GITREV tree; binary $LUAGENT_SRC"
out "$("$LUAGENT" --version 2>&1 | head -n 1) (git $GITREV, built $(date -r "$LUAGENT_SRC" '+%H:%M:%S')), $("$NUTCRACKER" --version 2>&1 | head -n 1 | sed 's/^This is //'), memcached $("$MEMCACHED" -V 2>&1 | cut -d' ' -f2), $("$VALGRIND" --version 2>&1)"
out "servers: 4 x memcached -t 1 on $SERVERS; direct: one more on 127.0.0.1:$MCD"
if [ "$DO_SWEEP$DO_GROWTH$DO_COPIES" != 000 ]; then
    out "parts 4-6: 4 x memcached -t 1 -m 1024 -I 2m on $BIG_SERVERS; direct: 127.0.0.1:$MSD"
fi
out "loadgen: $RATIO get:set, $VALUE-byte values, $KEYS keys, prefilled before every run; every value read is verified"
out ""

for s in $BACKENDS mcd; do svc_launch $s || exit 1; done

FAILED=0
TARGETS="direct nutcracker nutcracker-v4 luagent-t1 luagent-t2"
target_svc() {
    case $1 in
    direct) echo mcd ;; nutcracker) echo nc ;; nutcracker-v4) echo ncq ;;
    luagent-t1) echo lg1 ;; luagent-t2) echo lg2 ;;
    esac
}

# wall_run LABEL "SERVICES" LOADGEN-ARGS...: one loadgen run, repeated (up to
# ATTEMPTS times) when one of SERVICES vanished during it; sets LINE, RC and
# ERRS and prints the line.
wall_run() {
    wr_label=$1 wr_svcs=$2
    shift 2
    wr_try=1
    while :; do
        svc_check $wr_svcs
        LINE=$("$LOADGEN" "$@" 2> "$TMP/loadgen.err")
        RC=$?
        svc_check $wr_svcs && break
        out "$wr_label (discarded, a process vanished): ${LINE:-loadgen exit $RC}"
        [ $wr_try -ge $ATTEMPTS ] && break
        wr_try=$((wr_try + 1))
    done
    ERRS=$(field errors "$LINE")
    if [ "$RC" -ne 0 ] || [ -z "$LINE" ]; then
        FAILED=1
        [ -n "$ERRS" ] || ERRS=1
        sed 's/^/    /' "$TMP/loadgen.err" | head -n 5 | tee -a "$OUT.tmp" >&2
    fi
    out "$wr_label: ${LINE:-loadgen failed (exit $RC)}"
}

rotated() {         # N WORD...: the words rotated left N - 1 times (round N's order)
    ro_n=$1
    shift
    ro_list="$*"
    while [ "$ro_n" -gt 1 ]; do
        ro_list="${ro_list#* } ${ro_list%% *}"
        ro_n=$((ro_n - 1))
    done
    echo "$ro_list"
}

svc_stop() {        # NAME...: stop those services that run (a luagent must exit 0)
    for ss_s in "$@"; do
        eval "ss_p=\${PID_$ss_s:-}"
        [ -n "$ss_p" ] || continue
        eval "PID_$ss_s="
        stop_pid "$ss_p"
        untrack "$ss_p"
        case $ss_s in
        lg*) [ "$STOP_RC" = 0 ] || out "note: luagent ($ss_s) exited with status $STOP_RC on SIGTERM" ;;
        esac
    done
}

# ---- part 1: wall clock ----

: > "$TMP/wall.tsv"
if [ "$DO_WALL" = 1 ]; then
    for s in nc ncq lg1 lg2; do svc_launch $s || exit 1; done
    out "== wall clock: $ROUNDS round(s) x ${DURATION} s per run, $CONNS connections, loadgen threads $LG_THREADS"
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for w in $WORKLOADS; do
            # shellcheck disable=SC2086 # the order of the targets rotates each round
            for t in $(rotated "$r" $TARGETS); do
                svc=$(target_svc "$t")
                # shellcheck disable=SC2046
                wall_run "round $r $w $t" "$BACKENDS $svc" -s "127.0.0.1:$(svc_port "$svc")" \
                    -c "$CONNS" $(wl_flags "$w") -r "$RATIO" -v "$VALUE" -k "$KEYS" \
                    -d "$DURATION" -S "$r" -f -W 10 -T "$LG_THREADS"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$t" "$r" \
                    "$(field ops "$LINE")" "$(field p50_us "$LINE")" \
                    "$(field p99_us "$LINE")" "${ERRS:-0}" >> "$TMP/wall.tsv"
            done
        done
        r=$((r + 1))
    done
    svc_stop nc ncq lg1 lg2
    out ""
fi

# ---- part 2: instructions per request under callgrind ----

# cg_total NAME SIGNAL LOADGEN_FLAGS REQUESTS -- CMD...: start CMD under callgrind
# (listening on CG_PORT), run the loadgen (prefill, then REQUESTS requests; 0 =
# prefill only) on one connection, stop CMD with SIGNAL; IR = the total Ir.
# Not run in a $(...) subshell, so the exit trap knows every PID.
CG_N=0
cg_total() {
    cg_name=$1 cg_sig=$2 cg_flags=$3 cg_n=$4
    shift 5
    IR=""
    CG_N=$((CG_N + 1))
    cg_file="$TMP/callgrind.$CG_N.$cg_name"
    start_bg "$TMP/valgrind.$CG_N.log" "$VALGRIND" --tool=callgrind --smc-check=all-non-file \
        --callgrind-out-file="$cg_file" "$@"
    cg_pid=$LAST_PID
    if ! wait_listen "$CG_PORT" "$cg_pid" "$cg_name under callgrind"; then
        stop_pid "$cg_pid"
        untrack "$cg_pid"
        return 1
    fi
    "$LOADGEN" -s "127.0.0.1:$CG_PORT" -c 1 $cg_flags $LG_EXTRA -r "$RATIO" -v "$VALUE" \
        -k "$KEYS" -S 1 -f -n "$cg_n" -W 60 > "$TMP/loadgen.out" 2> "$TMP/loadgen.err"
    cg_rc=$?
    stop_pid "$cg_pid" "$cg_sig"
    untrack "$cg_pid"
    case $cg_name in
    luagent|luagent-binary|policy-*|growth-luagent)
        [ "$STOP_RC" = 0 ] || out "note: $cg_name under callgrind exited with status $STOP_RC on SIGTERM" ;;
    esac
    cg_line=$(cat "$TMP/loadgen.out")
    if [ $cg_rc -ne 0 ] || [ "$(field requests "$cg_line")" != "$cg_n" ]; then
        echo "bench: $cg_name: loadgen failed (exit $cg_rc): $cg_line" >&2
        sed 's/^/    /' "$TMP/loadgen.err" | head -n 5 >&2
        return 1
    fi
    IR=$(awk '/^totals:/ { print $2 }' "$cg_file")
    [ -n "$IR" ] || IR=$(awk '/^summary:/ { print $2 }' "$cg_file")
    [ -n "$IR" ] || { echo "bench: $cg_name: no callgrind totals in $cg_file" >&2; return 1; }
    if [ -n "$CG_KEEP" ]; then
        mv "$cg_file" "$CG_KEEP/callgrind.$cg_name.$(echo "$cg_flags" | tr -d ' -').n$cg_n.$CG_N"
    else
        rm -f "$cg_file"
    fi
}

cg_try() {          # like cg_total, repeated when a server vanished or it failed
    ct_try=1
    while :; do
        svc_check $BACKENDS
        cg_total "$@" && svc_check $BACKENDS && return 0
        [ $ct_try -ge $ATTEMPTS ] && return 1
        out "note: callgrind run of $1 failed or a server vanished: repeating it"
        ct_try=$((ct_try + 1))
    done
}

# cg_per_request NAME SIGNAL -- CMD...: for each workload in CG_WORKLOADS and
# each of CG_RUNS runs, a line in cg.tsv: name, workload, run, Ir/request.
cg_per_request() {
    name=$1 sig=$2
    shift 3
    run=1
    while [ $run -le "$CG_RUNS" ]; do
        cg_try "$name" "$sig" "${CG_BASE_FLAGS:--P 1 -m 1}" 0 -- "$@" || return 1
        base=$IR
        for w in $CG_WORKLOADS; do
            cg_try "$name" "$sig" "$(wl_flags "$w")" "$CG_REQUESTS" -- "$@" || return 1
            per=$(awk -v a="$IR" -v b="$base" -v n="$CG_REQUESTS" 'BEGIN { printf "%.1f", (a - b) / n }')
            out "callgrind run $run $name $w: start+prefill $base Ir, +workload $IR Ir: $per Ir/request"
            printf '%s\t%s\t%s\t%s\n' "$name" "$w" "$run" "$per" >> "$TMP/cg.tsv"
        done
        run=$((run + 1))
    done
}

: > "$TMP/cg.tsv"
if [ "$DO_CG" = 1 ]; then
    out "== callgrind: Ir in the proxy process, 1 connection, $CG_REQUESTS requests per workload, $CG_RUNS run(s)"
    CG_WORKLOADS=$WORKLOADS
    cg_per_request luagent TERM -- "$LUAGENT" -D -l 127.0.0.1 -p "$CG_PORT" -k $S_FLAGS || FAILED=1
    # nutcracker exits cleanly on SIGINT (SIGTERM kills it; callgrind writes its output either way)
    cg_per_request nutcracker INT -- "$NUTCRACKER" -c "$TMP/nutcracker-cg.yml" \
        -s "$CG_STATS" -a 127.0.0.1 || FAILED=1
    cg_per_request nutcracker-v4 INT -- "$NUTCRACKER" -v 4 -c "$TMP/nutcracker-cg.yml" \
        -s "$CG_STATS" -a 127.0.0.1 || FAILED=1
    CG_WORKLOADS=getset
    for p in plain prefix hook hook_cached; do
        cg_per_request "policy-$p" TERM -- "$LUAGENT" -D -l 127.0.0.1 -p "$CG_PORT" \
            -c "$TMP/$p.lua" || FAILED=1
    done
    CG_WORKLOADS="bin-getset bin-pipe16 bin-mget10"
    CG_BASE_FLAGS="-B -P 1 -m 1"        # the prefill in the same protocol
    cg_per_request luagent-binary TERM -- "$LUAGENT" -D -l 127.0.0.1 -p "$CG_PORT" -k $S_FLAGS \
        || FAILED=1
    CG_BASE_FLAGS=""
    out ""
fi

# ---- part 3: TLS ----

tls_pki() {         # a CA and a certificate for 127.0.0.1 in $TLSDIR (openssl CLI)
    mkdir -p "$TLSDIR" || return 1
    (
        cd "$TLSDIR" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj "/CN=luagent bench CA" &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj "/CN=127.0.0.1" &&
        echo "subjectAltName=IP:127.0.0.1,DNS:localhost" > server.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.pem -days 2 -extfile server.ext
    ) > "$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; return 1; }
    # memcached may run as nobody: let it reach the (throw-away) files.
    chmod 711 "$TMP" && chmod 755 "$TLSDIR" && chmod 644 "$TLSDIR"/*
}

TLS_TARGETS="plain client-tls backend-tls both-tls"
tls_target() {      # NAME: "service port loadgen-extra"
    case $1 in
    plain) echo "lgtp $LGT_P" ;;
    client-tls) echo "lgtc $LGT_CT -t $TLSDIR/ca.pem" ;;
    backend-tls) echo "lgtb $LGT_B" ;;
    both-tls) echo "lgtx $LGT_XT -t $TLSDIR/ca.pem" ;;
    esac
}

: > "$TMP/tls.tsv"
if [ "$DO_TLS" = 1 ]; then
    tls_pki || exit 1
    TLS_BACKENDS="mt1 mt2 mt3 mt4"
    for s in $TLS_BACKENDS lgtp lgtc lgtb lgtx; do svc_launch $s || exit 1; done
    out "== TLS: luagent -t 1 plain, TLS to clients, TLS to servers (memcached -Z), both;"
    out "   one ${DURATION} s run per workload and target, $CONNS connections"
    for w in $WORKLOADS; do
        for t in $TLS_TARGETS; do
            # shellcheck disable=SC2046
            set -- $(tls_target "$t")
            svc=$1 port=$2
            shift 2
            svc_check $BACKENDS $TLS_BACKENDS "$svc"
            # shellcheck disable=SC2046
            line=$("$LOADGEN" -s "127.0.0.1:$port" "$@" -c "$CONNS" $(wl_flags "$w") -r "$RATIO" \
                   -v "$VALUE" -k "$KEYS" -d "$DURATION" -S 1 -f -W 10 -T "$LG_THREADS" \
                   2> "$TMP/loadgen.err")
            rc=$?
            if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
                FAILED=1
                sed 's/^/    /' "$TMP/loadgen.err" | head -n 5 | tee -a "$OUT.tmp" >&2
            fi
            out "tls $w $t: ${line:-loadgen failed (exit $rc)}"
            printf 'wall\t%s\t%s\t%s\n' "$w" "$t" "$(field ops "$line")" >> "$TMP/tls.tsv"
        done
    done
    svc_stop lgtp lgtc lgtb lgtx
    CG_WORKLOADS=$WORKLOADS
    SAVED_RUNS=$CG_RUNS
    CG_RUNS=1
    mv "$TMP/cg.tsv" "$TMP/cg.tsv.main"
    : > "$TMP/cg.tsv"
    cg_per_request tls-plain TERM -- "$LUAGENT" -D -l 127.0.0.1 -p "$CG_PORT" -k $S_FLAGS \
        || FAILED=1
    LG_EXTRA="-t $TLSDIR/ca.pem"
    cg_per_request tls-client TERM -- "$LUAGENT" -D -l 127.0.0.1 -p "$CG_SPARE" -k $S_FLAGS \
        --tls-port "$CG_PORT" --tls-cert "$TLSDIR/server.pem" --tls-key "$TLSDIR/server.key" \
        || FAILED=1
    LG_EXTRA=""
    cg_per_request tls-backend TERM -- "$LUAGENT" -D -l 127.0.0.1 -p "$CG_PORT" -k $ST_FLAGS \
        --backend-tls-ca "$TLSDIR/ca.pem" || FAILED=1
    awk -F'\t' '{ printf "cg\t%s\t%s\t%s\n", $2, $1, $4 }' "$TMP/cg.tsv" >> "$TMP/tls.tsv"
    mv "$TMP/cg.tsv.main" "$TMP/cg.tsv"
    CG_RUNS=$SAVED_RUNS
    svc_stop $TLS_BACKENDS
    out ""
fi

# ---- parts 4-6: value sizes, cost growth, bytes copied ----

BIG_BACKENDS="ms1 ms2 ms3 ms4"

sweep_keys() {      # SIZE: keys holding at most SWEEP_BYTES of values (16..KEYS)
    sk_n=$((SWEEP_BYTES / $1))
    [ "$sk_n" -gt "$KEYS" ] && sk_n=$KEYS
    [ "$sk_n" -lt 16 ] && sk_n=16
    echo "$sk_n"
}

sweep_conns() {     # SIZE WORKLOAD: connections keeping at most SWEEP_BYTES in flight
    case $2 in pipe16) sc_per=16 ;; mget10) sc_per=10 ;; *) sc_per=1 ;; esac
    sc_n=$((SWEEP_BYTES / ($1 * sc_per)))
    [ "$sc_n" -gt "$CONNS" ] && sc_n=$CONNS
    [ "$sc_n" -lt 1 ] && sc_n=1
    echo "$sc_n"
}

prefill_depth() {   # SIZE CONNS: sets in flight per connection in a prefill, within SWEEP_BYTES
    pd_n=$((SWEEP_BYTES / ($1 * $2)))
    [ "$pd_n" -gt 64 ] && pd_n=64
    [ "$pd_n" -lt 1 ] && pd_n=1
    echo "$pd_n"
}

SWEEP_TARGETS="direct nutcracker-v4 luagent-t1"
sweep_svc() {
    case $1 in direct) echo msd ;; nutcracker-v4) echo ncs ;; luagent-t1) echo lgs ;; esac
}

: > "$TMP/sweep.tsv"
: > "$TMP/floor.tsv"
if [ "$DO_SWEEP" = 1 ]; then
    svc_ensure $BIG_BACKENDS msd ncs lgs
    out "== value sizes ($SIZES bytes): direct memcached, nutcracker -v 4, luagent -t 1;"
    out "   $SWEEP_ROUNDS round(s) x ${SWEEP_SECONDS} s per run, $SWEEP_RATIO get:set, up to $CONNS connections"
    r=1
    while [ "$r" -le "$SWEEP_ROUNDS" ]; do
        for size in $SIZES; do
            keys=$(sweep_keys "$size")
            for w in $WORKLOADS; do
                conns=$(sweep_conns "$size" "$w")
                # shellcheck disable=SC2086 # the order of the targets rotates each round
                for t in $(rotated "$r" $SWEEP_TARGETS); do
                    svc=$(sweep_svc "$t")
                    # CPU per request: the proxy's (-C), its servers' (-M; the
                    # direct memcached's for direct), loadgen's own.
                    if [ "$svc" = msd ]; then
                        sw_cpu="-M $PID_msd"
                    else
                        eval "sw_cpu=\"-C \$PID_$svc -M $PID_ms1,$PID_ms2,$PID_ms3,$PID_ms4\""
                    fi
                    # shellcheck disable=SC2046,SC2086,SC2154
                    wall_run "sweep round $r $size $w $t" "$BIG_BACKENDS $svc" \
                        -s "127.0.0.1:$(svc_port "$svc")" -c "$conns" $(wl_flags "$w") \
                        -r "$SWEEP_RATIO" -v "$size" -k "$keys" -K "s$size:" -d "$SWEEP_SECONDS" \
                        -S "$r" -f -F "$(prefill_depth "$size" "$conns")" -W 20 -T "$LG_THREADS" \
                        $sw_cpu
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" \
                        "$w" "$t" "$r" "$(field ops "$LINE")" "$(field p50_us "$LINE")" \
                        "$(field p99_us "$LINE")" "${ERRS:-0}" "$conns" \
                        "$(field cpu_us "$LINE")" "$(field servers_cpu_us "$LINE")" \
                        "$(field self_cpu_us "$LINE")" "$(field busy_pct "$LINE")" \
                        >> "$TMP/sweep.tsv"
                done
            done
            # The floor: one relay with nothing else to do, gets enough for
            # about a second of it (CPU per get).
            for m in copy splice; do
                n=$((200000000 / (size + 10000)))
                LINE=$("$RELAYFLOOR" -s "127.0.0.1:$(svc_port msd)" -v "$size" -n "$n" -m "$m" \
                    2> "$TMP/relayfloor.err") || {
                    FAILED=1
                    sed 's/^/    /' "$TMP/relayfloor.err" | head -n 5 | tee -a "$OUT.tmp" >&2
                }
                out "sweep round $r $size floor-$m: ${LINE:-relayfloor failed}"
                printf '%s\t%s\t%s\n' "$size" "$m" "$(field relay_cpu_us "$LINE")" \
                    >> "$TMP/floor.tsv"
            done
        done
        r=$((r + 1))
    done
    svc_stop ncs lgs
    out ""
fi

# Part 5's pools: N servers on four memcached processes, each listening on N/4
# consecutive ports from POOL_BASE (memcached takes "-l addr:port,addr:port").
POOL_PIDS=""
POOL_MAX=4
for p in $POOLS; do
    if [ $((p % 4)) != 0 ] || [ "$p" -lt 4 ]; then
        echo "bench: BENCH_POOLS: $p is not a multiple of 4" >&2
        exit 1
    fi
    [ "$p" -gt "$POOL_MAX" ] && POOL_MAX=$p
done

free_block() {      # COUNT: POOL_BASE = the first of COUNT free consecutive ports, clear of BASE's
    POOL_BASE=$(awk -v n="$1" -v alo="$BASE" -v ahi=$((BASE + NPORTS - 1)) '
        function hex(s,    i, v) {
            v = 0
            for (i = 1; i <= length(s); i++)
                v = v * 16 + index("0123456789ABCDEF", toupper(substr(s, i, 1))) - 1
            return v
        }
        FNR > 1 { k = split($2, a, ":"); used[hex(a[k])] = 1 }
        END {
            for (p = alo; p <= ahi; p++) used[p] = 1
            run = 0
            for (p = 20000; p < 32768; p++) {
                if (p in used) run = 0
                else if (++run == n) { print p - n + 1; exit }
            }
        }' /proc/net/tcp /proc/net/tcp6)
    [ -n "$POOL_BASE" ] || { echo "bench: no $1 free consecutive ports below 32768" >&2; exit 1; }
}

pool_start() {      # N: POOL_LIST (host:port ...) and POOL_FLAGS (-s ...) for N servers
    if [ "$1" = 4 ]; then
        POOL_LIST=$BIG_SERVERS
    else
        ps_per=$(($1 / 4))
        ps_i=0
        POOL_LIST=""
        while [ $ps_i -lt 4 ]; do
            ps_first=$((POOL_BASE + ps_i * ps_per))
            ps_l=""
            ps_p=$ps_first
            while [ $ps_p -lt $((ps_first + ps_per)) ]; do
                ps_l="$ps_l${ps_l:+,}127.0.0.1:$ps_p"
                POOL_LIST="$POOL_LIST 127.0.0.1:$ps_p"
                ps_p=$((ps_p + 1))
            done
            start_bg "$TMP/pool$1.$ps_i.log" "$MEMCACHED" -p "$ps_first" -l "$ps_l" -U 0 -t 1 \
                $USER_OPT
            POOL_PIDS="$POOL_PIDS $LAST_PID"
            wait_listen $((ps_first + ps_per - 1)) "$LAST_PID" "pool memcached $ps_i" || exit 1
            ps_i=$((ps_i + 1))
        done
    fi
    POOL_FLAGS=""
    for ps_s in $POOL_LIST; do POOL_FLAGS="$POOL_FLAGS -s $ps_s"; done
}

pool_stop() {
    for ps_p in $POOL_PIDS; do
        stop_pid "$ps_p"
        untrack "$ps_p"
    done
    POOL_PIDS=""
}

# growth_measure SIZE WIDTH POOL: Ir per request in luagent -t 1 and nutcracker
# -v 4 (callgrind, one connection, start + prefill subtracted as in part 2),
# with fewer requests where a value or a width makes each one expensive.
growth_measure() {
    gm_size=$1 gm_width=$2 gm_pool=$3
    gm_n=$((CG_REQUESTS / gm_width))
    gm_cap=$((GROWTH_BYTES / (gm_size * gm_width)))
    [ "$gm_n" -gt "$gm_cap" ] && gm_n=$gm_cap
    [ "$gm_n" -lt 200 ] && gm_n=200
    pool_start "$gm_pool"
    nutcracker_conf "$CG_PORT" "$TMP/nutcracker-pool.yml" "$POOL_LIST"
    gm_value=$VALUE gm_keys=$KEYS
    VALUE=$gm_size
    KEYS=$(sweep_keys "$gm_size")
    LG_EXTRA="-K g$gm_size:"
    for gm_t in luagent nutcracker-v4; do
        if [ $gm_t = luagent ]; then
            set -- TERM "$LUAGENT" -D -l 127.0.0.1 -p "$CG_PORT" -k $POOL_FLAGS -t 1
        else
            set -- INT "$NUTCRACKER" -v 4 -c "$TMP/nutcracker-pool.yml" -s "$CG_STATS" -a 127.0.0.1
        fi
        gm_sig=$1
        shift
        if cg_try "growth-$gm_t" "$gm_sig" "-P 1 -m 1" 0 -- "$@"; then
            gm_base=$IR
            if cg_try "growth-$gm_t" "$gm_sig" "-P 1 -m $gm_width" "$gm_n" -- "$@"; then
                gm_per=$(awk -v a="$IR" -v b="$gm_base" -v n="$gm_n" 'BEGIN { printf "%.1f", (a - b) / n }')
                out "growth $gm_t value=$gm_size width=$gm_width pool=$gm_pool: start+prefill $gm_base Ir, +$gm_n requests $IR Ir: $gm_per Ir/request"
                printf '%s\t%s\t%s\t%s\t%s\n' "$gm_t" "$gm_size" "$gm_width" "$gm_pool" "$gm_per" \
                    >> "$TMP/growth.tsv"
                continue
            fi
        fi
        FAILED=1
    done
    VALUE=$gm_value KEYS=$gm_keys LG_EXTRA=""
    pool_stop
}

: > "$TMP/growth.tsv"
: > "$TMP/parser.tsv"
if [ "$DO_GROWTH" = 1 ]; then
    out "== cost growth: Ir per request in luagent -t 1 and nutcracker -v 4 (callgrind, 1 connection, $RATIO get:set)"
    svc_ensure $BIG_BACKENDS
    free_block "$POOL_MAX"
    # every (value, width, pool) point once: the three series share their first point
    points=""
    for size in $SIZES; do points="$points $size:1:4"; done
    for width in $WIDTHS; do points="$points $VALUE:$width:4"; done
    for pool in $POOLS; do points="$points $VALUE:1:$pool"; done
    for pt in $(echo "$points" | tr ' ' '\n' | awk 'NF && !seen[$0]++'); do
        # shellcheck disable=SC2046
        growth_measure $(echo "$pt" | tr ':' ' ')
    done
    for kind in get set value known end stored; do
        # one entry point per kind: a toggle on a nested call would switch counting off
        case $kind in
        get|set) pc_entry=proto_parse ;;
        known) pc_entry=reply_parse_expect ;;
        *) pc_entry=reply_parse ;;
        esac
        "$VALGRIND" --tool=callgrind --toggle-collect=$pc_entry \
            --callgrind-out-file="$TMP/parsecost.$kind" "$PARSECOST" "$kind" 100000 \
            > "$TMP/parsecost.log" 2>&1 || { cat "$TMP/parsecost.log" >&2; FAILED=1; continue; }
        pc_ir=$(awk '/^totals:/ { print $2 }' "$TMP/parsecost.$kind")
        out "parser $kind: $pc_ir Ir for 100000 calls"
        printf '%s\t%s\n' "$kind" "$(awk -v a="$pc_ir" 'BEGIN { printf "%.1f", a / 100000 }')" \
            >> "$TMP/parser.tsv"
    done
    out ""
fi

copies_now() {      # NAME: "bytes calls" copied so far by that counted process
    od -An -t u8 -N 16 "$TMP/copies.$1" | awk '{ print $1, $2 }'
}

COPY_TARGETS="luagent-t1 nutcracker-v4 direct"
copy_svc() {
    case $1 in direct) echo mcc ;; nutcracker-v4) echo ncc ;; luagent-t1) echo lgc ;; esac
}
copy_flags() {
    case $1 in get) echo "-m 1 -r 1:0" ;; mget10) echo "-m 10 -r 1:0" ;; set) echo "-m 1 -r 0:1" ;; esac
}

: > "$TMP/copies.tsv"
if [ "$DO_COPIES" = 1 ]; then
    svc_ensure $BIG_BACKENDS lgc ncc mcc
    out "== user-space bytes copied per request (memcpy/memmove/mempcpy through build/copycount.so), 1 connection"
    for size in $SIZES; do
        keys=$(sweep_keys "$size")
        for t in $COPY_TARGETS; do
            svc=$(copy_svc "$t")
            wall_run "copies prefill $size $t" "$BIG_BACKENDS $svc" -s "127.0.0.1:$(svc_port "$svc")" \
                -c 1 -v "$size" -k "$keys" -K "c$size:" -S 1 -f -F "$(prefill_depth "$size" 1)" \
                -n 0 -W 20
            for w in get mget10 set; do
                case $w in mget10) width=10 ;; *) width=1 ;; esac
                n=$((GROWTH_BYTES / (size * width)))
                [ "$n" -gt "$CG_REQUESTS" ] && n=$CG_REQUESTS
                [ "$n" -lt 500 ] && n=500
                before=$(copies_now "$svc")
                # shellcheck disable=SC2046
                wall_run "copies $size $w $t" "$BIG_BACKENDS $svc" -s "127.0.0.1:$(svc_port "$svc")" \
                    -c 1 $(copy_flags "$w") -v "$size" -k "$keys" -K "c$size:" -S 2 -n "$n" -W 20
                after=$(copies_now "$svc")
                # shellcheck disable=SC2086
                set -- $before $after
                out "copies $size $w $t: $(($3 - $1)) bytes in $(($4 - $2)) calls for $n requests"
                printf '%s\t%s\t%s\t%s\t%s\n' "$size" "$w" "$t" \
                    "$(awk -v a="$(($3 - $1))" -v n="$n" 'BEGIN { printf "%.1f", a / n }')" \
                    "$(awk -v a="$(($4 - $2))" -v n="$n" 'BEGIN { printf "%.2f", a / n }')" \
                    >> "$TMP/copies.tsv"
            done
        done
    done
    svc_stop lgc ncc mcc
    out ""
fi
svc_stop $BIG_BACKENDS msd

# ---- summary ----

# awk functions the summaries share, put in front of each summary's program.
AWK_LIB='
function median(list,    a, n, i, j, x) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) {
        x = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]
        a[j + 1] = x
    }
    if (n == 0) return 0
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
function size_name(b) {
    if (b >= 1048576 && b % 1048576 == 0) return (b / 1048576) " MiB"
    if (b >= 1024 && b % 1024 == 0) return (b / 1024) " KiB"
    return b " B"
}
'

out "== summary (load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
if [ "$DO_WALL" = 1 ]; then
    awk -F'\t' -v rounds="$ROUNDS" -v dur="$DURATION" -v conns="$CONNS" "$AWK_LIB"'
    $4 != "" {
        k = $1 SUBSEP $2
        ops[k] = ops[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
        byround[$1 SUBSEP $2 SUBSEP $3] = $4
    }
    function paired(w, a, b,    r, list, n, x, lo, hi) {  # per-round a/b: "median (min-max)"
        n = 0
        for (r = 1; r <= rounds; r++) {
            if (byround[w SUBSEP a SUBSEP r] == "" || byround[w SUBSEP b SUBSEP r] + 0 <= 0) continue
            x = byround[w SUBSEP a SUBSEP r] / byround[w SUBSEP b SUBSEP r]
            list = list " " x; n++
            if (n == 1 || x < lo) lo = x
            if (n == 1 || x > hi) hi = x
        }
        return n ? sprintf("%.2f (%.2f-%.2f)", median(list), lo, hi) : "-"
    }
    { err[$1 SUBSEP $2] += $7 }
    END {
        nw = split("getset pipe16 mget10", W, " ")
        nt = split("direct nutcracker nutcracker-v4 luagent-t1 luagent-t2", T, " ")
        title["getset"] = "get/set"; title["pipe16"] = "pipeline 16"; title["mget10"] = "multi-get 10"
        printf "wall clock, median of %d round(s) x %s s, %d connections (ops/s = requests/s; a 10-key get is one request)\n", rounds, dur, conns
        printf "%-13s %-14s %10s %9s %9s %9s %7s\n", "workload", "target", "ops/s", "p50_us", "p99_us", "x direct", "errors"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            d = median(ops[w SUBSEP "direct"])
            for (j = 1; j <= nt; j++) {
                k = w SUBSEP T[j]
                m[k] = median(ops[k])
                printf "%-13s %-14s %10.0f %9.1f %9.1f %9s %7d\n", title[w], T[j], m[k],
                       median(p50[k]), median(p99[k]), ratio(m[k], d), err[k]
            }
        }
        printf "\nratios of median ops/s (twem = nutcracker at its default log level, twem-v4 = nutcracker -v 4)\n"
        printf "%-13s %10s %10s %10s %10s %10s %10s %10s\n", "workload", "lg1/twem", "lg1/tw-v4",
               "lg2/twem", "twem/dir", "tw-v4/dir", "lg1/dir", "lg2/dir"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            d = m[w SUBSEP "direct"]; n = m[w SUBSEP "nutcracker"]; q = m[w SUBSEP "nutcracker-v4"]
            a = m[w SUBSEP "luagent-t1"]; b = m[w SUBSEP "luagent-t2"]
            printf "%-13s %10s %10s %10s %10s %10s %10s %10s\n", title[w], ratio(a, n), ratio(a, q),
                   ratio(b, n), ratio(n, d), ratio(q, d), ratio(a, d), ratio(b, d)
        }
        printf "(lg1 = luagent -t 1, lg2 = luagent -t 2, dir = direct memcached)\n"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            if (w == "pipe16") continue
            n = m[w SUBSEP "nutcracker"]; q = m[w SUBSEP "nutcracker-v4"]; a = m[w SUBSEP "luagent-t1"]
            printf "target luagent >= 1.2x twemproxy, %s: %s (luagent -t 1 %sx twemproxy, %sx twemproxy -v 4)\n",
                   title[w], (n > 0 && a / n >= 1.2) ? "met" : "NOT met", ratio(a, n), ratio(a, q)
            printf "    same-round ratios, median (min-max): %s vs twemproxy, %s vs twemproxy -v 4\n",
                   paired(w, "luagent-t1", "nutcracker"), paired(w, "luagent-t1", "nutcracker-v4")
        }
    }' "$TMP/wall.tsv" | tee -a "$OUT.tmp"
    out ""
fi
if [ "$DO_CG" = 1 ]; then
    awk -F'\t' -v n="$CG_REQUESTS" -v runs="$CG_RUNS" "$AWK_LIB"'
    { k = $1 SUBSEP $2; sum[k] += $4; cnt[k]++
      if (!(k in lo) || $4 + 0 < lo[k]) lo[k] = $4 + 0
      if (!(k in hi) || $4 + 0 > hi[k]) hi[k] = $4 + 0 }
    function mean(k) { return cnt[k] ? sum[k] / cnt[k] : 0 }
    function spread(k) { return (cnt[k] && mean(k) > 0) ? 100 * (hi[k] - lo[k]) / mean(k) : 0 }
    END {
        nw = split("getset pipe16 mget10", W, " ")
        title["getset"] = "get/set"; title["pipe16"] = "pipeline 16"; title["mget10"] = "multi-get 10"
        target["getset"] = 3700; target["pipe16"] = 3100; target["mget10"] = 24600
        printf "instructions per request in the proxy process (callgrind, 1 connection, %d requests, mean of %d run(s))\n", n, runs
        printf "%-13s %10s %10s %9s %9s %9s %10s %8s %7s\n", "workload", "twem", "twem-v4", "luagent",
               "lg/twem", "lg/tw-v4", "target", "met", "spread"
        for (i = 1; i <= nw; i++) {
            w = W[i]; a = mean("luagent" SUBSEP w); t = mean("nutcracker" SUBSEP w)
            q = mean("nutcracker-v4" SUBSEP w)
            s = spread("luagent" SUBSEP w)
            if (spread("nutcracker" SUBSEP w) > s) s = spread("nutcracker" SUBSEP w)
            if (spread("nutcracker-v4" SUBSEP w) > s) s = spread("nutcracker-v4" SUBSEP w)
            printf "%-13s %10.0f %10.0f %9.0f %9s %9s %10s %8s %6.2f%%\n", title[w], t, q, a,
                   ratio(a, t), ratio(a, q), "<= " target[w],
                   (a > 0 && a <= target[w]) ? "met" : "NOT met", s
        }
        printf "(DESIGN.md section 7: twemproxy 6212 / 5121 / 41048, memcached itself 3598 / 2541 / 22230)\n"
        printf "\nluagent policies, get/set workload (Ir/request)\n"
        printf "%-13s %9s %9s %10s %20s %8s\n", "policy", "Ir/req", "vs plain", "vs prefix", "target", "spread"
        np = split("plain prefix hook hook_cached", P, " ")
        pl = mean("policy-plain" SUBSEP "getset"); px = mean("policy-prefix" SUBSEP "getset")
        for (i = 1; i <= np; i++) {
            k = "policy-" P[i] SUBSEP "getset"; v = mean(k)
            tgt = "-"
            if (P[i] == "hook") tgt = ((px > 0 && v / px <= 1.3) ? "met" : "NOT met") " (<= 1.3x)"
            if (P[i] == "hook_cached") tgt = ((px > 0 && v / px <= 1.05) ? "met" : "NOT met") " (<= 1.05x)"
            printf "%-13s %9.0f %9s %10s %20s %7.2f%%\n", P[i], v, ratio(v, pl), ratio(v, px), tgt, spread(k)
        }
        printf "(hook targets are against prefix.lua, the same routing without a hook)\n"
        printf "\nluagent, binary protocol vs text (Ir/request; target: binary get/set <= text)\n"
        printf "%-13s %9s %9s %9s %8s\n", "workload", "text", "binary", "bin/text", "spread"
        for (i = 1; i <= nw; i++) {
            w = W[i]; a = mean("luagent" SUBSEP w); b = mean("luagent-binary" SUBSEP "bin-" w)
            printf "%-13s %9.0f %9.0f %9s %7.2f%%\n", title[w], a, b, ratio(b, a),
                   spread("luagent-binary" SUBSEP "bin-" w)
        }
    }' "$TMP/cg.tsv" | tee -a "$OUT.tmp"
    out ""
fi

if [ "$DO_TLS" = 1 ]; then
    awk -F'\t' "$AWK_LIB"'
    { v[$1 SUBSEP $2 SUBSEP $3] = $4 }
    END {
        nw = split("getset pipe16 mget10", W, " ")
        title["getset"] = "get/set"; title["pipe16"] = "pipeline 16"; title["mget10"] = "multi-get 10"
        nt = split("plain client-tls backend-tls both-tls", T, " ")
        printf "TLS, wall clock (ops/s, one run each; x plain)\n"
        printf "%-13s", "workload"
        for (j = 1; j <= nt; j++) printf " %19s", T[j]
        printf "\n"
        for (i = 1; i <= nw; i++) {
            w = W[i]; p = v["wall" SUBSEP w SUBSEP "plain"]
            printf "%-13s", title[w]
            for (j = 1; j <= nt; j++) {
                a = v["wall" SUBSEP w SUBSEP T[j]]
                printf " %11.0f (%5sx)", a, ratio(a, p)
            }
            printf "\n"
        }
        printf "\nTLS, instructions per request in luagent (callgrind, 1 connection; x plain)\n"
        printf "%-13s %18s %18s %18s\n", "workload", "plain", "client-tls", "backend-tls"
        for (i = 1; i <= nw; i++) {
            w = W[i]; p = v["cg" SUBSEP w SUBSEP "tls-plain"]
            c = v["cg" SUBSEP w SUBSEP "tls-client"]; b = v["cg" SUBSEP w SUBSEP "tls-backend"]
            printf "%-13s %18.0f %10.0f (%5sx) %10.0f (%5sx)\n", title[w], p, c, ratio(c, p),
                   b, ratio(b, p)
        }
    }' "$TMP/tls.tsv" | tee -a "$OUT.tmp"
    out ""
fi

if [ "$DO_SWEEP" = 1 ]; then
    awk -F'\t' -v rounds="$SWEEP_ROUNDS" -v dur="$SWEEP_SECONDS" -v mix="$SWEEP_RATIO" "$AWK_LIB"'
    FILENAME ~ /floor/ { if ($3 != "") floor[$1 SUBSEP $2] = floor[$1 SUBSEP $2] " " $3; next }
    $5 != "" {
        k = $1 SUBSEP $2 SUBSEP $3
        ops[k] = ops[k] " " $5; p99[k] = p99[k] " " $7; err[k] += $8; conns[$1 SUBSEP $2] = $9
        if ($10 != "" && $10 != "-") cpu[k] = cpu[k] " " $10
        if ($11 != "" && $11 != "-") srv[k] = srv[k] " " $11
        if ($12 != "" && $12 != "-") gen[k] = gen[k] " " $12
        if ($13 != "") busy[k] = busy[k] " " $13
        if (!($1 in seen)) { seen[$1] = 1; sizes[++ns] = $1 }
    }
    END {
        nw = split("getset pipe16 mget10", W, " ")
        title["getset"] = "get/set"; title["pipe16"] = "pipeline 16"; title["mget10"] = "multi-get 10"
        printf "value sizes, median of %d round(s) x %s s, %s get:set (lg = luagent -t 1, nc = nutcracker -v 4, dir = direct memcached)\n", rounds, dur, mix
        printf "%-8s %-13s %5s %10s %9s %10s %9s %10s %9s %7s %7s %7s %6s %6s\n", "value",
               "workload", "conns", "dir ops/s", "dir p99", "nc ops/s", "nc p99", "lg ops/s",
               "lg p99", "lg/nc", "p99 l/n", "lg/dir", "errors", "target"
        for (s = 1; s <= ns; s++) {
            for (i = 1; i <= nw; i++) {
                w = W[i]; b = sizes[s] SUBSEP w
                d = median(ops[b SUBSEP "direct"]); n = median(ops[b SUBSEP "nutcracker-v4"])
                l = median(ops[b SUBSEP "luagent-t1"])
                dp = median(p99[b SUBSEP "direct"]); np = median(p99[b SUBSEP "nutcracker-v4"])
                lp = median(p99[b SUBSEP "luagent-t1"])
                e = err[b SUBSEP "direct"] + err[b SUBSEP "nutcracker-v4"] + err[b SUBSEP "luagent-t1"]
                printf "%-8s %-13s %5d %10.0f %9.1f %10.0f %9.1f %10.0f %9.1f %7s %7s %7s %6d %6s\n",
                       size_name(sizes[s]), title[w], conns[b], d, dp, n, np, l, lp,
                       ratio(l, n), ratio(lp, np), ratio(l, d), e,
                       (n > 0 && l >= 1.2 * n && lp <= np) ? "met" : "NOT"
            }
        }
        printf "(p99 in microseconds; p99 l/n = luagent p99 / nutcracker p99, below 1 is better;\n"
        printf " target: luagent at least 1.2x nutcracker ops/s with a p99 no worse)\n"
        printf "\nCPU time per request (user + system, us, medians of the rounds): the proxy, its\n"
        printf "4 servers together, the load generator; busy: how busy the CPUs of the machine were, %%\n"
        printf "%-8s %-13s %7s %25s %25s %7s %9s %8s %8s\n", "", "", "busy",
               "nutcracker -v 4", "luagent -t 1", "", "lg for", "floor", "floor"
        printf "%-8s %-13s %7s %8s %8s %7s %8s %8s %7s %7s %9s %8s %8s\n", "value", "workload",
               "nc/lg", "proxy", "servers", "loadgen", "proxy", "servers", "loadgen", "lg/nc",
               "1.2x nc", "copy", "splice"
        for (s = 1; s <= ns; s++) {
            for (i = 1; i <= nw; i++) {
                w = W[i]; b = sizes[s] SUBSEP w; bn = b SUBSEP "nutcracker-v4"; bl = b SUBSEP "luagent-t1"
                np = median(cpu[bn]); nsv = median(srv[bn]); ng = median(gen[bn])
                lp = median(cpu[bl]); lsv = median(srv[bl]); lgn = median(gen[bl])
                # With the machine the limit, ops/s go as 1 / (CPU per request of
                # all the processes): 1.2x nutcracker leaves luagent this much.
                need = (np + nsv + ng) / 1.2 - (lsv + lgn)
                fc = median(floor[sizes[s] SUBSEP "copy"]); fs = median(floor[sizes[s] SUBSEP "splice"])
                printf "%-8s %-13s %3.0f/%-3.0f %8.1f %8.1f %7.1f %8.1f %8.1f %7.1f %7s %9s %8s %8s\n",
                       size_name(sizes[s]), title[w], median(busy[bn]), median(busy[bl]),
                       np, nsv, ng, lp, lsv, lgn, ratio(lp, np),
                       (need > 0 ? sprintf("%.1f", need) : "none"),
                       i == 1 ? sprintf("%.1f", fc) : "", i == 1 ? sprintf("%.1f", fs) : ""
            }
        }
        printf "(lg for 1.2x nc: the most CPU per request luagent could use and still serve 1.2x\n"
        printf " the ops/s of nutcracker, when the machine is the limit (busy near 100): the three\n"
        printf " nutcracker figures together over 1.2, less the luagent servers and loadgen. floor: one\n"
        printf " relay passing a value on with no other work, per get, by read/write and by splice;\n"
        printf " the workloads do 9 gets to a set, and the multi-get passes 10 values per request)\n"
    }' "$TMP/floor.tsv" "$TMP/sweep.tsv" | tee -a "$OUT.tmp"
    out ""
fi

if [ "$DO_GROWTH" = 1 ]; then
    awk -F'\t' -v base="$VALUE" -v sizes="$SIZES" -v widths="$WIDTHS" -v pools="$POOLS" "$AWK_LIB"'
    FILENAME ~ /parser/ { parser[$1] = $2; next }
    { ir[$1 SUBSEP $2 SUBSEP $3 SUBSEP $4] = $5 }
    function get(t, s, w, p) { return ir[t SUBSEP s SUBSEP w SUBSEP p] + 0 }
    END {
        printf "cost growth, Ir per request (callgrind, 1 connection; lg = luagent -t 1, nc = nutcracker -v 4)\n"
        n = split(sizes, S, " ")
        printf "%-9s %11s %11s %8s %13s %13s\n", "value", "lg Ir/req", "nc Ir/req", "lg/nc",
               "lg Ir/byte", "nc Ir/byte"
        lb = get("luagent", S[1], 1, 4); nb = get("nutcracker-v4", S[1], 1, 4)
        for (i = 1; i <= n; i++) {
            l = get("luagent", S[i], 1, 4); c = get("nutcracker-v4", S[i], 1, 4)
            pb = i > 1 ? sprintf("%.3f", (l - lb) / (S[i] - S[1])) : "-"
            qb = i > 1 ? sprintf("%.3f", (c - nb) / (S[i] - S[1])) : "-"
            printf "%-9s %11.0f %11.0f %8s %13s %13s\n", size_name(S[i]), l, c, ratio(l, c), pb, qb
        }
        printf "(Ir/byte: growth over the %s value, per byte of value)\n", size_name(S[1])
        n = split(widths, W, " ")
        printf "%-9s %11s %11s %11s %11s\n", "keys/get", "lg Ir/req", "lg Ir/key", "nc Ir/req", "nc Ir/key"
        for (i = 1; i <= n; i++) {
            l = get("luagent", base, W[i], 4); c = get("nutcracker-v4", base, W[i], 4)
            printf "%-9s %11.0f %11.0f %11.0f %11.0f\n", W[i], l, l / W[i], c, c / W[i]
        }
        printf "(%s values; a set is 1 request of 1 key, so Ir/key = Ir/request / keys per get is approximate)\n", size_name(base)
        n = split(pools, P, " ")
        printf "%-9s %11s %11s %11s %11s\n", "servers", "lg Ir/req", "x first", "nc Ir/req", "x first"
        lb = get("luagent", base, 1, P[1]); nb = get("nutcracker-v4", base, 1, P[1])
        for (i = 1; i <= n; i++) {
            l = get("luagent", base, 1, P[i]); c = get("nutcracker-v4", base, 1, P[i])
            printf "%-9s %11.0f %11s %11.0f %11s\n", P[i], l, ratio(l, lb), c, ratio(c, nb)
        }
        printf "(%s values; N servers = N ports on four memcached processes, all in the ring and all hit)\n", size_name(base)
        printf "parsers alone, Ir per call (bench/parsecost.c, the bench traffic'\''s lines):"
        printf " get %s, set %s (proto_parse); VALUE %s, END %s, STORED %s (reply_parse);" \
               " VALUE with its key known %s (reply_parse_expect)\n",
               parser["get"], parser["set"], parser["value"], parser["end"], parser["stored"],
               parser["known"]
    }' "$TMP/parser.tsv" "$TMP/growth.tsv" | tee -a "$OUT.tmp"
    out ""
fi

if [ "$DO_COPIES" = 1 ]; then
    awk -F'\t' "$AWK_LIB"'
    { bytes[$1 SUBSEP $2 SUBSEP $3] = $4; calls[$1 SUBSEP $2 SUBSEP $3] = $5
      if (!($1 in seen)) { seen[$1] = 1; sizes[++ns] = $1 } }
    END {
        printf "user-space bytes copied per request (x value = bytes / (value size x keys))\n"
        printf "%-8s %-8s %12s %8s %6s %12s %8s %6s %12s %8s %6s\n", "value", "request",
               "lg bytes", "x value", "calls", "nc bytes", "x value", "calls", "dir bytes", "x value", "calls"
        nw = split("get mget10 set", W, " ")
        nt = split("luagent-t1 nutcracker-v4 direct", T, " ")
        for (s = 1; s <= ns; s++) {
            for (i = 1; i <= nw; i++) {
                keys = W[i] == "mget10" ? 10 : 1
                printf "%-8s %-8s", size_name(sizes[s]), W[i]
                for (j = 1; j <= nt; j++) {
                    k = sizes[s] SUBSEP W[i] SUBSEP T[j]
                    printf " %12.0f %8.2f %6.1f", bytes[k], bytes[k] / (sizes[s] * keys), calls[k]
                }
                printf "\n"
            }
        }
        printf "(lg = luagent -t 1, nc = nutcracker -v 4, dir = the memcached server itself; gets and sets alone, 1 connection;\n"
        printf " target: luagent copies at most 1x the value per get, 0 the aim)\n"
    }' "$TMP/copies.tsv" | tee -a "$OUT.tmp"
    out ""
fi

# 7. The hot-key workload: the pool alone and with lg.nearcache (scripts/bench-hot.sh).
if [ "${BENCH_HOT:-1}" = 1 ]; then
    BENCH_LUAGENT="$LUAGENT" sh scripts/bench-hot.sh > "$TMP/hot.out" 2>&1 || FAILED=1
    tee -a "$OUT.tmp" < "$TMP/hot.out"
    out ""
fi

for f in "$TMP"/lg1.log "$TMP"/lg2.log "$TMP"/lgt*.log "$TMP"/lg[sc].log "$TMP"/valgrind.*.log; do
    [ -s "$f" ] || continue
    if grep -v 'running as root' "$f" | grep -qE 'error|warn|crash|abort|Invalid'; then
        out "note: $(basename "$f") has warnings or errors:"
        grep -v 'running as root' "$f" | grep -E 'error|warn|crash|abort|Invalid' | head -n 5 \
            | sed 's/^/    /' | tee -a "$OUT.tmp"
    fi
done
[ "$RESTARTS" -gt 0 ] && out "note: $RESTARTS process restart(s) during the run (see the notes above)"
[ "$FAILED" = 1 ] && out "SOME RUNS FAILED (errors above): the figures are incomplete"
mv "$OUT.tmp" "$OUT"
echo "results: $OUT"
# The value-size and cost-growth tables as pictures beside the results.
sh scripts/plot.sh "$OUT" | sed 's/^/picture: /' || FAILED=1
exit $FAILED
