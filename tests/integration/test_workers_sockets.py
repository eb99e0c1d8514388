#!/usr/bin/env python3
"""Per-worker listening sockets (src/rd_reuseport.c): for each address and
protocol a group of SO_REUSEPORT sockets, one per CPU, held by the master,
each served by one worker (its epoll holds only its own).

Under continuous TCP and UDP load, every answer checked (status 250, echo
bytes, challenge hash, RAIDA id): 20 reloads lose nothing; worker_processes
changed 2 -> 1 -> 2 by reload loses nothing; a worker killed with SIGKILL
loses at most the requests it held (each client thread has one request in
flight, so at most one per thread, and only requests sent before the
kill); a worker stopped with SIGSTOP for 3 s loses nothing, the requests
it held are answered once it continues (about 3 s late, at most one per
client thread) and those queued on its sockets are served by another worker
once the master sees it miss a heartbeat (1-2 s). A second raidad on the
same port is refused. The spread across workers is printed.

Only 127.0.0.1; only the PIDs this script started (the master) and the
master's children are signalled. Every load is bounded in time. Prints TAP."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    RAIDAD, Daemon, ProtocolError, build_request, child_pids, diag, expect, parse_response,
    read_until_eof, render_config, run, test, wait_until,
)

GROUP = min(os.sysconf("SC_NPROCESSORS_CONF"), 64)   # sockets per address and protocol
LOG_KILLED = r"worker \d+ exited on signal 9 \(Killed\)"


# --------------------------------------------------------------------------
# Load: every request timed and checked

class Load:
    """TCP threads (a new connection per request) and UDP threads (one
    datagram, never retried). Each thread has one request in flight at a
    time. Records every request: (start, latency, proto) when answered
    right, (start, end, proto, kind, detail) when not."""

    def __init__(self, port, raida_id=0, tcp_threads=2, udp_threads=2, tcp_timeout=10.0,
                 udp_timeout=5.0, pause=0.001):
        self.port, self.raida_id = port, raida_id
        self.tcp_timeout, self.udp_timeout, self.pause = tcp_timeout, udp_timeout, pause
        self.threads = tcp_threads + udp_threads
        self.answered = []
        self.failures = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = ([threading.Thread(target=self._tcp_loop, daemon=True)
                          for _ in range(tcp_threads)] +
                         [threading.Thread(target=self._udp_loop, daemon=True)
                          for _ in range(udp_threads)])
        self.started = self.stopped = None

    def _record(self, proto, start, why):
        end = time.monotonic()
        with self._lock:
            if why is None:
                self.answered.append((start, end - start, proto))
            else:
                self.failures.append((start, end, proto, why[0], why[1]))

    def _check(self, data, frame, challenge):
        try:
            r = parse_response(data)
        except ProtocolError as e:
            return ("bad", str(e))
        if r.status != 250:
            return ("bad", f"status {r.status}")
        if r.echo != frame[30:32] or r.challenge_hash != challenge:
            return ("bad", "echo bytes or challenge differ")
        if r.raida_id != self.raida_id:
            return ("bad", f"RAIDA id {r.raida_id}")
        return None

    def _tcp_once(self):
        frame, challenge = build_request(raida_id=self.raida_id)
        start = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=self.tcp_timeout)
        except OSError as e:
            return self._record("tcp", start, ("connect", str(e)))
        with s:
            try:
                s.sendall(frame)
            except OSError as e:
                return self._record("tcp", start, ("send", str(e)))
            result = read_until_eof(s, self.tcp_timeout)
        if result.how != "eof":
            return self._record("tcp", start, (result.how, repr(result)))
        self._record("tcp", start, self._check(result.data, frame, challenge))

    def _udp_once(self):
        frame, challenge = build_request(raida_id=self.raida_id)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(self.udp_timeout)
            s.connect(("127.0.0.1", self.port))
            start = time.monotonic()
            try:
                s.send(frame)
                data = s.recv(65536)
            except socket.timeout:
                return self._record("udp", start, ("timeout", f"no answer in {self.udp_timeout} s"))
            except OSError as e:
                return self._record("udp", start, ("error", str(e)))
        self._record("udp", start, self._check(data, frame, challenge))

    def _tcp_loop(self):
        while not self._stop.is_set():
            self._tcp_once()
            time.sleep(self.pause)

    def _udp_loop(self):
        while not self._stop.is_set():
            self._udp_once()
            time.sleep(self.pause)

    def start(self):
        self.started = time.monotonic()
        for t in self._workers:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._workers:
            t.join(max(self.tcp_timeout, self.udp_timeout) + 5)
        self.stopped = time.monotonic()
        return self

    def count(self, proto):
        with self._lock:
            return sum(1 for a in self.answered if a[2] == proto)

    def summary(self):
        secs = (self.stopped or time.monotonic()) - self.started
        worst = max((a[1] for a in self.answered), default=0.0)
        return (f"{self.count('tcp')} TCP and {self.count('udp')} UDP requests answered in "
                f"{secs:.1f} s (slowest {worst:.3f} s); {len(self.failures)} failed")

    def failure_text(self, limit=8):
        return "; ".join(f"+{s - self.started:.3f}s..+{e - self.started:.3f}s {p} {k}: {d}"
                         for s, e, p, k, d in self.failures[:limit])


# --------------------------------------------------------------------------
# Helpers

class Workers(Daemon):
    """Daemon with two workers by default."""

    def __init__(self, overrides=None, **kw):
        settings = {"worker_processes": 2}
        settings.update(overrides or {})
        super().__init__(settings, **kw)

    def rewrite(self, **changes):
        self.settings.update(changes)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(render_config(self.settings))
        os.replace(tmp, self.config_path)

    def workers(self):
        return child_pids(self.pid)

    def wait_workers(self, n, timeout=15.0, exclude=()):
        exclude = set(exclude)
        ok = wait_until(lambda: (lambda w: len(w) == n and not exclude & set(w))(self.workers()),
                        timeout)
        expect(ok, f"expected {n} workers (not {sorted(exclude)}), have {self.workers()}")
        return self.workers()

    def reload(self):
        """raidad -s reload: returns once the new workers serve and no old one accepts."""
        proc = subprocess.run([RAIDAD, "-s", "reload", "-c", self.config_path],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        expect(proc.returncode == 0, "raidad -s reload failed", proc.stderr)


def served_by(d, since=0):
    """Requests per worker PID and protocol, from the debug log lines."""
    counts = {}
    for line in d.log_lines()[since:]:
        m = re.search(r"\] (\d+): 127\.0\.0\.1: (udp )?echo$", line)
        if m:
            key = (int(m.group(1)), "udp" if m.group(2) else "tcp")
            counts[key] = counts.get(key, 0) + 1
    return counts


def spread_text(counts):
    pids = sorted({pid for pid, _ in counts})
    parts = []
    for proto in ("tcp", "udp"):
        total = sum(n for (p, pr), n in counts.items() if pr == proto) or 1
        parts.append(f"{proto.upper()}: " + ", ".join(
            f"{pid} {counts.get((pid, proto), 0)} ({100 * counts.get((pid, proto), 0) / total:.0f}%)"
            for pid in pids))
    return "; ".join(parts)


def socket_inode(pid, fd):
    try:
        m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
    except OSError:
        return None
    return int(m.group(1)) if m else None


def port_inodes(port):
    """(TCP listening, UDP) socket inodes bound to 127.0.0.1:PORT."""
    want = "0100007F:%04X" % port
    found = {}
    for proto in ("tcp", "udp"):
        found[proto] = set()
        with open(f"/proc/net/{proto}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] == want and (proto == "udp" or fields[3] == "0A"):
                    found[proto].add(int(fields[9]))
    return found["tcp"], found["udp"]


def epoll_watched(pid):
    """Socket inodes in PID's epoll sets (/proc/PID/fdinfo: one tfd line per item)."""
    watched = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for m in re.finditer(r"^tfd:\s+(\d+)", f.read(), re.M):
                    inode = socket_inode(pid, int(m.group(1)))
                    if inode is not None:
                        watched.add(inode)
        except OSError:
            continue
    return watched


