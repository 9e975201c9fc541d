#!/bin/sh
# layers.sh [--graph]: check the include graph against the floors of
# docs/design.md (the table between "<!-- floors -->" and "<!-- /floors -->").
#
# A module is a name: src/<name>.c and include/<name>.h. It may include the
# headers of its own floor and of the floors below, never of a floor above,
# and the modules may not include each other in a circle. Each offence is
# printed, and the exit status is 1 if there is any (2: the table is missing).
# --graph prints every module with its floor and what it includes, and checks
# nothing.
cd "$(dirname "$0")/.." || exit 2
awk -v graph="${1:-}" '
function fail(msg) {
    print "layers: " msg
    bad = 1
}

# Depth-first walk; a module met again while still on the path closes a circle.
function visit(m,    i, d, path, k) {
    state[m] = 1
    stack[++depth] = m
    for (i = 1; i <= ndeps[m]; i++) {
        d = dep[m, i]
        if (state[d] == 1) {
            path = d
            for (k = depth; k >= 1 && stack[k] != d; k--)
                ;
            for (k++; k <= depth; k++)
                path = path " -> " stack[k]
            fail("include circle: " path " -> " d)
        } else if (state[d] == 0) {
            visit(d)
        }
    }
    depth--
    state[m] = 2
}

FILENAME == "docs/design.md" {
    if ($0 ~ /^<!-- floors -->/)
        intable = 1
    else if ($0 ~ /^<!-- \/floors -->/)
        intable = 0
    else if (intable && $0 ~ /^\| *[0-9]+ *\|/) {
        split($0, cell, "|")
        f = cell[2] + 0
        rest = cell[3]
        while (match(rest, /`[a-z0-9_]+`/)) {
            floor[substr(rest, RSTART + 1, RLENGTH - 2)] = f
            tabled = 1
            rest = substr(rest, RSTART + RLENGTH)
        }
    }
    next
}

FNR == 1 {
    mod = FILENAME
    sub(/.*\//, "", mod)
    sub(/\.[ch]$/, "", mod)
    if (!(mod in known))
        order[++nmods] = mod
    known[mod] = 1
}

/^#include "/ {
    d = $2
    gsub(/"/, "", d)
    sub(/\.h$/, "", d)
    if (d == mod || ((mod, d) in edge))
        next
    edge[mod, d] = FILENAME
    dep[mod, ++ndeps[mod]] = d
}

END {
    if (!tabled && graph == "") {
        print "layers: no floor table in docs/design.md (<!-- floors --> ... <!-- /floors -->)"
        exit 2
    }
    if (graph != "") {
        for (i = 1; i <= nmods; i++) {
            m = order[i]
            line = sprintf("%s %-10s", (m in floor) ? floor[m] : "?", m)
            for (j = 1; j <= ndeps[m]; j++)
                line = line " " dep[m, j]
            print line
        }
        exit 0
    }
    for (i = 1; i <= nmods; i++) {
        m = order[i]
        if (!(m in floor)) {
            fail(m ": not in the floor table of docs/design.md")
            continue
        }
        for (j = 1; j <= ndeps[m]; j++) {
            d = dep[m, j]
            if (!(d in floor))
                fail(edge[m, d] ": includes " d ".h, which is not in the floor table")
            else if (floor[d] > floor[m])
                fail(edge[m, d] ": includes " d ".h: " m " is on floor " floor[m] \
                     ", " d " on floor " floor[d])
        }
    }
    for (i = 1; i <= nmods; i++)
        if (state[order[i]] == 0)
            visit(order[i])
    exit bad
}
' docs/design.md src/*.c include/*.h
