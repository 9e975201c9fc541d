# Shared by scripts/bench.sh and scripts/bench-hot.sh (sourced, not run):
# background processes tracked and stopped by PID on exit, free ports below
# 32768 found in /proc/net, and loadgen's NAME=value fields. The sourcing
# script sets TMP (removed on exit) before it sources this file.
# shellcheck shell=sh disable=SC2317,SC2034 # trap handlers; STOP_RC is for the callers

# ---- processes: started in the background, stopped by PID ----

pids=""
track()   { pids="$pids $1"; }
untrack() { pids=$(echo " $pids " | sed "s/ $1 / /; s/^ *//; s/ *$//"); }

alive() {           # PID: running (a child that exited stays a zombie until waited for)
    kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]
}

stop_pid() {        # PID [SIGNAL]: signal, wait up to 10 s, then SIGKILL; STOP_RC = status
    kill -"${2:-TERM}" "$1" 2>/dev/null
    sp_i=0
    while alive "$1" && [ $sp_i -lt 100 ]; do
        sleep 0.1
        sp_i=$((sp_i + 1))
    done
    alive "$1" && kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    STOP_RC=$?
}

cleanup() {
    trap - EXIT INT TERM
    for p in $pids; do stop_pid "$p"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- ports ----

port_used() {       # any socket bound to this local port (IPv4 or IPv6)
    hex=$(printf ':%04X' "$1")
    awk -v p="$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

listening() {       # something listens on this local port
    hex=$(printf ':%04X' "$1")
    awk -v p="$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { f = 1 }
                     END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

wait_listen() {     # PORT PID NAME: up to 60 s (callgrind starts slowly)
    wl_i=0
    while ! listening "$1"; do
        if ! alive "$2" || [ $wl_i -ge 600 ]; then
            echo "bench: $3 did not start listening on port $1" >&2
            return 1
        fi
        sleep 0.1
        wl_i=$((wl_i + 1))
    done
}

pick_ports() {      # BASE: NPORTS (the caller's) consecutive free ports in 20000..32035
    start=$(( ($$ * 7 + $(date +%s)) % 1200 ))
    i=0
    while [ $i -lt 1200 ]; do
        BASE=$((20000 + (start + i) % 1200 * 10))
        j=0
        while [ $j -lt "$NPORTS" ] && ! port_used $((BASE + j)); do j=$((j + 1)); done
        [ $j -eq "$NPORTS" ] && return 0
        i=$((i + 1))
    done
    echo "bench: no $NPORTS free consecutive ports below 32768" >&2
    exit 1
}

field() {           # NAME LINE: the value of NAME=... in a loadgen line
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}
