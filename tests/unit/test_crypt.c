/* rd_crypt.c: encryption types 1, 2, 4 and 5 over a real coin
 * store: where each keeps its fields, how a body is opened (CRC or HMAC)
 * and an answer sealed, and the status of each failure. */
#include "config.h"

#include "protocol_fixture.h"

static void test_type1_header_fields(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64];
    rd_request_t req;
    size_t len = make_type1(frame, 0, NULL, 0, coin1, key1);
    request_from(&req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, &req), RD_STATUS_NO_ERROR);
    assert_int_equal(req.enc_type, 1);
    assert_int_equal(req.body_size, 18);
    assert_int_equal(handle_status(f, frame, len), 250);

    const struct { size_t offset; uint8_t flip; int status; } cases[] = {
        /* The coin: its denomination, then its serial number's last and first bytes. */
        { RD_REQ32_COIN, 0x03, RD_STATUS_INVALID_ENCRYPTION },      /* denomination 2: no page */
        { RD_REQ32_COIN + 4, 0x01, RD_STATUS_INVALID_ENCRYPTION },  /* SN_EMPTY: status 0 */
        { RD_REQ32_COIN + 1, 0x80, RD_STATUS_INVALID_ENCRYPTION },  /* page 0x200001: none */
        { RD_REQ32_NONCE, 0x01, RD_STATUS_INVALID_CRC },            /* the nonce ... */
        { RD_REQ32_NONCE + 5, 0x40, RD_STATUS_INVALID_CRC },
        { RD_REQ32_ECHO + 1, 0x01, RD_STATUS_INVALID_CRC },         /* ... ends with the echo */
        /* The body size's low byte: not the datagram's. */
        { RD_REQ32_BODY_SIZE + 1, 0x01, RD_STATUS_INVALID_PACKET_LENGTH },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_type1(frame, 0, NULL, 0, coin1, key1);
        frame[cases[i].offset] ^= cases[i].flip;
        assert_int_equal(handle_status(f, frame, len), cases[i].status);
        assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    }
}

/* The challenge hash of a type-1 answer is the challenge XOR the key. */
static void expected_type1_header(uint8_t *want, uint8_t status, uint32_t body_size)
{
    expected_header(want, status, 0, ECHO, body_size, true);
    for (int i = 0; i < RD_CHALLENGE_SIZE; i++)
        want[RD_RESP32_CHALLENGE + i] ^= key1[i];
}

static void test_type1_echo_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    size_t len = make_type1(frame, 0, NULL, 0, coin1, key1);
    handle(f, frame, len);
    expected_type1_header(want, 250, 0);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    assert_header(f->resp.data, want);
}

/* The payload is encrypted with the request's key and counter block. */
static void test_type1_version_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE + 10], iv[16];
    uint8_t *body = want + RD_LEGACY_HEADER_SIZE;
    size_t len = make_type1(frame, 1, NULL, 0, coin1, key1);
    handle(f, frame, len);
    expected_type1_header(want, 250, 10);               /* 8 bytes and the trailer */
    legacy_iv(frame, iv);
    assert_int_equal(rd_crypto_aes128_ctr(key1, iv, (const uint8_t *)"20261125", body, 8), 0);
    body[8] = body[9] = RD_TRAILER_BYTE;
    assert_int_equal(f->resp.len, sizeof(want));
    assert_header(f->resp.data, want);
    assert_memory_equal(f->resp.data + RD_LEGACY_HEADER_SIZE, body, 10);
}

/* The admin key travels encrypted; a command's own error keeps the hash. */
static void test_type1_stats(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], want[RD_LEGACY_HEADER_SIZE], iv[16], plain[128];
    size_t len = make_type1(frame, 2, admin_key, 16, coin1, key1);
    handle(f, frame, len);
    assert_int_equal(f->resp.data[RD_RESP_STATUS], 250);
    legacy_iv(frame, iv);
    size_t plen = f->resp.len - RD_LEGACY_HEADER_SIZE - RD_TRAILER_SIZE;
    assert_int_equal(rd_crypto_aes128_ctr(key1, iv, f->resp.data + RD_LEGACY_HEADER_SIZE,
                                          plain, plen), 0);
    assert_int_equal(rd_get_be(plain + 4, 8), 0);           /* no request counted before */

    uint8_t wrong[16];
    memcpy(wrong, admin_key, 16);
    wrong[0] ^= 1;
    len = make_type1(frame, 2, wrong, 16, coin1, key1);
    handle(f, frame, len);
    expected_type1_header(want, RD_STATUS_ADMIN_AUTH, 0);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    assert_header(f->resp.data, want);
}

