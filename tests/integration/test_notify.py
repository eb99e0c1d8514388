#!/usr/bin/env python3
"""What raidad's master tells systemd (sd_notify): READY=1, MAINPID and STATUS
from the master alone, with the process titles; WATCHDOG=1 fed only while
every worker answers its heartbeat.

Only 127.0.0.1 (and ::1); only the PIDs this script started (the master)
and the master's children are signalled. Everything is bounded in time and
count. Prints TAP."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    diag, expect, run, test, wait_until,
)
from mastertest import (  # noqa: E402
    MasterDaemon, need_notify, cmdline,
)


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
        # The kernel's name stays the program's, for pidof, pgrep -x, killall.
        program = os.path.basename(os.path.realpath(f"/proc/{d.pid}/exe"))[:15]
        for pid in [d.pid] + workers:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            expect(comm == program, f"process {pid} is named {comm!r}, not {program!r}")
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
def test_a_refused_reloads_reason_stays_one_status_field():
    """The reason of a refused reload quotes the configuration file, and
    goes into STATUS=: a line break in the quoted value must not start a
    field of its own (WATCHDOG=trigger would have systemd restart the
    service; found by review)."""
    need_notify()
    with MasterDaemon({"worker_processes": 1}, expect_log=[r"reload refused"]) as d:
        d.wait_workers(1)
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(re.sub(r"(?m)^log_level = .*$",
                           r'log_level = "x\\nWATCHDOG=trigger\\nREADY=1";', text))
        mark = len(d.notifications)
        d.proc.send_signal(signal.SIGHUP)
        expect(wait_until(lambda: any("last reload refused" in n
                                      for n in d.notifications[mark:]), 10.0),
               "no STATUS= for the refused reload", d.notifications[mark:])
        seen = d.notifications[mark:]
        expect("WATCHDOG=trigger" not in seen and "READY=1" not in seen,
               "the quoted value became fields of the notification", seen)


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


if __name__ == "__main__":
    run()
