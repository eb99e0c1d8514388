#!/usr/bin/env python3
"""raidad's process model, nginx style: one master, N worker processes.

Worker count and process titles, sd_notify from the master alone, reloads
(SIGHUP and raidad -s reload) under continuous TCP and UDP load, refused
reloads, listen addresses added and removed, a killed worker replaced (with a
growing delay when it keeps dying), graceful (SIGQUIT) and fast (SIGTERM)
stops, raidad -t beside a running daemon, -s quit/stop/reopen through the pid
file, workers dying with the master, stats shared by all workers.

Only 127.0.0.1; only the PIDs this script started (the master) and the
master's children are signalled.  Everything is bounded in time and count.
Prints TAP."""

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    LOG_LINE, RAIDAD, SANITIZER_LINE, Daemon, ProtocolError, Skip, build_request,
    check_echo_answer, child_pids, diag, expect, free_port, many_tcp_exchanges,
    notify_supported, parse_response, raida_cli, read_until_eof, render_config, run,
    tcp_connect, tcp_exchange, test, udp_exchange, wait_until,
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
        try:
            r = parse_response(data)
        except ProtocolError as e:
            return str(e)
        if r.status != 250:
            return f"status {r.status}"
        if r.echo != frame[30:32] or r.challenge_hash != challenge:
            return "echo bytes or challenge differ"
        if r.raida_id != self.raida_id:
            return f"RAIDA id {r.raida_id} != {self.raida_id}"
        return None

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


# --------------------------------------------------------------------------
# 1-2. Processes

@test
def test_two_workers_titles_and_ready_from_the_master():
    need_notify()
    with MasterDaemon({"worker_processes": 2}) as d:
        workers = d.wait_workers(2)
        title = cmdline(d.pid)
        expect(title == f"raidad: master process -c {d.config_path}",
               f"master title {title!r}")
        for w in workers:
            expect(cmdline(w) == "raidad: worker process", f"worker {w} title {cmdline(w)!r}")
        ready = [pid for pid, line in d.notes if line == "READY=1"]
        expect(ready, "no READY=1", d.notes)
        expect(ready[0] == d.pid, f"READY=1 sent by PID {ready[0]}, the master is {d.pid}", d.notes)
        mainpid = [line for _, line in d.notes if line.startswith("MAINPID=")]
        expect(mainpid == [f"MAINPID={d.pid}"], f"MAINPID lines {mainpid}, master {d.pid}")
        others = {pid for pid, _ in d.notes if pid != d.pid}
        expect(not others, f"notifications from PIDs other than the master: {sorted(others, key=str)}",
               d.notes)
        expect(wait_until(lambda: any(re.match(r"2 workers\b", s) for s in d.statuses()), 5),
               "no STATUS= saying 2 workers", d.statuses())
        diag(f"master {d.pid}, workers {workers}; STATUS: {d.statuses()[-1]!r}")
        d.echo_ok()
        d.echo_ok(udp=True)


@test
def test_worker_processes_auto_is_one_per_cpu():
    cpus = min(os.cpu_count() or 1, 64)
    with MasterDaemon({"worker_processes": "auto"}) as d:
        workers = d.wait_workers(cpus)
        diag(f"{cpus} CPUs, {len(workers)} workers")
        if notify_supported():
            expect(wait_until(lambda: any(s.startswith(f"{cpus} workers") for s in d.statuses()), 5),
                   f"no STATUS= saying {cpus} workers", d.statuses())


# --------------------------------------------------------------------------
# 3. Reloads under load