/* The wrong key decrypts to a challenge whose CRC fails; the answer then
 * carries no challenge hash at all. */
static void test_type1_wrong_key_37(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    size_t len = make_type1(frame, 1, NULL, 0, coin1, key2);
    handle(f, frame, len);
    expected_header(want, RD_STATUS_INVALID_CRC, 0, ECHO, 0, false);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    assert_header(f->resp.data, want);
}

static void test_type1_missing_coin_34(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    const coin_t missing[] = { { DEN1, SN_EMPTY }, { DEN1, 5 }, { 3, SN1 }, { DEN2, SN1 } };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        size_t len = make_type1(frame, 1, NULL, 0, missing[i], key1);
        handle(f, frame, len);
        expected_header(want, RD_STATUS_INVALID_ENCRYPTION, 0, ECHO, 0, false);
        assert_header(f->resp.data, want);
        assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    }
    /* The second coin's key works for it, under type 1 too. */
    size_t len = make_type1(frame, 0, NULL, 0, coin2, key2);
    assert_int_equal(handle_status(f, frame, len), 250);
}

static void test_type1_truncated_body(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64];
    rd_request_t req;
    size_t len = make_type1(frame, 0, NULL, 0, coin1, key1);
    /* One byte short of a challenge. */
    rd_put_be(frame + RD_REQ32_BODY_SIZE, RD_MIN_BODY_SIZE - 1, RD_BODY_SIZE_SIZE);
    request_from(&req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, &req), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(handle_status(f, frame, len - 1), RD_STATUS_INVALID_PACKET_LENGTH);

    len = make_type1(frame, 0, NULL, 0, coin1, key1);
    frame[len - 1] = 0x00;                              /* the trailer is not encrypted */
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_EOF);
}

static void test_type2_27(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64];
    rd_request_t req;
    size_t len = make_type1(frame, 0, NULL, 0, coin1, key1);
    frame[RD_REQ_ENC_TYPE] = 2;
    request_from(&req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, &req), RD_STATUS_INVALID_ENCRYPTION_CODE);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_ENCRYPTION_CODE);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
}

static void modern_request_from(rd_request_t *req, const uint8_t *frame)
{
    memset(req, 0, sizeof(*req));
    memcpy(req->header, frame, RD_MODERN_HEADER_SIZE);
    req->header_have = RD_MODERN_HEADER_SIZE;
    req->header_size = RD_MODERN_HEADER_SIZE;
}

static void test_type4_header_fields(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128];
    rd_request_t req;
    size_t len = make_type4(frame, 0, (const uint8_t *)"xyz", 3);
    modern_request_from(&req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, &req), RD_STATUS_NO_ERROR);
    assert_int_equal(req.enc_type, 4);
    assert_int_equal(req.body_size, 3 + RD_HMAC_SIZE + RD_TRAILER_SIZE);
    assert_int_equal(handle_status(f, frame, len), 250);

    const struct { size_t offset; uint8_t flip; int status; } cases[] = {
        { RD_REQ48_COIN, 0x02, RD_STATUS_COIN_NOT_FOUND },          /* denomination */
        { RD_REQ48_COIN + 4, 0x01, RD_STATUS_COIN_NOT_FOUND },      /* serial number: SN_EMPTY */
        { RD_REQ48_COIN + 1, 0x01, RD_STATUS_COIN_NOT_FOUND },
        { RD_REQ_ENC_TYPE, 0x01, RD_STATUS_COIN_NOT_FOUND },    /* type 5: coin 2 from the nonce */
        { RD_REQ48_BODY_SIZE + 1, 0x01, RD_STATUS_INVALID_PACKET_LENGTH },  /* body size */
        { RD_REQ_RAIDA_ID, 0x01, RD_STATUS_INVALID_RAIDA_ID },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_type4(frame, 0, (const uint8_t *)"xyz", 3);
        frame[cases[i].offset] ^= cases[i].flip;
        handle(f, frame, len);
        /* Whatever the error, a 48-byte request gets a 48-byte answer. */
        assert_int_equal(f->resp.data[RD_RESP_STATUS], cases[i].status);
        assert_int_equal(f->resp.len, RD_MODERN_HEADER_SIZE);
        assert_int_equal(f->resp.data[RD_RESP48_ENC_TYPE], frame[RD_REQ_ENC_TYPE]);
        assert_memory_equal(f->resp.data + RD_RESP48_COIN, frame + RD_REQ48_COIN, RD_COIN_REF_SIZE);
    }
}

