"""Helpers of the master suites (test_reload.py, test_respawn.py,
test_signals.py, test_notify.py, test_processes.py; standard library only):

* ``MasterDaemon``: a daemon with two workers whose notify socket also says
  who sent each message, with configuration rewrites and its workers;
* process and socket helpers read from /proc (titles, socket inodes, the
  listeners a process holds);
* ``Load``: background TCP and UDP clients whose every answer is checked;
* the log lines of priority 0..3 that the suites provoke on purpose.
"""

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

from raidatest import (
    RAIDAD, Daemon, Skip, build_request, check_echo_answer, child_pids, cmdline, expect,
    notify_supported, parse_response, process_gone, read_until_eof, render_config, tcp_connect,
    tcp_exchange, udp_exchange, wait_gone, wait_until,
)

ADMIN_KEY = "00112233445566778899aabbccddeeff"

# Log lines of priority 0..3 that the tests below provoke on purpose.
LOG_RELOAD_REFUSED = r"reload refused, the old configuration keeps serving"
LOG_BIND_IN_USE = r"bind\((tcp|udp) 127\.0\.0\.1:\d+\): Address already in use"
LOG_KILLED = r"worker \d+ exited on signal 9 \(Killed\)"
LOG_RESPAWN_DELAY = r"worker slot \d+ died young \d+ times in a row: respawning in \d+ ms"
LOG_MASTER_GONE = r"worker: the master is gone: stopping"

RESPAWN_RE = re.compile(r"worker slot (\d+) died young (\d+) times in a row: respawning in (\d+) ms")


# --------------------------------------------------------------------------
# A daemon whose notify socket also says who sent each message

class MasterDaemon(Daemon):
    """Daemon with two workers by default, and helpers for notifications
    (.notes: sender PID and line), configuration rewrites and workers."""

    def __init__(self, overrides=None, **kw):
        settings = {"worker_processes": 2}
        settings.update(overrides or {})
        super().__init__(settings, **kw)

    # -- notifications

    def mark(self):
        with self._notify_cond:
            return len(self.notes)

    def wait_note(self, match, since, timeout):
        """Index of the first line at or after SINCE that MATCH (a string:
        equal, or a compiled regex: search) accepts, or None after TIMEOUT."""
        def ok(line):
            return line == match if isinstance(match, str) else match.search(line)
        deadline = time.monotonic() + timeout
        with self._notify_cond:
            while True:
                for i in range(since, len(self.notes)):
                    if ok(self.notes[i][1]):
                        return i
                since = max(since, len(self.notes))
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._notify_cond.wait(min(left, 0.2))

    def statuses(self, since=0):
        with self._notify_cond:
            return [line[7:] for _, line in self.notes[since:] if line.startswith("STATUS=")]

    # -- configuration and processes

    def rewrite(self, **changes):
        """Changes settings (None removes one) and rewrites the config file."""
        for k, v in changes.items():
            if v is None:
                self.settings.pop(k, None)
            else:
                self.settings[k] = v
        write_file(self.config_path, render_config(self.settings))

    def workers(self):
        return child_pids(self.pid)

    def wait_workers(self, n, timeout=10.0, exclude=()):
        """Waits until exactly N workers live, none of them in EXCLUDE."""
        exclude = set(exclude)
        got = wait_until(lambda: (lambda w: len(w) == n and not exclude & set(w))(self.workers()),
                         timeout)
        expect(got, f"expected {n} workers (not {sorted(exclude)}), have {self.workers()}")
        return self.workers()

    def reload(self, timeout=15.0):
        """SIGHUP, then waits for RELOADING=1 and the READY=1 after it."""
        since = self.mark()
        os.kill(self.pid, signal.SIGHUP)
        i = self.wait_note("RELOADING=1", since, timeout)
        expect(i is not None, f"no RELOADING=1 within {timeout} s of SIGHUP", self.notes[since:])
        j = self.wait_note("READY=1", i + 1, timeout)
        expect(j is not None, f"no READY=1 within {timeout} s after RELOADING=1", self.notes[since:])
        return j


def write_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)       # the master never reads half a file


def need_notify():
    if not notify_supported():
        raise Skip("built without sd_notify")


def kill_leftovers(pids):
    """Last resort for workers that outlived their master (a daemon bug):
    SIGKILL the ones this script saw as the master's children."""
    for p in pids:
        if not process_gone(p):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def raidad(*args, timeout=60):
    return subprocess.run([RAIDAD] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def describe(proc):
    return f"exit {proc.returncode}; stdout: {proc.stdout!r}; stderr: {proc.stderr!r}"


def echo(port, raida_id=0, udp=False, timeout=5.0):
    """One echo request; returns the parsed response (checked echo/challenge
    when the status is 250)."""
    frame, challenge = build_request(raida_id=raida_id)
    data = udp_exchange(port, frame, timeout) if udp else tcp_exchange(port, frame, timeout)
    r = parse_response(data)
    expect(r.echo == frame[30:32], "echo bytes differ", r)
    if r.status == 250:
        expect(r.challenge_hash == challenge, "challenge hash differs", r)
    return r


def tcp_refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2.0).close()
        return False
    except ConnectionRefusedError:
        return True


def udp_unanswered(port):
    """True if an echo datagram to PORT is refused (ICMP) or not answered in 1 s."""
    frame, _ = build_request()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.connect(("127.0.0.1", port))
        try:
            s.send(frame)
            s.recv(65536)
            return False
        except (ConnectionRefusedError, socket.timeout):
            return True


def hex_addr(ip, port):
    return "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(ip))[0], port)


