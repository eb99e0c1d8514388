"""Shared harness of the raidad integration tests (Python 3 standard library only).

What it gives the test scripts:

* a tiny TAP runner (``@test`` decorator, ``run()``): one ``ok``/``not ok`` line
  per test, ``# `` diagnostics, an exception in one test does not stop the others;
* ``Daemon``: a real raidad on a free port of 127.0.0.1, with its own config file,
  log file and sd_notify socket in a temporary directory; stopped by SIGTERM and
  checked (exit status 0, no unexpected log line of priority 0..3, no sanitizer
  report);
* frame helpers: ``build_request``, ``parse_response``, ``tcp_exchange``,
  ``udp_exchange`` and friends;
* ``fd_count``, ``free_port``, ``EchoProber`` (a client kept being served in the
  background while a test abuses the daemon).

The environment gives RAIDAD (the daemon), RAIDA_CLI (the client) and
RAIDAD_SRCDIR (the source tree); tests write only into a temporary directory
that is removed at exit.
"""

import atexit
import ctypes
import errno
import os
import pwd
import re
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib

HEADER_SIZE = 32
PR_SET_PDEATHSIG = 1
TRAILER = b"\x3e\x3e"
STATUS_SUCCESS = 250

STATUS_NAMES = {
    2: "invalid split", 3: "invalid RAIDA id", 4: "invalid shard",
    5: "invalid command group", 6: "invalid command", 7: "invalid coin id",
    16: "invalid packet length", 25: "encryption coin not found",
    27: "invalid encryption code", 33: "invalid EOF", 34: "invalid encryption",
    36: "empty request", 37: "invalid CRC", 38: "admin authentication failed",
    160: "request rate exceeded", 204: "invalid HMAC", 250: "success",
    252: "internal error", 254: "memory allocation failed", 255: "invalid routing",
}

# A daemon started with a sanitizer is much slower: every wait is generous.
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
IO_TIMEOUT = 10.0


# --------------------------------------------------------------------------
# Environment

def _raise_nofile_limit():
    """Tests open 1000+ sockets; the daemon inherits the raised limit too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


_raise_nofile_limit()


def _program(var, name):
    path = os.environ.get(var)
    if not path:
        path = os.path.join(os.getcwd(), name)
    return os.path.abspath(path)


RAIDAD = _program("RAIDAD", "raidad")
RAIDA_CLI = _program("RAIDA_CLI", "raida-cli")
SRCDIR = os.path.abspath(os.environ.get(
    "RAIDAD_SRCDIR", os.path.join(os.path.dirname(__file__), "..", "..")))

_workdir = None


def workdir():
    """The one temporary directory of this test script, removed at exit."""
    global _workdir
    if _workdir is None:
        _workdir = tempfile.mkdtemp(prefix="raidad-test-")
        # Workers started as root become an unprivileged account (raidad,
        # or nobody): they must reach the data folders the tests make here.
        os.chmod(_workdir, 0o755)
        atexit.register(shutil.rmtree, _workdir, True)
    return _workdir


def worker_account(settings=None):
    """(uid, gid) of the account that workers of a root raidad with SETTINGS
    run as (the user setting; the default raidad, or nobody when it does not
    exist), or None when they stay root or raidad is not started as root."""
    name = (settings or {}).get("user", "raidad")
    if os.geteuid() != 0 or name in ("", "root"):
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if name != "raidad":
            return None
        pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def give_to_workers(path, settings=None):
    """Hands the folder PATH (a data_dir the test made as root) to the
    workers' account: the coin store writes its pages and journal there, and
    raidad refuses a data folder its workers do not own."""
    account = worker_account(settings)
    if account is None or not path or not os.path.isdir(path):
        return
    os.lchown(path, *account)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), *account)


def notify_supported():
    """False only when the build's config.h says sd_notify support is absent."""
    config_h = os.path.join(os.path.dirname(RAIDAD), "config.h")
    try:
        with open(config_h) as f:
            text = f.read()
    except OSError:
        return True
    return re.search(r"^#define HAVE_SYSTEMD 1", text, re.M) is not None


_setting_support = {}