@test(expect_log=[LOG_RELOAD_REFUSED], timeout=150)
def test_reloads_under_continuous_tcp_and_udp_load():
    need_notify()
    reloads, budget = 20, 30.0
    d = MasterDaemon({"worker_processes": 2}).start()
    try:
        d.echo_ok()
        load = Load(d.port, d.raida_id).start()
        start = time.monotonic()
        done = 0
        seen = set(d.workers())
        try:
            time.sleep(0.3)
            # At least 20 reloads, and at least 6 s of load, within the budget.
            while ((done < reloads or time.monotonic() - start < 6.0)
                   and time.monotonic() - start < budget and done < 100):
                before = set(d.workers())
                d.reload()
                done += 1
                seen |= set(d.workers())
                time.sleep(0.1)             # let requests reach the new workers
            time.sleep(0.3)
        finally:
            load.stop()
        elapsed = time.monotonic() - start
        diag(f"{done} reloads in {elapsed:.1f} s; {load.summary()}")
        expect(done >= reloads, f"only {done} reloads completed within {budget} s")
        expect(not load.failures, f"requests failed during reloads: {load.failure_text()}")
        expect(load.ok["tcp"] > 0 and load.ok["udp"] > 0, "the load did not run", load.summary())
        workers = d.wait_workers(2, exclude=before)
        expect(len(seen) >= 2 * (reloads + 1) - 2,
               f"only {len(seen)} distinct worker PIDs seen over {done} reloads")

        # raida_id 0 -> 5: the answers carry the new id, the old one is refused.
        d.rewrite(raida_id=5)
        d.reload()
        d.wait_workers(2, exclude=workers)
        r = echo(d.port, raida_id=5)
        expect(r.status == 250 and r.raida_id == 5, "echo to RAIDA 5 after the reload", r)
        r = echo(d.port, raida_id=5, udp=True)
        expect(r.status == 250 and r.raida_id == 5, "UDP echo to RAIDA 5 after the reload", r)
        for udp in (False, True):
            r = echo(d.port, raida_id=0, udp=udp)
            expect(r.status == 3, f"a request for the old RAIDA 0 ({'UDP' if udp else 'TCP'}): "
                   "expected status 3", r)

        # A syntax error: refused, the old configuration and workers serve on.
        workers = d.workers()
        since = d.mark()
        log_before = len(d.log_lines())
        write_file(d.config_path, render_config(d.settings) + "garbage = ;\n")
        bad_line = len(d.settings) + 1
        load = Load(d.port, 5, tcp_threads=1).start()
        try:
            os.kill(d.pid, signal.SIGHUP)
            i = d.wait_note(re.compile(r"^STATUS=.*refused"), since, 10)
            time.sleep(0.5)
        finally:
            load.stop()
        expect(i is not None, "no STATUS= mentioning the refused reload", d.notes[since:])
        status = d.notes[i][1]
        diag(f"after the bad reload: {status!r}; {load.summary()}")
        expect(re.search(re.escape(d.config_path) + rf":{bad_line}\b", status),
               f"the STATUS does not name {d.config_path}:{bad_line}", status)
        expect("RELOADING=1" not in [line for _, line in d.notes[since:]],
               "RELOADING=1 sent for a file that does not parse", d.notes[since:])
        expect(not load.failures, f"requests failed around the refused reload: {load.failure_text()}")
        expect(d.workers() == workers, f"workers changed: {workers} -> {d.workers()}")
        refused = [line for line in d.log_lines()[log_before:] if re.search(LOG_RELOAD_REFUSED, line)]
        expect(refused and f"{d.config_path}:{bad_line}:" in refused[0],
               f"no 'reload refused' log line naming {d.config_path}:{bad_line}", refused)
        r = echo(d.port, raida_id=5)
        expect(r.status == 250 and r.raida_id == 5, "the old configuration does not serve", r)

        # Fixed again: the next reload succeeds and clears the refusal.
        d.rewrite(raida_id=6)
        since = d.mark()
        d.reload()
        d.wait_workers(2, exclude=workers)
        expect(echo(d.port, raida_id=6).raida_id == 6, "raida_id 6 not applied")
        expect(wait_until(lambda: d.statuses(since) and "refused" not in d.statuses(since)[-1], 5),
               "STATUS still mentions the refused reload after a good one", d.statuses(since))
        d.stop(expect_log=[LOG_RELOAD_REFUSED])
    finally:
        d.kill()


@test(timeout=60)
def test_reload_lets_old_workers_finish_their_requests():
    with MasterDaemon({"worker_processes": 1, "shutdown_timeout_ms": 20000,
                       "socket_timeout_ms": 20000}) as d:
        [old] = d.wait_workers(1)
        sock, rest, frame, challenge = half_request(d.port, raida_id=0)
        time.sleep(0.3)
        d.rewrite(raida_id=4)
        d.reload()
        d.wait_workers(2)
        [new] = [p for p in d.workers() if p != old]
        expect(old in d.workers(), f"the old worker {old} did not wait for its client")
        expect(echo(d.port, raida_id=4).raida_id == 4, "new configuration not serving")
        r = finish_request(sock, rest, frame, challenge, raida_id=0)
        diag(f"old worker {old} answered with RAIDA id {r.raida_id} after the reload")
        expect(not wait_gone([old], 5), f"the old worker {old} did not exit once idle")
        expect(d.workers() == [new], f"workers {d.workers()}, expected [{new}]")


