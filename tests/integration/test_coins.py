#!/usr/bin/env python3
"""The coin commands against the real daemon (two workers) and a data
directory built here: detect, detect sum, pown, pown sum and audit, every
status, over TCP and UDP, plain and encrypted (types 1, 4 and 5); a change made
through one worker seen at once by every worker, including as the key of
encrypted requests; changes kept across a restart; the data directory
checked by raidad -t and at start; a damaged page answered, not crashed on.
Prints TAP."""

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    RAIDAD, Daemon, expect, give_to_workers, parse_response, raida_cli, reload_daemon,
    render_config, rss_kib, run, tcp_exchange, test, udp_exchange, workdir,
)
from coinstest import (  # noqa: E402
    ALL_FAIL, ALL_PASS, MIXED, CoinClient, bitfield, check_crc, header_only, make_data_dir,
    page_path, pown_payload, random_coins, read_coin,
)

RAIDA_ID = 3
# Coins: denomination 1, serial numbers 0..39 (page 0); -8/1023999 (the last
# page); 6/5000 (page 4); 0/100 holds the AN of key requests; 2/7 is on a
# page but not issued (MFS 0).
SPEC = [(1, sn) for sn in range(40)] + [(-8, 1023999), (6, 5000), (0, 100), (0, 101), (0, 102)]
ENCODINGS = [(0, False), (0, True), (1, False), (1, True), (4, False), (4, True), (5, False),
             (5, True)]

_state = {}


def data_dir():
    return os.path.join(workdir(), "coins")


def coins():
    """The ANs the test expects the store to hold now: {(den, sn): an}."""
    return _state["coins"]


def daemon():
    if "daemon" not in _state:
        root = data_dir()
        _state["coins"] = make_data_dir(root, random_coins(SPEC))
        make_data_dir(os.path.join(workdir(), "scratch"), {})
        # 2/7: on a page, not issued.
        page = bytearray(17408)
        os.makedirs(os.path.dirname(page_path(root, 2, 7)), exist_ok=True)
        with open(page_path(root, 2, 7), "wb") as f:
            f.write(page)
        d = Daemon({"data_dir": root, "worker_processes": 2, "raida_id": RAIDA_ID,
                    "max_body_size": 65536, "admin_key": ADMIN_KEY})
        d.start()
        _state["daemon"] = d
    return _state["daemon"]


ADMIN_KEY = "00112233445566778899aabbccddeeff"


def client(enc=0, udp=False, key=(0, 100)):
    """Type 5 is keyed with KEY and coin 0/102 together."""
    d = daemon()
    key_coin = (key[0], key[1], coins()[key]) if enc else None
    if enc == 5:
        key_coin += (0, 102, coins()[(0, 102)])
    return CoinClient(d, enc, udp, key_coin)


def an(den, sn):
    return coins()[(den, sn)]


def each_encoding(func):
    for enc, udp in ENCODINGS:
        try:
            func(client(enc, udp), enc, udp)
        except AssertionError as e:
            raise AssertionError(f"type {enc} over {'UDP' if udp else 'TCP'}: {e}") from e


def new_pan():
    return os.urandom(16)


# ---------------------------------------------------------------- detect

@test
def test_helpers_agree_with_the_protocol():
    expect(check_crc(), "challenge CRC")
    # docs/protocol.md: 10 coins of which 0, 3 and 9 fail give f6 01.
    expect(bitfield([i not in (0, 3, 9) for i in range(10)]) == bytes.fromhex("f601"), "bitfield")


@test
def test_detect_all_pass_all_fail_mixed():
    def check(c, enc, udp):
        ten = [(1, sn, an(1, sn)) for sn in range(10)]
        r = c.detect(ten)
        expect(r.status == ALL_PASS and r.payload == b"", "all pass: 241, no body", r)
        bad = [(d, s, bytes(16)) for d, s, _ in ten]
        r = c.detect(bad)
        expect(r.status == ALL_FAIL and r.payload == b"", "all fail: 242, no body", r)
        # docs/protocol.md's example: coins 0, 3 and 9 fail -> f6 01. Coin 0 has
        # a wrong AN, 3 is not issued, 9 cannot exist (denomination 7).
        mixed = list(ten)
        mixed[0] = (1, 0, new_pan())
        mixed[3] = (2, 7, bytes(16))
        mixed[9] = (7, 9, an(1, 9))
        r = c.detect(mixed)
        expect(r.status == MIXED and r.payload == bytes.fromhex("f601"), "mixed: 243 f6 01", r)
    each_encoding(check)


