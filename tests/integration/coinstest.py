"""Helpers of the coin store's integration suites (standard library only;
AES through ctypes from the system's libcrypto, as the daemon uses it).

* a data directory built here: sparse page files (Data/DD/MM/PPPP.bin) with
  random ANs (os.urandom) for a chosen set of coins, read back directly;
* request payloads of detect (1/10), detect sum (1/11), pown (1/20), pown sum
  (1/21) and audit (0/3), in frames of type 0 (plain), 1 (AES-128-CTR, coin
  key), 4 and 5 (AES-256-CTR + HMAC-SHA256, the 48-byte family), and their
  answers parsed and decrypted;
* ``CoinClient``: one daemon, one way of talking (TCP or UDP, a type).
"""

import ctypes
import hashlib
import hmac
import os
import struct
import zlib

from raidatest import (  # noqa: F401
    TRAILER, build_request, give_to_workers, make_challenge, parse_response, tcp_exchange,
    udp_exchange,
)

RECORDS, RECORD_SIZE = 1024, 17
PAGE_SIZE = RECORDS * RECORD_SIZE
ALL_PASS, ALL_FAIL, MIXED = 241, 242, 243

_crypto = ctypes.CDLL("libcrypto.so.3")
for _name in ("EVP_CIPHER_CTX_new", "EVP_aes_128_ctr", "EVP_aes_256_ctr"):
    getattr(_crypto, _name).restype = ctypes.c_void_p
_crypto.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
_crypto.EVP_EncryptInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_char_p, ctypes.c_char_p]
_crypto.EVP_EncryptUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                      ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int]


def aes_ctr(key, iv, data):
    """AES-128-CTR or AES-256-CTR (by the key's length): encrypts = decrypts."""
    if not data:
        return b""
    ctx = _crypto.EVP_CIPHER_CTX_new()
    try:
        cipher = _crypto.EVP_aes_128_ctr() if len(key) == 16 else _crypto.EVP_aes_256_ctr()
        assert _crypto.EVP_EncryptInit_ex(ctx, cipher, None, key, iv) == 1
        out = ctypes.create_string_buffer(len(data) + 32)
        outl = ctypes.c_int(0)
        assert _crypto.EVP_EncryptUpdate(ctx, out, ctypes.byref(outl), data, len(data)) == 1
        return out.raw[:outl.value]
    finally:
        _crypto.EVP_CIPHER_CTX_free(ctx)


# ---------------------------------------------------------------- the data directory

def page_path(root, den, sn):
    page = sn // RECORDS
    return os.path.join(root, "Data", "%02x" % (den & 0xFF), "%02x" % (page >> 8),
                        "%04x.bin" % page)


def make_data_dir(root, coins, mfs=45):
    """Writes page files holding COINS ({(den, sn): an}) with MFS; every
    other record of those pages is zero (not issued). Pages no coin needs
    are left missing (a sparse installation). Returns COINS."""
    pages = {}
    for (den, sn), an in coins.items():
        path = page_path(root, den, sn)
        page = pages.setdefault(path, bytearray(PAGE_SIZE))
        at = (sn % RECORDS) * RECORD_SIZE
        page[at:at + 16] = an
        page[at + 16] = mfs
    for path, page in pages.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(page)
    give_to_workers(root)
    return coins


def random_coins(spec):
    """{(den, sn): random AN} for SPEC, an iterable of (den, sn)."""
    return {coin: os.urandom(16) for coin in spec}


def read_coin(root, den, sn):
    """(AN, MFS) of a coin as its page file holds it now."""
    with open(page_path(root, den, sn), "rb") as f:
        f.seek((sn % RECORDS) * RECORD_SIZE)
        rec = f.read(RECORD_SIZE)
    return rec[:16], rec[16]


# ---------------------------------------------------------------- payloads

def coin_id(den, sn):
    return struct.pack(">bI", den, sn)


def detect_payload(coins):
    """COINS: [(den, sn, an)]."""
    return b"".join(coin_id(d, s) + an for d, s, an in coins)


def pown_payload(coins):
    """COINS: [(den, sn, an, pan)]."""
    return b"".join(coin_id(d, s) + an + pan for d, s, an, pan in coins)


def xor_all(ans):
    out = bytearray(16)
    for an in ans:
        for i in range(16):
            out[i] ^= an[i]
    return bytes(out)


def detect_sum_payload(ids, ans):
    return b"".join(coin_id(d, s) for d, s in ids) + xor_all(ans)


def pown_sum_payload(ids, ans, delta):
    return detect_sum_payload(ids, ans) + delta