def setting_supported(name, value):
    """Whether this raidad knows the setting NAME (asked through raidad -t,
    once): lets the suite keep up with settings added after it was written."""
    if name not in _setting_support:
        path = os.path.join(workdir(), f"probe-{name}.conf")
        with open(path, "w") as f:
            f.write(render_config({name: value}))
        proc = subprocess.run([RAIDAD, "-t", "-c", path], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=30)
        _setting_support[name] = proc.returncode == 0
    return _setting_support[name]


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(100):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("no port free for both TCP and UDP")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def process_uid(pid):
    """The real user id of process PID, from /proc, or None."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def child_pids(pid):
    """The PIDs of the live children of PID (raidad's worker processes)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry))
    return sorted(children)


def wait_until(predicate, timeout, interval=0.05):
    """Polls PREDICATE until true or TIMEOUT seconds; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode(errors="replace")


def process_gone(pid):
    """PID no longer runs a raidad process (gone, zombie, or reused)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        if stat[stat.rindex(")") + 2] in "ZX":
            return True
        return not cmdline(pid).startswith("raidad")
    except (OSError, ValueError):
        return True


def wait_gone(pids, timeout):
    wait_until(lambda: all(process_gone(p) for p in pids), timeout)
    return [p for p in pids if not process_gone(p)]


# --------------------------------------------------------------------------
# TAP runner

class TestTimeout(Exception):
    pass


class Skip(Exception):
    """Raise to report a test as skipped (``ok N - name # SKIP reason``)."""


_tests = []


def test(func=None, *, expect_log=(), timeout=120):
    """Registers a test function.  EXPECT_LOG: regexes of log lines of priority
    0..3 that this test provokes on purpose.  TIMEOUT: overall deadline (s)."""
    def register(f):
        f.expect_log = list(expect_log)
        f.timeout = timeout
        _tests.append(f)
        return f
    if func is not None:
        return register(func)
    return register


def diag(text):
    for line in str(text).splitlines() or [""]:
        print("# " + line, flush=True)


def _alarm(signum, frame):
    raise TestTimeout("test deadline exceeded")


def run():
    """Runs the registered tests in order, prints TAP, exits 0 if all passed."""
    if not os.access(RAIDAD, os.X_OK):
        print(f"Bail out! RAIDAD is not an executable: {RAIDAD}", flush=True)
        sys.exit(1)
    # RAIDA_TESTS=WORD[,WORD...]: only the tests whose names hold a WORD
    # (to rerun one case by hand).
    only = [w for w in os.environ.get("RAIDA_TESTS", "").split(",") if w]
    if only:
        _tests[:] = [f for f in _tests if any(w in f.__name__ for w in only)]
    print(f"1..{len(_tests)}", flush=True)
    failed = 0
    signal.signal(signal.SIGALRM, _alarm)
    # Killed by make or a CI timeout: exit through atexit, which stops the daemons.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for number, func in enumerate(_tests, 1):
        name = func.__name__.replace("_", " ").removeprefix("test ")
        error = None
        skipped = None
        signal.alarm(int(func.timeout))
        try:
            func()
        except Skip as e:
            skipped = str(e)
        except BaseException as e:  # noqa: B902 - report everything, go on
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            error = traceback.format_exc()
        finally:
            signal.alarm(0)
        # Log lines the test left in daemons still running belong to it.
        for d in list(Daemon.live):
            try:
                d.check_log(func.expect_log)
            except AssertionError as e:
                error = (error or "") + f"log check: {e}\n"
        if skipped is not None:
            print(f"ok {number} - {name} # SKIP {skipped}", flush=True)
        elif error is None:
            print(f"ok {number} - {name}", flush=True)
        else:
            failed += 1
            print(f"not ok {number} - {name}", flush=True)
            diag(error.rstrip())
            for d in list(Daemon.live) + Daemon.recently_stopped:
                diag(f"last lines of {d.log_path}:")
                diag(d.log_tail())
        Daemon.recently_stopped = []
    for d in list(Daemon.live):
        d.kill()
    sys.exit(1 if failed else 0)


# --------------------------------------------------------------------------
# The daemon

def render_config(settings):
    """A dict of top-level settings in libconfig syntax."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[ " + ", ".join(value(x) for x in v) + " ]"
        if isinstance(v, tuple):
            return "( " + ", ".join(value(x) for x in v) + " )"
        raise TypeError(f"cannot render {v!r}")
    return "".join(f"{k} = {value(v)};\n" for k, v in settings.items())


LOG_LINE = re.compile(
    r"^<([0-7])>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \[(\w+)\] (\d+): (.*)$")
SANITIZER_LINE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer")


class DaemonError(AssertionError):
    pass


class Daemon:
    """raidad in the foreground on 127.0.0.1:<free port>.

        with Daemon({"raida_id": 7}) as d:
            tcp_exchange(d.port, frame)

    Leaving the block (or stop()) sends SIGTERM, waits, and checks the exit
    status and the log; a daemon left running at exit is killed.
    """

    live = []               # started and not yet stopped
    recently_stopped = []   # stopped during the current test (for diagnostics)
    _serial = 0

    def __init__(self, overrides=None, log_level="debug", expect_log=()):
        Daemon._serial += 1
        self.name = f"d{Daemon._serial}"
        self.dir = os.path.join(workdir(), self.name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.settings = {"listen": f"127.0.0.1:{self.port}", "log_level": log_level}
        # Nothing may be written outside the temporary directory.
        self.pid_file = os.path.join(self.dir, "raidad.pid")
        if setting_supported("pid_file", self.pid_file):
            self.settings["pid_file"] = self.pid_file
        self.settings.update(overrides or {})
        self.config_path = os.path.join(self.dir, "raidad.conf")
        self.log_path = os.path.join(self.dir, "raidad.log")
        self.notify_path = os.path.join(self.dir, "notify")
        self.expect_log = list(expect_log)
        self.proc = None
        self.notify_sock = None
        self.notifications = []
        self.notes = []                 # (sender PID, line), in order
        self._notify_cond = threading.Condition()
        self._notify_done = threading.Event()
        self._notify_thread = None
        self.returncode = None
        self._log_checked = 0
        with open(self.config_path, "w") as f:
            f.write(render_config(self.settings))

    # -- life cycle

    @property
    def pid(self):
        return self.proc.pid

    @property
    def raida_id(self):
        return self.settings.get("raida_id", 0)

    @property
    def coin_id(self):
        return self.settings.get("coin_id", 6)

    def start(self):
        give_to_workers(self.settings.get("data_dir"), self.settings)
        self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notify_sock.bind(self.notify_path)
        self._notify_thread = threading.Thread(target=self._notify_reader, daemon=True)
        self._notify_thread.start()
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path)
        argv = list(self.wrapper) + RAIDAD_WRAPPER + [RAIDAD, "-c", self.config_path]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, env=env, close_fds=True,
                preexec_fn=_child_setup(_die_with_parent, dict(self.rlimits)))
        Daemon.live.append(self)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        if not notify_supported():
            # Built without sd_notify: readiness is the first echo answered.
            while time.monotonic() < deadline:
                self._fail_if_exited("before serving")
                try:
                    frame, _ = build_request(raida_id=self.raida_id, coin_id=self.coin_id)
                    if parse_response(tcp_exchange(self.port, frame, 1.0)).status == 250:
                        return
                except (OSError, ProtocolError):
                    time.sleep(0.1)
            raise DaemonError(f"no echo answered within {READY_TIMEOUT} s")
        while "READY=1" not in self.notifications:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DaemonError(f"no READY=1 within {READY_TIMEOUT} s "
                                  f"(notifications: {self.notifications})")
            self._fail_if_exited("before READY=1")
            self._read_notifications(min(left, 0.2))

    def _fail_if_exited(self, when):
        if self.proc.poll() is not None:
            raise DaemonError(f"raidad exited with {self.proc.returncode} {when}")

    def _notify_reader(self):
        """Reads the notify socket for as long as the daemon runs, as systemd
        does: unread, the socket's small queue (net.unix.max_dgram_qlen)
        fills up and the daemon's next sd_notify() blocks. With SO_PASSCRED
        each line is kept with its sender's PID in .notes too."""
        sock = self.notify_sock
        sock.settimeout(0.1)
        while True:
            done = self._notify_done.is_set()
            try:
                data, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except (socket.timeout, BlockingIOError):
                if done:
                    return
                continue
            except OSError:
                return
            if done:
                sock.settimeout(0)      # stopping: drain what is queued, then leave
            pid = None
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            lines = data.decode(errors="replace").split("\n")
            with self._notify_cond:
                self.notes.extend((pid, line) for line in lines)
                self.notifications.extend(lines)
                self._notify_cond.notify_all()

    def _read_notifications(self, timeout):
        """Waits up to TIMEOUT s for a new notification; True if one came."""
        with self._notify_cond:
            before = len(self.notifications)
            self._notify_cond.wait(timeout)
            return len(self.notifications) > before

    def wait_notification(self, what, timeout):
        deadline = time.monotonic() + timeout
        while what not in self.notifications:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._read_notifications(min(left, 0.2))
        return True

    def stop(self, expect_log=(), sig=signal.SIGTERM):
        """SIGTERM (or SIG), wait, then check: exit status 0 and a clean log."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        name = signal.Signals(sig).name
        self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill(grace=0)
            raise DaemonError(f"raidad did not exit within {STOP_TIMEOUT} s of {name}: killed")
        self._forget()
        self.check_log(expect_log)
        if self.returncode != 0:
            raise DaemonError(f"raidad exited with status {self.returncode} after {name}")
        return self.returncode

    def kill(self, grace=STOP_TIMEOUT):
        """Ends the daemon whatever its state: SIGTERM, then SIGKILL after
        GRACE seconds (at once if 0)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                if grace <= 0:
                    raise subprocess.TimeoutExpired(self.proc.args, 0)
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self._forget()

    def _forget(self):
        if self in Daemon.live:
            Daemon.live.remove(self)
            Daemon.recently_stopped.append(self)
        if self.notify_sock is not None and self.proc.poll() is not None:
            self._notify_done.set()     # the reader drains what is queued first
            self._notify_thread.join(5)
            self.notify_sock.close()
            self.notify_sock = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, seconds):
        """Waits up to SECONDS for the master to exit; True if it did."""
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self.kill()
        return False

    # -- log

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        return self.log_text().splitlines()

    def log_tail(self, n=30):
        return "\n".join(self.log_lines()[-n:]) or "(empty log)"

    def check_log(self, expect_log=()):
        """Fails on any line not yet checked that has priority 0..3 and matches
        none of the expected regexes, and on any sanitizer report."""
        text = self.log_text()
        lines = text.splitlines()
        if text and not text.endswith("\n") and self.alive():
            lines.pop()         # a line still being written: next time
        new = lines[self._log_checked:]
        self._log_checked = len(lines)
        expected = [re.compile(p) for p in list(expect_log) + self.expect_log]
        bad = []
        for line in new:
            if SANITIZER_LINE.search(line):
                bad.append(line)
                continue
            m = re.match(r"^<([0-7])>", line)
            if m and int(m.group(1)) <= 3 and not any(p.search(line) for p in expected):
                bad.append(line)
        if bad:
            raise DaemonError("unexpected log lines:\n" + "\n".join(bad[:20]))

    # -- descriptors

    def pids(self):
        """The master and its worker processes."""
        return [self.pid] + child_pids(self.pid)

    def fd_counts(self):
        """{pid: open descriptors} over the master and its workers."""
        counts = {}
        for pid in self.pids():
            try:
                counts[pid] = fd_count(pid)
            except OSError:
                pass
        return counts

    def fd_count(self):
        """Descriptors open in the daemon: the master and its workers."""
        return sum(self.fd_counts().values())

    def fd_listing(self):
        out = []
        for pid in self.pids():
            try:
                fds = sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
            except OSError:
                continue
            targets = []
            for fd in fds:
                try:
                    targets.append(f"{fd}->{os.readlink(f'/proc/{pid}/fd/{fd}')}")
                except OSError:
                    pass
            out.append(f"pid {pid}: {len(targets)}: {' '.join(targets)}")
        return "\n".join(out)

    def settled_fd_count(self, timeout=2.0):
        """The descriptor count once it stopped changing for 0.3 s."""
        last = self.fd_count()
        stable_since = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.fd_count()
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 0.3:
                break
        return last

    def wait_fd_count(self, expected, timeout=5.0):
        """Polls until the descriptor count is EXPECTED; asserts it got there."""
        got = wait_until(lambda: self.fd_count() == expected, timeout)
        if not got:
            raise AssertionError(
                f"daemon fd count {self.fd_count()} != baseline {expected} after "
                f"{timeout} s:\n{self.fd_listing()}")

    # -- convenience

    def request(self, **kw):
        kw.setdefault("raida_id", self.raida_id)
        kw.setdefault("coin_id", self.coin_id)
        return build_request(**kw)

    def echo_ok(self, udp=False):
        """One echo request answered with 250 and the right echo/challenge."""
        frame, challenge = self.request()
        if udp:
            data = udp_exchange(self.port, frame)
            assert data is not None, "UDP echo not answered"
        else:
            data = tcp_exchange(self.port, frame)
        r = parse_response(data)
        assert r.status == 250, f"echo answered with status {r.status}"
        assert r.echo == frame[30:32], f"echo bytes {r.echo.hex()} != {frame[30:32].hex()}"
        assert r.challenge_hash == challenge, "challenge hash differs"
        return r