@test
def test_detect_coins_that_cannot_exist_fail():
    def check(c, enc, udp):
        good = (1, 1, an(1, 1))
        odd = [(1, 1024000 + 1, an(1, 1)),     # past the last page: no alias of 1/1
               (-9, 1, an(1, 1)), (4, 4, bytes(16)), (1, 0xFFFFFFFF, an(1, 1))]
        r = c.detect([good] + odd)
        expect(r.status == MIXED and r.payload == b"\x01", "only the real coin passes", r)
    each_encoding(check)


@test
def test_length_statuses():
    def check(c, enc, udp):
        for command, size in ((10, 21), (11, 21), (20, 37), (21, 37)):
            r = c.call(1, command, bytes(size - 1))
            expect(r.status == 16, f"1/{command}: a payload under one coin is 16", r)
            r = c.call(1, command, bytes(size + 1))
            expect(r.status == 39, f"1/{command}: not whole records is 39", r)
    each_encoding(check)


@test
def test_header_only_is_36():
    d = daemon()
    for command in (10, 11, 20, 21):
        for enc in (0, 4):
            frame = header_only(d, 1, command, enc)
            for answer in (tcp_exchange(d.port, frame), udp_exchange(d.port, frame)):
                expect(answer is not None and answer[2] == 36,
                       f"1/{command} type {enc} header only: 36", answer)


# ---------------------------------------------------------------- sums

@test
def test_detect_sum_statuses():
    def check(c, enc, udp):
        ids = [(1, 20), (1, 21), (1, 22)]
        ans = [an(*i) for i in ids]
        expect(c.detect_sum(ids, ans).status == ALL_PASS, "sum matches: 241")
        expect(c.detect_sum(ids, [new_pan()] + ans[1:]).status == ALL_FAIL, "no match: 242")
        expect(c.detect_sum(ids + [(1, 20)], ans + [ans[0]]).status == 40, "twice: 40")
        expect(c.detect_sum(ids + [(7, 1)], ans + [ans[0]]).status == 40, "den 7: 40")
        expect(c.detect_sum(ids + [(1, 1024000)], ans + [ans[0]]).status == 40, "sn: 40")
        expect(c.detect_sum(ids + [(4, 4)], ans + [bytes(16)]).status == 40, "no page: 40")
        expect(c.detect_sum(ids + [(2, 7)], ans + [bytes(16)]).status == 40, "not issued: 40")
    each_encoding(check)


@test
def test_pown_sum_all_or_nothing():
    def check(c, enc, udp):
        ids = [(1, 30), (1, 31), (1, 32)]
        ans = [an(*i) for i in ids]
        delta = new_pan()
        r = c.pown_sum(ids, [new_pan()] + ans[1:], delta)
        expect(r.status == ALL_FAIL, "wrong sum: 242", r)
        expect([read_coin(data_dir(), *i)[0] for i in ids] == ans, "242 changed nothing")
        expect(c.pown_sum(ids + [(1, 30)], ans + [ans[0]], delta).status == 40, "twice: 40")
        r = c.pown_sum(ids, ans, delta)
        expect(r.status == ALL_PASS and r.payload == b"", "right sum: 241", r)
        for i, old in zip(ids, ans):
            new = bytes(a ^ b for a, b in zip(old, delta))
            got, mfs = read_coin(data_dir(), *i)
            expect(got == new and mfs > 0, f"coin {i}: AN XOR delta on disk once answered")
            coins()[i] = new
    each_encoding(check)


# ---------------------------------------------------------------- pown

