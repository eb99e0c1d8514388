#!/usr/bin/env python3
"""raidad basics: raida-cli over TCP and UDP, byte-exact answers, config test,
sd_notify, log format.  Prints TAP."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    LOG_LINE, RAIDAD, SRCDIR, Daemon, DaemonError, Skip, expect, notify_supported,
    parse_response, raida_cli, read_until_eof, run, tcp_connect, tcp_exchange, test,
    udp_exchange, workdir,
)

ADMIN_KEY = "00112233445566778899aabbccddeeff"

_daemons = {}


def daemon(name="main"):
    """The shared daemons of this script, started on first use."""
    if name not in _daemons:
        settings = {"admin_key": ADMIN_KEY}
        if name == "r7":
            settings["raida_id"] = 7
        d = Daemon(settings, log_level="debug")
        _daemons[name] = d
        d.start()
    d = _daemons[name]
    if not d.alive():
        raise DaemonError(f"daemon {name} is not running (exit status {d.proc.poll()})")
    return d


def cli(*args, udp=False, opts=()):
    """raida-cli [-u] [OPTS] 127.0.0.1 PORT ARGS against the main daemon."""
    d = daemon()
    opts = (["-u"] if udp else []) + list(opts)
    return raida_cli(*opts, "127.0.0.1", d.port, *args)


def cli_stats(key=ADMIN_KEY, udp=False):
    return cli("stats", udp=udp, opts=["-k", key] if key else [])


def requests_count(result):
    value = result.fields.get("requests")
    expect(value is not None and value.isdigit(), "no 'requests: N' line", result)
    return int(value)


# ---------------------------------------------------------------- startup

@test
def test_daemon_starts_and_notifies_ready():
    d = daemon()
    expect(d.alive(), "daemon not running")
    if notify_supported():
        expect("READY=1" in d.notifications, "no READY=1", d.notifications)


# ---------------------------------------------------------------- raida-cli

def check_cli_echo(udp):
    r = cli("echo", udp=udp)
    expect(r.returncode == 0, "raida-cli echo did not exit 0", r)
    expect(r.status() == 250, "echo status is not 250", r)
    expect(re.search(r"^status: 250 \(success\)$", r.stdout, re.M), "no 'status: 250 (success)' line", r)


@test
def test_cli_echo_tcp():
    check_cli_echo(udp=False)


@test
def test_cli_echo_udp():
    check_cli_echo(udp=True)


def check_cli_version(udp):
    r = cli("version", udp=udp)
    expect(r.returncode == 0 and r.status() == 250, "raida-cli version failed", r)
    m = re.search(r"^version: (.*)$", r.stdout, re.M)
    expect(m, "no 'version:' line", r)
    expect(len(m.group(1)) == 8, f"version {m.group(1)!r} is not 8 characters", r)
    return m.group(1)


@test
def test_cli_version_tcp():
    check_cli_version(udp=False)


@test
def test_cli_version_udp():
    check_cli_version(udp=True)


def check_cli_stats_counts(udp):
    first = cli_stats(udp=udp)
    expect(first.returncode == 0 and first.status() == 250, "stats with the admin key failed", first)
    before = requests_count(first)
    for _ in range(3):
        r = cli("echo", udp=udp)
        expect(r.returncode == 0, "echo failed", r)
    second = cli_stats(udp=udp)
    expect(second.returncode == 0 and second.status() == 250, "second stats failed", second)
    after = requests_count(second)
    expect(after >= before + 3, f"requests went from {before} to {after} over 3 echoes",
           first, second)


@test
def test_cli_stats_tcp_counts_requests():
    check_cli_stats_counts(udp=False)


@test
def test_cli_stats_udp_in_clear_refused():
    """The admin key never counts in clear over UDP, right or not
    (docs/security.md): 38, as for a wrong key."""
    check_cli_stats_refused(ADMIN_KEY, udp=True)


def check_cli_stats_refused(key, udp):
    r = cli_stats(key=key, udp=udp)
    expect(r.returncode == 1, "stats without the right key did not exit 1", r)
    expect(r.status() == 38, "stats without the right key: status is not 38", r)


@test
def test_cli_stats_wrong_key_tcp():
    check_cli_stats_refused("ffeeddccbbaa99887766554433221100", udp=False)


@test
def test_cli_stats_wrong_key_udp():
    check_cli_stats_refused("ffeeddccbbaa99887766554433221100", udp=True)


@test
def test_cli_stats_without_key():
    check_cli_stats_refused(None, udp=False)


@test
def test_cli_raida_id_option():
    d = daemon("r7")
    r = raida_cli("-r", 7, "127.0.0.1", d.port, "echo")
    expect(r.returncode == 0 and r.status() == 250, "echo with -r 7 to RAIDA 7 failed", r)
    r = raida_cli("-r", 3, "127.0.0.1", d.port, "echo")
    expect(r.returncode == 1 and r.status() == 3, "echo with -r 3 to RAIDA 7: expected status 3", r)


# ---------------------------------------------------------------- byte-exact frames

def check_echo_exact(data, frame, challenge, raida_id):
    expect(len(data) == 32, f"echo answer of {len(data)} bytes, expected 32: {data.hex()}")
    r = parse_response(data)
    expect(r.raida_id == raida_id, f"byte 0 (RAIDA id) {r.raida_id} != {raida_id}", r)
    expect(r.shard == 0, "byte 1 (shard) != 0", r)
    expect(r.status == 250, "byte 2 (status) != 250", r)
    expect(r.group == 0, "byte 3 (group) != 0", r)
    expect(data[4:6] == b"\x00\x01", f"bytes 4-5 (frames) {data[4:6].hex()} != 0001", r)
    expect(r.echo == frame[30:32], f"bytes 6-7 (echo) {r.echo.hex()} != {frame[30:32].hex()}", r)
    expect(r.reserved == 0, "byte 8 (reserved) != 0", r)
    expect(r.body_size == 0, "bytes 9-11 (body size) != 0", r)
    expect(r.exec_us < 5_000_000, f"execution time {r.exec_us} us is not small", r)
    expect(r.challenge_hash == challenge, "bytes 16-31 are not the challenge", r)


@test
def test_echo_byte_exact_tcp():
    d = daemon("r7")
    frame, challenge = d.request(echo=b"\xa5\x5a")
    expect(frame[2] == 7, "request byte 2 should be 7")
    check_echo_exact(tcp_exchange(d.port, frame), frame, challenge, 7)


@test
def test_echo_byte_exact_udp():
    d = daemon("r7")
    frame, challenge = d.request(echo=b"\x01\xfe")
    data = udp_exchange(d.port, frame)
    expect(data is not None, "no UDP answer")
    check_echo_exact(data, frame, challenge, 7)


@test
def test_version_byte_exact():
    d = daemon()
    frame, challenge = d.request(command=1, echo=b"\x12\x34")
    data = tcp_exchange(d.port, frame)
    expect(len(data) == 42, f"version answer of {len(data)} bytes, expected 42: {data.hex()}")
    r = parse_response(data)
    expect(r.status == 250 and r.group == 0 and r.raida_id == 0, "bad version header", r)
    expect(r.echo == b"\x12\x34", "echo bytes differ", r)
    expect(r.body_size == 10, f"body size {r.body_size} != 10", r)
    expect(r.challenge_hash == challenge, "challenge hash differs", r)
    expect(len(r.payload) == 8 and all(0x21 <= b <= 0x7e for b in r.payload),
           f"version payload {r.payload!r} is not 8 printable ASCII bytes", r)
    expect(data[-2:] == b"\x3e\x3e", "no 3E 3E trailer", r)
    cli_version = check_cli_version(udp=False)
    expect(cli_version == r.payload.decode(), f"raida-cli says {cli_version!r}, frame {r.payload!r}")


@test
def test_stats_frames_need_admin_key():
    d = daemon()
    frame, challenge = d.request(command=2, payload=bytes.fromhex(ADMIN_KEY))
    r = parse_response(tcp_exchange(d.port, frame))
    expect(r.status == 250, "stats with the admin key: status not 250", r)
    expect(r.body_size > 2 and r.body_size == len(r.payload) + 2, "stats without counters", r)
    expect(r.challenge_hash == challenge and r.echo == frame[30:32], "echo/challenge differ", r)
    for payload in (b"", bytes(16), bytes.fromhex(ADMIN_KEY)[:15]):
        frame, _ = d.request(command=2, payload=payload)
        r = parse_response(tcp_exchange(d.port, frame))
        expect(r.status == 38, f"stats with key {payload.hex()!r}: status not 38", r)
        expect(r.body_size == 0 and r.echo == frame[30:32], "bad refusal", r)


@test
def test_request_sent_one_byte_at_a_time():
    d = daemon()
    frame, challenge = d.request(command=0)
    with tcp_connect(d.port) as s:
        for i in range(len(frame)):
            s.sendall(frame[i:i + 1])
            time.sleep(0.005)
        result = read_until_eof(s)
    expect(result.how == "eof", "no clean end of the answer", result)
    r = parse_response(result.data)
    expect(r.status == 250 and r.echo == frame[30:32] and r.challenge_hash == challenge,
           "wrong answer to the slow request", r)


@test
def test_udp_and_tcp_on_the_same_port():
    d = daemon()
    for udp in (False, True, False, True):
        d.echo_ok(udp=udp)


# ---------------------------------------------------------------- raidad -t

def config_test(text, name):
    path = os.path.join(workdir(), name)
    with open(path, "w") as f:
        f.write(text)
    proc = subprocess.run([RAIDAD, "-t", "-c", path], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    return path, proc


@test
def test_config_test_accepts_a_good_config():
    path, proc = config_test('listen = "127.0.0.1:18999";\nraida_id = 3;\ncoin_id = 6;\n'
                             f'admin_key = "{ADMIN_KEY}";\nlog_level = "info";\n', "good.conf")
    expect(proc.returncode == 0, f"raidad -t exit {proc.returncode}", proc.stderr)


@test
def test_config_test_accepts_the_sample_config():
    sample = os.path.join(SRCDIR, "conf", "raidad.conf")
    if not os.path.exists(sample):
        raise Skip("no conf/raidad.conf")
    proc = subprocess.run([RAIDAD, "-t", "-c", sample], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    expect(proc.returncode == 0, f"raidad -t {sample}: exit {proc.returncode}", proc.stderr)


@test
def test_config_test_rejects_a_bad_value_with_its_line():
    path, proc = config_test('listen = "127.0.0.1:18999";\nlog_level = "info";\nraida_id = 99;\n',
                             "bad-value.conf")
    expect(proc.returncode == 1, f"raidad -t exit {proc.returncode}, expected 1", proc.stderr)
    expect(re.search(re.escape(path) + r":3: \S", proc.stderr),
           f"no '{path}:3: message' on stderr", proc.stderr)


@test
def test_config_test_rejects_a_syntax_error_with_its_line():
    path, proc = config_test('listen = "127.0.0.1:18999";\nraida_id = ;\n', "bad-syntax.conf")
    expect(proc.returncode == 1, f"raidad -t exit {proc.returncode}, expected 1", proc.stderr)
    expect(re.search(re.escape(path) + r":2: \S", proc.stderr),
           f"no '{path}:2: message' on stderr", proc.stderr)


@test
def test_config_test_rejects_an_unknown_setting_with_its_line():
    path, proc = config_test('listen = "127.0.0.1:18999";\nlog_level = "info";\n'
                             'raida_idd = 3;\n', "unknown.conf")
    expect(proc.returncode == 1, f"raidad -t exit {proc.returncode}, expected 1", proc.stderr)
    expect(re.search(re.escape(path) + r":3: \S", proc.stderr),
           f"no '{path}:3: message' on stderr", proc.stderr)


@test
def test_config_test_rejects_a_value_of_the_wrong_type_with_its_line():
    path, proc = config_test('listen = "127.0.0.1:18999";\nraida_id = "seven";\n', "type.conf")
    expect(proc.returncode == 1, f"raidad -t exit {proc.returncode}, expected 1", proc.stderr)
    expect(re.search(re.escape(path) + r":2: \S", proc.stderr),
           f"no '{path}:2: message' on stderr", proc.stderr)


@test
def test_config_test_rejects_a_missing_file():
    path = os.path.join(workdir(), "no-such.conf")
    proc = subprocess.run([RAIDAD, "-t", "-c", path], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    expect(proc.returncode == 1, f"raidad -t exit {proc.returncode}, expected 1", proc.stderr)
    expect(path in proc.stderr, "the missing file is not named on stderr", proc.stderr)


# ---------------------------------------------------------------- log and stop

LEVEL_WORDS = {0: {"emerg"}, 1: {"alert"}, 2: {"crit"}, 3: {"error", "err"},
               4: {"warn", "warning"}, 5: {"notice"}, 6: {"info"}, 7: {"debug"}}


@test
def test_log_lines_are_well_formed():
    d = daemon()
    lines = d.log_lines()
    pids = set(d.pids())    # the master and its worker processes
    expect(lines, "the daemon logged nothing at log_level debug")
    for line in lines:
        m = LOG_LINE.match(line)
        expect(m, f"malformed log line: {line!r}")
        prio, stamp, level, pid = int(m.group(1)), m.group(2), m.group(3), int(m.group(4))
        time.strptime(stamp, "%Y-%m-%d %H:%M:%S")
        expect(level.lower() in LEVEL_WORDS[prio], f"level [{level}] for priority <{prio}>: {line!r}")
        expect(pid in pids, f"PID {pid} is not the daemon's ({sorted(pids)}): {line!r}")


@test
def test_pid_file_names_the_master():
    d = daemon()
    if "pid_file" not in d.settings:
        raise Skip("this raidad has no pid_file setting")
    with open(d.pid_file) as f:
        text = f.read()
    expect(text.strip() == str(d.pid), f"pid file holds {text!r}, the master is {d.pid}")


@test
def test_sigterm_notifies_stopping_and_exits_0():
    d = daemon()
    d.stop()
    if not notify_supported():
        raise Skip("built without sd_notify")
    expect("STOPPING=1" in d.notifications, "no STOPPING=1 on the notify socket", d.notifications)


@test
def test_sigint_stops_the_second_daemon_with_exit_0():
    d = daemon("r7")
    d.echo_ok()
    d.stop(sig=signal.SIGINT)


def udp_receive_buffer(port):
    """The receive buffer (rb) of the UDP socket bound to PORT, as ss shows it."""
    if shutil.which("ss") is None:
        raise Skip("no ss (iproute2) here")
    out = subprocess.run(["ss", "-uamnH", f"sport = :{port}"], capture_output=True,
                         text=True, timeout=10).stdout
    m = re.search(r"\brb(\d+)", out)
    expect(m is not None, f"no UDP socket on port {port} in ss's output", out)
    return int(m.group(1))


@test
def test_udp_receive_buffer_is_applied():
    with Daemon({}) as d:
        default = udp_receive_buffer(d.port)
    with Daemon({"udp_receive_buffer": 4 * 1024 * 1024}) as d:
        d.echo_ok(udp=True)
        deep = udp_receive_buffer(d.port)
    # The kernel doubles what it is given, for its own bookkeeping.
    expect(deep >= 4 * 1024 * 1024 and deep > default,
           f"udp_receive_buffer not applied: {deep} bytes (default {default})")


if __name__ == "__main__":
    run()
