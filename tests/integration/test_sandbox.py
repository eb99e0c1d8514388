#!/usr/bin/env python3
"""What a worker broken into could do, shrunk (docs/security.md), against the
real daemon: workers started as root run as an unprivileged account with no
capabilities; root workers need a setting and warn; the seccomp filter is on
in every worker, and a worker made (by the test hooks of
tests/raidad-hooked, built for "make check" only) to call execve or
socket(AF_PACKET) dies with a log line naming the call, and the master
starts another that serves; the admin key in clear counts only over TCP from
admin_allow. Prints TAP."""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import raidatest  # noqa: E402
from raidatest import (  # noqa: E402
    RAIDAD_WRAPPER, Daemon, Skip, child_pids, diag, expect, raida_cli, render_config, run, test,
    wait_until, workdir,
)

ADMIN_KEY = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
HOOKED = os.environ.get("RAIDAD_HOOKED", os.path.join(os.getcwd(), "tests", "raidad-hooked"))
SECCOMP_KILLED = r"seccomp: worker killed: forbidden system call "
EXITED_159 = r"worker \d+ exited with status 159 \(killed by its system call filter\)"
ROOT_WARNING = r"worker: running as root"
# The coin whose key encrypts the type-1 requests: denomination 1, serial 2000.
COIN_DEN, COIN_SN, COIN_KEY = 1, 2000, bytes.fromhex("00112233445566778899aabbccddeeff")
RECORDS, RECORD_SIZE = 1024, 17


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()
    return fields


def workers(d, n):
    pids = wait_until(lambda: len(child_pids(d.pid)) == n and child_pids(d.pid), 10)
    expect(pids, f"not {n} workers", child_pids(d.pid))
    return pids


def log_matching(d, pattern):
    return [line for line in d.log_lines() if re.search(pattern, line)]


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root: workers change account only when started as root")


def filter_expected(d):
    """Whether this build and run load the filter: not with sanitizers or
    valgrind, which say so in the log."""
    return not wait_until(lambda: log_matching(d, r"seccomp: off: "), 0.5)


def seccomp_mode(pid):
    return int(proc_status(pid)["Seccomp"][0])


# ---------------------------------------------------------------- the account

@test
def test_workers_started_as_root_run_unprivileged_without_capabilities():
    need_root()
    try:
        want = pwd.getpwnam("raidad")
    except KeyError:
        want = pwd.getpwnam("nobody")
    d = Daemon({"worker_processes": 2})
    with d:
        for pid in workers(d, 2):
            st = proc_status(pid)
            expect(st["Uid"] == [str(want.pw_uid)] * 4, f"worker {pid} uids {st['Uid']}, "
                   f"want {want.pw_name}'s {want.pw_uid} (real, effective, saved, fs)")
            expect(int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0,
                   f"worker {pid} keeps capabilities", st["CapEff"], st["CapPrm"])
            expect(int(st["CapAmb"][0], 16) == 0, f"worker {pid} keeps ambient capabilities")
        expect(proc_status(d.pid)["Uid"][1] == "0", "the master is not root")
        if want.pw_name == "nobody":
            expect(log_matching(d, r"<4>.*user 'raidad' does not exist .*running as 'nobody'"),
                   "no warning about the missing account raidad", d.log_tail())
        d.echo_ok()
        d.echo_ok(udp=True)
        expect(not log_matching(d, ROOT_WARNING), "a root warning without root workers")


def start_as_the_account(d, caps=()):
    """Starts D as the unit does, as raidad (nobody where it is missing),
    with setpriv's CAPS options; returns the account."""
    need_root()
    if shutil.which("setpriv") is None:
        raise Skip("no setpriv (util-linux)")
    try:
        account = pwd.getpwnam("raidad")
    except KeyError:
        account = pwd.getpwnam("nobody")
    os.chown(d.dir, account.pw_uid, account.pw_gid)
    d.wrapper = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                 "--clear-groups", *caps]
    old = os.umask(0)           # the notify socket, for a master that is not root
    try:
        d.start()
    finally:
        os.umask(old)
    return account


@test
def test_started_as_another_user_workers_give_up_their_capabilities():
    """As under the shipped unit (User=raidad, AmbientCapabilities=
    CAP_NET_BIND_SERVICE): the master keeps the capability, the workers,
    same user, hold none and are filtered."""
    d = Daemon({"worker_processes": 2})
    account = start_as_the_account(d, ["--inh-caps=+net_bind_service",
                                       "--ambient-caps=+net_bind_service"])
    try:
        check_dropped_capabilities(d, account)
    except BaseException:
        d.kill()
        raise
    d.stop()