@test
def test_pown_changes_only_the_coins_that_pass():
    def check(c, enc, udp):
        a, b = (1, 10), (1, 11)
        pa, pb = new_pan(), new_pan()
        r = c.pown([(*a, an(*a), pa), (*b, new_pan(), pb)])
        expect(r.status == MIXED and r.payload == b"\x01", "first passes, second fails", r)
        expect(read_coin(data_dir(), *a)[0] == pa, "the PAN is on disk once answered")
        expect(read_coin(data_dir(), *b)[0] == an(*b), "the failed coin is unchanged")
        coins()[a] = pa
        r = c.pown([(*a, bytes(x ^ 1 for x in pa), new_pan())])
        expect(r.status == ALL_FAIL, "a wrong AN fails", r)
        pa2 = new_pan()
        r = c.pown([(*a, pa, pa2), (*b, an(*b), pb)])
        expect(r.status == ALL_PASS, "both pass", r)
        coins()[a], coins()[b] = pa2, pb
        expect(c.pown([(*a, pa, new_pan())]).status == ALL_FAIL, "the old AN no longer works")
    each_encoding(check)


@test
def test_change_seen_by_every_worker_at_once():
    """Each request is a new connection, served by either worker: the next
    one always sees the change, whichever worker made it."""
    c = client()
    coin = (1, 12)
    for _ in range(60):
        pan = new_pan()
        udp = random.random() < 0.5
        cc = client(0, udp)
        expect(cc.pown([(*coin, an(*coin), pan)]).status == ALL_PASS, "pown")
        coins()[coin] = pan
        expect(c.detect([(*coin, pan)]).status == ALL_PASS, "the new AN is seen at once")
        expect(c.detect([(1, 12, bytes(16))]).status == ALL_FAIL, "detect")


@test
def test_udp_burst_of_powns_all_durable():
    """Datagrams arriving together are answered after one sync for the
    batch; each answer holds for the page it names."""
    d = daemon()
    ids = [(1, sn) for sn in range(13, 20)] + [(0, 102)]
    for _ in range(10):
        socks, pans = [], {}
        for coin in ids:
            pan = new_pan()
            pans[coin] = pan
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(10)
            frame = CoinClient(d).frame(1, 20, pown_payload([(*coin, an(*coin), pan)]))
            socks.append((s, coin, frame))
        for s, _, frame in socks:
            s.sendto(frame, ("127.0.0.1", d.port))
        for s, coin, _ in socks:
            data, _ = s.recvfrom(65536)
            s.close()
            r = parse_response(data)
            expect(r.status == ALL_PASS, f"coin {coin}: UDP pown", r)
            expect(read_coin(data_dir(), *coin)[0] == pans[coin], "on disk once answered")
            coins()[coin] = pans[coin]


@test
def test_encryption_key_follows_pown():
    """After a pown of the key coin, a request keyed with its old AN is
    refused; with the new AN it opens (types 1 and 4, any worker)."""
    key = (0, 101)
    for enc in (1, 4, 5):
        for udp in (False, True):
            old = coins()[key]
            pan = new_pan()
            expect(client().pown([(*key, old, pan)]).status == ALL_PASS, "pown of the key coin")
            coins()[key] = pan
            for _ in range(4):
                stale_key = (*key, old) + ((0, 102, coins()[(0, 102)]) if enc == 5 else ())
                stale = CoinClient(daemon(), enc, udp, stale_key)
                r = stale.call(1, 10, b"\x01" * 21)
                expect(r.status in (37, 204), f"type {enc}: the old AN is refused", r)
                fresh = client(enc, udp, key)
                r = fresh.detect([(1, 1, an(1, 1))])
                expect(r.status == ALL_PASS, f"type {enc}: the new AN opens", r)


@test
def test_key_coin_missing():
    c1 = CoinClient(daemon(), 1, False, (4, 4, bytes(16)))
    expect(c1.call(1, 10, bytes(21)).status == 34, "type 1, no such coin: 34")
    c4 = CoinClient(daemon(), 4, False, (4, 4, bytes(16)))
    expect(c4.call(1, 10, bytes(21)).status == 25, "type 4, no such coin: 25")


# ---------------------------------------------------------------- audit

def audit_counts(payload):
    expect(len(payload) == 75, "15 records of 5 bytes", payload.hex())
    out = {}
    for i in range(15):
        rec = payload[i * 5:i * 5 + 5]
        out[int.from_bytes(rec[:1], "big", signed=True)] = int.from_bytes(rec[1:], "big")
    expect(sorted(out) == list(range(-8, 7)), "denominations -8..6 in order")
    return out


