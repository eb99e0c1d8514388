#!/bin/sh
# The rules of docs/style.md that a program can check, over the daemon,
# the tools and the tests' C, in TAP: one line per rule, and for a broken
# rule the places that break it (at most 20) as comments.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
daemon=$(ls src/*.c include/*.h include/raidad/*.h)
c_files=$(ls src/*.c tools/*.c bench/*.c tests/*.c tests/unit/*.c tests/fuzz/*.c 2>/dev/null)
h_files=$(ls include/*.h include/raidad/*.h tools/*.h tests/unit/*.h tests/fuzz/*.h 2>/dev/null)
# bench/ and the LD_PRELOAD shim build outside the configured tree.
configured=$(ls src/*.c tools/*.c tests/unit/*.c tests/fuzz/*.c 2>/dev/null)

tabs() { grep -n "$(printf '\t')" $c_files $h_files; }
# Tests' tables of cases may run longer.
width() { awk 'length > 100 { print FILENAME ":" FNR ": " length " columns" }' $daemon tools/*.[ch] bench/*.c; }
sizeof_parens() { grep -nE '\bsizeof [^(]' $c_files $h_files; }
c11_atomics() { grep -nE '__atomic_|__sync_' $c_files $h_files; }
header_prose() {
    for f in $h_files src/*.c tools/*.c bench/*.c; do
        head -n 1 "$f" | grep -q '^/\*' || echo "$f: no prose comment first"
    done
}
config_first() {
    for f in $configured; do
        first=$(grep -m 1 '^#include' "$f")
        [ "$first" = '#include "config.h"' ] || echo "$f: first include is $first"
    done
}
cite_inside() { grep -nE '\.\./shared|network-layer\.md|shared/protocol' $daemon tools/*.[ch] bench/*.c; }
# Lists come from <sys/queue.h>: no hand-made "prev" link.
queue_lists() { grep -nE '\*prev[,;]' $daemon tools/*.c bench/*.c; }

# Data flows one way (docs/style.md): a module includes no header of a
# layer above its own. The layers, top down; the event loop and the wire
# format know nothing of what they serve.
layers="7:raidad 6:rd_master 5:rd_worker 4:rd_tcp 4:rd_udp 4:rd_net 4:rd_commit
3:rd_protocol 2:rd_commands 2:rd_module 2:rd_mod_status 2:rd_mod_auth 2:rd_auth
2:rd_crypt 2:rd_crashrec 1:rd_frame 0:rd_event"
rank() {
    for l in $layers; do
        [ "${l#*:}" = "$1" ] && { echo "${l%%:*}"; return; }
    done
}
one_way() {
    for l in $layers; do
        mod=${l#*:}
        mine=${l%%:*}
        for f in src/$mod.c include/$mod.h; do
            [ -f "$f" ] || continue
            for inc in $(sed -n 's/^#include "\(r[a-z_]*\)\.h"$/\1/p' "$f"); do
                theirs=$(rank "$inc")
                [ -n "$theirs" ] && [ "$theirs" -gt "$mine" ] && echo "$f includes $inc.h, a layer above"
            done
        done
    done
}

set -- tabs "no tabs" width "lines of at most 100 columns" \
    sizeof_parens "sizeof(x), with parentheses" c11_atomics "C11 atomics, not the GCC builtins" \
    header_prose "every header and source file opens with a prose comment" \
    config_first "config.h is every C file's first include" \
    cite_inside "comments cite files inside the repository" \
    queue_lists "lists from sys/queue.h" \
    one_way "data flows one way: no include of a layer above"
echo "1..$(($# / 2))"
n=0
failed=0
while [ $# -gt 0 ]; do
    n=$((n + 1))
    out=$($1 | head -n 20)
    if [ -z "$out" ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        printf '%s\n' "$out" | sed 's/^/# /'
        failed=$((failed + 1))
    fi
    shift 2
done
[ "$failed" -eq 0 ]
