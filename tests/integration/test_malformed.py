#!/usr/bin/env python3
"""raidad against malformed requests, over TCP and UDP: each is answered with
its error status or closed as specified, while a well-behaved client keeps
being served in the background; afterwards no descriptor has leaked.
Prints TAP."""

import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    Daemon, DaemonError, EchoProber, assert_status, diag, expect,
    parse_response, read_until_eof, run, tcp_connect, tcp_talk, test, udp_socket,
)

SOCKET_TIMEOUT_MS = 1000
MAX_BODY_SIZE = 1024
UDP_PAYLOAD_THRESHOLD = 512

state = {}


def daemon():
    if "daemon" not in state:
        d = Daemon({"max_body_size": MAX_BODY_SIZE, "socket_timeout_ms": SOCKET_TIMEOUT_MS,
                    "udp_payload_threshold": UDP_PAYLOAD_THRESHOLD,
                    "admin_key": "00112233445566778899aabbccddeeff"}, log_level="debug")
        state["daemon"] = d
        d.start()
    d = state["daemon"]
    if not d.alive():
        raise DaemonError(f"daemon is not running (exit status {d.proc.poll()})")
    return d


def prober():
    return state["prober"]


class served_meanwhile:
    """with served_meanwhile(): ... -- the background client is served during
    the block, and not one of its requests fails."""

    def __enter__(self):
        self.mark = prober().mark()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            prober().check_since(self.mark)
        return False


# ---------------------------------------------------------------- setup

@test
def test_daemon_starts_and_background_client_is_served():
    d = daemon()
    d.echo_ok()
    d.echo_ok(udp=True)
    state["baseline_fds"] = d.settled_fd_count()
    state["prober"] = EchoProber(d).start()
    prober().check_since((0, 0), min_ok=3)


# ---------------------------------------------------------------- TCP

def tcp_error_case(status, **request):
    """Sends a whole request built from REQUEST; expects a body-less answer
    with STATUS and the request's echo bytes, then the end of the connection."""
    d = daemon()
    with served_meanwhile():
        frame, _ = d.request(**request)
        result = tcp_talk(d.port, frame)
        expect(result.data, f"connection ended ({result.how}) without an answer", result)
        assert_status(result.data, status, echo=frame[30:32], raida_id=d.raida_id)
        # The daemon reads what is left of the request before closing, so
        # that no reset can destroy the answer on its way.
        expect(result.how == "eof", "the answer was not followed by a clean close (FIN)", result)


@test
def test_tcp_short_header_then_client_close():
    d = daemon()
    with served_meanwhile():
        frame, _ = d.request()
        with tcp_connect(d.port) as s:
            s.sendall(frame[:10])
        with tcp_connect(d.port) as s:
            s.sendall(frame[:32])   # the header only, then gone before the body
        time.sleep(0.2)
        expect(d.alive(), "daemon died")


@test
def test_tcp_bad_routing():
    tcp_error_case(255, routing=255)


@test
def test_tcp_bad_split():
    tcp_error_case(2, split=1)


@test
def test_tcp_wrong_raida_id():
    tcp_error_case(3, raida_id=5)


@test
def test_tcp_bad_shard():
    tcp_error_case(4, shard=9)


@test
def test_tcp_unknown_group():
    tcp_error_case(5, group=77)


@test
def test_tcp_unknown_command():
    tcp_error_case(6, command=99)
    tcp_error_case(6, group=1, command=12)


@test
def test_tcp_wrong_coin_id():
    tcp_error_case(7, coin_id=5)


@test
def test_tcp_encryption_type_9():
    tcp_error_case(27, enc=9)


@test
def test_tcp_missing_trailer():
    tcp_error_case(33, trailer=b"\x00\x00")


@test
def test_tcp_bad_crc():
    tcp_error_case(37, bad_crc=True)


@test
def test_tcp_body_size_17():
    d = daemon()
    frame, challenge = d.request()
    tcp_error_case(16, body=challenge + b">")


@test
def test_tcp_body_size_0():
    tcp_error_case(16, body=b"")


@test
def test_tcp_body_over_max_body_size_answered_without_the_body():
    d = daemon()
    with served_meanwhile():
        frame, _ = d.request(body_size=4000)
        with tcp_connect(d.port) as s:
            s.sendall(frame[:32])           # the header alone: the body never comes
            result = read_until_eof(s, timeout=10)
        expect(result.data, "no answer to a body_size over max_body_size", result)
        assert_status(result.data, 16, echo=frame[30:32], raida_id=d.raida_id)
        expect(result.how == "eof", "the answer was not followed by a clean close", result)
        # The same with the oversized body sent along: answered, then closed.
        frame, _ = d.request(body=bytes(4000))
        result = tcp_talk(d.port, frame)
        expect(result.data, "no answer to a body over max_body_size", result)
        assert_status(result.data, 16, echo=frame[30:32], raida_id=d.raida_id)
        expect(result.how == "eof", "the answer was not followed by a clean close", result)