def listeners_watched(d):
    """{worker PID: listening socket inodes of d's port in its epoll}."""
    tcp, udp = port_inodes(d.port)
    return {pid: epoll_watched(pid) & (tcp | udp) for pid in d.workers()}


# --------------------------------------------------------------------------
# Tests

@test(timeout=60)
def test_one_socket_per_cpu_each_served_by_one_worker():
    with Workers({"worker_processes": 2}) as d:
        workers = d.wait_workers(2)
        d.echo_ok()
        d.echo_ok(udp=True)
        tcp, udp = port_inodes(d.port)
        held = {socket_inode(d.pid, int(fd)) for fd in os.listdir(f"/proc/{d.pid}/fd")}
        diag(f"{GROUP} CPUs: TCP sockets {sorted(tcp)}, UDP sockets {sorted(udp)}")
        expect(len(tcp) == GROUP and len(udp) == GROUP,
               f"expected {GROUP} TCP and {GROUP} UDP sockets on the port", tcp, udp)
        expect((tcp | udp) <= held, "the master does not hold every socket of the groups")
        watched = wait_until(lambda: (lambda w: sum(len(v) for v in w.values()) >= len(tcp | udp)
                                      and w)(listeners_watched(d)), 5)
        expect(watched, "the workers do not watch every socket", listeners_watched(d))
        diag("sockets in each worker's epoll: " + "; ".join(
            f"{pid}: {sorted(v)}" for pid, v in watched.items()))
        for sock in tcp | udp:
            owners = [pid for pid, v in watched.items() if sock in v]
            want = 1 if GROUP >= 2 else 2
            expect(len(owners) == want, f"socket {sock} is watched by {owners}, expected {want} "
                   f"worker(s) of {workers}")