def _die_with_parent():
    """In the child before exec: SIGTERM it if the test process dies, even
    by SIGKILL, so that no daemon outlives its test."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _kill_all_daemons():
    for d in list(Daemon.live):
        d.kill()


atexit.register(_kill_all_daemons)


# --------------------------------------------------------------------------
# Frames

def make_challenge(bad_crc=False):
    rnd = os.urandom(12)
    crc = zlib.crc32(rnd) & 0xFFFFFFFF
    if bad_crc:
        crc ^= 0x00000001
    return rnd + struct.pack(">I", crc)


def _echo_bytes(echo):
    if echo is None:
        return os.urandom(2)
    if isinstance(echo, int):
        return struct.pack(">H", echo)
    assert len(echo) == 2
    return bytes(echo)


def build_request(raida_id=0, coin_id=6, group=0, command=0, shard=0, echo=None,
                  payload=b"", enc=0, routing=1, split=0, body_size=None,
                  trailer=TRAILER, bad_crc=False, challenge=None, body=None):
    """A legacy 32-byte-header request.  Returns (frame, challenge).

    BODY replaces the whole body (challenge + payload + trailer); BODY_SIZE
    overrides the header's body size field (u16) whatever the real body is."""
    if challenge is None:
        challenge = make_challenge(bad_crc)
    if body is None:
        body = challenge + payload + trailer
    if body_size is None:
        body_size = len(body)
    header = bytearray(HEADER_SIZE)
    header[0] = routing
    header[1] = split
    header[2] = raida_id
    header[3] = shard
    header[4] = group
    header[5] = command
    header[6:8] = struct.pack(">H", coin_id)
    # 8-15: presentation bytes, not validated by the network layer
    header[16] = enc
    # 17: denomination, 18-21: serial number (encryption types 1/2 only)
    header[22:24] = struct.pack(">H", body_size)
    # 24-29: nonce; 30-31: echo bytes (the end of the nonce)
    header[30:32] = _echo_bytes(echo)
    return bytes(header) + body, challenge