@test(timeout=90)
def test_tcp_garbage_is_refused_or_closed():
    """1 KiB of random bytes, some behind the 17 first bytes of a valid
    header: an error answer or none, then a clean close, never a hang."""
    d = daemon()
    valid, _ = d.request()
    with served_meanwhile():
        for seed in range(1, 9):
            garbage = random.Random(seed).randbytes(1024)
            if seed > 4:
                garbage = valid[:17] + garbage[17:]
            result = tcp_talk(d.port, garbage, timeout=10)
            expect(result.how == "eof", f"garbage (seed {seed}): no clean close", result)
            if result.data:
                r = parse_response(result.data)
                expect(r.status != 250, f"garbage (seed {seed}) answered with success", r)


def check_closed_silently(sent):
    """Sends SENT on a new connection and stays silent: the daemon must close
    after about socket_timeout_ms, without answering."""
    d = daemon()
    with served_meanwhile():
        with tcp_connect(d.port) as s:
            if sent:
                s.sendall(sent)
            result = read_until_eof(s, timeout=15)
        expect(result.how in ("eof", "reset"), "connection not closed by the daemon", result)
        expect(not result.data, "the daemon answered a partial request", result)
        low, high = SOCKET_TIMEOUT_MS / 2000, 5.0
        expect(low <= result.elapsed <= high,
               f"closed after {result.elapsed:.2f} s, expected {low}..{high} s "
               f"(socket_timeout_ms = {SOCKET_TIMEOUT_MS})", result)


@test(timeout=60)
def test_tcp_half_header_then_silence():
    frame, _ = daemon().request()
    check_closed_silently(frame[:16])


@test(timeout=60)
def test_tcp_header_and_half_body_then_silence():
    frame, _ = daemon().request()
    check_closed_silently(frame[:32 + 9])


@test(timeout=60)
def test_tcp_silent_connection():
    check_closed_silently(b"")


@test
def test_tcp_request_then_half_close_is_answered():
    d = daemon()
    with served_meanwhile():
        frame, challenge = d.request()
        with tcp_connect(d.port) as s:
            s.sendall(frame)
            s.shutdown(socket.SHUT_WR)
            result = read_until_eof(s)
        expect(result.how == "eof" and result.data, "request followed by a half-close unanswered", result)
        r = assert_status(result.data, 250, echo=frame[30:32])
        expect(r.challenge_hash == challenge, "challenge hash differs", r)


@test
def test_tcp_second_request_on_a_connection_is_not_answered():
    """One request per connection: the first is answered, then the close."""
    d = daemon()
    with served_meanwhile():
        first, challenge = d.request(echo=b"\x01\x01")
        second, _ = d.request(echo=b"\x02\x02")
        result = tcp_talk(d.port, first + second)
        expect(len(result.data) == 32, "expected exactly one 32-byte answer", result)
        r = assert_status(result.data, 250, echo=b"\x01\x01")
        expect(r.challenge_hash == challenge, "challenge hash differs", r)
        expect(result.how == "eof", "the answer was not followed by a clean close (FIN) but a "
               "reset: the unread second request was left in the socket at close", result)


@test(timeout=60)
def test_tcp_client_streaming_after_its_answer_is_cut_off():
    """After an error answer the daemon reads what the client still sends,
    but not for ever: within a few socket timeouts the connection is gone."""
    d = daemon()
    with served_meanwhile():
        frame, _ = d.request(routing=255)
        start = time.monotonic()
        with tcp_connect(d.port) as s:
            s.sendall(frame)
            gone = None
            while time.monotonic() - start < 10:
                try:
                    s.sendall(bytes(1024))
                except (BrokenPipeError, ConnectionResetError) as e:
                    gone = e
                    break
                time.sleep(0.05)
        elapsed = time.monotonic() - start
        expect(gone is not None, f"connection still accepting data after {elapsed:.1f} s")
        expect(elapsed <= 6, f"connection cut after {elapsed:.1f} s (socket_timeout_ms = "
               f"{SOCKET_TIMEOUT_MS})")


# ---------------------------------------------------------------- UDP