@test(timeout=60)
def test_max_old_generations_stops_the_oldest_at_once():
    with MasterDaemon({"worker_processes": 1, "max_old_generations": 1,
                       "shutdown_timeout_ms": 20000, "socket_timeout_ms": 20000}) as d:
        [gen1] = d.wait_workers(1)
        a = half_request(d.port)
        time.sleep(0.3)
        d.reload()
        gen2 = wait_until(lambda: [p for p in d.workers() if p != gen1], 5)
        expect(len(gen2) == 1 and gen1 in d.workers(), f"workers {d.workers()} after reload 1")
        b = half_request(d.port)
        time.sleep(0.3)
        d.reload()
        expect(not wait_gone([gen1], 5), f"generation 1 ({gen1}) still runs past max_old_generations")
        expect(gen2[0] in d.workers(), f"generation 2 ({gen2[0]}) stopped too", d.workers())
        result = read_until_eof(a[0], 5)
        a[0].close()
        expect(result.how in ("eof", "reset") and not result.data,
               "the cut connection of generation 1 got data", result)
        finish_request(*b)
        expect(not wait_gone(gen2, 5), "generation 2 did not exit once idle")
        expect(log_lines_matching(d, r"too many generations draining: stopping generation 1"),
               "no 'too many generations draining' log line")


# --------------------------------------------------------------------------
# 4. raidad -s reload

@test(expect_log=[LOG_RELOAD_REFUSED, LOG_BIND_IN_USE], timeout=90)
def test_signal_reload_reports_the_verdict():
    d = MasterDaemon({"worker_processes": 2}).start()
    try:
        if "pid_file" not in d.settings:
            raise Skip("this raidad has no pid_file setting")
        workers = d.wait_workers(2)
        d.rewrite(raida_id=11)
        proc = raidad("-s", "reload", "-c", d.config_path)
        expect(proc.returncode == 0, "raidad -s reload of a good file", describe(proc))
        # Once the verdict is in, no old worker takes a request any more.
        ids = [echo(d.port, raida_id=11).raida_id for _ in range(20)]
        expect(ids == [11] * 20, f"answers right after the reload: {ids}")
        workers = d.wait_workers(2, exclude=workers)

        # A file that does not parse: the message names FILE:LINE.
        good = render_config(d.settings)
        write_file(d.config_path, good + "coin_id = 6\nraida_id = 3;\n")
        proc = raidad("-s", "reload", "-c", d.config_path)
        expect(proc.returncode != 0, "raidad -s reload of a bad file exited 0", describe(proc))
        expect(re.search(re.escape(d.config_path) + r":\d+: \S", proc.stderr),
               f"no '{d.config_path}:LINE: message' on stderr", describe(proc))
        expect(d.workers() == workers, f"workers changed: {workers} -> {d.workers()}")
        expect(echo(d.port, raida_id=11).status == 250, "the old configuration does not serve")

        # A file that parses but whose new address is taken: refused.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            taken = held.getsockname()[1]
            d.rewrite(raida_id=12, listen=(f"127.0.0.1:{d.port}", f"127.0.0.1:{taken}"))
            proc = raidad("-t", "-c", d.config_path)
            expect(proc.returncode == 0, "raidad -t of the file with the taken port", describe(proc))
            started = time.monotonic()
            proc = raidad("-s", "reload", "-c", d.config_path)
            diag(f"refused reload answered in {time.monotonic() - started:.2f} s: {proc.stderr.strip()}")
            expect(proc.returncode != 0, "raidad -s reload with a taken port exited 0", describe(proc))
            expect(d.workers() == workers, f"workers changed: {workers} -> {d.workers()}")
            for udp in (False, True):
                r = echo(d.port, raida_id=11, udp=udp)
                expect(r.status == 250 and r.raida_id == 11, "the old configuration does not serve", r)
            expect(held.getsockname()[1] == taken, "lost the test's socket")
        expect(log_lines_matching(d, LOG_BIND_IN_USE), "no bind error in the log")
        d.rewrite(raida_id=11, listen=f"127.0.0.1:{d.port}")
        d.stop(expect_log=[LOG_RELOAD_REFUSED, LOG_BIND_IN_USE])
    finally:
        d.kill()


# --------------------------------------------------------------------------
# 5. Listen addresses across reloads

