#!/usr/bin/env python3
"""raidad's worker processes: worker_processes "auto" (one per CPU), the TCP
load shared by the workers, IPv4 and IPv6 listen addresses.

Only 127.0.0.1 (and ::1); only the PIDs this script started (the master)
and the master's children are signalled. Everything is bounded in time and
count. Prints TAP."""

import os
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    Skip, build_request, check_echo_answer, diag, expect, free_port, notify_supported,
    read_until_eof, run, test, wait_until,
)
from mastertest import (  # noqa: E402
    MasterDaemon, log_lines_matching,
)


@test
def test_worker_processes_auto_is_one_per_cpu():
    cpus = min(os.cpu_count() or 1, 64)
    with MasterDaemon({"worker_processes": "auto"}) as d:
        workers = d.wait_workers(cpus)
        diag(f"{cpus} CPUs, {len(workers)} workers")
        if notify_supported():
            expect(wait_until(lambda: any(s.startswith(f"{cpus} workers") for s in d.statuses()), 5),
                   f"no STATUS= saying {cpus} workers", d.statuses())


@test(timeout=60)
def test_workers_share_the_tcp_load():
    """EPOLLEXCLUSIVE wakes one worker per connection: under concurrent load
    both workers serve. The spread is printed (it is a measurement, and
    depends on the scheduler); both must have served some."""
    d = MasterDaemon({"worker_processes": 2}, log_level="debug")
    with d:
        workers = d.wait_workers(2)

        def client():
            for _ in range(150):
                d.echo_ok()
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        served = {pid: 0 for pid in workers}
        for line in log_lines_matching(d, r": 127\.0\.0\.1: echo$"):
            m = re.search(r"\] (\d+): ", line)
            if m and int(m.group(1)) in served:
                served[int(m.group(1))] += 1
        total = sum(served.values())
        diag("TCP requests per worker: " + ", ".join(
            f"{pid}: {n} ({100 * n / max(total, 1):.0f}%)" for pid, n in served.items()))
        expect(total == 8 * 150, f"{total} requests logged, expected {8 * 150}")
        expect(all(n > 0 for n in served.values()), f"a worker served nothing: {served}")


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def echo6(port, udp=False):
    """One echo to [::1]:PORT; the parsed answer, checked."""
    frame, challenge = build_request()
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET6, kind) as s:
        s.settimeout(5)
        s.connect(("::1", port))
        s.sendall(frame)
        data = s.recv(4096) if udp else read_until_eof(s).data
    why = check_echo_answer("eof", data, frame, challenge)
    expect(why is None, f"echo over {'UDP' if udp else 'TCP'} to [::1]:{port}: {why}", data)


@test(timeout=60)
def test_ipv4_and_ipv6_listen_addresses():
    """Several listen entries, IPv4 and IPv6, TCP and UDP on each."""
    if not ipv6_loopback():
        raise Skip("no IPv6 loopback here")
    d = MasterDaemon({"worker_processes": 2}, log_level="debug")
    six = free_port()
    d.rewrite(listen=(f"127.0.0.1:{d.port}", f"[::1]:{six}"))
    with d:
        d.echo_ok()
        d.echo_ok(udp=True)
        echo6(six)
        echo6(six, udp=True)
        expect(wait_until(lambda: log_lines_matching(d, r": ::1: echo$"), 5),
               "the IPv6 client's address is not in the log")


if __name__ == "__main__":
    run()
