#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into corpus/{header,body,frame,config}.

The frames are built for the server the targets play (fuzz_common.h):
RAIDA 7, coin 0x0106, bodies up to 4096 bytes, admin key A0 A1 ... AF, and
a key store holding coins (1, 1) and (1, 2). Run it again after changing
those; the files are committed, so a build needs neither Python nor the
openssl command this uses for AES-CTR:   python3 tests/fuzz/gen_corpus.py
"""
import hashlib
import hmac
import os
import shutil
import struct
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
RAIDA_ID, COIN_ID, MAX_BODY, ECHO = 7, 0x0106, 4096, 0xBEEF
ADMIN_KEY = bytes(range(0xA0, 0xB0))
RANDOM12 = bytes([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC])


DEN, SN1, SN2 = 1, 1, 2
COIN_KEYS = {SN1: bytes(range(0x10, 0x20)), SN2: bytes(range(0x20, 0x30))}


def aes_ctr(key, iv, data):
    """AES-128 or -256 in CTR mode (SP 800-38A), as the daemon's OpenSSL does."""
    if not data:
        return b""
    cipher = "-aes-128-ctr" if len(key) == 16 else "-aes-256-ctr"
    return subprocess.run(["openssl", "enc", cipher, "-nosalt", "-K", key.hex(), "-iv", iv.hex()],
                          input=data, stdout=subprocess.PIPE, check=True).stdout


def coin(sn, den=DEN):
    return struct.pack(">bI", den, sn)


def challenge():
    return RANDOM12 + struct.pack(">I", zlib.crc32(RANDOM12))


def body(payload=b""):
    return challenge() + payload + b"\x3e\x3e"


def header(command=0, group=0, body_size=18, enc=0, **over):
    h = bytearray(32)
    h[0], h[2], h[4], h[5], h[16] = 1, RAIDA_ID, group, command, enc
    h[6:8] = struct.pack(">H", COIN_ID)
    h[22:24] = struct.pack(">H", body_size & 0xFFFF)
    h[30:32] = struct.pack(">H", ECHO)
    for off, val in over.items():
        h[int(off[1:])] = val
    return bytes(h)


def frame(command=0, payload=b"", **over):
    b = body(payload)
    return header(command, body_size=len(b), **over) + b


def modern_header(enc=4, body_size=18 + 32, command=0, sn1=SN1, sn2=SN2, den=DEN):
    """The 48-byte family, with the nonce fuzz_body.c writes (0x40 + offset)."""
    h = bytearray(0x40 + i for i in range(48))
    h[0:16] = bytes(16)
    h[0], h[2], h[5], h[16] = 1, RAIDA_ID, command, enc
    h[6:8] = struct.pack(">H", COIN_ID)
    h[17:19] = struct.pack(">H", body_size)
    h[19:24] = coin(sn1, den)
    if enc == 5:
        h[24:29] = coin(sn2, den)
    return bytes(h)


def type1_frame(command=0, payload=b"", sn=SN1, den=DEN, corrupt=False):
    """Type 1: challenge and payload under AES-128-CTR with the coin's key;
    the counter block is header bytes 24-31 (ending in the echo bytes)."""
    plain = challenge() + payload
    h = bytearray(header(command, body_size=len(plain) + 2, enc=1))
    h[17:22] = coin(sn, den)
    h[24:30] = bytes(0x40 + i for i in range(24, 30))
    key = COIN_KEYS.get(sn, bytes(16))
    ct = bytearray(aes_ctr(key, bytes(h[24:32]) + bytes(8), plain))
    if corrupt:
        ct[0] ^= 1
    return bytes(h) + bytes(ct) + b"\x3e\x3e"


def modern_frame(enc=4, command=0, payload=b"", sn1=SN1, den=DEN, corrupt=False):
    """Types 4 and 5: AES-256-CTR under SHA-256 of the coin key(s), counter
    block the first 16 nonce bytes, then HMAC-SHA256 of the ciphertext."""
    body_size = len(payload) + 32 + 2
    h = modern_header(enc, body_size, command, sn1=sn1, den=den)
    keys = COIN_KEYS.get(sn1, bytes(16)) + (COIN_KEYS[SN2] if enc == 5 else b"")
    key = hashlib.sha256(keys).digest()
    ct = aes_ctr(key, h[24:40], payload)
    mac = bytearray(hmac.new(key, ct, hashlib.sha256).digest())
    if corrupt:
        mac[0] ^= 1
    return h + ct + bytes(mac) + b"\x3e\x3e"


bad_crc = bytearray(body())
bad_crc[3] ^= 0xFF
no_trailer = body()[:-1] + b"\x00"

