#!/usr/bin/env python3
"""raidad's reloads (SIGHUP and raidad -s reload): under continuous TCP and
UDP load no request is lost, old workers finish what they hold,
max_old_generations, the verdict a refused reload reports, listen addresses
added and removed, statistics that survive a reload.

Only 127.0.0.1 (and ::1); only the PIDs this script started (the master)
and the master's children are signalled. Everything is bounded in time and
count. Prints TAP."""

import os
import re
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    Skip, check_echo_answer, diag, expect, free_port, many_tcp_exchanges, process_gone,
    raida_cli, read_until_eof, render_config, run, test, wait_until,
)
from mastertest import (  # noqa: E402
    ADMIN_KEY, LOG_RELOAD_REFUSED, LOG_BIND_IN_USE, MasterDaemon, write_file, need_notify,
    wait_gone, raidad, describe, echo, tcp_refused, udp_unanswered, fd_socket_inodes,
    master_listeners, half_request, finish_request, log_lines_matching, Load, socket_inodes,
)

# tests/shim_io.c: its worker_start switch stops the worker of slot 1 in its
# start (worker_cpu_affinity = "auto" pins it to CPU 1).
SHIM = os.environ.get("RAIDAD_SHIM") or os.path.join(os.getcwd(), "tests", "libshim_io.so")
LOG_EXIT_1 = r"worker \d+ exited with status 1"
LOG_STUCK_KILLED = r"worker \d+ of an abandoned reload did not stop: killing it"


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




# ---------------------------------------------------------------- abandoned reloads

class StuckStart:
    """A daemon whose next workers of slot 1 stop in their start while the switch is on."""

    def __init__(self):
        if not os.path.exists(SHIM):
            raise Skip(f"no fault-injection library at {SHIM} (make check builds it)")
        if (os.cpu_count() or 1) < 2:
            raise Skip("worker_start needs a second CPU to pin slot 1 to")
        self.dir = tempfile.mkdtemp(prefix="raidad-shim-")
        os.chmod(self.dir, 0o777)               # the workers write their marker there

    def path(self, name):
        return os.path.join(self.dir, name)

    def on(self, name="worker_start"):
        write_file(self.path(name), "")

    def off(self, name="worker_start"):
        if os.path.exists(self.path(name)):
            os.unlink(self.path(name))

    def stuck_pid(self, timeout=10.0):
        marker = self.path("worker_start.waiting")
        expect(wait_until(lambda: os.path.exists(marker) and open(marker).read().strip(),
                          timeout), "no worker of slot 1 reached its start")
        return int(open(marker).read())


def held_connections(pid, port):
    """Connections to 127.0.0.1:PORT that PID has accepted."""
    established = socket_inodes("tcp", port, listening_only=False) - socket_inodes("tcp", port)
    return established & fd_socket_inodes(pid)


def wait_serving(d, pid, timeout=30.0):
    """Until the master's status record (src/rd_status.c: next to the pid file, rewritten
    every second) says that PID serves: ready, whether its first heartbeat came or not."""
    path = re.sub(r"\.pid$", "", d.pid_file) + ".status"

    def serving():
        try:
            with open(path) as f:
                return re.search(rf"^worker {pid} \d+ (serving|silent) ", f.read(), re.M)
        except OSError:
            return None
    expect(wait_until(serving, timeout), f"worker {pid} did not serve within {timeout} s")


def pinned_to_cpu0(pids):
    """The workers of slot 0 among PIDS (worker_cpu_affinity pins slot N to CPU N)."""
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                if re.search(r"^Cpus_allowed_list:\s+0$", f.read(), re.M):
                    found.append(pid)
        except OSError:
            pass
    return found