def bitfield(passed):
    out = bytearray((len(passed) + 7) // 8)
    for i, ok in enumerate(passed):
        if ok:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


# ---------------------------------------------------------------- frames

class Answer:
    def __init__(self, status, payload, raw):
        self.status, self.payload, self.raw = status, payload, raw

    def __repr__(self):
        return f"<Answer status={self.status} payload={self.payload.hex()} raw={self.raw.hex()}>"


def plain_frame(d, group, command, payload, body_size=None):
    frame, _ = build_request(raida_id=d.raida_id, coin_id=d.coin_id, group=group,
                             command=command, payload=payload, body_size=body_size)
    return frame


def header_only(d, group, command, enc=0):
    """A request whose body size is 0 (no body at all)."""
    if enc == 4:
        h = bytearray(48)
        h[0], h[2], h[4], h[5] = 1, d.raida_id, group, command
        h[6:8] = struct.pack(">H", d.coin_id)
        h[16] = 4
        return bytes(h)
    return plain_frame(d, group, command, b"", body_size=0)[:32]


def type1_frame(d, group, command, payload, key_coin):
    """KEY_COIN: (den, sn, an) whose AN is the AES-128 key."""
    den, sn, key = key_coin
    challenge = make_challenge()
    nonce = os.urandom(8)
    body = aes_ctr(key, nonce + bytes(8), challenge + payload) + TRAILER
    h = bytearray(32)
    h[0], h[2], h[4], h[5] = 1, d.raida_id, group, command
    h[6:8] = struct.pack(">H", d.coin_id)
    h[16] = 1
    h[17:22] = coin_id(den, sn)
    h[22:24] = struct.pack(">H", len(body))
    h[24:32] = nonce
    return bytes(h) + body


def modern_key(key_coin):
    """Types 4 and 5: SHA-256 of the coin's AN, or of both ANs (type 5:
    KEY_COIN is then (den, sn, an, den2, sn2, an2))."""
    return hashlib.sha256(key_coin[2] + (key_coin[5] if len(key_coin) > 3 else b"")).digest()


def type4_frame(d, group, command, payload, key_coin):
    """Type 4, or type 5 when KEY_COIN names two coins."""
    den, sn = key_coin[0], key_coin[1]
    key = modern_key(key_coin)
    h = bytearray(48)
    h[0], h[2], h[4], h[5] = 1, d.raida_id, group, command
    h[6:8] = struct.pack(">H", d.coin_id)
    h[16] = 4 if len(key_coin) == 3 else 5
    h[19:24] = coin_id(den, sn)
    h[24:48] = os.urandom(24)
    if len(key_coin) > 3:
        h[24:29] = coin_id(key_coin[3], key_coin[4])
    ct = aes_ctr(key, bytes(h[24:40]), payload)
    body = ct + hmac.new(key, ct, hashlib.sha256).digest() + TRAILER
    h[17:19] = struct.pack(">H", len(body))
    return bytes(h) + body


def parse_answer(data, enc, frame, key_coin):
    """Status and decrypted payload of an answer to FRAME."""
    assert data is not None, "no answer"
    if enc in (0, 1):
        r = parse_response(data)
        payload = r.payload
        if enc == 1 and payload:
            payload = aes_ctr(key_coin[2], frame[24:32] + bytes(8), payload)
        return Answer(r.status, payload, bytes(data))
    assert len(data) >= 48, f"short 48-byte-family answer {data.hex()}"
    size = int.from_bytes(data[9:12], "big")
    body = data[48:]
    assert len(body) == size, f"body size {size} but {len(body)} bytes"
    payload = b""
    if size:
        assert body[-2:] == TRAILER
        key = modern_key(key_coin)
        ct, mac = body[:-34], body[-34:-2]
        assert hmac.compare_digest(mac, hmac.new(key, ct, hashlib.sha256).digest()), "bad HMAC"
        payload = aes_ctr(key, data[24:40], ct)
    return Answer(data[2], payload, bytes(data))


class CoinClient:
    """Requests to D over TCP or UDP, in type ENC (0, 1, 4, 5) keyed with
    KEY_COIN (den, sn, an) for the encrypted types (two coins for 5)."""

    def __init__(self, d, enc=0, udp=False, key_coin=None):
        self.d, self.enc, self.udp, self.key_coin = d, enc, udp, key_coin

    def frame(self, group, command, payload):
        if self.enc == 0:
            return plain_frame(self.d, group, command, payload)
        if self.enc == 1:
            return type1_frame(self.d, group, command, payload, self.key_coin)
        return type4_frame(self.d, group, command, payload, self.key_coin)

    def send(self, frame, timeout=10.0):
        if self.udp:
            return udp_exchange(self.d.port, frame, timeout)
        return tcp_exchange(self.d.port, frame, timeout)

    def call(self, group, command, payload):
        frame = self.frame(group, command, payload)
        return parse_answer(self.send(frame), self.enc, frame, self.key_coin)

    def detect(self, coins):
        return self.call(1, 10, detect_payload(coins))

    def detect_sum(self, ids, ans):
        return self.call(1, 11, detect_sum_payload(ids, ans))

    def pown(self, coins):
        return self.call(1, 20, pown_payload(coins))

    def pown_sum(self, ids, ans, delta):
        return self.call(1, 21, pown_sum_payload(ids, ans, delta))

    def audit(self):
        return self.call(0, 3, b"")


def check_crc():
    """The challenge CRC is zlib's: a sanity check of the helpers."""
    c = make_challenge()
    return zlib.crc32(c[:12]) & 0xFFFFFFFF == struct.unpack(">I", c[12:])[0]