@test(timeout=60)
def test_reload_adds_and_removes_listen_addresses():
    d = MasterDaemon({"worker_processes": 2})
    a, b = d.port, free_port()
    d.rewrite(listen=(f"127.0.0.1:{a}", f"127.0.0.1:{b}"))
    with d:
        workers = d.wait_workers(2)
        for port in (a, b):
            for udp in (False, True):
                expect(echo(port, udp=udp).status == 250, f"port {port} udp={udp} not served")
        a_before = master_listeners(d, a)
        b_before = master_listeners(d, b)
        # A group of SO_REUSEPORT sockets per address and protocol, one per CPU.
        group = min(os.sysconf("SC_NPROCESSORS_CONF"), 64)
        expect(all(len(x) == group for x in a_before + b_before),
               f"the master does not hold {group} TCP and {group} UDP sockets per address: "
               f"{a_before} {b_before}")
        c = free_port()
        d.rewrite(listen=(f"127.0.0.1:{a}", f"127.0.0.1:{c}"))
        d.reload()
        for udp in (False, True):
            expect(echo(c, udp=udp).status == 250, f"the added port {c} udp={udp} not served")
        expect(not wait_gone(workers, 10), "the old workers did not exit")
        removed = set().union(*b_before)
        holders = {pid: sorted(fd_socket_inodes(pid) & removed) for pid in d.pids()}
        holders = {pid: inodes for pid, inodes in holders.items() if inodes}
        expect(not holders, f"the removed sockets of port {b} (inodes {sorted(removed)}) are "
               f"still open in {holders} (master {d.pid}, workers {d.workers()})")
        expect(tcp_refused(b), f"the removed port {b} still accepts TCP connections")
        expect(udp_unanswered(b), f"the removed port {b} still answers UDP")
        a_after = master_listeners(d, a)
        expect(a_after == a_before, f"the kept address changed sockets: {a_before} -> {a_after}")
        expect(master_listeners(d, b) == (set(), set()), "the master still holds the removed port")
        expect(not (set().union(*b_before) & fd_socket_inodes(d.pid)),
               "the master still holds the removed sockets")
        for udp in (False, True):
            expect(echo(a, udp=udp).status == 250, f"the kept port {a} udp={udp} not served")
        # Once more: the kept sockets survive a second reload too.
        d.reload()
        expect(master_listeners(d, a) == a_before, "the kept address changed sockets on reload 2")
        diag(f"kept {a}: tcp/udp inodes {a_before}; removed {b}; added {c}")


# --------------------------------------------------------------------------
# 6-7. Killed workers

@test(expect_log=[LOG_KILLED], timeout=60)
def test_killed_worker_is_replaced_under_load():
    d = MasterDaemon({"worker_processes": 2}).start()
    try:
        workers = d.wait_workers(2)
        load = Load(d.port).start()
        try:
            time.sleep(1.0)
            victim = workers[0]
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            new = wait_until(lambda: [p for p in d.workers() if p not in workers], 3.0, 0.01)
            respawn = time.monotonic() - killed_at
            ok_at_kill = load.counts()[0]
            time.sleep(1.5)
            ok_after = load.counts()[0]
        finally:
            load.stop()
        diag(f"killed {victim}; replacement {new} after {respawn:.3f} s; {load.summary()}")
        if load.failures:
            diag(f"failures: {load.failure_text()}")
        expect(len(new) == 1, f"no replacement worker within 3 s: {d.workers()}")
        expect(sorted(d.workers()) == sorted([workers[1]] + new),
               f"workers {d.workers()}, expected {workers[1]} and {new}")
        expect(cmdline(new[0]) == "raidad: worker process", "replacement title", cmdline(new[0]))
        expect(sum(ok_after.values()) - sum(ok_at_kill.values()) > 50,
               "service did not continue after the kill", ok_at_kill, ok_after)
        expect(len(load.failures) <= 4,
               f"{len(load.failures)} requests failed, more than those in flight on the "
               f"killed worker: {load.failure_text()}")
        expect(log_lines_matching(d, rf"worker {victim} exited on signal 9"),
               f"no 'worker {victim} exited on signal 9' log line")
        d.echo_ok()
        d.echo_ok(udp=True)
        d.stop(expect_log=[LOG_KILLED])
    finally:
        d.kill()


@test(expect_log=[LOG_KILLED, LOG_RESPAWN_DELAY], timeout=60)
def test_crashing_worker_is_respawned_with_a_growing_delay():
    d = MasterDaemon({"worker_processes": 2}).start()
    try:
        workers = d.wait_workers(2)
        bystander = workers[1]
        known = set(workers)
        victim = workers[0]
        gaps = []
        for _ in range(5):              # the first worker, then 4 replacements
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            new = wait_until(lambda: [p for p in d.workers() if p not in known], 10.0, 0.002)
            expect(new, f"no replacement of {victim} within 10 s", d.workers())
            gaps.append(time.monotonic() - killed_at)
            known |= set(new)
            victim = new[0]
        d.wait_workers(2)
        delays = [(int(m.group(1)), int(m.group(2)), int(m.group(3)))
                  for m in map(RESPAWN_RE.search, d.log_lines()) if m]
        diag("respawn gaps: " + ", ".join(f"{g * 1000:.0f} ms" for g in gaps))
        diag(f"logged delays (slot, crashes, ms): {delays}")
        expect(len(delays) >= 3, "fewer than 3 'respawning in N ms' lines after 5 quick crashes",
               delays)
        ms = [x[2] for x in delays]
        expect(all(x < y for x, y in zip(ms, ms[1:])), f"the delay does not grow: {ms}")
        expect(len({x[0] for x in delays}) == 1, f"the delays name several slots: {delays}")
        expect(gaps[-1] >= ms[-1] / 1000 * 0.8,
               f"the last replacement came after {gaps[-1]:.3f} s, the log said {ms[-1]} ms")
        expect(bystander in d.workers(), f"the other worker {bystander} was replaced too")
        d.echo_ok()
        d.echo_ok(udp=True)
        d.stop(expect_log=[LOG_KILLED, LOG_RESPAWN_DELAY])
    finally:
        d.kill()