def hold_on(d, pid, old, at_least, limit=200):
    """Half requests from CPU 0 until PID, the new worker of slot 0, holds AT_LEAST of them:
    with worker_cpu_affinity a connection goes to the sockets of the CPU it comes from
    (src/rd_reuseport.c), which slot 0's old and new workers both accept on. The old one (of
    OLD) is stopped meanwhile, or it takes them all on a busy machine."""
    held = []
    cpus = os.sched_getaffinity(0)
    stopped = pinned_to_cpu0(old)
    os.sched_setaffinity(0, {0})
    for p in stopped:
        os.kill(p, signal.SIGSTOP)
    try:
        while len(held) < limit:
            # In bursts: one connection at a time, the old worker, idle, takes each.
            held += [half_request(d.port, d.raida_id) for _ in range(10)]
            time.sleep(0.2)
            if len(held_connections(pid, d.port)) >= at_least:
                return held
    finally:
        for p in stopped:
            os.kill(p, signal.SIGCONT)
        os.sched_setaffinity(0, cpus)
    taken = {p: len(held_connections(p, d.port)) for p in d.workers()}
    expect(False, f"the new worker {pid} took none of {limit} connections: {taken}")


ABANDONED_LOG = [LOG_RELOAD_REFUSED, LOG_EXIT_1, LOG_STUCK_KILLED]


@test(expect_log=ABANDONED_LOG, timeout=120)
def test_an_abandoned_reload_loses_no_request():
    """A reload abandoned when some of its workers already serve: one new worker serves while
    the other is stuck in its start. When the stuck one exits, or the reload times out, or
    SIGQUIT comes, the serving new worker drains what it holds like an old one, and every
    request held anywhere is answered; one stuck in its start is killed; READY=1 goes before
    STOPPING=1."""
    need_notify()
    shim = StuckStart()
    # The shim's own calls are outside the workers' system call filter.
    # Requests held across the reload's 10 s timeout: not cut short before.
    d = MasterDaemon({"worker_processes": 2, "worker_cpu_affinity": "auto",
                      "worker_seccomp": False, "socket_timeout_ms": 60000})
    d.wrapper = ["env", f"LD_PRELOAD={SHIM}", f"RD_SHIM_DIR={shim.dir}"]
    d.start()
    try:
        for how in ("the stuck worker exits", "the reload times out", "SIGQUIT"):
            old = set(d.workers())
            shim.off("worker_start.waiting")    # a killed worker leaves its marker
            shim.on()
            since = d.mark()
            os.kill(d.pid, signal.SIGHUP)
            expect(d.wait_note("RELOADING=1", since, 10) is not None, "no RELOADING=1")
            stuck = shim.stuck_pid()
            fresh = wait_until(lambda: set(d.workers()) - old - {stuck}, 10)
            expect(fresh, f"{how}: the new worker of slot 0 did not start")
            (serving,) = fresh
            wait_serving(d, serving)
            held = hold_on(d, serving, old, 2)
            mark = d.mark()
            if how == "the stuck worker exits":
                shim.on("worker_start.exit")
                shim.off()
            elif how == "SIGQUIT":
                os.kill(d.pid, signal.SIGQUIT)
            # The reload is abandoned (READY=1 says so), and only then are the requests sent
            # whole: the new worker that took them must still answer.
            expect(d.wait_note("READY=1", mark, 20) is not None, f"{how}: no READY=1")
            for sock, rest, frame, challenge in held:
                finish_request(sock, rest, frame, challenge, timeout=20.0)
            expect(wait_until(lambda: process_gone(stuck), 15),
                   f"{how}: the worker stuck in its start is still there")
            diag(f"{how}: {len(held)} requests held, all answered; the stuck worker gone")
            notes = [line for _, line in d.notes[since:]]
            if how != "SIGQUIT":
                expect("READY=1" in notes, f"{how}: no READY=1 ended the reload", notes)
                d.echo_ok()
                shim.off("worker_start.exit")
                shim.off()
            else:
                expect("STOPPING=1" in notes and "READY=1" in notes
                       and notes.index("READY=1") < notes.index("STOPPING=1"),
                       "READY=1 did not come before STOPPING=1", notes)
        expect(wait_until(lambda: process_gone(d.pid), 20), "the master did not stop on SIGQUIT")
    finally:
        shim.off()
        d.stop(expect_log=ABANDONED_LOG)


if __name__ == "__main__":
    run()
