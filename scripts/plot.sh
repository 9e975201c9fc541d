#!/bin/sh
# plot.sh RESULTS.txt: draw the value-size sweep and the cost-growth tables of
# a `make bench` results file (scripts/bench.sh) as PNG pictures beside it:
#
#   RESULTS-sizes.png    ops/s and p99 against value size, one panel per
#                        workload: direct memcached, nutcracker -v 4, luagent -t 1
#   RESULTS-growth.png   instructions per request (callgrind) against value
#                        size, keys per multi-get and pool size: luagent, nutcracker
#
# The tables are read from the text as bench.sh prints them, so any results
# file, old or new, can be drawn again. A file without one of the tables gets
# no picture of it. Prints the path of each picture written.
set -eu
results=${1:?usage: plot.sh RESULTS.txt}
[ -r "$results" ] || { echo "plot: cannot read $results" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot: gnuplot is not installed (make deps)" >&2; exit 1; }
base=${results%.txt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Value sizes in bytes from "100 B", "10 KiB", "1 MiB"; a figure of 0 is a run
# that failed (the table says so), drawn as a gap rather than as a zero.
BYTES='function bytes(n, unit) { return n * (unit == "MiB" ? 1048576 : unit == "KiB" ? 1024 : 1) }
function fig(x) { return x + 0 > 0 ? x : "NaN" }'

# The value-size table: one block per workload (gnuplot "index"), each row
# "bytes dir_ops dir_p99 nc_ops nc_p99 lg_ops lg_p99", p99 in milliseconds.
awk "$BYTES"'
/^value sizes, median/ { on = 1; next }
on && /^\(/ { on = 0 }
on && $1 ~ /^[0-9]+$/ {
    w = $3; i = 4
    if (w != "get/set") { w = w " " $4; i = 5 }
    if (!(w in idx)) { idx[w] = n++; name[idx[w]] = w }
    row[idx[w]] = row[idx[w]] sprintf("%d %s %s %s %s %s %s\n", bytes($1, $2),
        fig($(i + 1)), fig($(i + 2) / 1000), fig($(i + 3)), fig($(i + 4) / 1000),
        fig($(i + 5)), fig($(i + 6) / 1000))
}
END {
    for (k = 0; k < n; k++) {
        printf "# %s\n%s\n\n", name[k], row[k] > (dir "/sizes.dat")
        print name[k] > (dir "/sizes.names")
    }
}' dir="$tmp" "$results"

# The cost-growth table's three parts: by value size, by keys per get, by servers.
awk "$BYTES"'
/^cost growth, Ir per request/ { on = 1; part = ""; next }
on && /^parsers alone/ { on = 0 }
on && /^value / { part = "value"; next }
on && /^keys\/get / { part = "width"; next }
on && /^servers / { part = "pool"; next }
on && part == "value" && $1 ~ /^[0-9]+$/ { print bytes($1, $2), fig($3), fig($4) > (dir "/growth-value.dat") }
on && part == "width" && $1 ~ /^[0-9]+$/ { print $1, fig($2), fig($4) > (dir "/growth-width.dat") }
on && part == "pool" && $1 ~ /^[0-9]+$/ { print $1, fig($2), fig($4) > (dir "/growth-pool.dat") }
' dir="$tmp" "$results"

title=$(basename "$base")
common='set terminal pngcairo size 1200,640 font "sans,10" background rgb "white"
set key box opaque
set format y "%.0s%c"
set grid
set datafile missing "NaN"
set style data linespoints
set logscale x 10
set xtics ("100 B" 100, "1 KiB" 1024, "10 KiB" 10240, "100 KiB" 102400, "1 MiB" 1048576)
set xrange [70:1500000]
set linetype 1 lc rgb "#555555" pt 7 lw 2
set linetype 2 lc rgb "#c0392b" pt 5 lw 2
set linetype 3 lc rgb "#2471a3" pt 9 lw 2'

# One row of the value-size picture: a panel per workload, plotting column
# COL (direct), COL+2 (nutcracker) and COL+4 (luagent) of sizes.dat.
size_panels() {     # COL TITLE YLABEL KEY-PLACE
    i=0
    while read -r w; do
        echo "set title '$w: $2'; set ylabel '$3'; set key $4"
        echo "plot '$tmp/sizes.dat' index $i using 1:$1 title 'direct memcached' lt 1," \
             "'' index $i using 1:$(($1 + 2)) title 'nutcracker -v 4' lt 2," \
             "'' index $i using 1:$(($1 + 4)) title 'luagent -t 1' lt 3"
        i=$((i + 1))
    done < "$tmp/sizes.names"
}

if [ -s "$tmp/sizes.dat" ]; then
    {
        echo "$common"
        echo "set output '$base-sizes.png'"
        echo "set multiplot layout 2,$(wc -l < "$tmp/sizes.names") title '$title: value sizes (wall clock, 9:1 get:set)'"
        echo "set logscale y 10"
        size_panels 2 "ops/s (higher is better)" "ops/s" "bottom left"
        size_panels 3 "p99 (lower is better)" "p99, ms" "top left"
        echo "unset multiplot"
    } > "$tmp/sizes.gp"
    gnuplot "$tmp/sizes.gp"
    echo "$base-sizes.png"
fi

if [ -s "$tmp/growth-value.dat" ]; then
    {
        echo "$common"
        echo "set output '$base-growth.png'"
        echo "set multiplot layout 1,3 title '$title: cost growth (callgrind instructions per request, 1 connection)'"
        echo "set logscale y 10; set ylabel 'Ir per request'; set key top left"
        echo "set title 'against value size'"
        echo "plot '$tmp/growth-value.dat' using 1:3 title 'nutcracker -v 4' lt 2, '' using 1:2 title 'luagent -t 1' lt 3"
        if [ -s "$tmp/growth-width.dat" ]; then
            echo "set xtics autofreq; set xrange [*:*]; set xlabel 'keys per multi-get'"
            echo "set title 'against keys per get (100 B values)'"
            echo "plot '$tmp/growth-width.dat' using 1:3 title 'nutcracker -v 4' lt 2, '' using 1:2 title 'luagent -t 1' lt 3"
        fi
        if [ -s "$tmp/growth-pool.dat" ]; then
            echo "set xlabel 'servers in the pool'; set logscale x 2; unset logscale y"
            echo "set yrange [0:*]; set key bottom right"
            echo "set title 'against pool size (100 B values)'"
            echo "plot '$tmp/growth-pool.dat' using 1:3 title 'nutcracker -v 4' lt 2, '' using 1:2 title 'luagent -t 1' lt 3"
        fi
        echo "unset multiplot"
    } > "$tmp/growth.gp"
    gnuplot "$tmp/growth.gp"
    echo "$base-growth.png"
fi