def echo_of(frame):
    return frame[30:32]


class ProtocolError(AssertionError):
    pass


class Response:
    __slots__ = ("raw", "raida_id", "shard", "status", "group", "frames", "echo",
                 "reserved", "body_size", "exec_us", "challenge_hash", "payload")

    def __repr__(self):
        return (f"<Response status={self.status} ({STATUS_NAMES.get(self.status, '?')}) "
                f"raida={self.raida_id} group={self.group} echo={self.echo.hex()} "
                f"body_size={self.body_size} raw={self.raw.hex()}>")


def parse_response(data):
    """Splits a legacy response; checks its length, body size and trailer."""
    if data is None:
        raise ProtocolError("no response")
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"response of {len(data)} bytes (< 32): {data.hex()}")
    r = Response()
    r.raw = bytes(data)
    r.raida_id, r.shard, r.status, r.group = data[0], data[1], data[2], data[3]
    r.frames = struct.unpack(">H", data[4:6])[0]
    r.echo = bytes(data[6:8])
    r.reserved = data[8]
    r.body_size = int.from_bytes(data[9:12], "big")
    r.exec_us = struct.unpack(">I", data[12:16])[0]
    r.challenge_hash = bytes(data[16:32])
    body = data[HEADER_SIZE:]
    if len(body) != r.body_size:
        raise ProtocolError(f"body size field {r.body_size} but {len(body)} body bytes: {data.hex()}")
    if r.body_size:
        if r.body_size < 2 or body[-2:] != TRAILER:
            raise ProtocolError(f"response body without the 3E 3E trailer: {data.hex()}")
        r.payload = bytes(body[:-2])
    else:
        r.payload = b""
    return r


