#!/usr/bin/env python3
"""Stopping raidad and the command line beside a running daemon: graceful
(SIGQUIT) and fast (SIGTERM) stops, raidad -t that never binds, -s quit,
stop and reopen through the pid file, logs reopened by unprivileged
workers.

Only 127.0.0.1 (and ::1); only the PIDs this script started (the master)
and the master's children are signalled. Everything is bounded in time and
count. Prints TAP."""

import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    SANITIZER_LINE, Skip, build_request, diag, expect, notify_supported, process_uid,
    read_until_eof, render_config, run, tcp_connect, test, wait_until,
)
from mastertest import (  # noqa: E402
    MasterDaemon, write_file, wait_gone, kill_leftovers, raidad, describe,
    master_listeners_of, half_request, finish_request, log_lines_matching,
)


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
        d.wait_exit(10)
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
        d.wait_exit(8)
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
        d.wait_exit(10)
        elapsed = time.monotonic() - t0
        diag(f"exited {elapsed:.2f} s after SIGTERM with {len(socks)} connections open")
        expect(not d.alive(), "the master still runs 10 s after SIGTERM")
        expect(elapsed < 3.0, f"exit {elapsed:.2f} s after SIGTERM, expected < 3 s")
        check_stopped(d, workers, signal.SIGTERM)
    finally:
        for s in socks:
            s.close()
        d.kill()


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
        d.wait_exit(10)
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


@test
def test_signals_reach_the_master_while_the_file_has_an_error():
    """An edit not yet reloaded with an error in it must not keep logrotate's
    reopen, a status or a stop from the running master: they need pid_file
    only, and say the error (found by review: they refused, and the
    rotated log went on growing)."""
    d = MasterDaemon({"worker_processes": 1})
    d.rewrite(error_log=d.log_path)
    with d:
        d.wait_workers(1)
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text + "worker_threads = 0;\n")
        rotated = d.log_path + ".1"
        os.rename(d.log_path, rotated)
        proc = raidad("-s", "reopen", "-c", d.config_path)
        expect(proc.returncode == 0 and "worker_threads = 0 is out of range" in proc.stderr
               and "sending 'reopen' all the same" in proc.stderr, "raidad -s reopen",
               describe(proc))
        expect(wait_until(lambda: os.path.exists(d.log_path), 10), "the log was not reopened")
        d._log_checked = 0
        # A pid_file written wrong is no pid_file: the default's master (the
        # system's, maybe) must not get the signal instead.
        wrong = d.config_path + ".wrong"
        with open(wrong, "w") as f:
            f.write(re.sub(r"(?m)^pid_file = .*$", "pid_file = 5;", text))
        proc = raidad("-s", "stop", "-c", wrong)
        expect(proc.returncode == 1 and "pid_file must be a string" in proc.stderr
               and "all the same" not in proc.stderr, "-s stop with pid_file = 5",
               describe(proc))
        expect(d.alive(), "the master stopped")
        proc = raidad("-s", "stop", "-c", d.config_path)
        expect(proc.returncode == 0, "raidad -s stop", describe(proc))
        expect(d.proc.wait(10) == 0, "the master did not stop")


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


if __name__ == "__main__":
    run()