# --------------------------------------------------------------------------
# 8-9. Stopping

def check_stopped(d, workers, sig):
    """The master exited 0, STOPPING=1 came from it, no worker is left."""
    left = wait_gone(workers, 2.0)
    kill_leftovers(left)
    expect(not left, f"workers {left} outlived the master")
    d.stop(sig=sig)         # reaps, checks the exit status and the log
    if notify_supported():
        stopping = [pid for pid, line in d.notes if line == "STOPPING=1"]
        expect(stopping, "no STOPPING=1", d.notes)
        expect(stopping[0] == d.pid, f"STOPPING=1 from {stopping[0]}, master {d.pid}")


@test(timeout=60)
def test_sigquit_waits_for_a_half_request_until_shutdown_timeout():
    d = MasterDaemon({"worker_processes": 2, "shutdown_timeout_ms": 3000,
                      "socket_timeout_ms": 10000}).start()
    try:
        workers = d.wait_workers(2)
        sock, rest, frame, challenge = half_request(d.port)
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGQUIT)
        time.sleep(1.5)
        expect(d.alive(), "the master exited while a request was pending")
        try:
            d.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - t0
        result = read_until_eof(sock, 2)
        sock.close()
        diag(f"exited {elapsed:.2f} s after SIGQUIT; the client saw {result}")
        expect(not d.alive(), "the master still runs 10 s after SIGQUIT")
        expect(2.5 <= elapsed <= 8.0, f"exit {elapsed:.2f} s after SIGQUIT, expected about 3 s")
        expect(result.how in ("eof", "reset"), "the pending connection was not closed", result)
        expect(log_lines_matching(d, r"shutdown timeout: closing 1 connections"),
               "no 'shutdown timeout: closing 1 connections' log line")
        expect(not log_lines_matching(d, r"killing them"), "the master had to SIGKILL its workers")
        check_stopped(d, workers, signal.SIGQUIT)
    finally:
        d.kill()


@test(timeout=60)
def test_sigquit_answers_a_request_completed_in_time_then_exits():
    d = MasterDaemon({"worker_processes": 2, "shutdown_timeout_ms": 3000,
                      "socket_timeout_ms": 10000}).start()
    try:
        workers = d.wait_workers(2)
        sock, rest, frame, challenge = half_request(d.port)
        time.sleep(0.3)
        os.kill(d.pid, signal.SIGQUIT)
        time.sleep(1.0)
        expect(d.alive(), "the master exited while a request was pending")
        finish_request(sock, rest, frame, challenge)
        answered = time.monotonic()
        try:
            d.proc.wait(8)
        except subprocess.TimeoutExpired:
            pass
        after = time.monotonic() - answered
        diag(f"exited {after:.2f} s after the answer")
        expect(not d.alive(), "the master still runs 8 s after the last answer")
        expect(after < 1.5, f"exit {after:.2f} s after the last answer, expected at once")
        check_stopped(d, workers, signal.SIGQUIT)
    finally:
        d.kill()


@test(timeout=60)
def test_sigquit_stops_accepting_new_connections():
    """As nginx's master does on SIGQUIT: the listening sockets close at once,
    so that a new client is refused instead of waiting in a backlog that
    nobody accepts from until the daemon exits."""
    d = MasterDaemon({"worker_processes": 2, "shutdown_timeout_ms": 3000,
                      "socket_timeout_ms": 10000}).start()
    late = None
    try:
        workers = d.wait_workers(2)
        held = half_request(d.port)
        time.sleep(0.3)
        os.kill(d.pid, signal.SIGQUIT)
        time.sleep(1.0)
        expect(d.alive(), "the master exited while a request was pending")
        # The request under way first: nothing slow (reading /proc/net/tcp
        # on a busy machine can take seconds) may eat into its
        # shutdown_timeout_ms.
        finish_request(*held)
        holders = {pid: len(master_listeners_of(pid, d.port)) for pid in d.pids()}
        try:
            late = tcp_connect(d.port, timeout=2.0)
        except ConnectionRefusedError:
            late = None
        if late is not None:
            late.sendall(build_request()[0])
            waited = read_until_eof(late, 1.0)
        d.proc.wait(8)
        if late is not None:
            result = read_until_eof(late, 2.0)
            late.close()
            diag(f"a client connecting 1 s after SIGQUIT was accepted by the kernel; after 1 s "
                 f"its request had {waited}; once the daemon exited it got {result}; "
                 f"sockets on the port still open per PID (master {d.pid}): {holders}")
        expect(late is None, "a stopping daemon's port still accepts connections "
               "(its listening sockets stay open during the graceful stop)")
        check_stopped(d, workers, signal.SIGQUIT)
    finally:
        d.kill()