SECCOMP_DENY = os.environ.get("RAIDAD_SECCOMP_DENY",
                              os.path.join(os.getcwd(), "tests", "seccomp_deny"))


@test
def test_workers_start_where_scheduling_calls_are_refused():
    """The shipped unit refuses @resources (sched_setscheduler,
    sched_setaffinity) with EPERM: the workers still start and serve, with
    a warning for the settings they cannot apply. Before, the commit
    threads were created with an explicit scheduling policy, pthread_create
    failed, and every worker exited ("worker: cannot start") over and over."""
    expect(os.access(SECCOMP_DENY, os.X_OK), f"no {SECCOMP_DENY} (make check builds it)")
    d = Daemon({"worker_processes": 2, "worker_cpu_affinity": "auto",
                "worker_sched_batch": True}, log_level="info")
    d.wrapper = [SECCOMP_DENY, "sched_setscheduler", "sched_setaffinity", "--"]
    with d:
        workers(d, 2)
        for _ in range(5):
            expect(d.echo_ok(), "an echo under the filter")
        expect(d.echo_ok(udp=True), "a UDP echo under the filter")
        expect(not any("cannot start" in line for line in d.log_lines()),
               "a worker could not start", d.log_tail())


def check_reload_verdicts(d):
    """raidad -s reload against D: a good reload answers 0, one the master
    refuses 1, each within seconds; then a good one, slow to settle (the
    old worker stopped), waits for its own verdict rather than take the
    refusal before it (which the status record showed a second late)."""
    # A port another socket holds: only the master finds that out.
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        for settings, want in (({"raida_id": 3}, 0),
                               ({"listen": f"127.0.0.1:{taken.getsockname()[1]}"}, 1)):
            with open(d.config_path, "w") as f:
                f.write(render_config(dict(d.settings, **settings)))
            start = time.monotonic()
            p = subprocess.run([raidatest.RAIDAD, "-s", "reload", "-c", d.config_path],
                               capture_output=True, text=True, timeout=60)
            took = time.monotonic() - start
            diag(f"raidad -s reload ({settings}): exit {p.returncode} in {took:.1f} s")
            expect(p.returncode == want, f"-s reload with {settings}: exit {p.returncode}",
                   p.stderr)
            expect(took < 5, f"-s reload took {took:.1f} s")
    finally:
        taken.close()
    with open(d.config_path, "w") as f:
        f.write(render_config(dict(d.settings, raida_id=4)))
    old = child_pids(d.pid)
    for pid in old:
        os.kill(pid, signal.SIGSTOP)
    try:
        p = subprocess.Popen([raidatest.RAIDAD, "-s", "reload", "-c", d.config_path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        expect(p.poll() is None, "a verdict before the reload settled", p.poll())
    finally:
        for pid in old:
            os.kill(pid, signal.SIGCONT)
    _, err = p.communicate(timeout=60)
    expect(p.returncode == 0, f"the good reload after the refused one: exit {p.returncode}", err)


VERDICT_LOG = [r"reload refused", r"Address already in use"]


@test(timeout=120)
def test_reload_verdicts_are_each_callers_own():
    """The master signals its verdicts back (its own user's callers)."""
    with Daemon({"worker_processes": 1}, expect_log=VERDICT_LOG) as d:
        check_reload_verdicts(d)


@test(timeout=120)
def test_root_gets_the_verdict_of_a_reload_from_a_master_of_another_user():
    """As under the shipped unit (User=raidad), with "raidad -s reload" run
    as root: the master cannot signal its verdict back (EPERM), and the
    caller reads it from the status record instead; before, it waited 30 s
    and said the reload had no answer (found by review)."""
    d = Daemon({"worker_processes": 1}, expect_log=VERDICT_LOG)
    start_as_the_account(d)
    try:
        check_reload_verdicts(d)
    except BaseException:
        d.kill()
        raise
    d.stop()


def check_dropped_capabilities(d, account):
    """D's master, started as ACCOUNT with CAP_NET_BIND_SERVICE, keeps it;
    its workers hold nothing."""
    master = proc_status(d.pid)
    expect(master["Uid"][1] == str(account.pw_uid), "the master is not the account")
    expect(int(master["CapEff"][0], 16) == 1 << 10, "the master lacks CAP_NET_BIND_SERVICE",
           master["CapEff"])
    for pid in workers(d, 2):
        st = proc_status(pid)
        expect(st["Uid"] == [str(account.pw_uid)] * 4, f"worker {pid} uids {st['Uid']}")
        for caps in ("CapEff", "CapPrm", "CapAmb", "CapInh"):
            expect(int(st[caps][0], 16) == 0, f"worker {pid} {caps} {st[caps]}")
        if filter_expected(d):
            expect(seccomp_mode(pid) == 2, f"worker {pid} not filtered")
    d.echo_ok()
    d.echo_ok(udp=True)
    expect(not log_matching(d, ROOT_WARNING), "a root warning without root")


def check_root_workers(user, why):
    d = Daemon({"worker_processes": 1, "user": user})
    with d:
        (pid,) = workers(d, 1)
        expect(proc_status(pid)["Uid"][1] == "0", f"user = {user!r}: the worker is not root")
        lines = wait_until(lambda: log_matching(d, ROOT_WARNING + r" \(" + why), 5)
        expect(lines and all(line.startswith("<4>") for line in lines),
               f"no warn line about root workers ({why})", d.log_tail())
        d.echo_ok()


@test
def test_root_workers_need_user_root_and_warn():
    need_root()
    check_root_workers("root", "user is root")


@test
def test_root_workers_with_an_empty_user_warn():
    need_root()
    check_root_workers("", "user is empty")


# ---------------------------------------------------------------- the filter

@test
def test_filter_is_on_in_every_worker_and_traffic_passes():
    d = Daemon({"worker_processes": 2, "admin_key": ADMIN_KEY})
    with d:
        pids = workers(d, 2)
        if not filter_expected(d):
            expect(all(seccomp_mode(pid) == 0 for pid in pids), "filter said off but is on")
            raise Skip("the filter is off in this build or run (sanitizers, valgrind)")
        expect(all(seccomp_mode(pid) == 2 for pid in pids), "a worker without its filter",
               {pid: seccomp_mode(pid) for pid in pids})
        for _ in range(20):
            d.echo_ok()
            d.echo_ok(udp=True)
        r = raida_cli("-k", ADMIN_KEY, "127.0.0.1", d.port, "stats")
        expect(r.returncode == 0 and r.status() == 250, "stats under the filter", r)
        # The log reopened (SIGUSR1: the master hands the workers a descriptor).
        os.kill(d.pid, signal.SIGUSR1)
        d.echo_ok()
        # A reload: new workers, filtered too.
        raidatest.reload_daemon(d, {"raida_id": 3})
        new = workers(d, 2)
        expect(all(seccomp_mode(pid) == 2 for pid in new), "a reloaded worker without filter")
        d.echo_ok()
        expect(not log_matching(d, SECCOMP_KILLED), "a worker was killed", d.log_tail())


@test
def test_worker_seccomp_false_turns_it_off():
    d = Daemon({"worker_processes": 1, "worker_seccomp": False})
    with d:
        (pid,) = workers(d, 1)
        expect(seccomp_mode(pid) == 0, "worker_seccomp = false, yet filtered")
        d.echo_ok()


def check_forbidden_call(what, name):
    """Under the hooked build, SIGUSR2 makes a worker call WHAT: it must die
    with the log line naming NAME, and the master start another that
    serves."""
    if not os.access(HOOKED, os.X_OK):
        raise Skip(f"no test build {HOOKED}")
    if RAIDAD_WRAPPER:
        raise Skip("the filter is off under a wrapper (valgrind)")
    d = Daemon({"worker_processes": 1},
               expect_log=[SECCOMP_KILLED + re.escape(name), EXITED_159])
    saved = raidatest.RAIDAD
    raidatest.RAIDAD = HOOKED
    os.environ["RAIDAD_TEST_FORBIDDEN"] = what
    try:
        d.start()
    finally:
        os.environ.pop("RAIDAD_TEST_FORBIDDEN")
        raidatest.RAIDAD = saved
    try:
        hooked_worker_dies(d, what, name)
    except BaseException:
        d.kill()
        raise
    d.stop()


def hooked_worker_dies(d, what, name):
    """Sends SIGUSR2 to D's worker, which calls WHAT; checks its end and its
    replacement."""
    (victim,) = workers(d, 1)
    if not filter_expected(d):
        raise Skip("the filter is off in this build (sanitizers)")
    # Served first: a worker that dies young is respawned with a delay.
    d.echo_ok()
    os.kill(victim, signal.SIGUSR2)
    line = wait_until(lambda: log_matching(d, SECCOMP_KILLED), 10)
    expect(line, f"no seccomp line after {what}", d.log_tail())
    expect(re.search(r"^<2>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[crit\] %d: " % victim
                     + SECCOMP_KILLED + re.escape(name) + r" \(\d+\)$", line[0]),
           "the line is not rd_log's format, or names another call or process", line)
    expect(wait_until(lambda: log_matching(d, EXITED_159), 10),
           "the master did not report the exit", d.log_tail())
    new = wait_until(lambda: [p for p in child_pids(d.pid) if p != victim], 10)
    expect(new, "no new worker", d.log_tail())
    expect(seccomp_mode(new[0]) == 2, "the new worker is not filtered")
    d.echo_ok()
    d.echo_ok(udp=True)


@test(timeout=60)
def test_worker_calling_execve_is_killed_and_replaced():
    check_forbidden_call("execve", "execve")


@test(timeout=60)
def test_worker_opening_a_packet_socket_is_killed_and_replaced():
    check_forbidden_call("socket_packet", "socket")


# ---------------------------------------------------------------- the admin key

def stats(d, *opts, udp=False):
    args = list(opts) + (["-u"] if udp else []) + ["-k", ADMIN_KEY, "127.0.0.1", d.port, "stats"]
    return raida_cli(*args)


def make_data_dir():
    """One page file holding COIN_KEY, readable by unprivileged workers."""
    root = os.path.join(workdir(), "sandbox-keys")
    page = COIN_SN // RECORDS
    path = os.path.join(root, "Data", "%02x" % COIN_DEN, "%02x" % (page >> 8), "%04x.bin" % page)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = bytearray(RECORDS * RECORD_SIZE)
    at = (COIN_SN % RECORDS) * RECORD_SIZE
    data[at:at + 16] = COIN_KEY
    data[at + 16] = 1
    with open(path, "wb") as f:
        f.write(data)
    return root


def encrypted(udp=False):
    return ["-t", "10000", "-E", "1", "-D", COIN_DEN, "-S", COIN_SN, "-K", COIN_KEY.hex()] + \
        (["-u"] if udp else [])


@test
def test_admin_key_in_clear_only_over_tcp_from_loopback():
    d = Daemon({"admin_key": ADMIN_KEY, "data_dir": make_data_dir()})
    with d:
        r = stats(d)
        expect(r.returncode == 0 and r.status() == 250, "clear stats over TCP from 127.0.0.1", r)
        r = stats(d, udp=True)
        expect(r.returncode == 1 and r.status() == 38, "clear stats over UDP not refused", r)
        expect(r.fields.get("body_size") == "0", "a refusal with a body", r)
        for udp in (False, True):
            r = raida_cli(*encrypted(udp), "-k", ADMIN_KEY, "127.0.0.1", d.port, "stats")
            expect(r.returncode == 0 and r.status() == 250 and r.fields.get("requests"),
                   f"encrypted stats over {'UDP' if udp else 'TCP'} refused", r)


@test
def test_admin_allow_without_loopback_refuses_clear_but_not_encrypted():
    d = Daemon({"admin_key": ADMIN_KEY, "data_dir": make_data_dir(),
                "admin_allow": ["192.0.2.0/24", "2001:db8::/32"]})
    with d:
        r = stats(d)
        expect(r.returncode == 1 and r.status() == 38, "clear stats from 127.0.0.1 accepted "
               "with an allow list without it", r)
        r = raida_cli(*encrypted(), "-k", ADMIN_KEY, "127.0.0.1", d.port, "stats")
        expect(r.returncode == 0 and r.status() == 250, "encrypted stats refused", r)
        d.echo_ok()


@test
def test_empty_admin_allow_refuses_clear_from_loopback():
    d = Daemon({"admin_key": ADMIN_KEY, "admin_allow": []})
    with d:
        r = stats(d)
        expect(r.returncode == 1 and r.status() == 38, "clear stats accepted with []", r)


if __name__ == "__main__":
    run()
