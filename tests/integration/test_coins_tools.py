#!/usr/bin/env python3
"""The coin tools: raida-coins writes a data directory (checked here by code
of its own that reads the page files: sizes, which records are issued, the
MFS month, the ANs against the coin list), refuses to overwrite without -f
and replaces with it; raida-cli and raida-bench refuse bad arguments with a
clear message and touch nothing.

The last tests run raida-cli and raida-bench against the real daemon serving
a data directory made by raida-coins: detect, pown (the list rewritten with
the new ANs), audit. A daemon without the authentication group (status 5 or
6) makes them skip, so that they run as soon as it has one.
"""

import datetime
import glob
import hashlib
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raidatest import (  # noqa: E402
    Daemon, Skip, expect, raida_cli, run, test, workdir,
)

RAIDA_COINS = os.path.abspath(os.environ.get("RAIDA_COINS", "raida-coins"))
RAIDA_BENCH = os.path.abspath(os.environ.get("RAIDA_BENCH", "raida-bench"))
RECORD = 17
RECORDS = 1024
PAGE_SIZE = RECORD * RECORDS
LINE = re.compile(r"^(-?\d+) (\d+) ([0-9a-f]{32})$")

_serial = [0]


def fresh_dir(name):
    _serial[0] += 1
    return os.path.join(workdir(), f"{name}{_serial[0]}")


def coins(*args, timeout=60):
    return subprocess.run([RAIDA_COINS] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def mfs_of(when):
    return (when.year - 2023) * 12 + (when.month - 2)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def page_path(data, den, page):
    return os.path.join(data, "Data", "%02x" % (den & 0xFF), "%02x" % (page >> 8),
                        "%04x.bin" % page)


def read_list(path):
    """The coin list as {(den, sn): an_bytes}, each line checked."""
    found = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("#") or not line.strip():
                continue
            m = LINE.match(line)
            expect(m is not None, f"{path}:{number}: not 'DEN SN AN_HEX': {line!r}")
            key = (int(m.group(1)), int(m.group(2)))
            expect(key not in found, f"{path}:{number}: coin {key} listed twice")
            found[key] = bytes.fromhex(m.group(3))
    return found


def read_pages(data):
    """Every page file under DATA/Data: {(den, sn): (an, mfs)} of the issued
    records, and the set of pages seen; each file's name and size checked."""
    issued, pages = {}, set()
    for path in glob.glob(os.path.join(data, "Data", "*", "*", "*")):
        rel = os.path.relpath(path, os.path.join(data, "Data"))
        m = re.fullmatch(r"([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{4})\.bin", rel)
        expect(m is not None, f"unexpected file {rel} under Data/")
        den = int(m.group(1), 16)
        den = den - 256 if den >= 128 else den
        page = int(m.group(3), 16)
        expect(int(m.group(2), 16) == page >> 8, f"{rel}: MM is not the page's high byte")
        expect(-8 <= den <= 6 and page < 1000, f"{rel}: not a valid page")
        expect(os.path.getsize(path) == PAGE_SIZE, f"{rel}: {os.path.getsize(path)} bytes")
        pages.add((den, page))
        with open(path, "rb") as f:
            blob = f.read()
        for i in range(RECORDS):
            rec = blob[i * RECORD:(i + 1) * RECORD]
            if rec[16] == 0:
                expect(rec[:16] == bytes(16), f"{rel} record {i}: not issued, yet a key")
                continue
            issued[(den, page * RECORDS + i)] = (rec[:16], rec[16])
    return issued, pages


def snapshot(data):
    """Every file under DATA with a hash of its bytes."""
    result = {}
    for root, _, files in os.walk(data):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, data)] = hashlib.sha256(f.read()).hexdigest()
    return result


