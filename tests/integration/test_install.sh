#!/bin/sh
# "make install" of raidad into a scratch DESTDIR: every file where configure
# said, the sample configuration never installed over an edited one, the
# systemd unit accepted by systemd-analyze and scoring 2.0 or lower in its
# security analysis, the man pages rendered without a warning, the logrotate
# file accepted by logrotate, the installed raidad hardened (PIE, full
# RELRO, stack protector), no account created under DESTDIR, and "make
# uninstall" leaving only the edited configuration. The command module
# interface: the header and raidad.pc installed, the example module
# (examples/hello) built out of tree against them alone with pkg-config,
# loaded by the installed raidad with load_module and called over TCP and
# UDP, plain and encrypted (type 1). TAP output.
#
# Environment (make check sets it): RAIDAD, the built raidad; its folder is
# the build tree. Writes only under a mktemp -d folder, removed at the end.
set -u

if [ -z "${RAIDAD:-}" ] || [ ! -x "$RAIDAD" ]; then
    echo "1..0 # SKIP RAIDAD does not name the built raidad"
    exit 0
fi
builddir=$(cd "$(dirname "$RAIDAD")" && pwd)
srcdir=${RAIDAD_SRCDIR:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/raidad-install.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
dest=$tmp/dest

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; }
# check DESCRIPTION COMMAND...: ok when COMMAND succeeds.
check() {
    what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}
# Shows a file as TAP diagnostics.
diag() { sed 's/^/# /' "$1"; }

# The outer make's flags (jobserver descriptors, TESTS=..., -k) are not for
# these makes.
mk() { env -u MAKEFLAGS -u MFLAGS -u GNUMAKEFLAGS make -C "$builddir" "$@"; }

# The installation directories, as the build's Makefile expands them.
mkvar() {
    printf 'rd-print-var:\n\t@echo $(%s)\n' "$1" |
        mk -s --no-print-directory -f Makefile -f - rd-print-var
}

echo "1..35"

had_user=no
getent passwd raidad >/dev/null 2>&1 && had_user=yes

# 1. make install
if mk -s install DESTDIR="$dest" >"$tmp/install.log" 2>&1; then
    ok "make install DESTDIR=..."
else
    not_ok "make install DESTDIR=..."
    diag "$tmp/install.log"
fi

sbindir=$(mkvar sbindir)
bindir=$(mkvar bindir)
sysconfdir=$(mkvar sysconfdir)
mandir=$(mkvar mandir)
unitdir=$(mkvar systemdsystemunitdir)
logrotatedir=$(mkvar logrotatedir)
conf=$dest$sysconfdir/raidad/raidad.conf

# 2-5. the programs
check "sbin/raidad installed and runs" sh -c '"$1" -v >/dev/null' sh "$dest$sbindir/raidad"
check "bin/raida-cli installed" test -x "$dest$bindir/raida-cli"
check "bin/raida-bench installed" test -x "$dest$bindir/raida-bench"
check "bin/raida-coins installed" test -x "$dest$bindir/raida-coins"

# 6. the sample configuration, the one raidad -t accepts
if [ -n "$srcdir" ] && [ -f "$srcdir/conf/raidad.conf" ]; then
    check "etc/raidad/raidad.conf is the sample" cmp -s "$srcdir/conf/raidad.conf" "$conf"
else
    check "etc/raidad/raidad.conf installed" test -s "$conf"
fi

# 7. the man pages
missing=""
for page in man8/raidad.8 man5/raidad.conf.5 man1/raida-cli.1 man1/raida-bench.1 man1/raida-coins.1 \
        man3/raidad-module.3; do
    [ -s "$dest$mandir/$page" ] || missing="$missing $page"
done
if [ -z "$missing" ]; then
    ok "man pages installed"
else
    not_ok "man pages installed (missing:$missing)"
fi

# 8. the unit, with the paths substituted
unit=$dest$unitdir/raidad.service
if [ -z "$unitdir" ]; then
    skip "systemd unit not installed (configure --with-systemdsystemunitdir=no)"