def assert_status(data, status, echo=None, raida_id=None):
    """DATA is a body-less response with STATUS (and the request's ECHO bytes)."""
    r = parse_response(data)
    want = f"{status} ({STATUS_NAMES.get(status, '?')})"
    got = f"{r.status} ({STATUS_NAMES.get(r.status, '?')})"
    assert r.status == status, f"status {got}, expected {want}; response {r.raw.hex()}"
    if echo is not None:
        assert r.echo == echo, f"echo bytes {r.echo.hex()}, expected {echo.hex()}"
    if raida_id is not None:
        assert r.raida_id == raida_id, f"RAIDA id {r.raida_id}, expected {raida_id}"
    if status != 250:
        assert r.body_size == 0 and len(r.raw) == HEADER_SIZE, \
            f"error response with a body: {r.raw.hex()}"
    return r


# --------------------------------------------------------------------------
# Sockets

class ConnectionResetWithData(ConnectionResetError):
    """The peer reset the connection; .data holds what was read before."""

    def __init__(self, data):
        super().__init__(errno.ECONNRESET, f"connection reset after {len(data)} bytes")
        self.data = data


class ReadTimeout(TimeoutError):
    """No EOF within the timeout; .data holds what was read before."""

    def __init__(self, data, timeout):
        super().__init__(f"no EOF within {timeout} s ({len(data)} bytes read)")
        self.data = data