/* The counter block is the nonce's first 16 bytes: a change there decrypts
 * the admin key wrong (the HMAC covers the ciphertext only); the last 8
 * bytes are not used. */
static void test_type4_nonce(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128];
    size_t len = make_type4(frame, 2, admin_key, 16);
    assert_int_equal(handle_status(f, frame, len), 250);
    make_type4(frame, 2, admin_key, 16);
    frame[RD_REQ48_NONCE + RD_AES_BLOCK_SIZE - 1] ^= 0x01;     /* the counter block's last */
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_ADMIN_AUTH);
    make_type4(frame, 2, admin_key, 16);
    frame[RD_REQ48_NONCE + RD_AES_BLOCK_SIZE] ^= 0x01;         /* the unused bytes */
    frame[RD_REQ48_NONCE + RD_REQ48_NONCE_SIZE - 1] ^= 0x01;
    assert_int_equal(handle_status(f, frame, len), 250);
}

static void test_type4_echo_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], nonce[RD_REQ48_NONCE_SIZE];
    size_t len = make_type4(frame, 0, NULL, 0);
    handle(f, frame, len);
    assert_modern_header(f, 4, 250, 0);
    memcpy(nonce, f->resp.data + RD_RESP48_NONCE, sizeof(nonce));
    assert_memory_not_equal(nonce, frame + RD_REQ48_NONCE, sizeof(nonce));
    handle(f, frame, len);                              /* fresh each time */
    assert_memory_not_equal(nonce, f->resp.data + RD_RESP48_NONCE, sizeof(nonce));
}

static void test_type4_version_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], hkey[32], plain[64];
    size_t len = make_type4(frame, 1, NULL, 0);
    handle(f, frame, len);
    assert_modern_header(f, 4, 250, 8 + RD_HMAC_SIZE + RD_TRAILER_SIZE);
    hashed_key(key1, NULL, hkey);
    assert_int_equal(open_modern_answer(f, hkey, plain), 8);
    assert_memory_equal(plain, "20261125", 8);
}

/* Type 5's key is the hash of both keys, first coin first. */
static void test_type5_version_and_stats(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], hkey[32], plain[256];
    size_t len = make_type5(frame, 1, NULL, 0);
    handle(f, frame, len);
    assert_modern_header(f, 5, 250, 8 + RD_HMAC_SIZE + RD_TRAILER_SIZE);
    hashed_key(key1, key2, hkey);
    assert_int_equal(open_modern_answer(f, hkey, plain), 8);
    assert_memory_equal(plain, "20261125", 8);

    len = make_type5(frame, 2, admin_key, 16);
    handle(f, frame, len);
    assert_int_equal(f->resp.data[RD_RESP_STATUS], 250);
    size_t plen = open_modern_answer(f, hkey, plain);
    assert_true(plen > 12);
    assert_int_equal(rd_get_be(plain + 4, 8), 1);       /* the version request */

    hashed_key(key2, key1, hkey);                       /* the other order */
    len = make_modern(frame, 5, 1, NULL, 0, coin1, coin2, hkey);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_HMAC);
}

static void test_modern_wrong_key_204(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], hkey[32];
    hashed_key(key2, NULL, hkey);
    size_t len = make_modern(frame, 4, 1, NULL, 0, coin1, coin2, hkey);
    handle(f, frame, len);
    assert_modern_header(f, 4, RD_STATUS_INVALID_HMAC, 0);
    memcpy(hkey, key1, 16);                             /* the raw key, not its hash */
    memset(hkey + 16, 0, 16);
    len = make_modern(frame, 4, 1, NULL, 0, coin1, coin2, hkey);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_HMAC);
    hashed_key(key1, NULL, hkey);                       /* type 5 with one coin's key */
    len = make_modern(frame, 5, 1, NULL, 0, coin1, coin2, hkey);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_HMAC);
}