elif [ -s "$unit" ] && ! grep -q '@[a-z]*@' "$unit" &&
        grep -qx "ExecStart=$sbindir/raidad -c $sysconfdir/raidad/raidad.conf" "$unit"; then
    ok "systemd unit installed in $unitdir"
else
    not_ok "systemd unit installed in $unitdir, paths substituted"
    [ -f "$unit" ] && diag "$unit"
fi

# 9. the logrotate file
lr=$dest$logrotatedir/raidad
if [ -z "$logrotatedir" ]; then
    skip "logrotate file not installed (configure --with-logrotatedir=no)"
elif [ -s "$lr" ] && ! grep -q '@[a-z]*@' "$lr" &&
        grep -q "$sbindir/raidad -c $sysconfdir/raidad/raidad.conf -s reopen" "$lr"; then
    ok "logrotate.d/raidad installed"
else
    not_ok "logrotate.d/raidad installed, paths substituted"
    [ -f "$lr" ] && diag "$lr"
fi

# 10. a second install keeps an edited configuration
if [ -f "$conf" ]; then
    printf '\n# edited by the operator\nraida_id = 7;\n' >>"$conf"
    cp "$conf" "$tmp/edited.conf"
    mk -s install DESTDIR="$dest" >"$tmp/install2.log" 2>&1 || diag "$tmp/install2.log"
    check "make install again keeps an edited raidad.conf" cmp -s "$tmp/edited.conf" "$conf"
else
    not_ok "make install again keeps an edited raidad.conf (none installed)"
fi

# 11. systemd-analyze verify on the generated unit, run from the build tree.
# It fails only on hard errors: any output on stderr counts as a failure.
# MANPATH: it also checks that the Documentation= pages resolve.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    skip "systemd-analyze not found"
elif [ ! -f "$builddir/contrib/raidad.service" ]; then
    not_ok "systemd-analyze verify (no contrib/raidad.service in the build tree)"
else
    mkdir -p "$tmp/unit"
    sed -e "s|$sbindir/raidad|$builddir/raidad|g" \
        "$builddir/contrib/raidad.service" >"$tmp/unit/raidad.service"
    if MANPATH=$dest$mandir SYSTEMD_LOG_COLOR=0 \
            systemd-analyze verify "$tmp/unit/raidad.service" >"$tmp/verify.out" 2>"$tmp/verify.err" &&
            [ ! -s "$tmp/verify.err" ]; then
        ok "systemd-analyze verify raidad.service"
    else
        not_ok "systemd-analyze verify raidad.service"
        diag "$tmp/verify.err"
        diag "$tmp/verify.out"
    fi
fi

# 12-17. each installed page renders without a warning, through groff and man
for page in man8/raidad.8 man5/raidad.conf.5 man1/raida-cli.1 man1/raida-bench.1 man1/raida-coins.1 \
        man3/raidad-module.3; do
    file=$dest$mandir/$page
    if ! command -v groff >/dev/null 2>&1; then
        skip "$page: groff not found"
        continue
    fi
    : >"$tmp/man.err"
    groff -man -Tutf8 -ww -z "$file" 2>>"$tmp/man.err"
    if command -v man >/dev/null 2>&1; then
        MANWIDTH=80 MANPAGER=cat PAGER=cat man --warnings -l "$file" >/dev/null 2>>"$tmp/man.err"
    fi
    if [ -s "$file" ] && [ ! -s "$tmp/man.err" ]; then
        ok "$page renders without warnings"
    else
        not_ok "$page renders without warnings"
        diag "$tmp/man.err"
    fi
done

# 18. logrotate accepts its file (a dry run, on a scratch state file)
if ! command -v logrotate >/dev/null 2>&1; then
    skip "logrotate not found"
elif [ -z "$logrotatedir" ]; then
    skip "logrotate file not installed"
elif logrotate -d -s "$tmp/logrotate.state" "$lr" >"$tmp/logrotate.out" 2>&1 &&
        ! grep -q '^error' "$tmp/logrotate.out"; then
    ok "logrotate -d accepts logrotate.d/raidad"