def thread_policies(pid, commit=False):
    """The scheduling policies of PID's threads: the commit threads
    (src/rd_commit.c, named "commit") with COMMIT, the others without."""
    policies = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if (f.read().strip() == "commit") != commit:
                    continue
            policies.add(os.sched_getscheduler(int(tid)))
        except OSError:
            pass
    return policies


@test(timeout=60)
def test_worker_sched_batch_and_cpu_affinity():
    cpus = sorted(os.sched_getaffinity(0))
    with Workers({"worker_processes": 2, "worker_cpu_affinity": "auto"}) as d:
        workers = d.wait_workers(2)
        d.echo_ok()
        pinned = {pid: sorted(os.sched_getaffinity(pid)) for pid in workers}
        diag(f"worker_sched_batch default, worker_cpu_affinity auto: {pinned}; policies "
             f"{ {pid: thread_policies(pid) for pid in workers} }")
        for pid in workers:
            expect(thread_policies(pid) == {os.SCHED_BATCH},
                   f"worker {pid}: thread policies {thread_policies(pid)}, expected SCHED_BATCH")
            # They sleep on the disk, and must run as soon as a sync ends.
            expect(thread_policies(pid, commit=True) == {os.SCHED_OTHER},
                   f"worker {pid}: commit threads {thread_policies(pid, commit=True)}, "
                   "expected SCHED_OTHER")
            expect(len(pinned[pid]) == 1, f"worker {pid} is not pinned to one CPU", pinned)
        expect(os.sched_getscheduler(d.pid) == os.SCHED_OTHER, "the master is not SCHED_OTHER")
        if len(cpus) >= 2:
            expect(len({tuple(c) for c in pinned.values()}) == 2, "both workers on one CPU", pinned)
    with Workers({"worker_processes": 2, "worker_sched_batch": False}) as d:
        workers = d.wait_workers(2)
        for pid in workers:
            expect(thread_policies(pid) | thread_policies(pid, commit=True) == {os.SCHED_OTHER},
                   f"worker {pid}: thread policies {thread_policies(pid)} with worker_sched_batch false")
            expect(sorted(os.sched_getaffinity(pid)) == cpus, f"worker {pid} pinned by default")