FRAMES = {
    "echo": frame(0),
    "version": frame(1),
    "stats": frame(2, ADMIN_KEY),
    "stats-wrong-key": frame(2, bytes(16)),
    "stats-no-key": frame(2),
    "stats-long-key": frame(2, ADMIN_KEY + b"\x00"),
    "audit-absent": frame(3),
    "bad-routing": frame(0, h0=2),
    "bad-split": frame(0, h1=1),
    "bad-raida-id": frame(0, h2=8),
    "bad-shard": frame(0, h3=1),
    "bad-group": frame(0, h4=9),
    # fuzz_frame.c's module "mirror" (group 50) in its generation's table
    "module-mirror": frame(0, b"mirror me", h4=50),
    "module-mirror-empty": frame(0, h4=50),
    "module-unserved-command": frame(1, h4=50),
    "bad-command": frame(0, h5=200),
    "bad-coin-id": frame(0, h7=0x07),
    "enc-type-1": frame(0, h16=1),
    "enc-type-2": frame(0, h16=2),
    "enc-type-9": frame(0, h16=9),
    "enc-type-4-garbage": modern_header(4) + body(bytes(32)),
    "enc-type-5-garbage": modern_header(5) + body(bytes(32)),
    "type1-echo": type1_frame(0),
    "type1-version": type1_frame(1),
    "type1-stats": type1_frame(2, ADMIN_KEY),
    "type1-bad-crc": type1_frame(0, corrupt=True),
    "type1-unknown-coin": type1_frame(0, sn=3),
    "type1-broken-page": type1_frame(0, den=2),
    "type4-echo": modern_frame(4, 0),
    "type4-version": modern_frame(4, 1),
    "type4-stats": modern_frame(4, 2, ADMIN_KEY),
    "type4-bad-hmac": modern_frame(4, 0, corrupt=True),
    "type4-unknown-coin": modern_frame(4, 0, sn1=3),
    "type5-echo": modern_frame(5, 0),
    "type5-stats": modern_frame(5, 2, ADMIN_KEY),
    "type4-in-legacy-size": header(0, enc=4) + body(),
    "modern-short": modern_header(4)[:40],
    "body-too-short": header(0, body_size=10) + bytes(10),
    "body-too-large": header(0, body_size=MAX_BODY + 1) + body(bytes(MAX_BODY + 1 - 18)),
    "length-mismatch": header(0, body_size=30) + body(),
    "no-trailer": header(0) + no_trailer,
    "bad-crc": header(0) + bytes(bad_crc),
    "header-only": header(0),
    "short-17": header(0)[:17],
    "empty": b"",
}

# fuzz_header sees the first 48 bytes at most: one file per distinct start.
HEADERS = {}
for _name, _data in FRAMES.items():
    if _data[:48] not in HEADERS.values():
        HEADERS[_name] = _data[:48]

# fuzz_body: byte 0 picks the command (byte 0 % 3: echo, version, stats) and
# the type (byte 0 / 3 % 4: 0, 1, 4, 5), then the body; fuzz_body.c writes
# the header, the same as these frames'.
def body_seed(enc, command, frame_bytes):
    hs = 48 if enc in (4, 5) else 32
    return bytes([command + 3 * [0, 1, 4, 5].index(enc)]) + frame_bytes[hs:]


BODIES = {
    "echo": b"\x00" + body(),
    "version": b"\x01" + body(),
    "stats": b"\x02" + body(ADMIN_KEY),
    "stats-wrong-key": b"\x02" + body(bytes(16)),
    "echo-payload": b"\x00" + body(b"payload"),
    "no-trailer": b"\x00" + no_trailer,
    "bad-crc": b"\x00" + bytes(bad_crc),
    "short": b"\x00" + body()[:17],
    "challenge-only": b"\x00" + challenge(),
    "empty": b"\x00",
    "too-large": b"\x00" + body(bytes(MAX_BODY)),
    "type1-echo": body_seed(1, 0, type1_frame(0)),
    "type1-version": body_seed(1, 1, type1_frame(1)),
    "type1-stats": body_seed(1, 2, type1_frame(2, ADMIN_KEY)),
    "type4-echo": body_seed(4, 0, modern_frame(4, 0)),
    "type4-version": body_seed(4, 1, modern_frame(4, 1)),
    "type4-stats": body_seed(4, 2, modern_frame(4, 2, ADMIN_KEY)),
    "type5-version": body_seed(5, 1, modern_frame(5, 1)),
    "type5-stats": body_seed(5, 2, modern_frame(5, 2, ADMIN_KEY)),
}

# fuzz_auth: byte 0 picks the command (% 4: detect, detect sum, pown, pown
# sum), the rest is its payload; coins 1/1 and 1/2 hold COIN_KEYS.
def auth_seed(which, payload):
    return bytes([which]) + payload


def xor(*keys):
    return bytes(a ^ b for a, b in zip(*keys)) if len(keys) == 2 else keys[0]


