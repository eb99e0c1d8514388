#!/bin/sh
# Developer entry point. Works from a clean clone on Debian 12 as root:
# installs what is missing, bootstraps autotools, builds out of tree.
#
#   ./contrib/dev.sh run     build, then run raidad in the foreground on conf/raidad.conf,
#                            serving coins: on first use raida-coins issues a few into
#                            build/dev/data (the coin list is build/dev/data/coins.txt),
#                            and raidad reads build/dev/raidad.conf, conf/raidad.conf
#                            with data_dir set to that folder
#   ./contrib/dev.sh check   build and run every test (plain build, raidad under
#                            valgrind, address/undefined and thread sanitizer
#                            builds, and each fuzz target for 10 s in build-fuzz/);
#                            the last line is "N passed, N failed"
#   ./contrib/dev.sh build   build only (build/)
#   ./contrib/dev.sh fuzz [SECONDS]
#                            run each libFuzzer target SECONDS long (default 60),
#                            built with clang in build-fuzz/
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
packages="build-essential autoconf automake autoconf-archive pkgconf \
libconfig-dev libsystemd-dev libcmocka-dev libssl-dev zlib1g-dev libseccomp-dev \
python3 clang libclang-rt-14-dev systemd groff-base man-db logrotate valgrind iproute2 \
libmicrohttpd-dev prometheus"

ensure_packages() {
    missing=""
    for p in $packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "dev.sh: missing Debian packages:$missing (run as root, or install them)" >&2
        exit 1
    fi
    echo "dev.sh: installing$missing" >&2
    apt-get -o DPkg::Lock::Timeout=300 update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y -q --no-install-recommends $missing >&2
}

bootstrap() {
    if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ]; then
        (cd "$top" && autoreconf -fi)
    fi
}

# build DIR [configure arguments...]
build() {
    dir=$1
    shift
    mkdir -p "$dir"
    (
        cd "$dir"
        [ -f Makefile ] || "$top/configure" -q --enable-werror "$@"
        make -s -j"$jobs"
    )
}

# check_in DIR: make check there; never stops the script, the totals tell.
check_in() {
    (cd "$1" && make -s -j"$jobs" check) || true
}

# The integration suites that run with raidad under valgrind memcheck
# (valgrind follows the fork()ed workers itself): a leak or an invalid access
# makes valgrind write "==PID== ..." into the daemon's log and exit 99, and the
# harness fails the test. --run-libc-freeres=no: glibc's clean-up at exit
# clears environ, which made raidad's copy of the environment (kept for the
# process title) look lost.
valgrind_tests="tests/integration/test_basic.py tests/integration/test_malformed.py"
valgrind_wrapper="valgrind --error-exitcode=99 --leak-check=full \
--show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
--run-libc-freeres=no --track-fds=no --child-silent-after-fork=no -q"

# check_valgrind DIR: those suites in DIR again, raidad under valgrind, into
# DIR/valgrind-suite.log (make check rewrites test-suite.log).
check_valgrind() {
    (cd "$1" && RAIDAD_WRAPPER="$valgrind_wrapper" make -s -j"$jobs" check \
        TEST_SUITE_LOG=valgrind-suite.log TESTS="$valgrind_tests") || true
}

# Sums the "# PASS:" ... lines of every test-suite.log given.
report() {
    # What failed, with its TAP comments, before the totals: a CI log that
    # shows only the end still shows why.
    for log in "$@"; do
        grep -A 25 '^not ok' "$log" | head -n 120
    done
    awk '
        /^# PASS:/  { pass += $3 }
        /^# XFAIL:/ { pass += $3 }
        /^# SKIP:/  { skip += $3 }
        /^# FAIL:/  { fail += $3 }
        /^# XPASS:/ { fail += $3 }
        /^# ERROR:/ { fail += $3 }
        END {
            line = sprintf("%d passed, %d failed", pass, fail)
            if (skip) line = line sprintf(", %d skipped", skip)
            print line
            exit (fail > 0 || pass == 0) ? 1 : 0
        }' "$@"
}

