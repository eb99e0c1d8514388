#!/usr/bin/env python3
"""Command modules loaded at run time (load_module, docs/modules.md) in the
real daemon, with the check-only test module tests/libtestmod.so (group 201:
0 ping, 1 crash, 2 started, 3 and 4 client) and its twin built for another ABI:

- a reload adds the module: its group answers afterwards, its settings
  group applies, its process start hook ran in the workers, and echo traffic
  over TCP and UDP meanwhile has 0 errors;
- a reload replaces it (a new file, new settings), then drops it: the group
  answers 5 afterwards, 0 errors meanwhile;
- a module of another ABI is refused with FILE:LINE at start, at -t and at
  reload (`raidad -s reload` exits non-zero and says why), and the old
  generation keeps serving, module and all;
- a command that crashes takes down only its worker: the master respawns
  it and logs the module, group and command from the worker's crash record;
  one that keeps crashing its young worker gets the respawn backoff.

Only 127.0.0.1; only the PIDs this script started (the master) and the
master's children are signalled. Everything is bounded in time and count.
Prints TAP."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    RAIDAD, Daemon, Skip, build_request, child_pids, diag, expect, parse_response,
    render_config, run, tcp_exchange, test, udp_exchange, wait_until,
)

TESTMOD = os.environ.get("RAIDAD_TESTMOD") or os.path.join(os.getcwd(), "tests", "libtestmod.so")
TESTMOD_ABI = (os.environ.get("RAIDAD_TESTMOD_ABI")
               or os.path.join(os.getcwd(), "tests", "libtestmod_abi.so"))
GROUP = 201
LOOPBACK = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])    # what a module sees

LOG_REFUSED = r"reload refused, the old configuration keeps serving"
LOG_SEGV = r"worker \d+ exited on signal 11 \(Segmentation fault\)"
LOG_CRASH_RECORD = r"worker \d+ died while running module testmod group 201 command 1"
LOG_RESPAWN_DELAY = r"worker slot 0 died young \d+ times in a row: respawning in \d+ ms"


def need_modules():
    for path in (TESTMOD, TESTMOD_ABI):
        if not os.path.exists(path):
            raise Skip(f"{path} not built (make check builds it)")


class ModDaemon(Daemon):
    """Two workers; EXTRA is configuration text after the settings (a
    module's settings group)."""

    def __init__(self, overrides=None, extra="", **kw):
        settings = {"worker_processes": 2}
        settings.update(overrides or {})
        super().__init__(settings, **kw)
        self.write(extra)

    def write(self, extra="", **changes):
        for k, v in changes.items():
            if v is None:
                self.settings.pop(k, None)
            else:
                self.settings[k] = v
        text = render_config(self.settings) + extra
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config_path)
        return text

    def workers(self):
        return child_pids(self.pid)

    def wait_workers(self, n, timeout=10.0):
        expect(wait_until(lambda: len(self.workers()) == n, timeout),
               f"expected {n} workers, have {self.workers()}")
        return self.workers()