@test(timeout=60)
def test_sigterm_exits_promptly_with_idle_connections():
    d = MasterDaemon({"worker_processes": 2, "shutdown_timeout_ms": 20000,
                      "socket_timeout_ms": 20000}).start()
    socks = []
    try:
        workers = d.wait_workers(2)
        socks = [tcp_connect(d.port) for _ in range(20)]
        socks.append(half_request(d.port)[0])
        time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGTERM)
        try:
            d.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - t0
        diag(f"exited {elapsed:.2f} s after SIGTERM with {len(socks)} connections open")
        expect(not d.alive(), "the master still runs 10 s after SIGTERM")
        expect(elapsed < 3.0, f"exit {elapsed:.2f} s after SIGTERM, expected < 3 s")
        check_stopped(d, workers, signal.SIGTERM)
    finally:
        for s in socks:
            s.close()
        d.kill()


# --------------------------------------------------------------------------
# 10-11. The command line beside a running daemon

@test
def test_config_test_never_binds():
    with MasterDaemon({"worker_processes": 1}) as d:
        proc = raidad("-t", "-c", d.config_path)
        expect(proc.returncode == 0, "raidad -t of the running daemon's own file", describe(proc))
        expect(d.config_path in proc.stdout, "raidad -t does not name the file", describe(proc))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            other = os.path.join(d.dir, "other.conf")
            write_file(other, render_config({"listen": f"127.0.0.1:{held.getsockname()[1]}",
                                             "worker_processes": 2}))
            proc = raidad("-t", "-c", other)
            expect(proc.returncode == 0, "raidad -t of a file whose port is taken", describe(proc))
        bad = os.path.join(d.dir, "bad.conf")
        write_file(bad, f'listen = "127.0.0.1:{d.port}";\nworker_processes = 2;\n'
                        'shutdown_timeout_ms = "soon";\n')
        proc = raidad("-t", "-c", bad)
        expect(proc.returncode == 1, "raidad -t of a bad file: exit 1 expected", describe(proc))
        expect(re.search(re.escape(bad) + r":3: \S", proc.stderr), f"no '{bad}:3: message'",
               describe(proc))
        write_file(bad, f'listen = "127.0.0.1:{d.port}";\nworker_processes = ;\n')
        proc = raidad("-t", "-c", bad)
        expect(proc.returncode == 1, "raidad -t of a syntax error: exit 1 expected", describe(proc))
        expect(re.search(re.escape(bad) + r":2: \S", proc.stderr), f"no '{bad}:2: message'",
               describe(proc))
        d.echo_ok()
        d.echo_ok(udp=True)


def check_signal_stops(action, sig):
    d = MasterDaemon({"worker_processes": 2}).start()
    try:
        if "pid_file" not in d.settings:
            raise Skip("this raidad has no pid_file setting")
        workers = d.wait_workers(2)
        with open(d.pid_file) as f:
            expect(f.read().strip() == str(d.pid), "the pid file does not name the master")
        proc = raidad("-s", action, "-c", d.config_path)
        expect(proc.returncode == 0, f"raidad -s {action}", describe(proc))
        try:
            d.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        expect(not d.alive(), f"the master still runs 10 s after -s {action}")
        expect(not os.path.exists(d.pid_file), "the pid file is left behind")
        check_stopped(d, workers, sig)
        proc = raidad("-s", action, "-c", d.config_path)
        expect(proc.returncode != 0, f"raidad -s {action} without a daemon exited 0", describe(proc))
        expect(d.pid_file in proc.stderr, "the missing pid file is not named", describe(proc))
    finally:
        d.kill()


@test(timeout=60)
def test_signal_quit_through_the_pid_file():
    check_signal_stops("quit", signal.SIGQUIT)


@test(timeout=60)
def test_signal_stop_through_the_pid_file():
    check_signal_stops("stop", signal.SIGTERM)