@test
def test_audit_counts_and_udp_amplification():
    want = {den: 0 for den in range(-8, 7)}
    for den, _ in SPEC:
        want[den] += 1
    r = client().audit()
    expect(r.status == 250 and audit_counts(r.payload) == want, "TCP audit counts", r)
    # UDP: the answer (109 bytes) is larger than a plain request (50): only
    # a sender that proved a key gets it (the existing amplification rule).
    r = client(0, True).audit()
    expect(r.status == 16 and r.payload == b"", "plain UDP audit refused with 16", r)
    for enc in (1, 4, 5):
        r = client(enc, True).audit()
        expect(r.status == 250 and audit_counts(r.payload) == want, f"type {enc} UDP audit", r)


def stats():
    r = raida_cli("-k", ADMIN_KEY, "-r", RAIDA_ID, "127.0.0.1", daemon().port, "stats")
    expect(r.returncode == 0 and r.status() == 250, "stats with the admin key failed", r)
    counts = {"requests": int(r.fields.get("requests", "-1"))}
    for status, n in re.findall(r"^status (\d+): (\d+)$", r.stdout, re.M):
        counts[int(status)] = int(n)
    return counts


@test
def test_sums_of_256_coins_are_answered():
    """Sorting the ids of 256 coins (1 KiB) makes glibc's qsort ask the kernel how much memory
    there is (sysinfo): the workers' system call filter allows it, so no client can kill a
    worker with a long sum (it did: the filter killed the worker)."""
    ids = b"".join(bytes([1]) + sn.to_bytes(4, "big") for sn in range(256))
    for command, tail in ((11, bytes(16)), (21, bytes(32))):     # detect sum, pown sum
        r = client().call(1, command, ids + tail)
        expect(r.status in (40, 242), f"a sum of 256 coins (1/{command}) got {r.status}", r)


@test
def test_a_pown_sum_larger_than_pending_changes_passes():
    """A pown sum's changes go into the pending table whole: with
    pending_changes at its least (4096), a sum of 5000 coins passes and
    is there after a restart (it was refused with 252, nothing logged).
    The table is sized at start, and a reload may raise max_body_size:
    the daemon starts with bodies too small for such a sum."""
    root = os.path.join(workdir(), "wide")
    ids = [(1, sn) for sn in range(5000)]
    store = make_data_dir(root, random_coins(ids))
    ans = [store[c] for c in ids]
    delta = new_pan()
    settings = {"data_dir": root, "pending_changes": 4096, "raida_id": RAIDA_ID}
    with Daemon(dict(settings, max_body_size=1024)) as d:
        reload_daemon(d, {"max_body_size": 65536})
        r = CoinClient(d).pown_sum(ids, ans, delta)
        expect(r.status == ALL_PASS, "a pown sum of 5000 coins", r)
    owned = [bytes(a ^ b for a, b in zip(store[c], delta)) for c in ids]
    with Daemon(settings) as d:
        r = CoinClient(d).detect_sum(ids, owned)
        expect(r.status == ALL_PASS, "the 5000 new ANs after a restart", r)
    shutil.rmtree(root)


@test
def test_stats_count_a_replaced_answer_once():
    """A plain UDP audit's answer is replaced by 16 (the size rule above): the stats count
    it once, as what was sent."""
    first = stats()
    for _ in range(4):
        expect(client(0, True).audit().status == 16, "plain UDP audit not refused with 16")
    second = stats()
    grew = {k: second.get(k, 0) - first.get(k, 0) for k in ("requests", 16, 250)}
    # The first stats call's own answer counts once it is sent: between the two.
    expect(grew == {"requests": 5, 16: 4, 250: 1}, f"the counts grew by {grew}", first, second)


# ---------------------------------------------------------------- restart and checks

@test
def test_changes_survive_a_restart():
    d = daemon()
    coin = (6, 5000)
    pan = new_pan()
    expect(client().pown([(*coin, an(*coin), pan)]).status == ALL_PASS, "pown")
    coins()[coin] = pan
    d.stop()
    names = sorted(os.listdir(data_dir()))
    expect("raidad.journal" in names and "raidad.index" in names and "raidad.lock" in names,
           "journal, index and lock beside Data/", names)
    expect(os.path.getsize(os.path.join(data_dir(), "raidad.journal")) == 4096,
           "an orderly stop leaves the journal empty")
    del _state["daemon"]
    d2 = Daemon({"data_dir": data_dir(), "worker_processes": 2, "raida_id": RAIDA_ID})
    d2.start()
    _state["daemon"] = d2
    expect(client().detect([(*coin, pan)]).status == ALL_PASS, "the PAN after the restart")