AUTH = {
    "detect-pass": auth_seed(0, coin(SN1) + COIN_KEYS[SN1]),
    "detect-mixed": auth_seed(0, coin(SN1) + COIN_KEYS[SN1] + coin(SN2) + bytes(16)
                              + coin(1, den=2) + bytes(16)),
    "detect-short": auth_seed(0, coin(SN1) + bytes(15)),
    "detect-sum": auth_seed(1, coin(SN1) + coin(SN2) + xor(COIN_KEYS[SN1], COIN_KEYS[SN2])),
    "detect-sum-twice": auth_seed(1, coin(SN1) + coin(SN1) + bytes(16)),
    "pown-fail": auth_seed(2, coin(SN2) + bytes(16) + bytes(range(16))),
    "pown-bad-den": auth_seed(2, coin(SN1, den=7) + bytes(32)),
    "pown-sum": auth_seed(3, coin(SN1) + coin(SN2) + xor(COIN_KEYS[SN1], COIN_KEYS[SN2])
                          + bytes(16)),
    "pown-sum-not-whole": auth_seed(3, coin(SN1) + bytes(33)),
}

CONFIGS = {
    "minimal": "listen = \"127.0.0.1:18000\";\n",
    "full": """listen = ("0.0.0.0:18000", "[::1]:18001", "18002", "*:18003", "10.0.0.1");
raida_id = 24;
coin_id = 0xFFFF;
worker_threads = 256;
epoll_timeout_ms = 1;
events_per_wait = 1000000;
max_descriptors = 64;
max_body_size = 18;
socket_timeout_ms = 10;
mod_queue_size = 1048576;
tcp_keepalive = false;
keepalive_idle = 32767;
keepalive_interval = 1;
keepalive_count = 127;
udp_payload_threshold = 32;
admin_key = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF";
log_level = "debug";
worker_processes = 64;
shutdown_timeout_ms = 0;
max_old_generations = 64;
pid_file = "";
error_log = "/var/log/raidad.log";
user = "root";
group = "root";
""",
    "colon-and-comments": "# comment\nraida_id : 3; // c++ comment\n/* block\n */ coin_id = 6L;\n",
    "auto": "worker_processes = \"auto\";\n",
    "empty": "",
    "last-line-comment": "raida_id = 1; # no newline",
    "err-syntax": "raida_id = ;\n",
    "err-unterminated": "listen = \"0.0.0.0:18000;\n",
    "err-unknown": "raida_idd = 1;\n",
    "err-range": "raida_id = 25;\n",
    "err-wrapped": "raida_id = 4294967297;\n",
    "err-wrapped-hex": "coin_id = 0x100000006;\n",
    "err-negative": "worker_threads = -1;\n",
    "err-type": "tcp_keepalive = 1;\n",
    "err-type-string": "raida_id = \"7\";\n",
    "err-float": "raida_id = 1.5;\n",
    "err-listen": "listen = \"1.2.3.4:99999\";\n",
    "err-listen-v6": "listen = \"::1:8000\";\n",
    "err-listen-twice": "listen = (\"1.2.3.4:5\", \"1.2.3.4:5\");\n",
    "err-listen-empty-list": "listen = ();\n",
    "err-listen-int": "listen = (1, 2);\n",
    "err-admin-key-short": "admin_key = \"00ff\";\n",
    "err-admin-key-hex": "admin_key = \"0011223344556677889900aabbccddgg\";\n",
    "err-log-level": "log_level = \"loud\";\n",
    "err-auto": "worker_processes = \"many\";\n",
    "err-user": "user = \"no-such-user-raidad\";\n",
    "admin-allow": "admin_allow = [\"10.0.0.0/8\", \"2001:db8::/32\", \"::1\"];\n"
                   "worker_seccomp = false;\n",
    "admin-allow-empty": "admin_allow = [];\n",
    "err-admin-allow": "admin_allow = [\"127.0.0.1/33\"];\n",
    "err-group": "group = \"no-such-group-raidad\";\n",
    "err-long-text": "user = \"" + "u" * 80 + "\";\n",
    "err-group-setting": "raida = { id = 1; };\n",
    "err-stray-string": "\"stray\"\n",
    "err-line-5": "\n\n\n\nraida_id = 99;\n",
    # command modules: load_module and a module's settings group
    "modules": "load_module = [ \"/nonexistent/a.so\", \"b.so\" ];\n"
               "hello = { greeting = \"hi\"; tag = 9; on = true; big = 99999999999L; };\n"
               "other : { };\n",
    "module-bad-value": "hello = { list = ( 1, 2 ); };\n",
}


def write(kind, files):
    d = os.path.join(HERE, "corpus", kind)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in files.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("frame", FRAMES)
    write("header", HEADERS)
    write("body", BODIES)
    write("auth", AUTH)
    configs = dict(CONFIGS)
    with open(os.path.join(TOP, "conf", "raidad.conf"), encoding="utf-8") as f:
        configs["sample-raidad.conf"] = f.read()
    write("config", configs)


if __name__ == "__main__":
    main()