@test(timeout=60)
def test_a_second_daemon_cannot_share_the_port():
    """SO_REUSEPORT would let a second raidad of the same user join the
    groups: it must be refused, as a plain bind would be."""
    with Workers({"worker_processes": 2}) as d:
        conf = os.path.join(d.dir, "second.conf")
        with open(conf, "w") as f:
            f.write(render_config({"listen": f"127.0.0.1:{d.port}", "worker_processes": 1,
                                   "pid_file": os.path.join(d.dir, "second.pid")}))
        proc = subprocess.Popen([RAIDAD, "-c", conf], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()            # the second daemon this test started
            out, _ = proc.communicate()
        diag(f"the second daemon: exit {proc.returncode}: {out.strip().splitlines()[-2:]}")
        expect(proc.returncode not in (0, None, -signal.SIGKILL),
               "a second raidad started on the same port", out)
        expect(re.search(rf"bind\(tcp 127\.0\.0\.1:{d.port}\): Address already in use", out),
               "no bind error naming the port", out)
        d.echo_ok()
        d.echo_ok(udp=True)


@test(timeout=180)
def test_twenty_reloads_under_load_lose_nothing():
    with Workers({"worker_processes": 2}, log_level="debug") as d:
        d.wait_workers(2)
        load = Load(d.port).start()
        seen = set()
        try:
            time.sleep(0.3)
            for _ in range(20):
                d.reload()
                seen |= set(d.workers())
                time.sleep(0.1)
            time.sleep(0.3)
        finally:
            load.stop()
        diag(f"20 reloads: {load.summary()}; {len(seen)} worker PIDs seen")
        counts = served_by(d)
        per_worker = sorted(sum(n for (p, _), n in counts.items() if p == pid)
                            for pid in {p for p, _ in counts})
        diag(f"requests per worker over the reloads: {per_worker}")
        expect(not load.failures, f"requests failed during the reloads: {load.failure_text()}")
        expect(load.count("tcp") > 0 and load.count("udp") > 0, "the load did not run")


@test(timeout=180)
def test_worker_processes_2_1_2_by_reload_under_load():
    with Workers({"worker_processes": 2}, log_level="debug") as d:
        d.wait_workers(2)
        load = Load(d.port).start()
        spreads = []
        try:
            for n in (1, 2, 1, 2):
                before = d.workers()
                mark = len(d.log_lines())
                d.rewrite(worker_processes=n)
                d.reload()
                now = d.wait_workers(n, exclude=before)
                time.sleep(1.0)
                spreads.append(f"{n} worker(s) {now}: {spread_text(served_by(d, mark))}")
        finally:
            load.stop()
        for line in spreads:
            diag(line)
        diag(load.summary())
        expect(not load.failures, f"requests failed: {load.failure_text()}")


@test(expect_log=[LOG_KILLED], timeout=90)
def test_killed_worker_loses_only_what_it_held():
    with Workers({"worker_processes": 2}, log_level="debug", expect_log=[LOG_KILLED]) as d:
        workers = d.wait_workers(2)
        load = Load(d.port).start()
        try:
            time.sleep(1.0)
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)      # a worker of the master this test started
            killed = time.monotonic()
            new = d.wait_workers(2, exclude=[victim])
            respawn = time.monotonic() - killed
            time.sleep(2.0)
        finally:
            load.stop()
        diag(f"killed {victim}; workers {new} {respawn:.3f} s later; {load.summary()}")
        diag("spread: " + spread_text(served_by(d)))
        if load.failures:
            diag(f"lost: {load.failure_text()}")
        expect(len(load.failures) <= load.threads,
               f"{len(load.failures)} requests lost, more than the {load.threads} in flight")
        after = [f for f in load.failures if f[0] >= killed]
        expect(not after, f"requests sent after the kill failed: {after}")
        expect(load.count("tcp") > 0 and load.count("udp") > 0, "the load did not run")


