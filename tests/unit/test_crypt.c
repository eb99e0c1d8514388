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
        { 17, 0x03, RD_STATUS_INVALID_ENCRYPTION },    /* denomination 2: no page */
        { 21, 0x01, RD_STATUS_INVALID_ENCRYPTION },    /* SN_EMPTY: status 0 */
        { 18, 0x80, RD_STATUS_INVALID_ENCRYPTION },    /* page 0x200001: none */
        { 24, 0x01, RD_STATUS_INVALID_CRC },           /* the nonce ... */
        { 29, 0x40, RD_STATUS_INVALID_CRC },
        { 31, 0x01, RD_STATUS_INVALID_CRC },           /* ... ends with the echo bytes */
        { 23, 0x01, RD_STATUS_INVALID_PACKET_LENGTH }, /* body size: not the datagram's */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_type1(frame, 0, NULL, 0, coin1, key1);
        frame[cases[i].offset] ^= cases[i].flip;
        assert_int_equal(handle_status(f, frame, len), cases[i].status);
        assert_int_equal(f->resp.len, 32);
    }
}

/* The challenge hash of a type-1 answer is the challenge XOR the key. */
static void expected_type1_header(uint8_t *want, uint8_t status, uint32_t body_size)
{
    expected_header(want, status, 0, ECHO, body_size, true);
    for (int i = 0; i < 16; i++)
        want[16 + i] ^= key1[i];
}

static void test_type1_echo_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    size_t len = make_type1(frame, 0, NULL, 0, coin1, key1);
    handle(f, frame, len);
    expected_type1_header(want, 250, 0);
    assert_int_equal(f->resp.len, 32);
    assert_header(f->resp.data, want);
}

/* The payload is encrypted with the request's key and counter block. */
static void test_type1_version_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[42], iv[16];
    size_t len = make_type1(frame, 1, NULL, 0, coin1, key1);
    handle(f, frame, len);
    expected_type1_header(want, 250, 10);
    legacy_iv(frame, iv);
    assert_int_equal(rd_crypto_aes128_ctr(key1, iv, (const uint8_t *)"20261125", want + 32, 8), 0);
    want[40] = want[41] = 0x3E;
    assert_int_equal(f->resp.len, 42);
    assert_header(f->resp.data, want);
    assert_memory_equal(f->resp.data + 32, want + 32, 10);
}

/* The admin key travels encrypted; a command's own error keeps the hash. */
static void test_type1_stats(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], want[32], iv[16], plain[128];
    size_t len = make_type1(frame, 2, admin_key, 16, coin1, key1);
    handle(f, frame, len);
    assert_int_equal(f->resp.data[2], 250);
    legacy_iv(frame, iv);
    size_t plen = f->resp.len - 34;
    assert_int_equal(rd_crypto_aes128_ctr(key1, iv, f->resp.data + 32, plain, plen), 0);
    assert_int_equal(be64(plain + 4), 0);                   /* no request counted before */

    uint8_t wrong[16];
    memcpy(wrong, admin_key, 16);
    wrong[0] ^= 1;
    len = make_type1(frame, 2, wrong, 16, coin1, key1);
    handle(f, frame, len);
    expected_type1_header(want, RD_STATUS_ADMIN_AUTH, 0);
    assert_int_equal(f->resp.len, 32);
    assert_header(f->resp.data, want);
}

/* The wrong key decrypts to a challenge whose CRC fails; the answer then
 * carries no challenge hash at all. */
static void test_type1_wrong_key_37(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    size_t len = make_type1(frame, 1, NULL, 0, coin1, key2);
    handle(f, frame, len);
    expected_header(want, RD_STATUS_INVALID_CRC, 0, ECHO, 0, false);
    assert_int_equal(f->resp.len, 32);
    assert_header(f->resp.data, want);
}

static void test_type1_missing_coin_34(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    const coin_t missing[] = { { DEN1, SN_EMPTY }, { DEN1, 5 }, { 3, SN1 }, { DEN2, SN1 } };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        size_t len = make_type1(frame, 1, NULL, 0, missing[i], key1);
        handle(f, frame, len);
        expected_header(want, RD_STATUS_INVALID_ENCRYPTION, 0, ECHO, 0, false);
        assert_header(f->resp.data, want);
        assert_int_equal(f->resp.len, 32);
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
    frame[23] = 17;                                     /* one byte short of a challenge */
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
    frame[16] = 2;
    request_from(&req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, &req), RD_STATUS_INVALID_ENCRYPTION_CODE);
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_ENCRYPTION_CODE);
    assert_int_equal(f->resp.len, 32);
}