def udp_ask(sock, port, frame, timeout=3.0):
    sock.settimeout(timeout)
    sock.sendto(frame, ("127.0.0.1", port))
    try:
        return sock.recvfrom(65536)[0]
    except socket.timeout:
        return None


@test
def test_udp_short_datagrams_dropped():
    d = daemon()
    with served_meanwhile(), udp_socket() as s:
        for size in (0, 10, 31):
            frame, challenge = d.request()
            answer = udp_ask(s, d.port, frame[:size], timeout=0.5)
            expect(answer is None, f"a {size}-byte datagram was answered: {answer!r}")
            answer = udp_ask(s, d.port, frame)
            expect(answer is not None, f"no answer to the valid echo after a {size}-byte datagram")
            r = assert_status(answer, 250, echo=frame[30:32])
            expect(r.challenge_hash == challenge, "challenge hash differs", r)


def udp_error_case(status, **request):
    d = daemon()
    with served_meanwhile(), udp_socket() as s:
        frame, _ = d.request(**request)
        answer = udp_ask(s, d.port, frame)
        expect(answer is not None, f"no answer (expected status {status})")
        assert_status(answer, status, echo=frame[30:32], raida_id=d.raida_id)


@test
def test_udp_bad_crc():
    udp_error_case(37, bad_crc=True)


@test
def test_udp_body_size_larger_than_datagram():
    udp_error_case(16, body_size=40)


@test
def test_udp_body_size_smaller_than_datagram():
    d = daemon()
    frame, challenge = d.request()
    udp_error_case(16, body=challenge + bytes(12) + b">>", body_size=18)


@test
def test_udp_header_errors():
    udp_error_case(255, routing=255)
    udp_error_case(7, coin_id=5)
    udp_error_case(27, enc=9)


@test
def test_udp_datagram_over_udp_payload_threshold():
    d = daemon()
    limit = UDP_PAYLOAD_THRESHOLD
    with served_meanwhile(), udp_socket() as s:
        frame, challenge = d.request(payload=bytes(limit - 32 - 18))
        expect(len(frame) == limit, "test bug: frame size")
        answer = udp_ask(s, d.port, frame)
        expect(answer is not None, f"no answer to a {limit}-byte datagram")
        r = assert_status(answer, 250, echo=frame[30:32])
        expect(r.challenge_hash == challenge, "challenge hash differs", r)

        frame, _ = d.request(payload=bytes(limit - 32 - 18 + 1))
        answer = udp_ask(s, d.port, frame)
        expect(answer is not None, f"no answer to a {len(frame)}-byte datagram")
        assert_status(answer, 16, echo=frame[30:32])

        # Its first udp_payload_threshold bytes are a whole request (body
        # size field included), 88 more bytes follow: the datagram is over
        # the threshold and its length does not match its body size.
        frame, _ = d.request(payload=bytes(limit - 32 - 18))
        answer = udp_ask(s, d.port, frame + bytes(88))
        expect(answer is not None, f"no answer to a {len(frame) + 88}-byte datagram")
        assert_status(answer, 16, echo=frame[30:32])


@test
def test_udp_answers_match_their_requests():
    d = daemon()
    with served_meanwhile(), udp_socket(timeout=3.0) as s:
        echo_frame, echo_challenge = d.request(command=0, echo=b"\x11\x11")
        version_frame, version_challenge = d.request(command=1, echo=b"\x22\x22")
        s.sendto(echo_frame, ("127.0.0.1", d.port))
        s.sendto(version_frame, ("127.0.0.1", d.port))
        answers = {}
        for _ in range(2):
            r = parse_response(s.recvfrom(65536)[0])
            answers[r.echo] = r
        expect(set(answers) == {b"\x11\x11", b"\x22\x22"}, f"answers: {answers}")
        e, v = answers[b"\x11\x11"], answers[b"\x22\x22"]
        expect(e.status == 250 and e.body_size == 0 and e.challenge_hash == echo_challenge,
               "echo answer does not match its request", e)
        expect(v.status == 250 and v.body_size == 10 and v.challenge_hash == version_challenge,
               "version answer does not match its request", v)


# ---------------------------------------------------------------- aftermath

@test
def test_still_serving_and_no_descriptor_leaked():
    d = daemon()
    prober().stop()
    expect(not prober().failures, "background client failures: " + "; ".join(prober().failures[:5]))
    diag(f"background client served {prober().ok} requests")
    d.echo_ok()
    d.echo_ok(udp=True)
    d.wait_fd_count(state["baseline_fds"], timeout=5.0)


@test
def test_sigterm_exits_0_with_a_clean_log():
    daemon().stop()


if __name__ == "__main__":
    run()
