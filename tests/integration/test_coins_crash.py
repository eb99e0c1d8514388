#!/usr/bin/env python3
"""Crashes and stops under pown load (64 connections at once, two workers):
kill -9 of the whole process tree at a random instant, then a restart: every
acknowledged PAN is its coin's AN, every other coin holds its previous AN or
a PAN sent for it, and raidad serves; kill -9 of one worker only (the master
respawns it; no request on any coin hangs afterwards); SIGTERM and SIGQUIT
under load lose nothing acknowledged; reloads under load lose no pown at
all. Every other kill -9 round runs with
checkpoints as frequent as allowed. COINS_CRASH_ROUNDS sets the kill -9
rounds (default 20), COINS_CRASH_WORKER_ROUNDS the one-worker rounds (5).
Prints TAP."""

import os
import random
import re
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    Daemon, child_pids, expect, parse_response, reload_daemon, run, tcp_exchange, test,
    wait_gone, wait_until, workdir,
)
from coinstest import (  # noqa: E402
    ALL_PASS, CoinClient, make_data_dir, plain_frame, pown_payload, random_coins, read_coin,
)

ROUNDS = int(os.environ.get("COINS_CRASH_ROUNDS", "20"))
WORKER_ROUNDS = int(os.environ.get("COINS_CRASH_WORKER_ROUNDS", "5"))
CONNECTIONS = 64
COINS_PER_CLIENT = 4
# The worker killed may be one just respawned: the master then says it died young.
WORKER_DIED = r"worker \d+ exited on signal 9|worker slot \d+ died young"


def data_dir():
    return os.path.join(workdir(), "coins")


class Coin:
    """What a client knows of one coin: the AN last acknowledged, and the
    PANs sent whose answer never came (any of them may have been kept)."""

    def __init__(self, den, sn, an):
        self.den, self.sn, self.an = den, sn, an
        self.unsure = []

    def possible(self):
        return [self.an] + self.unsure