static void modern_request_from(rd_request_t *req, const uint8_t *frame)
{
    memset(req, 0, sizeof(*req));
    memcpy(req->header, frame, 48);
    req->header_have = 48;
    req->header_size = 48;
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
    assert_int_equal(req.body_size, 3 + 34);
    assert_int_equal(handle_status(f, frame, len), 250);

    const struct { size_t offset; uint8_t flip; int status; } cases[] = {
        { 19, 0x02, RD_STATUS_COIN_NOT_FOUND },          /* denomination */
        { 23, 0x01, RD_STATUS_COIN_NOT_FOUND },          /* serial number: SN_EMPTY */
        { 20, 0x01, RD_STATUS_COIN_NOT_FOUND },
        { 16, 0x01, RD_STATUS_COIN_NOT_FOUND },          /* type 5: coin 2 from the nonce */
        { 18, 0x01, RD_STATUS_INVALID_PACKET_LENGTH },   /* body size */
        { 2, 0x01, RD_STATUS_INVALID_RAIDA_ID },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_type4(frame, 0, (const uint8_t *)"xyz", 3);
        frame[cases[i].offset] ^= cases[i].flip;
        handle(f, frame, len);
        /* Whatever the error, a 48-byte request gets a 48-byte answer. */
        assert_int_equal(f->resp.data[2], cases[i].status);
        assert_int_equal(f->resp.len, 48);
        assert_memory_equal(f->resp.data + 16, frame + 16, 1);
        assert_memory_equal(f->resp.data + 17, frame + 19, 5);
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
    frame[39] ^= 0x01;
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_ADMIN_AUTH);
    make_type4(frame, 2, admin_key, 16);
    frame[40] ^= 0x01;
    frame[47] ^= 0x01;
    assert_int_equal(handle_status(f, frame, len), 250);
}

static void test_type4_echo_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], nonce[24];
    size_t len = make_type4(frame, 0, NULL, 0);
    handle(f, frame, len);
    assert_modern_header(f, 4, 250, 0);
    memcpy(nonce, f->resp.data + 24, 24);
    assert_memory_not_equal(nonce, frame + 24, 24);
    handle(f, frame, len);
    assert_memory_not_equal(nonce, f->resp.data + 24, 24);     /* fresh each time */
}

static void test_type4_version_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128], hkey[32], plain[64];
    size_t len = make_type4(frame, 1, NULL, 0);
    handle(f, frame, len);
    assert_modern_header(f, 4, 250, 8 + 34);
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
    assert_modern_header(f, 5, 250, 8 + 34);
    hashed_key(key1, key2, hkey);
    assert_int_equal(open_modern_answer(f, hkey, plain), 8);
    assert_memory_equal(plain, "20261125", 8);

    len = make_type5(frame, 2, admin_key, 16);
    handle(f, frame, len);
    assert_int_equal(f->resp.data[2], 250);
    size_t plen = open_modern_answer(f, hkey, plain);
    assert_true(plen > 12);
    assert_int_equal(be64(plain + 4), 1);               /* the version request */

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
    for (size_t at = 48; at < len - 2; at += 5) {
        memcpy(copy, frame, len);
        copy[at] ^= 0x20;
        rd_request_t req;
        assert_true(rd_protocol_handle_frame(&f->p, &req, copy, len, &f->resp));
        assert_int_equal(f->resp.data[2], RD_STATUS_INVALID_HMAC);
        assert_int_equal(f->resp.len, 48);
        assert_memory_equal(copy + 48, frame + 48, at - 48);   /* left as it came */
    }
    len = make_type4(frame, 0, NULL, 0);                       /* an HMAC of nothing */
    frame[48] ^= 1;
    assert_int_equal(handle_status(f, frame, len), RD_STATUS_INVALID_HMAC);
}

static void test_modern_truncated_body(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128];
    rd_request_t req;
    size_t len = make_type4(frame, 0, NULL, 0);
    assert_int_equal(len, 48 + 34);
    frame[18] = 33;                                     /* no room for the HMAC */
    modern_request_from(&req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, &req), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(handle_status(f, frame, len - 1), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(f->resp.len, 48);

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
    assert_int_equal(f->resp.len, 48);
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
    assert_int_equal(f->resp.data[2], 250);
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