class TcpResult:
    """How a TCP exchange ended: 'eof', 'reset' or 'timeout'; data; seconds."""

    def __init__(self, how, data, elapsed):
        self.how, self.data, self.elapsed = how, data, elapsed

    def __repr__(self):
        return f"<TcpResult {self.how} after {self.elapsed:.3f} s, {len(self.data)} bytes: {self.data[:64].hex()}>"


def tcp_connect(port, timeout=IO_TIMEOUT):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_eof(sock, timeout=IO_TIMEOUT):
    """Reads until EOF, reset or TIMEOUT s; returns a TcpResult."""
    start = time.monotonic()
    deadline = start + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return TcpResult("timeout", bytes(data), time.monotonic() - start)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return TcpResult("reset", bytes(data), time.monotonic() - start)
        if not chunk:
            return TcpResult("eof", bytes(data), time.monotonic() - start)
        data += chunk


def send_quietly(sock, data):
    """sendall that tolerates the server closing first (it may answer early)."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def tcp_talk(port, data, timeout=IO_TIMEOUT):
    """Connects, sends DATA, reads to the end; returns a TcpResult."""
    with tcp_connect(port, timeout) as s:
        send_quietly(s, data)
        return read_until_eof(s, timeout)


def tcp_exchange(port, data, timeout=IO_TIMEOUT):
    """Sends DATA on a new connection and returns all bytes up to EOF.
    Raises ConnectionResetWithData on a reset, ReadTimeout without EOF."""
    result = tcp_talk(port, data, timeout)
    if result.how == "reset":
        raise ConnectionResetWithData(result.data)
    if result.how == "timeout":
        raise ReadTimeout(result.data, timeout)
    return result.data


def udp_socket(timeout=IO_TIMEOUT):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    return s


def udp_exchange(port, data, timeout=5.0):
    """Sends one datagram; returns the answer, or None if none came in TIMEOUT s."""
    with udp_socket(timeout) as s:
        s.sendto(data, ("127.0.0.1", port))
        try:
            answer, _ = s.recvfrom(65536)
            return answer
        except socket.timeout:
            return None


# --------------------------------------------------------------------------
# Many clients at once

def many_tcp_exchanges(port, frames, deadline):
    """Opens one non-blocking connection per frame (all connects first), then
    sends every frame, then reads every answer to EOF, with selectors.
    Returns a list of (how, data) per frame: how is 'eof', 'reset',
    'refused', 'timeout' or 'connect-failed'.  DEADLINE: time.monotonic() bound."""
    sel = selectors.DefaultSelector()
    n = len(frames)
    socks = [None] * n
    results = [None] * n
    try:
        # 1. connect all
        pending = set()
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks[i] = s
            rc = s.connect_ex(("127.0.0.1", port))
            if rc in (0, errno.EINPROGRESS):
                pending.add(i)
                sel.register(s, selectors.EVENT_WRITE, i)
            else:
                results[i] = ("connect-failed", os.strerror(rc).encode())
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                i = key.data
                err = socks[i].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sel.unregister(socks[i])
                pending.discard(i)
                if err:
                    results[i] = ("connect-failed", os.strerror(err).encode())
        for i in pending:
            sel.unregister(socks[i])
            results[i] = ("timeout", b"connect")
        # 2. send all
        out = {i: memoryview(frames[i]) for i in range(n) if results[i] is None}
        for i in out:
            sel.register(socks[i], selectors.EVENT_WRITE, i)
        while out and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                i = key.data
                try:
                    sent = socks[i].send(out[i])
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    sent = len(out[i])  # the server answered early; go read
                out[i] = out[i][sent:]
                if not out[i]:
                    del out[i]
                    sel.unregister(socks[i])
        for i in out:
            sel.unregister(socks[i])
            results[i] = ("timeout", b"send")
        # 3. read all
        inbuf = {}
        for i in range(n):
            if results[i] is None:
                inbuf[i] = bytearray()
                sel.register(socks[i], selectors.EVENT_READ, i)
        while inbuf and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                i = key.data
                try:
                    chunk = socks[i].recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    results[i] = ("reset", bytes(inbuf.pop(i)))
                    sel.unregister(socks[i])
                    continue
                if chunk:
                    inbuf[i] += chunk
                else:
                    results[i] = ("eof", bytes(inbuf.pop(i)))
                    sel.unregister(socks[i])
        for i, data in inbuf.items():
            results[i] = ("timeout", bytes(data))
        return results
    finally:
        sel.close()
        for s in socks:
            if s is not None:
                s.close()


def check_echo_answer(how, data, frame, challenge):
    """None if (HOW, DATA) is a correct echo answer to FRAME, else why not."""
    if how != "eof":
        return f"{how} after {len(data)} bytes"
    try:
        r = parse_response(data)
    except ProtocolError as e:
        return str(e)
    if r.status != 250:
        return f"status {r.status}"
    if r.echo != frame[30:32]:
        return f"echo bytes {r.echo.hex()} != {frame[30:32].hex()}"
    if r.challenge_hash != challenge:
        return "challenge hash differs"
    return None


def summarize_failures(failures, limit=10):
    """FAILURES: list of (index, reason) -> short text with counts per reason."""
    counts = {}
    for _, why in failures:
        kind = why.split(" after ")[0] if " after " in why else why
        counts[kind] = counts.get(kind, 0) + 1
    examples = "; ".join(f"#{i}: {why}" for i, why in failures[:limit])
    return f"{len(failures)} failed ({counts}); e.g. {examples}"


class EchoProber:
    """A well-behaved client served in the background: one TCP echo after the
    other (and a UDP one every few), recording successes and failures."""

    def __init__(self, daemon, interval=0.02):
        self.daemon = daemon
        self.interval = interval
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def _run(self):
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                self.daemon.echo_ok(udp=(n % 4 == 0))
                with self._lock:
                    self.ok += 1
            except Exception as e:  # noqa: BLE001 - recorded, reported by check()
                with self._lock:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {type(e).__name__}: {e}")
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(IO_TIMEOUT * 3)

    def mark(self):
        with self._lock:
            return self.ok, len(self.failures)

    def check_since(self, mark, min_ok=1, timeout=IO_TIMEOUT):
        """Asserts no failure since MARK and at least MIN_OK successes (waits)."""
        ok0, failed0 = mark
        wait_until(lambda: self.ok - ok0 >= min_ok or len(self.failures) > failed0, timeout)
        with self._lock:
            new_failures = self.failures[failed0:]
            served = self.ok - ok0
        assert not new_failures, "background client failed: " + "; ".join(new_failures[:5])
        assert served >= min_ok, f"background client served {served} times, expected >= {min_ok}"


# --------------------------------------------------------------------------
# raida-cli

class CliResult:
    def __init__(self, argv, proc):
        self.argv = argv
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.fields = {}
        for line in proc.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                self.fields.setdefault(key.strip(), value.strip())

    def __repr__(self):
        return (f"<raida-cli {' '.join(self.argv[1:])}: exit {self.returncode}\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}>")

    def status(self):
        m = re.match(r"(\d+)", self.fields.get("status", ""))
        return int(m.group(1)) if m else None


def raida_cli(*args, timeout=30):
    argv = [RAIDA_CLI] + [str(a) for a in args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return CliResult(argv, proc)


def expect(cond, message, *context):
    """assert with context objects appended to the message."""
    if not cond:
        raise AssertionError("\n".join([message] + [repr(c) for c in context]))


# --------------------------------------------------------------------------
# How raidad is started: RAIDAD_WRAPPER (valgrind...) and resource limits.

import shlex  # noqa: E402

# RAIDAD_WRAPPER: a command put in front of raidad in every Daemon, e.g.
#   RAIDAD_WRAPPER="valgrind --error-exitcode=99 --leak-check=full -q"
# (valgrind follows the fork()ed workers by itself).
RAIDAD_WRAPPER = shlex.split(os.environ.get("RAIDAD_WRAPPER", ""))
if RAIDAD_WRAPPER:
    # Under valgrind raidad starts and stops tens of times slower.
    READY_TIMEOUT = 180.0
    STOP_TIMEOUT = 180.0

# valgrind reports in the daemon's log ("==1234== Invalid read of size 4",
# "==1234== 16 bytes in 1 blocks are definitely lost") fail the test, as the
# sanitizers' do.
SANITIZER_LINE = re.compile(SANITIZER_LINE.pattern + r"|^==\d+== \S")

# Per Daemon, set before start():
#   d.wrapper = ["prlimit", "--nofile=128:128"]   command put in front of raidad
#   d.rlimits = {resource.RLIMIT_NOFILE: (128, 128)}   applied in the child
Daemon.wrapper = ()
Daemon.rlimits = {}


def _child_setup(preexec, rlimits):
    def setup():
        preexec()
        for which, limits in rlimits.items():
            resource.setrlimit(which, limits)
    return setup


# --------------------------------------------------------------------------
# Reload, CPU time and memory of the daemon

def reload_daemon(d, overrides=None, timeout=None):
    """Rewrites D's configuration with OVERRIDES, sends SIGHUP to the master,
    waits for the new generation (RELOADING=1 then READY=1) and for the old
    workers to be gone. Returns the new workers' PIDs."""
    timeout = READY_TIMEOUT if timeout is None else timeout
    d.settings.update(overrides or {})
    with open(d.config_path, "w") as f:
        f.write(render_config(d.settings))
    give_to_workers(d.settings.get("data_dir"), d.settings)
    old = set(child_pids(d.pid))
    mark = len(d.notifications)
    deadline = time.monotonic() + timeout
    d.proc.send_signal(signal.SIGHUP)

    def reloaded():
        seen = d.notifications[mark:]
        return "RELOADING=1" in seen and "READY=1" in seen[seen.index("RELOADING=1"):]

    if notify_supported():
        while not reloaded():
            d._fail_if_exited("during a reload")
            if time.monotonic() >= deadline:
                raise DaemonError(f"no RELOADING=1 then READY=1 within {timeout} s of SIGHUP "
                                  f"(notifications: {d.notifications[mark:]})")
            d._read_notifications(0.2)
    left = max(0.1, deadline - time.monotonic())
    if not wait_until(lambda: child_pids(d.pid) and not old & set(child_pids(d.pid)), left):
        raise DaemonError(f"old workers {sorted(old & set(child_pids(d.pid)))} still there "
                          f"{timeout} s after SIGHUP")
    return child_pids(d.pid)


