#!/usr/bin/env python3
"""raidad's workers replaced: a killed worker under load, a worker that keeps
crashing (respawned with a growing delay), and workers that die with their
master.

Only 127.0.0.1 (and ::1); only the PIDs this script started (the master)
and the master's children are signalled. Everything is bounded in time and
count. Prints TAP."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    LOG_LINE, diag, expect, run, tcp_connect, test, wait_until,
)
from mastertest import (  # noqa: E402
    LOG_KILLED, LOG_RESPAWN_DELAY, LOG_MASTER_GONE, RESPAWN_RE, MasterDaemon, cmdline, wait_gone,
    kill_leftovers, log_lines_matching, Load,
)


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


if __name__ == "__main__":
    run()
