#!/usr/bin/env python3
"""Races on the coin store, against the real daemon (two workers): two
clients powning one coin at once on different connections, round after
round, on cold pages (never read before) and on a warm one: exactly one
passes every round and the store holds the winner's PAN; a pown sum against
a concurrent pown of one of its coins: never both. COINS_RACE_ROUNDS sets
the number of two-client rounds (default 1000, half cold, half warm).
Prints TAP."""

import os
import random
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import Daemon, expect, parse_response, run, test, workdir  # noqa: E402
from coinstest import (  # noqa: E402
    ALL_FAIL, ALL_PASS, CoinClient, make_data_dir, plain_frame, pown_payload,
    pown_sum_payload, random_coins, read_coin,
)

ROUNDS = int(os.environ.get("COINS_RACE_ROUNDS", "1000"))
SUM_ROUNDS = int(os.environ.get("COINS_RACE_SUM_ROUNDS", "200"))
_state = {}


def data_dir():
    return os.path.join(workdir(), "coins")


def setup():
    if "daemon" in _state:
        return _state["daemon"]
    cold = max(1, ROUNDS // 2)
    # One coin on each of COLD pages (denominations -8..6, pages 0..999)
    # that nothing reads before its round; one warm coin; sum triples.
    spec = [(-8 + i % 15, (i // 15) * 1024 + 17) for i in range(cold)]
    spec += [(0, 999 * 1024)]
    spec += [(5, 500 * 1024 + i) for i in range(3 * SUM_ROUNDS)]
    _state["coins"] = make_data_dir(data_dir(), random_coins(spec))
    _state["cold"] = spec[:cold]
    d = Daemon({"data_dir": data_dir(), "worker_processes": 2}, log_level="info")
    d.start()
    _state["daemon"] = d
    return d


def at_once(port, frames, timeout=10.0):
    """Connects one socket per frame, then sends all frames back to back,
    then reads every answer: the requests reach the workers together."""
    socks = []
    for _ in frames:
        s = socket.create_connection(("127.0.0.1", port), timeout)
        socks.append(s)
    for s, f in zip(socks, frames):
        s.sendall(f)
    sel = selectors.DefaultSelector()
    bufs = {s: bytearray() for s in socks}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    open_ = set(socks)
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            if data:
                bufs[s] += data
            else:
                sel.unregister(s)
                open_.discard(s)
    for s in socks:
        s.close()
    expect(not open_, "an answer did not come within the timeout (a hang?)")
    return [parse_response(bytes(bufs[s])) for s in socks]


def race_one(d, coin, an):
    pans = [os.urandom(16), os.urandom(16)]
    frames = [plain_frame(d, 1, 20, pown_payload([(*coin, an, p)])) for p in pans]
    answers = at_once(d.port, frames)
    statuses = [a.status for a in answers]
    expect(sorted(statuses) == [ALL_PASS, ALL_FAIL], f"coin {coin}: exactly one passes", statuses)
    winner = pans[statuses.index(ALL_PASS)]
    got, _ = read_coin(data_dir(), *coin)
    expect(got == winner, f"coin {coin}: the page holds the winner's PAN")
    return winner


@test(timeout=600)
def test_two_powns_of_one_coin_cold_pages():
    d = setup()
    for coin in _state["cold"]:
        _state["coins"][coin] = race_one(d, coin, _state["coins"][coin])


@test(timeout=600)
def test_two_powns_of_one_coin_warm_page():
    d = setup()
    coin = (0, 999 * 1024)
    for _ in range(ROUNDS - len(_state["cold"])):
        _state["coins"][coin] = race_one(d, coin, _state["coins"][coin])
    expect(CoinClient(d).detect([(*coin, _state["coins"][coin])]).status == ALL_PASS,
           "detect agrees with the page")


@test(timeout=600)
def test_pown_sum_against_pown_never_both():
    d = setup()
    both = none = 0
    for r in range(SUM_ROUNDS):
        ids = [(5, 500 * 1024 + 3 * r + k) for k in range(3)]
        ans = [_state["coins"][i] for i in ids]
        delta, pan = os.urandom(16), os.urandom(16)
        victim = random.randrange(3)
        frames = [plain_frame(d, 1, 21, pown_sum_payload(ids, ans, delta)),
                  plain_frame(d, 1, 20, pown_payload([(*ids[victim], ans[victim], pan)]))]
        if random.random() < 0.5:
            frames.reverse()
            s_pown, s_sum = (a.status for a in at_once(d.port, frames))
        else:
            s_sum, s_pown = (a.status for a in at_once(d.port, frames))
        both += s_sum == ALL_PASS and s_pown == ALL_PASS
        none += s_sum != ALL_PASS and s_pown != ALL_PASS
        now = [read_coin(data_dir(), *i)[0] for i in ids]
        if s_sum == ALL_PASS:
            want = [bytes(x ^ y for x, y in zip(a, delta)) for a in ans]
        else:
            want = list(ans)
            want[victim] = pan
        expect(s_sum == ALL_PASS or s_pown == ALL_PASS, f"round {r}: one of them passes",
               s_sum, s_pown)
        expect(now == want, f"round {r}: the pages hold what the winner wrote")
    expect(both == 0, f"{both} rounds where both passed")
    expect(none == 0, f"{none} rounds where neither passed")


@test
def test_race_daemon_stops_cleanly():
    setup().stop()


if __name__ == "__main__":
    run()