def raidad_t(settings):
    path = os.path.join(workdir(), "check.conf")
    with open(path, "w") as f:
        f.write(render_config(settings))
    return subprocess.run([RAIDAD, "-t", "-c", path], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)


@test
def test_config_test_checks_the_data_dir():
    root = os.path.join(workdir(), "checked")
    make_data_dir(root, random_coins([(0, 1)]))
    p = raidad_t({"data_dir": root})
    expect(p.returncode == 0, "a good folder passes", p.stdout, p.stderr)
    p = raidad_t({"data_dir": root + "-missing"})
    expect(p.returncode != 0 and f"{root}-missing: No such file" in p.stderr,
           "a missing folder: FILE: what", p.stderr)
    bad = page_path(root, 0, 1)
    with open(bad, "r+b") as f:
        f.truncate(1000)
    # raidad -t and the daemon both say which page, and what is wrong.
    refused_to_start(root, f"{bad}: 1000 bytes long")
    shutil.rmtree(root)


def refused_to_start(root, why):
    """raidad -t and the daemon both refuse the data folder ROOT, saying WHY."""
    p = raidad_t({"data_dir": root})
    expect(p.returncode != 0 and why in p.stderr, f"raidad -t: {why}", p.stdout, p.stderr)
    d = Daemon({"data_dir": root}, expect_log=[re.escape(why)])
    started = False
    try:
        d.start()
        started = True
    except AssertionError as e:
        expect("exited" in str(e), "raidad exits", str(e))
    d.kill()
    expect(not started and d.returncode not in (0, None), f"raidad started: {why}")
    expect(why in d.log_text(), f"the log does not say {why}", d.log_tail())


@test
def test_links_in_the_data_folder_are_never_followed():
    """The data folder belongs to the workers' user, and the master (root)
    opens what is in it: a link planted there in place of the lock, the
    journal, a page, a folder on the way to a page or the index's temporary
    file is refused or replaced, never written through, and its target
    keeps its bytes and its owner."""
    root = os.path.join(workdir(), "linked")
    victims = os.path.join(workdir(), "victims")
    os.makedirs(victims)
    os.chmod(victims, 0o711)
    coins = random_coins([(0, 1)])
    make_data_dir(root, coins)
    account = os.stat(root)

    def plant(name, target):
        """A file of root's, and a link to it at NAME made as by the workers."""
        victim = os.path.join(victims, os.path.basename(name) + ".victim")
        with open(victim, "wb") as f:
            f.write(b"root's own bytes\n" * 300)
        os.chmod(victim, 0o600)
        link = os.path.join(root, name) if target is None else target
        os.symlink(victim, link)
        os.lchown(link, account.st_uid, account.st_gid)
        return victim, link

    def untouched(victim):
        st = os.stat(victim)
        with open(victim, "rb") as f:
            expect(f.read() == b"root's own bytes\n" * 300, f"{victim} was written")
        expect(st.st_uid == 0 and st.st_mode & 0o777 == 0o600, f"{victim} was handed over")

    for name in ("raidad.lock", "raidad.journal"):
        victim, link = plant(name, None)
        refused_to_start(root, f"{link}: not a regular file")
        untouched(victim)
        os.unlink(link)
    page = page_path(root, 0, 1)
    # A folder on the way to a page, swapped for a link to a copy elsewhere.
    folder = os.path.dirname(os.path.dirname(page))         # Data/00
    elsewhere = os.path.join(victims, "den00")
    shutil.copytree(folder, elsewhere)
    shutil.rmtree(folder)
    os.symlink(elsewhere, folder)
    os.lchown(folder, account.st_uid, account.st_gid)
    refused_to_start(root, f"{folder}: not a folder (a link, or a file)")
    os.unlink(folder)
    shutil.copytree(elsewhere, folder)
    give_to_workers(root)
    os.unlink(page)
    victim, _ = plant(os.path.basename(page), page)
    refused_to_start(root, f"{page}: not a regular file")
    untouched(victim)
    os.unlink(page)
    # The index's temporary file is made anew, the link removed.
    victim, link = plant("raidad.index.new", None)
    with Daemon({"data_dir": root}) as d:
        expect(d.alive(), "raidad serves")
    untouched(victim)
    expect(not os.path.islink(link), "the link at the index's temporary name is still there")
    expect(os.path.isfile(os.path.join(root, "raidad.index")), "no index written")
    shutil.rmtree(root)
    shutil.rmtree(victims)


