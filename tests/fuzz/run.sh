#!/bin/sh
# Runs every libFuzzer target for SECONDS (argument, else $FUZZ_SECONDS, else
# 10) and reports in TAP, one line per target:
#
#   1..4
#   ok 1 - fuzz_header (123456 runs)
#
# Each target starts from a copy of its seed corpus (tests/fuzz/corpus/NAME)
# in a temporary folder: the repository's corpus is never changed. A crash,
# leak, timeout or out-of-memory input is kept as
# $FUZZ_BUILDDIR/tests/fuzz/artifacts/NAME-crash-..., and its report appears
# as TAP comments. FUZZ_BUILDDIR (default: the current folder, which is what
# "make check" and "make fuzz" use) is where the targets were built.
set -u

secs=${1:-${FUZZ_SECONDS:-10}}
case $secs in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
build=${FUZZ_BUILDDIR:-.}
bindir=$build/tests/fuzz
artifacts=$bindir/artifacts
targets="fuzz_header fuzz_body fuzz_frame fuzz_config fuzz_auth"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/raidad-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$artifacts" || exit 1

set -- $targets
echo "1..$#"
n=0
failed=0
for t in $targets; do
    n=$((n + 1))
    name=${t#fuzz_}
    if [ ! -x "$bindir/$t" ]; then
        echo "not ok $n - $t (not built: configure with --enable-fuzzing)"
        failed=$((failed + 1))
        continue
    fi
    corpus=$tmp/$name
    mkdir -p "$corpus"
    cp -R "$here/corpus/$name/." "$corpus/"

    extra=""
    lsan=${LSAN_OPTIONS:-}
    if [ "$name" = config ]; then
        extra="-dict=$here/config.dict"
        # libconfig 1.5's own leak (see lsan.supp).
        lsan="suppressions=$here/lsan.supp${lsan:+:$lsan}"
    fi
    log=$tmp/$t.log
    # TMPDIR: what a target makes there (its key store) goes with $tmp.
    TMPDIR=$tmp LSAN_OPTIONS=$lsan UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
        "$bindir/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$name-" $extra \
        "$corpus" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ] && [ -n "$runs" ] && [ "$runs" -gt 0 ]; then
        echo "ok $n - $t ($runs runs)"
    else
        echo "not ok $n - $t (exit $rc, ${runs:-0} runs)"
        failed=$((failed + 1))
        # The sanitizer report or the invariant that broke, and the input.
        grep -E 'ERROR: |invariant violated|bad error message|SUMMARY|^    #[0-9]|Test unit written|artifact_prefix' "$log" |
            head -n 60 | sed 's/^/# /'
        echo "# full log: last lines"
        tail -n 15 "$log" | sed 's/^/# /'
    fi
done
[ "$failed" -eq 0 ]