def raidad(*args, timeout=60):
    return subprocess.run([RAIDAD] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def describe(proc):
    return f"exit {proc.returncode}; stdout: {proc.stdout!r}; stderr: {proc.stderr!r}"


def call(port, command, payload=b"", udp=False, group=GROUP):
    frame, challenge = build_request(group=group, command=command, payload=payload)
    data = udp_exchange(port, frame, 5.0) if udp else tcp_exchange(port, frame, 5.0)
    r = parse_response(data)
    if r.status == 250:
        expect(r.challenge_hash == challenge, "challenge hash differs", r)
    return r


def line_of(text, needle):
    return text[:text.index(needle)].count("\n") + 1


class EchoLoad:
    """Echo requests in the background, one TCP and one UDP client, each
    answer checked; every failure is kept as (when it was sent, transport,
    why): a UDP request is known lost only a timeout after it was sent."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(udp,), daemon=True)
                         for udp in (False, True)]

    def _loop(self, udp):
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                r = call(self.port, 0, udp=udp, group=0)
                if r.status != 250:
                    raise AssertionError(f"status {r.status}")
                self.ok += 1
            except (AssertionError, OSError) as e:
                self.failures.append((sent, "udp" if udp else "tcp", str(e)))
            time.sleep(0.002)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(15)


def reload(d):
    proc = raidad("-s", "reload", "-c", d.config_path)
    return proc


# --------------------------------------------------------------------------

@test
def test_reload_adds_replaces_then_drops_a_module_without_errors():
    need_modules()
    with ModDaemon() as d:
        if "pid_file" not in d.settings:
            raise Skip("this raidad has no pid_file setting")
        for udp in (False, True):
            expect(call(d.port, 0, b"x", udp=udp).status == 5, "group 201 served before load")
        with EchoLoad(d.port) as load:
            time.sleep(0.5)
            d.write('testmod = { tag = 42; };\n', load_module=TESTMOD)
            proc = reload(d)
            expect(proc.returncode == 0, "reload adding the module", describe(proc))
            for udp in (False, True):
                r = call(d.port, 0, b"hi", udp=udp)
                expect(r.status == 250 and r.payload == bytes([42]) + b"hi",
                       "ping through the loaded module", r)
                r = call(d.port, 2, udp=udp)
                expect(r.status == 250 and r.payload == b"\x01",
                       "the module's process start hook did not run in the worker", r)
                for command in (3, 4):      # on the pool, on the I/O thread
                    r = call(d.port, command, udp=udp)
                    expect(r.status == 250 and r.payload == LOOPBACK,
                           f"command {command}'s client over {'udp' if udp else 'tcp'}", r)
                expect(call(d.port, 9, udp=udp).status == 6, "unserved command of group 201")
            # Replaced: a new build under a new name (docs/modules.md), new settings.
            replacement = os.path.join(d.dir, "testmod-2.so")
            shutil.copyfile(TESTMOD, replacement)
            os.chmod(replacement, 0o755)
            d.write('testmod = { tag = 43; };\n', load_module=replacement)
            proc = reload(d)
            expect(proc.returncode == 0, "reload replacing the module", describe(proc))
            for udp in (False, True):
                r = call(d.port, 0, b"hi", udp=udp)
                expect(r.status == 250 and r.payload == bytes([43]) + b"hi",
                       "ping through the replaced module", r)
            time.sleep(0.5)
            d.write(load_module=None)
            proc = reload(d)
            expect(proc.returncode == 0, "reload dropping the module", describe(proc))
            for udp in (False, True):
                expect(call(d.port, 0, b"x", udp=udp).status == 5, "group 201 after drop")
            time.sleep(0.5)
        diag(f"{load.ok} echoes across three reloads, {len(load.failures)} failed")
        expect(load.ok > 50, f"only {load.ok} echoes answered")
        expect(not load.failures, f"echo failures: {load.failures[:5]}")


@test
def test_wrong_abi_is_refused_at_start_test_and_reload():
    need_modules()
    with ModDaemon(extra='testmod = { tag = 5; };\n', overrides={"load_module": TESTMOD}) as d:
        if "pid_file" not in d.settings:
            raise Skip("this raidad has no pid_file setting")
        workers = d.wait_workers(2)
        good = d.write('testmod = { tag = 5; };\n')
        text = d.write('testmod = { tag = 5; };\n', load_module=[TESTMOD_ABI])
        line = line_of(text, "load_module")
        want = re.compile(re.escape(f"{d.config_path}:{line}: load_module \"{TESTMOD_ABI}\": "
                                    "built for module ABI 999, this raidad has ABI 1"))
        with EchoLoad(d.port) as load:
            proc = raidad("-t", "-c", d.config_path)
            expect(proc.returncode != 0 and want.search(proc.stderr), "raidad -t", describe(proc))
            proc = reload(d)
            expect(proc.returncode != 0, "raidad -s reload exited 0", describe(proc))
            expect(want.search(proc.stderr), "-s reload does not say why", describe(proc))
            expect(sorted(d.workers()) == sorted(workers),
                   f"workers changed: {workers} -> {d.workers()}")
            for udp in (False, True):
                r = call(d.port, 0, b"ok", udp=udp)
                expect(r.status == 250 and r.payload == b"\x05ok", "the old generation", r)
            # SIGHUP, which the master checks itself: refused, said in the log.
            os.kill(d.pid, signal.SIGHUP)
            expect(wait_until(lambda: re.search(LOG_REFUSED + ": " + want.pattern,
                                                d.log_text()), 10.0),
                   "no refusal naming FILE:LINE in the log", d.log_tail())
            expect(sorted(d.workers()) == sorted(workers),
                   f"workers changed after SIGHUP: {workers} -> {d.workers()}")
            expect(call(d.port, 0, b"ok").payload == b"\x05ok", "the old generation")
        expect(not load.failures, f"echo failures: {load.failures[:5]}")
        # The same file refuses to start.
        other = ModDaemon(extra='testmod = { tag = 5; };\n', overrides={"load_module": TESTMOD_ABI})
        proc = raidad("-c", other.config_path, timeout=30)
        expect(proc.returncode != 0 and "built for module ABI 999" in proc.stderr
               and f"{other.config_path}:" in proc.stderr, "start with the wrong ABI", describe(proc))
        # A configure hook that says no, and a settings group of no module.
        for extra, what in (('testmod = { refuse = true; };\n', "module testmod refused its settings"),
                            ('nosuch = { a = 1; };\n', "unknown setting 'nosuch'")):
            text = d.write(extra, load_module=TESTMOD)
            proc = reload(d)
            expect(proc.returncode != 0 and f"{d.config_path}:{line_of(text, extra)}: "
                   in proc.stderr and what in proc.stderr, f"reload with {extra!r}", describe(proc))
        d.write(good)
        d.stop(expect_log=[LOG_REFUSED])


@test
def test_crashing_command_takes_down_only_its_worker():
    need_modules()
    # A sanitizer build would report the SEGV and exit instead of dying on it.
    d = ModDaemon(overrides={"load_module": TESTMOD}, expect_log=[LOG_SEGV, LOG_CRASH_RECORD])
    saved = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [saved, "handle_segv=0"]))
    try:
        d.start()
    finally:
        if saved is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved
    try:
        workers = d.wait_workers(2)
        with EchoLoad(d.port) as load:
            time.sleep(0.5)
            crashed_at = time.monotonic()
            try:
                call(d.port, 1)
            except (AssertionError, OSError):
                pass                        # its worker died: no answer
            new = wait_until(lambda: [p for p in d.workers() if p not in workers], 5.0)
            expect(new, f"no replacement worker: {d.workers()}")
            time.sleep(0.5)
        now = d.workers()
        survivors = [p for p in workers if p in now]
        expect(len(survivors) == 1 and len(now) == 2,
               f"more than the crashing worker went: {workers} -> {now}")
        victim = [p for p in workers if p not in now][0]
        expect(wait_until(lambda: re.search(
            rf"worker {victim} died while running module testmod group 201 command 1 \(crash\)",
            d.log_text()), 5.0), "no crash record naming the module and command", d.log_tail())
        expect(re.search(rf"\[notice\] {victim}: module testmod: tcp 201/1 from 127\.0\.0\.1: "
                         "about to crash", d.log_text()), "the module's log line with its context")
        # Only what the crashed worker itself held in flight may fail: sent
        # around the crash.
        late = [f for f in load.failures if abs(f[0] - crashed_at) > 2.0]
        diag(f"{load.ok} echoes, {len(load.failures)} failed around the crash")
        expect(not late and len(load.failures) <= 2, f"echo failures: {load.failures[:5]}")
        expect(call(d.port, 0, b"again").payload == b"\x07again", "the module after respawn")
        d.stop()
    finally:
        d.kill()


@test
def test_a_command_that_keeps_crashing_gets_the_respawn_backoff():
    """One worker, crashed again as soon as it is back: the third death in a
    row of a young worker waits 100 ms before the next start."""
    need_modules()
    d = ModDaemon(overrides={"load_module": TESTMOD, "worker_processes": 1},
                  expect_log=[LOG_SEGV, LOG_CRASH_RECORD, LOG_RESPAWN_DELAY])
    saved = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [saved, "handle_segv=0"]))
    try:
        d.start()
    finally:
        if saved is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved
    try:
        seen = d.wait_workers(1)
        for _ in range(3):
            try:
                call(d.port, 1)
            except (AssertionError, OSError):
                pass
            expect(wait_until(lambda: d.workers() and d.workers()[0] not in seen, 10.0),
                   f"no new worker after {seen}")
            seen += d.workers()
        expect(re.search(r"worker slot 0 died young 2 times in a row: respawning in 100 ms",
                         d.log_text()), "no respawn backoff", d.log_tail())
        crashes = re.findall(LOG_CRASH_RECORD, d.log_text())
        expect(len(crashes) == 3, f"{len(crashes)} crash records for 3 crashes")
        expect(call(d.port, 0, b"x").status == 250, "the module after the crashes")
        d.stop()
    finally:
        d.kill()


if __name__ == "__main__":
    run()
