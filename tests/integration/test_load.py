#!/usr/bin/env python3
"""raidad under load, on 127.0.0.1 only, bounded in count and time: many
concurrent TCP clients, a burst of connections, clients that reset, a UDP
stream; afterwards the daemon still serves and has leaked no descriptor.
Prints TAP."""

import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    Daemon, DaemonError, check_echo_answer, diag, expect, many_tcp_exchanges,
    parse_response, read_until_eof, run, summarize_failures, tcp_connect, test,
    udp_socket, ProtocolError,
)

DEADLINE = 60          # seconds, per test
state = {}
# test_load_pool.py runs this suite again with every request through the
# thread pool and the modification queue (the path encrypted requests take).
THROUGH_POOL = os.environ.get("RAIDA_LOAD_THROUGH_POOL") == "1"
SETTINGS = {"quick_commands_inline": False} if THROUGH_POOL else {}


def daemon():
    if "daemon" not in state:
        d = Daemon(dict(SETTINGS), log_level="info")
        state["daemon"] = d
        d.start()
    d = state["daemon"]
    if not d.alive():
        raise DaemonError(f"daemon is not running (exit status {d.proc.poll()})")
    return d


def echo_requests(n, first_echo=0):
    """N echo requests with distinct echo bytes: list of (frame, challenge)."""
    d = daemon()
    return [d.request(echo=(first_echo + i) & 0xFFFF) for i in range(n)]


def check_all_answered(requests, results):
    failures = []
    for i, ((frame, challenge), (how, data)) in enumerate(zip(requests, results)):
        why = check_echo_answer(how, data, frame, challenge)
        if why:
            failures.append((i, why))
    expect(not failures, summarize_failures(failures))


def assert_settles_to_baseline():
    d = daemon()
    d.echo_ok()
    d.echo_ok(udp=True)
    d.wait_fd_count(state["baseline_fds"], timeout=10.0)


# ---------------------------------------------------------------- tests

@test
def test_daemon_starts():
    d = daemon()
    d.echo_ok()
    d.echo_ok(udp=True)
    state["baseline_fds"] = d.settled_fd_count()
    diag(f"baseline: {state['baseline_fds']} descriptors")


@test(timeout=DEADLINE + 30)
def test_500_concurrent_tcp_clients():
    """500 threads: all connect, then all send, then all read."""
    d = daemon()
    n = 500
    requests = echo_requests(n, first_echo=0x1000)
    results = [("not run", b"")] * n
    connected = threading.Barrier(n + 1, timeout=DEADLINE)
    sent = threading.Barrier(n + 1, timeout=DEADLINE)

    def client(i):
        frame = requests[i][0]
        s = None
        try:
            s = tcp_connect(d.port, timeout=DEADLINE / 2)
            connected.wait()
            s.sendall(frame)
            sent.wait()
            result = read_until_eof(s, timeout=DEADLINE / 2)
            results[i] = (result.how, result.data)
        except threading.BrokenBarrierError:
            results[i] = ("barrier broken", b"")
        except OSError as e:
            results[i] = (f"{type(e).__name__}: {e}", b"")
            for barrier in (connected, sent):
                barrier.abort()
        finally:
            if s is not None:
                s.close()

    old = threading.stack_size(256 * 1024)
    try:
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
    finally:
        threading.stack_size(old)
    start = time.monotonic()
    try:
        connected.wait()
        sent.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(max(0.1, DEADLINE - (time.monotonic() - start)))
    expect(not any(t.is_alive() for t in threads), "clients still running at the deadline")
    check_all_answered(requests, results)
    diag(f"500 clients answered in {time.monotonic() - start:.2f} s")


@test(timeout=DEADLINE + 30)
def test_burst_of_1000_connections():
    d = daemon()
    requests = echo_requests(1000, first_echo=0x2000)
    start = time.monotonic()
    results = many_tcp_exchanges(d.port, [f for f, _ in requests], start + DEADLINE)
    check_all_answered(requests, results)
    diag(f"1000 connections answered in {time.monotonic() - start:.2f} s")