@test(timeout=90)
def test_stopped_worker_delays_but_loses_nothing():
    """SIGSTOP for 3 s: the requests the stopped worker already took wait
    until SIGCONT (at most one per client thread); what queues on its
    sockets is served by the other worker once the master sees the missed
    heartbeat (1-2 s after the stop). Every bound counts from the moments
    the signals were sent: on a busy machine this script's own threads may
    send SIGCONT late."""
    stop_for = 3.0
    with Workers({"worker_processes": 2}, log_level="debug") as d:
        workers = d.wait_workers(2)
        load = Load(d.port, tcp_timeout=15.0, udp_timeout=10.0).start()
        covered = released = continued = None
        try:
            time.sleep(1.0)
            victim, other = workers
            tcp, udp = port_inodes(d.port)
            os.kill(victim, signal.SIGSTOP)      # a worker of the master this test started
            stopped = time.monotonic()
            try:
                covered = wait_until(lambda: any("is not serving" in line for line in d.log_lines()),
                                     stop_for - 0.2, 0.02) and time.monotonic() - stopped
                mark = len(d.log_lines())
                watched = epoll_watched(other) & (tcp | udp)
                time.sleep(max(0.0, stop_for - (time.monotonic() - stopped)))
            finally:
                os.kill(victim, signal.SIGCONT)
                continued = time.monotonic()
            released = wait_until(lambda: any("no longer serves" in line
                                              for line in d.log_lines()[mark:]), 5)
            time.sleep(1.0)
        finally:
            load.stop()
        slow = sorted((a for a in load.answered if a[1] > 0.5), key=lambda a: a[1])
        diag(f"stopped {victim} for {continued - stopped:.2f} s; the master handed its sockets "
             f"to {other} {covered} s after the stop; {load.summary()}")
        diag(f"answers that took > 0.5 s: {len(slow)}: " + ", ".join(
            f"{p} sent at {s - stopped:+.2f} s took {t:.2f} s" for s, t, p in slow[-12:]))
        diag("spread: " + spread_text(served_by(d)))
        expect(not load.failures, f"requests failed: {load.failure_text()}")
        expect(covered, f"no other worker took over the stopped worker's sockets in {stop_for} s")
        # Sent once the other worker had the sockets, while the stopped one
        # still slept (at least 0.5 s before SIGCONT): answered at once,
        # whichever socket the kernel chose; left to the stopped worker they
        # would have waited 0.5 s or more.
        window = [a for a in load.answered
                  if stopped + covered + 0.1 <= a[0] <= continued - 0.5]
        late = [round(a[1], 3) for a in window if a[1] >= 0.4]
        diag(f"{len(window)} requests sent between the hand-over and 0.5 s before SIGCONT; "
             f"{len(late)} took 0.4 s or more")
        # The hand-over comes 1-2 s after the stop (a busy machine may add a
        # little): with less than 0.2 s left before SIGCONT - 0.5 s, there
        # is nothing to judge.
        if covered <= continued - stopped - 0.8:
            expect(window, "no request was sent between the hand-over and SIGCONT")
        expect(not late, f"requests sent after the hand-over waited for the stopped worker: {late}")
        expect(watched == tcp | udp, f"{other} did not watch every socket while {victim} was stopped",
               watched, tcp | udp)
        expect(released, "the stand-in did not let go once the stopped worker answered again")
        # Sent before the hand-over and answered only after SIGCONT: what
        # the stopped worker held.
        held = [a for a in load.answered if a[0] < stopped + covered and a[0] + a[1] >= continued]
        expect(len(held) <= load.threads,
               f"{len(held)} requests waited for the stopped worker, more than the {load.threads} "
               "client threads could have had in its hands")
        overdue = [round(a[1], 2) for a in load.answered
                   if a[0] < continued and a[0] + a[1] > continued + 2.0]
        expect(not overdue, f"requests sent before SIGCONT were answered more than 2 s after "
               f"it: they took {overdue} s")

if __name__ == "__main__":
    run()