def check_data_dir(data, list_path, want_coins, months):
    """The pages hold exactly WANT_COINS, issued in one of MONTHS, with the
    ANs of the list; no two ANs are equal."""
    issued, pages = read_pages(data)
    listed = read_list(list_path)
    expect(set(issued) == want_coins,
           f"issued coins differ: missing {sorted(want_coins - set(issued))[:5]}, "
           f"extra {sorted(set(issued) - want_coins)[:5]}")
    expect(set(listed) == want_coins, "the list does not name the coins issued")
    expect(pages == {(d, sn // RECORDS) for d, sn in want_coins}, f"pages: {sorted(pages)}")
    for key, (an, mfs) in issued.items():
        expect(mfs in months, f"coin {key}: MFS {mfs}, expected one of {months}")
        expect(an == listed[key], f"coin {key}: the page and the list disagree")
    ans = [an for an, _ in issued.values()]
    expect(len(set(ans)) == len(ans), "two coins have the same AN")
    expect(bytes(16) not in ans, "a coin has an all-zero AN")
    return listed


def make(data, *args):
    before = mfs_of(utc_now())
    r = coins(*args, data)
    months = {before, mfs_of(utc_now())}
    expect(r.returncode == 0, f"raida-coins {args} failed", r)
    return r, months


def no_temp_files(data):
    left = [p for p in snapshot(data) if ".tmp." in p]
    expect(not left, f"temporary files left: {left}")


# ---------------------------------------------------------------- raida-coins

@test
def test_coins_writes_pages_and_list():
    data = fresh_dir("data")
    r, months = make(data, "-d", "-8..-7", "-d", "6", "-s", "1020-1030", "-s", "5",
                     "-s", "1023999")
    want = {(d, sn) for d in (-8, -7, 6) for sn in list(range(1020, 1031)) + [5, 1023999]}
    check_data_dir(data, os.path.join(data, "coins.txt"), want, months)
    expect(f"{len(want)} coin(s) on 9 page(s)" in r.stdout, "the summary line", r)
    # Pages are readable by the group (the daemon's workers), the list by its owner only.
    expect(os.stat(page_path(data, 6, 0)).st_mode & 0o777 == 0o600, "page mode")
    expect(os.stat(os.path.join(data, "coins.txt")).st_mode & 0o777 == 0o600, "list mode")
    no_temp_files(data)


@test
def test_coins_defaults_and_count():
    data = fresh_dir("data")
    _, months = make(data)
    check_data_dir(data, os.path.join(data, "coins.txt"), {(1, sn) for sn in range(100)}, months)
    data = fresh_dir("data")
    listing = os.path.join(workdir(), "elsewhere.txt")
    _, months = make(data, "-q", "-d", "-8..6", "-n", "1025", "-l", listing)
    want = {(d, sn) for d in range(-8, 7) for sn in range(1025)}
    check_data_dir(data, listing, want, months)
    expect(not os.path.exists(os.path.join(data, "coins.txt")), "-l: no list in DATA_DIR")


@test
def test_coins_refuses_to_overwrite():
    data = fresh_dir("data")
    make(data, "-d", "2", "-s", "0-9")
    before = snapshot(data)
    # The same coins; then a page that exists among pages that do not: nothing is written.
    for args in (["-d", "2", "-s", "0-9"], ["-d", "2", "-d", "3", "-s", "5"],
                 ["-d", "4", "-l", os.path.join(data, "coins.txt")]):
        r = coins(*args, data)
        expect(r.returncode == 1, f"raida-coins {args} over existing files: exit 1", r)
        expect("exists: nothing written (-f to replace it)" in r.stderr, "the message", r)
        expect(snapshot(data) == before, f"raida-coins {args} changed files", r)
    expect(not os.path.exists(page_path(data, 3, 0)), "a page written despite the refusal")


@test
def test_coins_force_replaces():
    data = fresh_dir("data")
    make(data, "-d", "2", "-s", "0-9")
    old = read_list(os.path.join(data, "coins.txt"))
    _, months = make(data, "-f", "-d", "2", "-s", "3-12")
    # The replaced page holds only the coins chosen now, with new ANs.
    new = check_data_dir(data, os.path.join(data, "coins.txt"),
                         {(2, sn) for sn in range(3, 13)}, months)
    for key in set(old) & set(new):
        expect(old[key] != new[key], f"coin {key} kept its AN through -f")
    no_temp_files(data)


@test
def test_coins_uses_an_older_installations_uppercase_page():
    """raidad reads Data/F8/00/0000.bin where there is no lowercase name:
    raida-coins checks that file, and with -f replaces it, rather than
    write a lowercase page beside it that would hide its coins."""
    data = fresh_dir("data")
    make(data, "-d", "-8", "-s", "0-9")
    lower = page_path(data, -8, 0)
    upper = os.path.join(data, "Data", "F8", "00", "0000.bin")
    os.rename(os.path.dirname(os.path.dirname(lower)), os.path.dirname(os.path.dirname(upper)))
    os.unlink(os.path.join(data, "coins.txt"))
    r = coins("-d", "-8", "-s", "0-9", data)
    expect(r.returncode == 1 and f"{upper} exists: nothing written" in r.stderr,
           "the uppercase page was not seen", r)
    with open(upper, "rb") as f:
        before = f.read()
    make(data, "-f", "-d", "-8", "-s", "0-9")
    expect(not os.path.exists(lower), "a lowercase page written beside the uppercase one")
    with open(upper, "rb") as f:
        expect(f.read() != before, "the uppercase page was not replaced")


@test
def test_coins_writes_nothing_while_raidad_may_need_the_folder():
    """Not while raidad serves the folder (it holds raidad.lock), not while
    its journal holds changes a start would copy over the new pages, and
    not when the list's folder cannot be made (the pages would be left
    without it)."""
    import fcntl
    data = fresh_dir("data")
    make(data, "-d", "2", "-s", "0-9")
    before = snapshot(data)
    lock = os.path.join(data, "raidad.lock")
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = coins("-f", "-d", "2", "-s", "0-9", data)
    expect(r.returncode == 1 and "raidad serves this data folder" in r.stderr, "lock held", r)
    journal = os.path.join(data, "raidad.journal")
    with open(journal, "wb") as f:
        f.write(bytes(8192))
    r = coins("-f", "-d", "2", "-s", "0-9", data)
    expect(r.returncode == 1 and "holds changes not yet replayed" in r.stderr, "journal", r)
    r = coins("-d", "3", "-l", os.path.join(data, "coins.txt", "list.txt"), data)
    expect(r.returncode == 1 and "nothing written" in r.stderr, "list folder", r)
    expect(snapshot(data) == dict(before, **{"raidad.lock": snapshot(data)["raidad.lock"],
                                             "raidad.journal": snapshot(data)["raidad.journal"]}),
           "raida-coins wrote while refusing")
    # An orderly stop leaves the journal's header alone: that is no obstacle.
    os.truncate(journal, 4096)
    make(data, "-f", "-d", "2", "-s", "0-9")
    # A list's folder that does not exist yet is made, as the data folder
    # is, however it is spelt.
    fresh = fresh_dir("data")
    make(fresh, "-d", "1", "-n", "3", "-l", os.path.join(fresh, ".", "new", "list.txt"))
    expect(len(read_list(os.path.join(fresh, "new", "list.txt"))) == 3, "the list")


@test
def test_coins_usage_errors():
    data = fresh_dir("data")
    cases = [
        (["-d", "7", data], "-d: not a denomination"),
        (["-d", "3..1", data], "-d: not a range LO..HI"),
        (["-s", "9-3", data], "-s: not a range FIRST-LAST"),
        (["-s", "1024000", data], "-s: not a serial number"),
        (["-n", "0", data], "-n: not a number of coins"),
        (["-n", "5", "-s", "3", data], "-s does not go with -n"),
        (["-s", "3", "-n", "5", data], "-n comes once, and not with -s"),
        ([], "expected one DATA_DIR"),
        ([data, "more"], "expected one DATA_DIR"),
        (["-x", data], "usage: raida-coins"),
    ]
    for args, message in cases:
        r = coins(*args)
        expect(r.returncode == 2, f"raida-coins {args}: exit 2", r)
        expect(message in r.stderr and "usage: raida-coins" in r.stderr,
               f"raida-coins {args}: says {message!r}", r)
    expect(not os.path.exists(data), "a usage error wrote something")
    r = coins("-h")
    expect(r.returncode == 0 and "-f " in r.stdout, "raida-coins -h", r)


# ---------------------------------------------------------------- raida-cli

@test
def test_cli_coin_argument_errors():
    data = fresh_dir("data")
    make(data, "-d", "1", "-n", "4")
    listing = os.path.join(data, "coins.txt")
    bad_list = os.path.join(workdir(), "bad.txt")
    with open(bad_list, "w") as f:
        f.write("# ok\n1 2 00112233445566778899aabbccddeeff\n9 2 00112233445566778899aabbccddeeff\n")
    an = "00112233445566778899aabbccddeeff"
    host = ["127.0.0.1", "9"]      # never reached: every case fails before the network
    cases = [
        (["detect"], "no coin: give DEN:SN:AN_HEX, or -L COIN_LIST"),
        (["detect", "1:2"], "a coin is DEN:SN:AN_HEX"),
        (["detect", "1:2:0011"], "a coin's AN must be 32 hex digits"),
        (["detect", "x:2:" + an], "a coin is DEN:SN:AN_HEX"),
        (["-L", os.path.join(workdir(), "none.txt"), "detect"], "none.txt: No such file"),
        (["-L", bad_list, "detect"], "bad.txt:3: not a valid coin"),
        (["-L", listing, "detect", "4"], "the list has 4 coins, indexes 0..3"),
        (["-L", listing, "detect", "2-1"], "the list has 4 coins"),
        (["-L", listing, "detect", "1:9"], "no such coin in the list"),
        (["-L", listing, "detect", "1:x"], "a coin of the list is INDEX, FIRST-LAST or DEN:SN"),
        (["-L", listing, "-P", an, "detect", "0"], "-P goes with pown and pown-sum only"),
        (["-L", listing, "-P", an, "-P", an, "pown", "0"], "more -P than coins"),
        (["-L", listing, "-P", an, "-P", an, "pown-sum", "0", "1"], "pown-sum takes one -P"),
        (["-P", "0011", "pown", "1:2:" + an], "-P: a PAN must be 32 hex digits"),
        (["-L", listing, "echo"], "-L and -P go with detect, detect-sum, pown and pown-sum"),
        (["audit", "1"], "unexpected argument"),
    ]
    before = snapshot(data)
    for args, message in cases:
        # Options first, then HOST PORT, then the command and its coins.
        split = next(i for i, a in enumerate(args)
                     if a in ("detect", "pown", "pown-sum", "echo", "audit"))
        r = raida_cli(*(args[:split] + host + args[split:]))
        expect(r.returncode == 2, f"raida-cli {args}: exit 2", r)
        expect(message in r.stderr, f"raida-cli {args}: says {message!r}", r)
    expect(snapshot(data) == before, "an argument error changed the coin list")
    # Too many coins for one request: 3120 detect records are 65,520 bytes.
    many = fresh_dir("data")
    make(many, "-d", "1", "-n", "3120")
    r = raida_cli("-L", os.path.join(many, "coins.txt"), *host, "detect")
    expect(r.returncode == 2 and "3120 coins do not fit in one request" in r.stderr, "", r)


def bench_refuses(cases):
    """Each (ARGS, MESSAGE): raida-bench ARGS exits 2 saying MESSAGE."""
    for args, message in cases:
        r = subprocess.run([RAIDA_BENCH, "-q"] + args + ["127.0.0.1", "9"], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        expect(r.returncode == 2, f"raida-bench {args}: exit 2", r)
        expect(message in r.stderr, f"raida-bench {args}: says {message!r}", r)


@test
def test_bench_coin_argument_errors():
    data = fresh_dir("data")
    make(data, "-d", "1", "-n", "2")
    listing = os.path.join(data, "coins.txt")
    cases = [
        (["-m", "detect"], "-m detect and -m pown need the coins"),
        (["-m", "frob"], "-m: not a request raida-bench sends"),
        (["-m", "pown", "-L", listing, "-N", "2"], "a pown takes one coin a request"),
        (["-m", "detect", "-L", listing, "-N", "513"], "-N: not a number of coins per request"),
        (["-m", "detect", "-L", listing, "-A", "x"], "-A goes with -m pown"),
        (["-L", listing], "-L, -N and -A go with -m detect or -m pown"),
        (["-i", "-m", "detect", "-L", listing], "idle connections send nothing"),
        (["-m", "detect", "-L", listing, "-t", "3", "-c", "3"], "2 coins for 3 threads"),
        (["-m", "pown", "-L", listing, "-E", "1", "-D", "1", "-S", "1", "-K", "00" * 16],
         "holds the encryption coin 1 1: a pown would change its key"),
    ]
    bench_refuses(cases)


@test
def test_bench_number_argument_errors():
    """Every option that takes a number refuses one just outside its bounds."""
    cases = [
        (["-c", "0"], "-c: not a number of connections"),
        (["-c", "1000001"], "-c: not a number of connections"),
        (["-n", "0"], "-n: not a number of requests"),
        (["-t", "65"], "-t: not a number of threads"),
        (["-T", "3600001"], "-T: not a timeout in milliseconds"),
        (["-r", "25"], "-r: not a RAIDA id"),
        (["-C", "65536"], "-C: not a coin id"),
        (["-N", "0"], "-N: not a number of coins per request"),
        (["-D", "256"], "-D: not a denomination"),
        (["-S", "4294967296"], "-S: not a serial number"),
        (["-S", "-1"], "-S: not a serial number"),
        (["-E", "2"], "-E: not an encryption type this tool sends"),
        (["-d", "x"], "-d: not a duration in seconds"),
        (["-K", "00"], "-K: not a key of 32 hex digits"),
    ]
    bench_refuses(cases)


# ---------------------------------------------------------------- against the daemon

def serving(data):
    return Daemon({"data_dir": data, "worker_processes": 1})


def skip_without_group1(r):
    if r.status() in (5, 6):
        raise Skip(f"this raidad has no authentication group (status {r.status()})")


@test
def test_cli_detect_pown_audit():
    data = fresh_dir("data")
    make(data, "-d", "1", "-d", "-8", "-n", "10")
    listing = os.path.join(data, "coins.txt")
    old = read_list(listing)
    with serving(data) as d:
        r = raida_cli("-L", listing, "127.0.0.1", d.port, "detect")
        skip_without_group1(r)
        expect(r.returncode == 0 and r.status() == 241 and "passed: 20 of 20" in r.stdout,
               "detect of every issued coin", r)
        for udp in ([], ["-u"]):
            r = raida_cli(*udp, "-L", listing, "127.0.0.1", d.port, "pown", "0", "1:3")
            expect(r.returncode == 0 and r.status() == 241, f"pown {udp}", r)
            new = read_list(listing)
            expect(sum(new[k] != old[k] for k in old) == 2, "two coins have new ANs", r)
            r = raida_cli(*udp, "-L", listing, "127.0.0.1", d.port, "detect")
            expect(r.returncode == 0 and r.status() == 241, "the list's new ANs pass", r)
            old = new
        r = raida_cli("127.0.0.1", d.port, "audit")
        expect(r.returncode == 0 and "issued: 1 10" in r.stdout and "issued: -8 10" in r.stdout
               and "issued: 6 0" in r.stdout, "audit", r)


def check_acks(acks, listing, count):
    """One line per acknowledged pown; the last of each coin is its AN now."""
    with open(acks) as f:
        lines = [LINE.match(x.rstrip("\n")) for x in f if not x.startswith("#")]
    expect(len(lines) == count and all(lines), f"the acks file: {count} 'DEN SN PAN' lines")
    last = {(int(m.group(1)), int(m.group(2))): bytes.fromhex(m.group(3)) for m in lines}
    current = read_list(listing)
    expect(all(current[k] == an for k, an in last.items()), "acks and list disagree")


@test
def test_bench_detect_and_pown():
    data = fresh_dir("data")
    make(data, "-d", "1", "-n", "64")
    listing = os.path.join(data, "coins.txt")
    acks = os.path.join(workdir(), "acks.txt")
    with serving(data) as d:
        r = raida_cli("-L", listing, "127.0.0.1", d.port, "detect", "0")
        skip_without_group1(r)
        for args in (["-m", "detect", "-N", "50"], ["-m", "pown", "-A", acks],
                     ["-u", "-m", "pown"], ["-m", "detect", "-N", "7", "-u"]):
            b = subprocess.run([RAIDA_BENCH, "-q", "-j", "-c", "8", "-n", "200", "-L", listing]
                               + args + ["127.0.0.1", str(d.port)], capture_output=True,
                               text=True, timeout=120, stdin=subprocess.DEVNULL)
            expect(b.returncode == 0 and '"ok":200' in b.stdout, f"raida-bench {args}", b)
            if "-A" in args:
                check_acks(acks, listing, 200)
        r = raida_cli("-L", listing, "127.0.0.1", d.port, "detect")
        expect(r.returncode == 0 and "passed: 64 of 64" in r.stdout, "the list is current", r)


if __name__ == "__main__":
    run()