else
    not_ok "logrotate -d accepts logrotate.d/raidad"
    diag "$tmp/logrotate.out"
fi

# 19. the install hook creates the raidad account only on a real install
if [ "$had_user" = no ] && getent passwd raidad >/dev/null 2>&1; then
    not_ok "make install DESTDIR=... created the account raidad"
else
    ok "make install DESTDIR=... creates no account"
fi

# 20. systemd-analyze security: exposure 2.0 or lower ("OK") for the unit
# as installed (--offline: the file alone, no running manager).
if ! command -v systemd-analyze >/dev/null 2>&1; then
    skip "systemd-analyze not found"
elif [ ! -f "$builddir/contrib/raidad.service" ]; then
    not_ok "systemd-analyze security (no contrib/raidad.service in the build tree)"
else
    mkdir -p "$tmp/sec"
    cp "$builddir/contrib/raidad.service" "$tmp/sec/raidad.service"
    SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=true --no-pager \
        "$tmp/sec/raidad.service" >"$tmp/security.out" 2>&1
    level=$(sed -n 's/.*Overall exposure level for raidad\.service: \([0-9.]*\).*/\1/p' \
        "$tmp/security.out" | tail -n 1)
    if [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then
        ok "systemd-analyze security: exposure $level (2.0 or lower)"
    else
        not_ok "systemd-analyze security: exposure ${level:-unknown}, want 2.0 or lower"
        grep -v '^✓' "$tmp/security.out" | sed 's/^/# /'
    fi
fi

# 21-24. the installed raidad is hardened: a position-independent
# executable, bound at once, its relocations read-only, with a stack
# protector or fortified calls.
exe=$dest$sbindir/raidad
if ! command -v readelf >/dev/null 2>&1; then
    for what in PIE BIND_NOW GNU_RELRO "stack protector"; do skip "$what: readelf not found"; done
elif [ ! -f "$exe" ]; then
    for what in PIE BIND_NOW GNU_RELRO "stack protector"; do not_ok "$what (no $exe)"; done
else
    check "raidad is PIE (ELF type DYN)" sh -c 'readelf -hW "$1" | grep -q "Type:[[:space:]]*DYN"' sh "$exe"
    check "raidad is bound now (BIND_NOW)" \
        sh -c 'readelf -dW "$1" | grep -Eq "\(BIND_NOW\)|\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW"' sh "$exe"
    check "raidad has full RELRO (GNU_RELRO)" sh -c 'readelf -lW "$1" | grep -q GNU_RELRO' sh "$exe"
    check "raidad has a stack protector or fortified calls" \
        sh -c 'readelf -sW --dyn-syms "$1" | grep -Eq "__stack_chk_fail|__[a-z_]*_chk@"' sh "$exe"
fi

# 25. the test hooks (tests/raidad-hooked) are not in the installed raidad
if [ -f "$exe" ] && ! grep -q RAIDAD_TEST_FORBIDDEN "$exe"; then
    ok "raidad has no test hooks"
else
    not_ok "raidad has no test hooks"
fi

# 26-33. the command module interface, and a module built out of tree
includedir=$(mkvar includedir)
libdir=$(mkvar libdir)
check "include/raidad/module.h installed" test -s "$dest$includedir/raidad/module.h"
check "raidad.pc installed" test -s "$dest$libdir/pkgconfig/raidad.pc"
# pkg-config sees only the DESTDIR tree; its sysroot puts -I under it.
pc="env PKG_CONFIG_LIBDIR=$dest$libdir/pkgconfig PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=$dest pkg-config"
if ! command -v pkg-config >/dev/null 2>&1; then
    skip "pkg-config not found"
elif [ "$($pc --cflags raidad | sed "s/ *$//")" = "-I$dest$includedir" ] &&
        [ "$($pc --variable=moduledir raidad | sed "s|^$dest||")" = "$libdir/raidad/modules" ]; then
    ok "pkg-config raidad: --cflags and --variable=moduledir"
else
    not_ok "pkg-config raidad: --cflags and --variable=moduledir"
    $pc --cflags --variable=moduledir raidad 2>&1 | sed 's/^/# /'
fi
mkdir -p "$tmp/hello"
if [ -n "$srcdir" ] && cp "$srcdir/examples/hello/hello.c" "$srcdir/examples/hello/Makefile" "$tmp/hello/" &&
        env -u MAKEFLAGS -u MFLAGS -u GNUMAKEFLAGS make -C "$tmp/hello" PKG_CONFIG="$pc" \
            >"$tmp/hello.log" 2>&1 && [ -f "$tmp/hello/hello.so" ]; then
    ok "examples/hello builds out of tree against the installed header"
else
    not_ok "examples/hello builds out of tree against the installed header"
    diag "$tmp/hello.log"
fi

# The installed raidad with the module; coin 1/2000's key in a page file
# (the layout tests/integration/test_encryption.py writes). Workers run
# unprivileged: they must reach the data folder.
cli=$builddir/raida-cli
key=00112233445566778899aabbccddeeff
chmod 755 "$tmp"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$tmp/data" "$key" <<'PY'
import os, sys
page = os.path.join(sys.argv[1], "Data", "01", "00", "0001.bin")
os.makedirs(os.path.dirname(page))
data = bytearray(1024 * 17)
at = (2000 % 1024) * 17
data[at:at + 16] = bytes.fromhex(sys.argv[2])
data[at + 16] = 1
open(page, "wb").write(data)
PY
chmod -R a+rX "$tmp/data" "$tmp/hello"
# The coin store writes there, as the workers' account (raidad, or nobody
# where it is missing), and refuses a folder that account does not own.
if [ "$(id -u)" = 0 ]; then
    account=nobody
    getent passwd raidad >/dev/null 2>&1 && account=raidad
    chown -R "$account:" "$tmp/data"
fi
cat >"$tmp/raidad.conf" <<EOF
listen = "127.0.0.1:$port";
pid_file = "$tmp/raidad.pid";
worker_processes = 1;
data_dir = "$tmp/data";
load_module = "$tmp/hello/hello.so";
hello = { greeting = "hi "; };
EOF
"$dest$sbindir/raidad" -c "$tmp/raidad.conf" >"$tmp/raidad.log" 2>&1 &
daemon=$!
tries=0
until "$cli" -t 1000 127.0.0.1 "$port" echo >/dev/null 2>&1 || [ $tries -ge 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
# greet with "abc": the answer is the greeting, then the payload
want="payload: 686920616263"
for mode in "tcp, plain:" "udp, plain:-u" "tcp, type 1:-E 1 -D 1 -S 2000 -K $key" \
            "udp, type 1:-u -E 1 -D 1 -S 2000 -K $key"; do
    # shellcheck disable=SC2086
    if "$cli" -t 5000 ${mode#*:} 127.0.0.1 "$port" raw 100 0 616263 >"$tmp/cli.out" 2>&1 &&
            grep -qx "$want" "$tmp/cli.out"; then
        ok "the example module answers over ${mode%%:*}"
    else
        not_ok "the example module answers over ${mode%%:*}"
        diag "$tmp/cli.out"
        diag "$tmp/raidad.log"
    fi
done
kill "$daemon" 2>/dev/null
wait "$daemon" 2>/dev/null

# 34-35. make uninstall removes everything but the edited configuration
if mk -s uninstall DESTDIR="$dest" >"$tmp/uninstall.log" 2>&1; then
    ok "make uninstall DESTDIR=..."
else
    not_ok "make uninstall DESTDIR=..."
    diag "$tmp/uninstall.log"
fi
left=$(cd "$dest" 2>/dev/null && find . -type f | sort)
if [ "$left" = ".$sysconfdir/raidad/raidad.conf" ]; then
    ok "make uninstall leaves only the edited raidad.conf"
else
    not_ok "make uninstall leaves only the edited raidad.conf"
    echo "$left" | sed 's/^/# left: /'
fi