@test(timeout=60)
def test_signal_reopen_reopens_the_logs():
    d = MasterDaemon({"worker_processes": 2})
    d.rewrite(error_log=d.log_path)
    with d:
        if "pid_file" not in d.settings:
            raise Skip("this raidad has no pid_file setting")
        workers = d.wait_workers(2)
        rotated = d.log_path + ".1"
        os.rename(d.log_path, rotated)
        proc = raidad("-s", "reopen", "-c", d.config_path)
        expect(proc.returncode == 0, "raidad -s reopen", describe(proc))

        def writers_of_new_log():
            """PIDs with a descriptor on the new file (stdout and stderr stay
            on the rotated one: the harness opened them)."""
            out = set()
            for pid in d.pids():
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == d.log_path:
                            out.add(pid)
                    except OSError:
                        pass
            return out
        ok = wait_until(lambda: writers_of_new_log() >= {d.pid, *workers}, 10)
        d.echo_ok()
        with open(rotated, errors="replace") as f:
            old = f.read()
        expect("reopening the log" in old, "no 'reopening the log' in the rotated file")
        bad = [line for line in old.splitlines()
               if SANITIZER_LINE.search(line) or re.match(r"^<[0-3]>", line)]
        expect(not bad, "error lines in the rotated log", bad)
        d._log_checked = 0      # the harness checks the new file from its start
        expect(ok, f"only {sorted(writers_of_new_log())} of master {d.pid} and workers "
               f"{workers} have the new log {d.log_path} open")
        expect(os.path.exists(d.log_path) and log_lines_matching(d, r": 127\.0\.0\.1: echo"),
               "the echo was not logged into the new file")
        d.reload()
        expect(log_lines_matching(d, rf"^<\d>.* {d.pid}: reloading"),
               "the master does not write into the new log")


def process_uid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


@test(timeout=60)
def test_unprivileged_workers_keep_logging_after_reopen():
    """Workers that dropped to `user` cannot open a root-owned log again:
    the master reopens it and hands them the descriptor."""
    import pwd
    if os.geteuid() != 0:
        raise Skip("needs root to start workers as another user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no user 'nobody' here")
    d = MasterDaemon({"worker_processes": 2, "user": "nobody"})
    d.rewrite(error_log=d.log_path)
    with d:
        workers = d.wait_workers(2)
        uids = {pid: process_uid(pid) for pid in workers}
        expect(all(u == nobody.pw_uid for u in uids.values()),
               f"workers do not run as nobody: {uids}")
        os.rename(d.log_path, d.log_path + ".1")
        proc = raidad("-s", "reopen", "-c", d.config_path)
        expect(proc.returncode == 0, "raidad -s reopen", describe(proc))
        d._log_checked = 0      # the harness checks the new file from its start

        def holding_new_log(pid):
            return any(os.readlink(f"/proc/{pid}/fd/{fd}") == d.log_path
                       for fd in os.listdir(f"/proc/{pid}/fd"))
        held = wait_until(lambda: all(holding_new_log(pid) for pid in workers), 10)
        expect(held, f"not every worker of {workers} writes into the reopened file")
        d.echo_ok()
        expect(wait_until(lambda: log_lines_matching(d, r": 127\.0\.0\.1: echo"), 5),
               "the echo was not logged into the reopened file")
        expect(os.stat(d.log_path).st_uid == 0, "the reopened log is not root's")


@test(timeout=60)
def test_watchdog_is_fed_only_while_every_worker_answers():
    """WATCHDOG_USEC set: WATCHDOG=1 arrives from the master; a worker that
    stops answering heartbeats (SIGSTOP) stops the feeding, and it resumes
    once the worker answers again."""
    need_notify()
    d = MasterDaemon({"worker_processes": 2}, expect_log=[r"missed its heartbeat"])
    os.environ["WATCHDOG_USEC"] = "600000"      # heartbeats every 200 ms
    try:
        with d:
            os.environ.pop("WATCHDOG_USEC")
            check_watchdog(d)
    finally:
        os.environ.pop("WATCHDOG_USEC", None)


def check_watchdog(d):
    workers = d.wait_workers(2)

    def feeds(since):
        with d._notify_cond:
            return [pid for pid, line in d.notes[since:] if line == "WATCHDOG=1"]
    since = d.mark()
    time.sleep(1.5)
    fed = feeds(since)
    expect(len(fed) >= 3 and set(fed) == {d.pid},
           f"expected WATCHDOG=1 from master {d.pid} every 200 ms, got {fed}")
    os.kill(workers[0], signal.SIGSTOP)       # a worker this test's master started
    try:
        time.sleep(0.7)                       # the heartbeat in flight may still count
        since = d.mark()
        time.sleep(1.5)
        starved = feeds(since)
    finally:
        os.kill(workers[0], signal.SIGCONT)
    expect(not starved, f"the watchdog was fed while a worker was stopped: {starved}")
    since = d.mark()
    time.sleep(1.5)
    expect(len(feeds(since)) >= 2, "the watchdog was not fed again once the worker answered")