@test(expect_log=[r"coin store: .*/Data/01/00/0001\.bin: 100 bytes long"])
def test_damaged_page_answers_an_error_once_logged():
    d = daemon()
    root = data_dir()
    # Page 1 of denomination 1 is made damaged before any worker maps it.
    path = page_path(root, 1, 1024 + 5)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(bytes(100))
    give_to_workers(root)
    c = client()
    for _ in range(6):
        r = c.detect([(1, 1024 + 5, bytes(16))])
        expect(r.status == 252, "a coin on a damaged page: 252", r)
        expect(c.detect([(1, 1, an(1, 1))]).status == ALL_PASS, "other pages serve")
    lines = [line for line in d.log_lines() if "0001.bin: 100 bytes long" in line]
    expect(1 <= len(lines) <= 2, "one line per worker at most", lines)
    os.unlink(path)


def instrumented():
    """A sanitizer build (its Makefile says so) or a wrapper: memory is
    theirs, not raidad's."""
    if os.environ.get("RAIDAD_WRAPPER"):
        return True
    try:
        with open(os.path.join(os.path.dirname(RAIDAD), "Makefile")) as f:
            return re.search(r"^SANITIZER_CFLAGS = -fsanitize", f.read(), re.M) is not None
    except OSError:
        return False


def full_data_dir(root):
    """15 denominations x 1000 pages, sparse files (all zero: no coin
    issued) with a time in the past, as a long-serving folder has; a few
    real coins on top."""
    old = 1_600_000_000
    for den in range(-8, 7):
        for page in range(1000):
            path = page_path(root, den, page * 1024)
            if page % 256 == 0:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.truncate(17408)
            os.utime(path, (old, old))
    real = random_coins([(0, 5), (6, 1023999), (-8, 0)])
    make_data_dir(root, real)
    for den, sn in real:
        os.utime(page_path(root, den, sn), (old, old))
    return real


@test(timeout=300)
def test_full_data_dir_starts_fast_with_little_memory():
    root = os.path.join(workdir(), "full")
    real = full_data_dir(root)
    settings = {"data_dir": root, "worker_processes": 2, "raida_id": RAIDA_ID}
    with Daemon(settings, log_level="notice") as d:      # the first start reads every page
        pass
    d = Daemon(settings, log_level="notice")
    t0 = time.monotonic()
    d.start()
    took = time.monotonic() - t0
    try:
        diag_line = f"start on 15000 pages with the index: {took:.2f} s"
        print(f"# {diag_line}", flush=True)
        # The issue asks under 1 s; the bound has room for a busy machine.
        expect(took < 3.0, diag_line)
        r = CoinClient(d).audit()
        counts = {}
        for i in range(15):
            rec = r.payload[i * 5:i * 5 + 5]
            counts[int.from_bytes(rec[:1], "big", signed=True)] = int.from_bytes(rec[1:], "big")
        expect(counts[0] == 1 and counts[6] == 1 and counts[-8] == 1 and sum(counts.values()) == 3,
               "audit counts from the index", counts)
        cl = CoinClient(d)
        expect(cl.detect([(den, sn, a) for (den, sn), a in real.items()]).status == ALL_PASS, "detect")
        rss = {pid: rss_kib([pid]) for pid in d.pids()}
        print(f"# resident KiB by process: {rss}", flush=True)
        if not instrumented():
            expect(max(rss.values()) < 48 * 1024, "memory grows with the pages in use only", rss)
    finally:
        d.stop()
    shutil.rmtree(root)


@test
def test_functional_daemon_stops_cleanly():
    daemon().stop()


if __name__ == "__main__":
    run()