/* Any change to the ciphertext or the HMAC: 204, and nothing decrypted. */
static void test_modern_wrong_hmac_204(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], copy[128];
    size_t len = make_type4(frame, 2, admin_key, 16);
    for (size_t at = RD_MODERN_HEADER_SIZE; at < len - RD_TRAILER_SIZE; at += 5) {
        memcpy(copy, frame, len);
        copy[at] ^= 0x20;
        rd_request_t req;
        assert_true(rd_protocol_handle_frame(&f->p, &req, copy, len, &f->resp));
        assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_INVALID_HMAC);
        assert_int_equal(f->resp.len, RD_MODERN_HEADER_SIZE);
        assert_memory_equal(copy + RD_MODERN_HEADER_SIZE, frame + RD_MODERN_HEADER_SIZE,
                            at - RD_MODERN_HEADER_SIZE);        /* left as it came */
    }
    len = make_type4(frame, 0, NULL, 0);                       /* an HMAC of nothing */
    frame[RD_MODERN_HEADER_SIZE] ^= 1;
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_HMAC);
}

static void test_modern_truncated_body(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128];
    rd_request_t req;
    size_t len = make_type4(frame, 0, NULL, 0);
    assert_int_equal(len, RD_MODERN_HEADER_SIZE + RD_HMAC_SIZE + RD_TRAILER_SIZE);
    /* No room for the HMAC. */
    rd_put_be(frame + RD_REQ48_BODY_SIZE, RD_MODERN_MIN_BODY_SIZE - 1, RD_BODY_SIZE_SIZE);
    modern_request_from(&req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, &req), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(handle_status(f, frame, len - 1), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(f->resp.len, RD_MODERN_HEADER_SIZE);

    len = make_type4(frame, 1, (const uint8_t *)"abc", 3);
    assert_int_equal(handle_status(f, frame, len - 1), RD_STATUS_INVALID_PACKET_LENGTH);
    frame[len - 2] = 0x3F;
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_EOF);
}

static void test_modern_missing_coin_25(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], hkey[32];
    const coin_t empty = { DEN1, SN_EMPTY }, none = { 7, 7 };
    hashed_key(key1, key2, hkey);
    size_t len = make_modern(frame, 4, 0, NULL, 0, empty, coin2, hkey);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_COIN_NOT_FOUND);
    len = make_modern(frame, 5, 0, NULL, 0, coin1, empty, hkey);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_COIN_NOT_FOUND);
    len = make_modern(frame, 5, 0, NULL, 0, none, coin2, hkey);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_COIN_NOT_FOUND);
    assert_int_equal(f->resp.len, RD_MODERN_HEADER_SIZE);
}

/* Without a key store every coin is missing. */
static void test_no_key_store(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128];
    assert_null(f->p.coins);
    size_t len = make_type1(frame, 0, NULL, 0, coin1, key1);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_ENCRYPTION);
    len = make_type4(frame, 0, NULL, 0);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_COIN_NOT_FOUND);
    len = make_type5(frame, 0, NULL, 0);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_COIN_NOT_FOUND);
}

/* The request keeps no key once answered. */
static void test_key_wiped(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], zero[32] = { 0 };
    rd_request_t req;
    size_t len = make_type5(frame, 1, NULL, 0);
    assert_true(rd_protocol_handle_frame(&f->p, &req, frame, len, &f->resp));
    assert_int_equal(f->resp.data[RD_RESP_STATUS], 250);
    assert_memory_equal(req.key, zero, sizeof(req.key));
    len = make_type1(frame, 1, NULL, 0, coin1, key1);
    assert_true(rd_protocol_handle_frame(&f->p, &req, frame, len, &f->resp));
    assert_memory_equal(req.key, zero, sizeof(req.key));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        K(test_type1_header_fields),
        K(test_type1_echo_bytes),
        K(test_type1_version_bytes),
        K(test_type1_stats),
        K(test_type1_wrong_key_37),
        K(test_type1_missing_coin_34),
        K(test_type1_truncated_body),
        K(test_type2_27),
        K(test_type4_header_fields),
        K(test_type4_nonce),
        K(test_type4_echo_bytes),
        K(test_type4_version_bytes),
        K(test_type5_version_and_stats),
        K(test_modern_wrong_key_204),
        K(test_modern_wrong_hmac_204),
        K(test_modern_truncated_body),
        K(test_modern_missing_coin_25),
        T(test_no_key_store),
        K(test_key_wiped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