# The development coins: issued once, kept across runs (a pown changes them).
dev_dir=$top/build/dev
dev_coins() {
    if [ ! -d "$dev_dir/data/Data" ]; then
        "$top/build/raida-coins" -q -d -8..6 -n 32 "$dev_dir/data"
    fi
    # The coin store writes there, as the workers' account (ensure_user).
    if [ "$(id -u)" = 0 ] && getent passwd raidad >/dev/null; then
        chown -R raidad: "$dev_dir/data"
    fi
    # conf/raidad.conf as it is now, but for data_dir.
    awk -v dir="$dev_dir/data" '
        /^[ \t]*data_dir[ \t]*=/ { print "data_dir = \"" dir "\";"; done = 1; next }
        { print }
        END { if (!done) exit 1 }' "$top/conf/raidad.conf" >"$dev_dir/raidad.conf.tmp" || {
        echo "dev.sh: conf/raidad.conf has no data_dir line to point at $dev_dir/data" >&2
        exit 1
    }
    mv "$dev_dir/raidad.conf.tmp" "$dev_dir/raidad.conf"
    echo "dev.sh: serving the coins of $dev_dir/data; coin list $dev_dir/data/coins.txt" >&2
    echo "dev.sh: try   build/raida-cli -L $dev_dir/data/coins.txt 127.0.0.1 18000 detect 0-4" >&2
}

# The workers' account, as "make install" creates it (Makefile.am), so that
# the quick start runs its workers as raidad; without it (not root) they
# run as nobody, with a warning.
ensure_user() {
    [ "$(id -u)" = 0 ] || return 0
    getent passwd raidad >/dev/null && return 0
    echo "dev.sh: creating the system user raidad" >&2
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin raidad
}

cmd_run() {
    ensure_packages
    ensure_user
    bootstrap
    build "$top/build"
    mkdir -p "$dev_dir"
    dev_coins
    exec "$top/build/raidad" -c "$dev_dir/raidad.conf"
}

# A build that fails still ends with a line CI can count.
build_or_fail() {
    build "$@" || { echo "dev.sh: the build in $1 failed" >&2; echo "0 passed, 1 failed"; exit 1; }
}

cmd_check() {
    ensure_packages
    bootstrap
    build_or_fail "$top/build"
    check_in "$top/build"
    check_valgrind "$top/build"
    build_or_fail "$top/build-asan" CC=clang --enable-sanitizers=address,undefined
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 check_in "$top/build-asan"
    # A report makes the daemon's log say "ThreadSanitizer", which fails the test.
    build_or_fail "$top/build-tsan" CC=clang --enable-sanitizers=thread
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" check_in "$top/build-tsan"
    # In a fuzzing build "make check" runs only the fuzz targets (10 s each).
    build_or_fail "$top/build-fuzz" CC=clang --enable-fuzzing --disable-tests
    check_in "$top/build-fuzz"
    set -- "$top/build/test-suite.log" "$top/build/valgrind-suite.log" \
        "$top/build-asan/test-suite.log" "$top/build-tsan/test-suite.log" \
        "$top/build-fuzz/test-suite.log"
    for log in "$@"; do
        [ -f "$log" ] || { echo "dev.sh: no $log" >&2; echo "0 passed, 1 failed"; exit 1; }
    done
    report "$@"
}

# cmd_fuzz SECONDS: every fuzz target that long; crash inputs are kept in
# build-fuzz/tests/fuzz/artifacts/.
cmd_fuzz() {
    case $1 in
    '' | *[!0-9]*) echo "usage: $0 fuzz [SECONDS]" >&2; exit 2 ;;
    esac
    ensure_packages
    bootstrap
    build "$top/build-fuzz" CC=clang --enable-fuzzing --disable-tests
    cd "$top/build-fuzz" && make -s fuzz FUZZ_SECONDS="$1"
}

case "${1:-}" in
run) cmd_run ;;
check) cmd_check ;;
build) ensure_packages; bootstrap; build "$top/build" ;;
fuzz) cmd_fuzz "${2:-60}" ;;
*) echo "usage: $0 run|check|build|fuzz [SECONDS]" >&2; exit 2 ;;
esac