@test(timeout=60)
def test_workers_share_the_tcp_load():
    """EPOLLEXCLUSIVE wakes one worker per connection: under concurrent load
    both workers serve. The spread is printed (it is a measurement, and
    depends on the scheduler); both must have served some."""
    d = MasterDaemon({"worker_processes": 2}, log_level="debug")
    with d:
        workers = d.wait_workers(2)

        def client():
            for _ in range(150):
                d.echo_ok()
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        served = {pid: 0 for pid in workers}
        for line in log_lines_matching(d, r": 127\.0\.0\.1: echo$"):
            m = re.search(r"\] (\d+): ", line)
            if m and int(m.group(1)) in served:
                served[int(m.group(1))] += 1
        total = sum(served.values())
        diag("TCP requests per worker: " + ", ".join(
            f"{pid}: {n} ({100 * n / max(total, 1):.0f}%)" for pid, n in served.items()))
        expect(total == 8 * 150, f"{total} requests logged, expected {8 * 150}")
        expect(all(n > 0 for n in served.values()), f"a worker served nothing: {served}")


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def echo6(port, udp=False):
    """One echo to [::1]:PORT; the parsed answer, checked."""
    frame, challenge = build_request()
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET6, kind) as s:
        s.settimeout(5)
        s.connect(("::1", port))
        s.sendall(frame)
        data = s.recv(4096) if udp else read_until_eof(s).data
    why = check_echo_answer("eof", data, frame, challenge)
    expect(why is None, f"echo over {'UDP' if udp else 'TCP'} to [::1]:{port}: {why}", data)


@test(timeout=60)
def test_ipv4_and_ipv6_listen_addresses():
    """Several listen entries, IPv4 and IPv6, TCP and UDP on each."""
    if not ipv6_loopback():
        raise Skip("no IPv6 loopback here")
    d = MasterDaemon({"worker_processes": 2}, log_level="debug")
    six = free_port()
    d.rewrite(listen=(f"127.0.0.1:{d.port}", f"[::1]:{six}"))
    with d:
        d.echo_ok()
        d.echo_ok(udp=True)
        echo6(six)
        echo6(six, udp=True)
        expect(wait_until(lambda: log_lines_matching(d, r": ::1: echo$"), 5),
               "the IPv6 client's address is not in the log")


# --------------------------------------------------------------------------
# 12. Workers die with the master

@test(expect_log=[LOG_MASTER_GONE], timeout=60)
def test_workers_die_with_the_master():
    d = MasterDaemon({"worker_processes": 2}).start()
    workers = []
    try:
        workers = d.wait_workers(2)
        idle = tcp_connect(d.port)
        os.kill(d.pid, signal.SIGKILL)      # only here: the master this script started
        d.proc.wait(5)
        t0 = time.monotonic()
        left = wait_gone(workers, 2.0)
        elapsed = time.monotonic() - t0
        idle.close()
        diag(f"workers {workers} gone {elapsed:.2f} s after the master's SIGKILL"
             if not left else f"workers still running 2 s after the master's death: {left}")
        expect(not left, f"workers {left} outlived the master by 2 s")
        gone = log_lines_matching(d, r"master is gone|worker stopping")
        expect(gone, "no 'master is gone' or 'stopping' line from the workers")
        expect({int(LOG_LINE.match(line).group(4)) for line in gone} >= set(workers),
               "not every worker logged its stop", gone)
        d.kill()
        d.check_log([LOG_MASTER_GONE])
    finally:
        kill_leftovers(workers)
        d.kill()


# --------------------------------------------------------------------------
# 13. Stats shared by all workers

def stats_requests(port):
    r = raida_cli("-k", ADMIN_KEY, "127.0.0.1", port, "stats")
    expect(r.returncode == 0 and r.status() == 250, "stats failed", r)
    value = r.fields.get("requests", "")
    expect(value.isdigit(), "no 'requests: N' line", r)
    return int(value)


@test(timeout=90)
def test_stats_are_totals_over_all_workers_and_survive_a_reload():
    with MasterDaemon({"worker_processes": 2, "admin_key": ADMIN_KEY}) as d:
        workers = d.wait_workers(2)
        n = 200
        requests = [d.request(echo=i) for i in range(n)]
        for burst in range(0, n, 50):   # concurrent, so that both workers serve
            chunk = requests[burst:burst + 50]
            results = many_tcp_exchanges(d.port, [f for f, _ in chunk], time.monotonic() + 30)
            bad = [check_echo_answer(h, data, f, c) for (h, data), (f, c) in zip(results, chunk)]
            expect(not any(bad), "echo failed", [b for b in bad if b][:5])
        for _ in range(20):
            d.echo_ok(udp=True)
        before = stats_requests(d.port)
        expect(before >= n + 20, f"stats count {before} requests, {n + 20} were served by "
               f"{len(workers)} workers")
        d.reload()
        d.wait_workers(2, exclude=workers)
        after = stats_requests(d.port)
        diag(f"requests: {before} before the reload, {after} after")
        expect(after >= before, f"stats went from {before} to {after} across the reload")
        d.echo_ok()
        expect(stats_requests(d.port) > after, "the new workers do not count")


if __name__ == "__main__":
    run()