class Load:
    """CONNECTIONS clients, each powning its own coins over and over, a new
    TCP connection per request, until stopped or until an answer fails."""

    def __init__(self, d, coins):
        self.d, self.coins = d, coins
        self.stop = threading.Event()
        self.acked = 0
        self.anomalies = []
        self.lock = threading.Lock()
        self.threads = []
        self.keep_going = False

    def client(self, mine):
        while not self.stop.is_set():
            for c in mine:
                if self.stop.is_set():
                    return
                pan = os.urandom(16)
                frame = plain_frame(self.d, 1, 20, pown_payload([(c.den, c.sn, c.an, pan)]))
                try:
                    r = parse_response(tcp_exchange(self.d.port, frame, timeout=10.0))
                except (OSError, AssertionError):
                    c.unsure.append(pan)
                    if not self.keep_going:
                        return
                    continue
                if r.status == ALL_PASS:
                    c.an, c.unsure = pan, []
                    with self.lock:
                        self.acked += 1
                elif not c.unsure:
                    with self.lock:
                        self.anomalies.append((c.den, c.sn, r.status))

    def start(self):
        per = COINS_PER_CLIENT
        for i in range(CONNECTIONS):
            t = threading.Thread(target=self.client, args=(self.coins[i * per:(i + 1) * per],),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def join(self, timeout=30.0):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        expect(not any(t.is_alive() for t in self.threads), "a client is stuck (a hang?)")


def make_coins():
    """A fresh folder each time: a journal a failed case left behind would
    be replayed over the new pages."""
    n = CONNECTIONS * COINS_PER_CLIENT
    spec = [(1, (i * 397) % 1024000) for i in range(n)]
    shutil.rmtree(data_dir(), ignore_errors=True)
    ans = make_data_dir(data_dir(), random_coins(spec))
    return [Coin(den, sn, ans[(den, sn)]) for den, sn in spec]


def start_daemon(expect_log=(), checkpoints=False):
    """CHECKPOINTS: as often as the settings allow (every 100 ms, or each
    64 KiB of journal), so that kills land in them too."""
    settings = {"data_dir": data_dir(), "worker_processes": 2, "worker_threads": 4}
    if checkpoints:
        settings.update(checkpoint_interval_ms=100, journal_max_size=65536)
    d = Daemon(settings, log_level="notice", expect_log=list(expect_log))
    return d.start()


def check_store(coins, what):
    """Every coin's page holds its acknowledged AN or a PAN sent for it."""
    bad = []
    for c in coins:
        got, mfs = read_coin(data_dir(), c.den, c.sn)
        if got not in c.possible() or mfs == 0:
            bad.append((c.den, c.sn, got.hex(), c.an.hex(), len(c.unsure)))
        else:
            c.an, c.unsure = got, []
    expect(not bad, f"{what}: {len(bad)} coins hold neither their acknowledged AN nor a sent "
           "PAN", bad[:5])


def check_serves(d, coins):
    """Every coin answers, with the AN the store holds: no lock is left."""
    cl = CoinClient(d)
    for i in range(0, len(coins), 32):
        batch = coins[i:i + 32]
        r = cl.detect([(c.den, c.sn, c.an) for c in batch])
        expect(r.status == ALL_PASS, "detect of every coin after the restart", r)


def kill_tree(d):
    pids = child_pids(d.pid)
    for pid in pids + [d.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    d.proc.wait(15)
    wait_gone(pids, 10)
    d.kill()


@test(timeout=900)
def test_kill_9_whole_tree_under_load():
    coins = make_coins()
    total = replays = 0
    for round_ in range(ROUNDS):
        d = start_daemon(checkpoints=round_ % 2 == 1)
        load = Load(d, coins)
        load.start()
        time.sleep(random.uniform(0.3, 1.2))
        kill_tree(d)
        load.join()
        expect(not load.anomalies, "a pown with the right AN failed", load.anomalies[:5])
        total += load.acked
        d = start_daemon()              # the master replays the journal before forking
        replays += re.search(r"journal .*: replayed [1-9]\d* records", d.log_text()) is not None
        check_store(coins, f"round {round_}")
        check_serves(d, coins)
        d.stop()
    expect(total > 0, "no pown was acknowledged at all")
    expect(replays > 0, "no restart logged a replay of the journal")
    print(f"# {ROUNDS} rounds, {total} powns acknowledged before the kills, "
          f"{replays} restarts replayed the journal", flush=True)


@test(timeout=600, expect_log=[WORKER_DIED])
def test_kill_9_one_worker_under_load():
    coins = make_coins()
    d = start_daemon(expect_log=[WORKER_DIED])
    for round_ in range(WORKER_ROUNDS):
        load = Load(d, coins)
        load.keep_going = True
        load.start()
        time.sleep(random.uniform(0.3, 1.0))
        workers = child_pids(d.pid)
        os.kill(random.choice(workers), signal.SIGKILL)
        expect(wait_until(lambda: len(child_pids(d.pid)) == 2 and
                          set(child_pids(d.pid)) != set(workers), 10),
               "the master respawns the worker")
        time.sleep(0.5)                 # load goes on over both workers
        load.join()
        expect(not load.anomalies, "a pown with the right AN failed", load.anomalies[:5])
        # Which of the possible ANs each unsure coin holds: detect finds out
        # (and must answer: a lock left by the dead worker would hang it).
        cl = CoinClient(d)
        for c in coins:
            if not c.unsure:
                continue
            held = [an for an in c.possible() if cl.detect([(c.den, c.sn, an)]).status == ALL_PASS]
            expect(len(held) == 1, f"coin {c.den}/{c.sn}: exactly one possible AN holds", held)
            c.an, c.unsure = held[0], []
        check_serves(d, coins)
        # And every coin can still be powned, at once.
        for c in coins[:32]:
            pan = os.urandom(16)
            expect(cl.pown([(c.den, c.sn, c.an, pan)]).status == ALL_PASS, "pown after the kill")
            c.an = pan
    d.stop(expect_log=[WORKER_DIED])
    check_store(coins, "after the stop")


def stop_under_load(sig):
    coins = make_coins()
    d = start_daemon()
    load = Load(d, coins)
    load.start()
    time.sleep(random.uniform(0.5, 1.0))
    d.stop(sig=sig)                     # exit status 0, clean log
    load.join()
    expect(load.acked > 0, "nothing was acknowledged before the stop")
    # The stop emptied the journal into the pages: no replay is needed.
    check_store(coins, f"after {signal.Signals(sig).name}")
    expect(os.path.getsize(os.path.join(data_dir(), "raidad.journal")) == 4096,
           "the journal is empty after an orderly stop")
    d = start_daemon()
    check_serves(d, coins)
    d.stop()


@test(timeout=300)
def test_reloads_under_load_lose_nothing():
    """Two reloads while 64 clients pown: the old workers drain (their
    answers waiting for the journal go out first), every pown is answered,
    none fails, and the store holds every acknowledged PAN."""
    coins = make_coins()
    d = start_daemon()
    load = Load(d, coins)
    load.start()
    for _ in range(2):
        time.sleep(0.5)
        reload_daemon(d)
    time.sleep(0.5)
    load.join()
    unanswered = sum(len(c.unsure) for c in coins)
    expect(unanswered == 0, f"{unanswered} powns went unanswered across the reloads")
    expect(not load.anomalies, "a pown with the right AN failed", load.anomalies[:5])
    expect(load.acked > 0, "nothing was acknowledged")
    d.stop()
    check_store(coins, "after the reloads")


@test(timeout=300)
def test_sigterm_under_load_loses_nothing():
    stop_under_load(signal.SIGTERM)


@test(timeout=300)
def test_sigquit_under_load_loses_nothing():
    stop_under_load(signal.SIGQUIT)


if __name__ == "__main__":
    run()
