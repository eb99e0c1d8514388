#!/usr/bin/env python3
"""Encrypted requests (types 1, 4 and 5) against the real daemon: keys in page
files under data_dir, requests made and answers checked by raida-cli (the C
client library; Python has no AES), echo, version and stats over TCP and UDP,
wrong and missing keys, and a key changed on disk picked up by a reload.
Type-4/5 echoes, which need no AES, are also built here byte by byte.
Prints TAP."""

import hashlib
import hmac
import os
import re
import signal
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raidatest import (  # noqa: E402
    RAIDAD, Daemon, child_pids, expect, give_to_workers, raida_cli, run, tcp_exchange, test,
    udp_exchange, wait_until, workdir,
)

ADMIN_KEY = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
RAIDA_ID = 5
RECORDS, RECORD_SIZE = 1024, 17
CLI_TIMEOUT_MS = 10000          # sanitizer builds are slow
RELOAD_TIMEOUT = 30.0

# name: (denomination, serial number, key)
COINS = {
    "a": (1, 2000, bytes.fromhex("00112233445566778899aabbccddeeff")),
    "b": (-2, 5, bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")),
    # page 3ab: hex letters in the folder and the page, Data/fd/03/03ab.bin
    "c": (-3, 0x3AB * RECORDS + 7, bytes.fromhex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf")),
    # only for the reload test
    "r": (0, 77, bytes.fromhex("5555aaaa5555aaaa5555aaaa5555aaaa")),
}
EMPTY = (1, 2001)               # in coin a's page, status 0: no such coin
NO_PAGE = (4, 4)                # no page file at all


def data_dir():
    return os.path.join(workdir(), "keys")


def page_path(den, sn):
    page = sn // RECORDS
    return os.path.join(data_dir(), "Data", "%02x" % (den & 0xFF), "%02x" % (page >> 8),
                        "%04x.bin" % page)


def write_coin(den, sn, key, status=1):
    """Sets one record of a page file, creating a zero-filled page if needed.
    The file is replaced by a rename, as a careful writer would."""
    path = page_path(den, sn)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path, "rb") as f:
            page = bytearray(f.read())
    except FileNotFoundError:
        page = bytearray(RECORDS * RECORD_SIZE)
    at = (sn % RECORDS) * RECORD_SIZE
    page[at:at + 16] = key
    page[at + 16] = status
    with open(path + ".new", "wb") as f:
        f.write(page)
    os.rename(path + ".new", path)
    give_to_workers(data_dir())


def make_data_dir():
    for den, sn, key in COINS.values():
        write_coin(den, sn, key)
    write_coin(*EMPTY, b"\x77" * 16, status=0)


def build_version():
    config_h = os.path.join(os.path.dirname(RAIDAD), "config.h")
    with open(config_h) as f:
        return re.search(r'^#define RAIDAD_BUILD_VERSION "(.*)"', f.read(), re.M).group(1)


_daemon = None


def daemon():
    """The daemon of the functional tests: two workers, started on first use."""
    global _daemon
    if _daemon is None:
        make_data_dir()
        _daemon = Daemon({"data_dir": data_dir(), "worker_processes": 2,
                          "admin_key": ADMIN_KEY, "raida_id": RAIDA_ID,
                          "key_cache_pages": 2})
        _daemon.start()
    return _daemon


def cli(d, enc, command, coins, udp=False, keys=None, from_disk=False):
    """raida-cli -E ENC with COINS (names or (den, sn) pairs); KEYS overrides
    their keys; FROM_DISK reads them with -d instead of -K."""
    args = ["-r", RAIDA_ID, "-t", CLI_TIMEOUT_MS, "-E", enc]
    if udp:
        args.append("-u")
    for i, coin in enumerate(coins):
        den, sn, key = COINS[coin] if isinstance(coin, str) else (*coin, b"\0" * 16)
        if keys is not None:
            key = keys[i]
        args += ["-D", den, "-S", sn]
        if not from_disk:
            args += ["-K", key.hex()]
    if from_disk:
        args += ["-d", data_dir()]
    if command == "stats":
        args += ["-k", ADMIN_KEY]
    return raida_cli(*args, "127.0.0.1", d.port, command)


def coins_of(enc):
    return ["a", "b"] if enc == 5 else ["a"]


def check_ok(r, enc, command):
    """A success whose answer proved the key and decrypted right."""
    expect(r.returncode == 0 and r.status() == 250, f"type {enc} {command}: not a success", r)
    expect(r.fields.get("encryption") == str(enc), "no 'encryption' line", r)
    if enc == 1:
        expect(r.fields.get("challenge_ok") == "yes", "challenge hash not challenge XOR key", r)
    else:
        want = "none" if command == "echo" else "yes"
        expect(r.fields.get("hmac_ok") == want, f"hmac_ok is not {want}", r)
        den, sn, _ = COINS["a"]
        expect(r.fields.get("coin") == f"{den}/{sn}", "the answer names another coin", r)
    if command == "version":
        expect(r.fields.get("version") == build_version(), "version not decrypted right", r)
    if command == "stats":
        expect(r.fields.get("requests", "").isdigit(), "stats not decrypted right", r)


def check_status(r, status, what):
    expect(r.returncode == 1 and r.status() == status, f"{what}: status {status} expected", r)
    expect(r.fields.get("body_size") == "0", f"{what}: an error with a body", r)


def check_all_commands(enc):
    d = daemon()
    for udp in (False, True):
        for command in ("echo", "version", "stats"):
            check_ok(cli(d, enc, command, coins_of(enc), udp=udp), enc, command)


# ---------------------------------------------------------------- the three types

@test
def test_type1_echo_version_stats_tcp_udp():
    check_all_commands(1)


@test
def test_type4_echo_version_stats_tcp_udp():
    check_all_commands(4)


@test
def test_type5_echo_version_stats_tcp_udp():
    check_all_commands(5)


@test
def test_keys_read_from_page_files():
    """raida-cli -d reads the keys with the same key store as the daemon; coin c
    lives in a page with hex letters in every part of its path, coin b under a
    negative denomination."""
    d = daemon()
    for enc, coins in ((1, ["c"]), (4, ["b"]), (5, ["c", "b"]), (5, ["b", "a"])):
        r = cli(d, enc, "version", coins, from_disk=True)
        expect(r.returncode == 0 and r.status() == 250, f"type {enc} with -d failed", r)
        expect(r.fields.get("version") == build_version(), "version not decrypted right", r)


# ---------------------------------------------------------------- failures

@test
def test_wrong_key():
    d = daemon()
    wrong = COINS["b"][2]
    for udp in (False, True):
        check_status(cli(d, 1, "version", ["a"], udp=udp, keys=[wrong]), 37, "type 1")
        check_status(cli(d, 4, "version", ["a"], udp=udp, keys=[wrong]), 204, "type 4")
        # type 5 hashes both keys in order: the right keys, swapped, fail too
        swapped = [COINS["b"][2], COINS["a"][2]]
        check_status(cli(d, 5, "version", ["a", "b"], udp=udp, keys=swapped), 204, "type 5")


@test
def test_missing_coin():
    d = daemon()
    key = COINS["a"][2]
    for udp in (False, True):
        for coin in (EMPTY, NO_PAGE):
            check_status(cli(d, 1, "echo", [coin], udp=udp, keys=[key]), 34, "type 1")
            check_status(cli(d, 4, "echo", [coin], udp=udp, keys=[key]), 25, "type 4")
            check_status(cli(d, 5, "echo", ["a", coin], udp=udp, keys=[key, key]), 25,
                         "type 5, second coin")


# ---------------------------------------------------------------- the 48-byte frame, by hand

def modern_echo(enc, coins):
    """A type-4/5 echo built here: with no payload there is nothing to encrypt,
    only the HMAC of nothing under SHA-256 of the key(s)."""
    c1 = COINS[coins[0]]
    key = hashlib.sha256(b"".join(COINS[c][2] for c in coins)).digest()
    header = bytearray(48)
    header[0], header[2] = 1, RAIDA_ID
    header[6:8] = struct.pack(">H", 6)
    header[16] = enc
    header[17:19] = struct.pack(">H", 34)
    header[19] = c1[0] & 0xFF
    header[20:24] = struct.pack(">I", c1[1])
    header[24:48] = os.urandom(24)
    if enc == 5:
        c2 = COINS[coins[1]]
        header[24] = c2[0] & 0xFF
        header[25:29] = struct.pack(">I", c2[1])
    body = hmac.new(key, b"", hashlib.sha256).digest() + b"\x3e\x3e"
    return bytes(header) + body


def check_modern_answer(data, enc, status):
    expect(len(data) == 48, "a 48-byte answer without body expected", data.hex())
    c1 = COINS["a"]
    want = bytes([RAIDA_ID, 0, status, 0])
    expect(data[:4] == want, "bytes 0-3 (RAIDA id, shard, status, group)", data.hex())
    expect(data[8:16] == bytes(8), "bytes 8-15: reserved, body size 0", data.hex())
    expect(data[16] == enc, "byte 16: the encryption type", data.hex())
    expect(data[17:22] == bytes([c1[0] & 0xFF]) + struct.pack(">I", c1[1]),
           "bytes 17-21: the coin", data.hex())
    expect(data[22:24] == bytes(2), "bytes 22-23", data.hex())
    return data[24:48]


@test
def test_modern_echo_frames_by_hand():
    d = daemon()
    nonces = set()
    for enc, coins in ((4, ["a"]), (5, ["a", "b"])):
        frame = modern_echo(enc, coins)
        nonces.add(check_modern_answer(tcp_exchange(d.port, frame), enc, 250))
        answer = udp_exchange(d.port, frame)
        expect(answer is not None, "no UDP answer")
        nonces.add(check_modern_answer(answer, enc, 250))
        forged = bytearray(frame)
        forged[60] ^= 1                                 # inside the HMAC
        check_modern_answer(tcp_exchange(d.port, bytes(forged)), enc, 204)
    expect(len(nonces) == 4, "answer nonces are not fresh", nonces)


@test
def test_functional_daemon_stops_cleanly():
    daemon().stop()


# ---------------------------------------------------------------- reload

def works_with(d, key, enc):
    den, sn, _ = COINS["r"]
    r = cli(d, enc, "version", [(den, sn)], keys=[key])
    return r.returncode == 0 and r.status() == 250


@test(timeout=180)
def test_changed_key_picked_up_by_reload():
    make_data_dir()
    den, sn, old_key = COINS["r"]
    new_key = bytes(b ^ 0xFF for b in old_key)
    with Daemon({"data_dir": data_dir(), "worker_processes": 2,
                 "raida_id": RAIDA_ID}) as d:
        for enc in (1, 4):
            expect(works_with(d, old_key, enc), f"type {enc}: the key on disk fails")
        old_workers = set(child_pids(d.pid))
        write_coin(den, sn, new_key)
        os.kill(d.pid, signal.SIGHUP)
        # The new generation reads the new key; the old one is gone once drained.
        done = wait_until(lambda: not (old_workers & set(child_pids(d.pid)))
                          and works_with(d, new_key, 1), RELOAD_TIMEOUT, 0.2)
        expect(done, f"no worker with the new key within {RELOAD_TIMEOUT} s",
               child_pids(d.pid), old_workers)
        for udp in (False, True):
            r = cli(d, 1, "version", [(den, sn)], keys=[old_key], udp=udp)
            check_status(r, 37, "type 1, old key after the reload")
            r = cli(d, 4, "version", [(den, sn)], keys=[old_key], udp=udp)
            check_status(r, 204, "type 4, old key after the reload")
            for enc in (1, 4):
                r = cli(d, enc, "version", [(den, sn)], keys=[new_key], udp=udp)
                expect(r.returncode == 0 and r.fields.get("version") == build_version(),
                       f"type {enc}: the new key fails", r)


if __name__ == "__main__":
    run()
