#!/bin/sh
# `make flaky`: run the integration suite several times while every core is
# kept busy, to find tests that pass only when the machine is idle (a sleep
# where a condition should be waited for, a deadline that a slow start-up
# misses). Not part of `make test`: it takes several suite runs.
#
#   scripts/flaky-hunt.sh [pytest arguments]     e.g. -k reload
#
#   FLAKY_RUNS   suite runs (default 3)
#   FLAKY_BUSY   busy loops beside the tests (default: one per core)
#   SAN=1        test the sanitized build (run `make SAN=1` first)
#
# The suite runs against a copy of ./luagent, so a rebuild meanwhile does not
# change the binary under test. Logs: build/flaky/run-N.log; the summary lists
# each failing test with how many runs it failed in. Exit 1 if any failed.
set -u
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/usr/bin/python3}
RUNS=${FLAKY_RUNS:-3}
BUSY=${FLAKY_BUSY:-$(getconf _NPROCESSORS_ONLN)}
OUT=build/flaky

busy_pids=""
stop_load() {
    for p in $busy_pids; do kill "$p" 2>/dev/null; done
    for p in $busy_pids; do wait "$p" 2>/dev/null; done
    busy_pids=""
}
trap stop_load EXIT
trap 'exit 130' INT TERM

if [ ! -x ./luagent ]; then
    echo "flaky-hunt: ./luagent is not built (run make)" >&2
    exit 2
fi
mkdir -p "$OUT"
rm -f "$OUT"/run-*.log "$OUT"/failed
cp ./luagent "$OUT/luagent"

i=0
while [ "$i" -lt "$BUSY" ]; do
    (while :; do :; done) &
    busy_pids="$busy_pids $!"
    i=$((i + 1))
done
echo "flaky-hunt: $RUNS run(s) of tests/integration beside $BUSY busy loop(s)"

run=1
while [ "$run" -le "$RUNS" ]; do
    LUAGENT="$PWD/$OUT/luagent" LUAGENT_SANITIZED=$([ "${SAN:-0}" = 1 ] && echo 1 || echo 0) \
        "$PYTHON" -m pytest -q -rf -p no:cacheprovider tests/integration "$@" \
        > "$OUT/run-$run.log" 2>&1
    grep -E '^(FAILED|ERROR) ' "$OUT/run-$run.log" | sed -E 's/^(FAILED|ERROR) //; s/ - .*//' >> "$OUT/failed"
    echo "  run $run: $(tail -n 1 "$OUT/run-$run.log")"
    run=$((run + 1))
done
stop_load

if [ -s "$OUT/failed" ]; then
    echo "flaky-hunt: failed (runs out of $RUNS; details in $OUT/run-N.log):"
    sort "$OUT/failed" | uniq -c | sort -rn
    exit 1
fi
echo "flaky-hunt: no test failed"