def cpu_seconds(pids):
    """User + system CPU time (s) used so far by PIDS, all their threads
    (fields 14 and 15 of /proc/PID/stat); a process gone counts 0."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # fields[0] is field 3
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pids):
    """Resident memory (KiB, VmRSS) of PIDS together."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


Daemon.cpu_seconds = lambda self: cpu_seconds(self.pids())
Daemon.rss_kib = lambda self: rss_kib(self.pids())


# --------------------------------------------------------------------------
# Clients from other loopback addresses (all of 127/8 is local on Linux),
# and resets

def tcp_connect_from(source, port, timeout=IO_TIMEOUT):
    """A TCP connection to 127.0.0.1:PORT from the address SOURCE."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        s.close()
        raise
    return s


def tcp_exchange_from(source, port, data, timeout=IO_TIMEOUT):
    """tcp_exchange from the address SOURCE: all bytes up to EOF."""
    with tcp_connect_from(source, port, timeout) as s:
        send_quietly(s, data)
        result = read_until_eof(s, timeout)
    if result.how == "reset":
        raise ConnectionResetWithData(result.data)
    if result.how == "timeout":
        raise ReadTimeout(result.data, timeout)
    return result.data


def udp_socket_from(source, timeout=IO_TIMEOUT):
    s = udp_socket(timeout)
    s.bind((source, 0))
    return s


def reset_close(sock):
    """Closes SOCK with a reset (SO_LINGER 0) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