@test(timeout=DEADLINE + 30)
def test_1000_clients_reset_after_sending():
    d = daemon()
    linger = struct.pack("ii", 1, 0)
    deadline = time.monotonic() + DEADLINE
    for batch in range(10):
        socks = []
        try:
            for i in range(100):
                frame, _ = d.request(echo=batch * 100 + i)
                s = tcp_connect(d.port)
                socks.append(s)
                s.sendall(frame)
            for s in socks:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                s.close()       # RST, whatever the daemon is doing with the request
        finally:
            for s in socks:
                s.close()
        expect(time.monotonic() < deadline, f"deadline passed at batch {batch}")
        expect(d.alive(), f"daemon died after reset batch {batch}")
    d.echo_ok()
    assert_settles_to_baseline()


def udp_answer_mismatch(data, challenges, answered):
    """None if DATA answers one of the requests (echo bytes -> challenge in
    CHALLENGES) for the first time, correctly; adds it to ANSWERED."""
    try:
        r = parse_response(data)
    except ProtocolError as e:
        return str(e)
    challenge = challenges.get(r.echo)
    if challenge is None:
        return f"answer with unknown echo bytes {r.echo.hex()}"
    if r.echo in answered:
        return f"second answer for echo {r.echo.hex()}"
    if r.status != 250 or r.challenge_hash != challenge:
        return (f"echo {r.echo.hex()}: status {r.status}, challenge "
                f"{'ok' if r.challenge_hash == challenge else 'differs'}")
    answered.add(r.echo)
    return None


@test(timeout=DEADLINE + 30)
def test_udp_2000_echoes_window_64():
    d = daemon()
    total, window = 2000, 64
    deadline = time.monotonic() + DEADLINE
    challenges = {}     # echo bytes -> challenge, every request sent
    outstanding = set() # echo bytes of the requests not answered yet
    answered = set()
    mismatches = []
    next_i = 0
    with udp_socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        while (next_i < total or outstanding) and time.monotonic() < deadline:
            while next_i < total and len(outstanding) < window:
                frame, challenge = d.request(echo=0x4000 + next_i)
                challenges[frame[30:32]] = challenge
                outstanding.add(frame[30:32])
                s.sendto(frame, ("127.0.0.1", d.port))
                next_i += 1
            s.settimeout(1.0)
            try:
                data = s.recvfrom(65536)[0]
            except socket.timeout:
                outstanding.clear()     # taken as lost; a late answer still counts
                continue
            why = udp_answer_mismatch(data, challenges, answered)
            if why:
                mismatches.append(why)
            outstanding.discard(data[6:8])
    answered = len(answered)
    diag(f"UDP: {answered}/{total} answered, {len(mismatches)} mismatched")
    expect(next_i == total, f"only {next_i} datagrams sent before the deadline")
    expect(not mismatches, "mismatched answers: " + "; ".join(mismatches[:10]))
    expect(answered >= total * 99 // 100, f"only {answered} of {total} answered")


@test(timeout=DEADLINE + 30)
def test_one_thread_and_a_queue_of_one_serve_300_clients():
    """worker_threads = 1, mod_queue_size = 1: requests wait their turn,
    none is lost."""
    # Through the pool, whatever the suite's mode: that is what is tested.
    with Daemon({"worker_threads": 1, "mod_queue_size": 1, "quick_commands_inline": False},
                log_level="info") as d:
        requests = [d.request(echo=0x6000 + i) for i in range(300)]
        start = time.monotonic()
        results = many_tcp_exchanges(d.port, [f for f, _ in requests], start + DEADLINE)
        check_all_answered(requests, results)
        diag(f"300 connections through one thread answered in {time.monotonic() - start:.2f} s")


@test(timeout=DEADLINE)
def test_no_descriptor_leak_at_the_end():
    assert_settles_to_baseline()


@test
def test_sigterm_exits_0_with_a_clean_log():
    daemon().stop()


if __name__ == "__main__":
    run()