def socket_inodes(proto, port, listening_only=True):
    """Inodes of the sockets bound to 127.0.0.1:PORT (/proc/net/tcp or udp)."""
    want = hex_addr("127.0.0.1", port)
    inodes = set()
    with open(f"/proc/net/{proto}") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] != want:
                continue
            if proto == "tcp" and listening_only and fields[3] != "0A":
                continue
            inodes.add(int(fields[9]))
    return inodes


def fd_socket_inodes(pid):
    """Socket inodes PID holds; none once it has exited (workers that
    finish draining exit at any moment)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return inodes
    for fd in fds:
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m:
            inodes.add(int(m.group(1)))
    return inodes


def master_listeners_of(pid, port):
    """Inodes of the sockets bound to 127.0.0.1:PORT that PID holds."""
    return (socket_inodes("tcp", port) | socket_inodes("udp", port)) & fd_socket_inodes(pid)


def master_listeners(d, port):
    """(tcp inodes, udp inodes) of 127.0.0.1:PORT held by the master."""
    held = fd_socket_inodes(d.pid)
    return socket_inodes("tcp", port) & held, socket_inodes("udp", port) & held


def half_request(port, raida_id=0, cut=20):
    """A connection holding the first CUT bytes of an echo request.
    Returns (sock, rest, frame, challenge)."""
    frame, challenge = build_request(raida_id=raida_id)
    s = tcp_connect(port)
    s.sendall(frame[:cut])
    return s, frame[cut:], frame, challenge


def finish_request(sock, rest, frame, challenge, raida_id=None, timeout=10.0):
    sock.sendall(rest)
    result = read_until_eof(sock, timeout)
    sock.close()
    why = check_echo_answer(result.how, result.data, frame, challenge)
    expect(why is None, f"the completed request was not answered: {why}", result)
    r = parse_response(result.data)
    if raida_id is not None:
        expect(r.raida_id == raida_id, f"answer from RAIDA {r.raida_id}, expected {raida_id}", r)
    return r


def log_lines_matching(d, regex):
    rx = re.compile(regex)
    return [line for line in d.log_lines() if rx.search(line)]


# --------------------------------------------------------------------------
# Continuous load: every request must be answered

class Load:
    """Background clients: TCP threads (a new connection per request) and UDP
    threads (one datagram, answered within UDP_TIMEOUT s, never retried).
    Every answer is checked (status 250, echo bytes, challenge, RAIDA id)."""

    def __init__(self, port, raida_id=0, tcp_threads=2, udp_threads=1, udp_timeout=2.0,
                 tcp_timeout=10.0, pause=0.0005):
        self.port = port
        self.raida_id = raida_id
        self.udp_timeout = udp_timeout
        self.tcp_timeout = tcp_timeout
        self.pause = pause
        self.ok = {"tcp": 0, "udp": 0}
        self.failures = []      # (monotonic time, proto, kind, detail)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._tcp_loop, daemon=True)
                         for _ in range(tcp_threads)]
        self._threads += [threading.Thread(target=self._udp_loop, daemon=True)
                          for _ in range(udp_threads)]
        self.started = self.stopped = None

    def _record(self, proto, kind=None, detail=""):
        with self._lock:
            if kind is None:
                self.ok[proto] += 1
            else:
                self.failures.append((time.monotonic(), proto, kind, detail))

    def _check(self, data, frame, challenge):
        why = check_echo_answer("eof", data, frame, challenge)
        if why is not None:
            return why
        got = parse_response(data).raida_id
        return None if got == self.raida_id else f"RAIDA id {got} != {self.raida_id}"

    def _tcp_loop(self):
        while not self._stop.is_set():
            frame, challenge = build_request(raida_id=self.raida_id)
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=self.tcp_timeout)
            except ConnectionRefusedError as e:
                self._record("tcp", "refused", str(e))
                continue
            except OSError as e:
                self._record("tcp", "failed", f"connect: {e}")
                continue
            with s:
                try:
                    s.sendall(frame)
                except OSError as e:
                    self._record("tcp", "failed", f"send: {e}")
                    continue
                result = read_until_eof(s, self.tcp_timeout)
            if result.how == "timeout":
                self._record("tcp", "missing", repr(result))
            elif result.how != "eof":
                self._record("tcp", "failed", repr(result))
            else:
                why = self._check(result.data, frame, challenge)
                self._record("tcp", "failed" if why else None, why or "")
            if self.pause:
                time.sleep(self.pause)

    def _udp_loop(self):
        while not self._stop.is_set():
            frame, challenge = build_request(raida_id=self.raida_id)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(self.udp_timeout)
                s.connect(("127.0.0.1", self.port))
                try:
                    s.send(frame)
                    data = s.recv(65536)
                except socket.timeout:
                    self._record("udp", "missing", f"no answer within {self.udp_timeout} s")
                    continue
                except ConnectionRefusedError as e:
                    self._record("udp", "refused", str(e))
                    continue
                except OSError as e:
                    self._record("udp", "failed", str(e))
                    continue
            why = self._check(data, frame, challenge)
            self._record("udp", "failed" if why else None, why or "")
            if self.pause:
                time.sleep(self.pause)

    def start(self):
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.tcp_timeout + 5)
        self.stopped = time.monotonic()
        return self

    def counts(self):
        with self._lock:
            return dict(self.ok), len(self.failures)

    def summary(self):
        kinds = {}
        for _, proto, kind, _ in self.failures:
            kinds[f"{proto} {kind}"] = kinds.get(f"{proto} {kind}", 0) + 1
        secs = (self.stopped or time.monotonic()) - self.started
        return (f"{self.ok['tcp']} TCP and {self.ok['udp']} UDP requests answered in "
                f"{secs:.1f} s; {len(self.failures)} failed {kinds or ''}")

    def failure_text(self, limit=8):
        t0 = self.started
        return "; ".join(f"+{t - t0:.3f}s {p} {k}: {d}" for t, p, k, d in self.failures[:limit])
