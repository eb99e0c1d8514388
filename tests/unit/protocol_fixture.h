/* The fixture of the frame-level unit tests (test_protocol.c,
 * test_crypt.c, test_commands.c, test_client.c): a protocol set up
 * as a server would be, requests built here field by field (independently
 * of rd_client) at include/rd_frame.h's named offsets, and a coin store
 * holding the keys of the encrypted requests. The names are safe to build
 * on: test_frame.c pins each one to the byte docs/protocol.md gives it, so
 * a name that drifted from the wire fails there, not silently here. */
#ifndef PROTOCOL_FIXTURE_H
#define PROTOCOL_FIXTURE_H

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <zlib.h>
#include <cmocka.h>

#include "rd_bytes.h"
#include "rd_cidr.h"
#include "rd_coins.h"
#include "rd_crypto.h"
#include "rd_frame.h"
#include "rd_protocol.h"
#include "rd_stats.h"

#define RAIDA_ID   7
#define COIN_ID    0x0106       /* both bytes matter */
#define MAX_BODY   1024
#define ECHO       0xBEEF
#define EXEC_LIMIT 1000000u     /* us: a handler that takes a second is broken */

static const uint8_t admin_key[16] = {
    0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,
};

static const uint8_t random12[12] = {
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC,
};

/* The default admin_allow: loopback only. */
static rd_cidr_t loopback[2] __attribute__((unused));

typedef struct fixture {
    rd_protocol_t p;
    rd_response_t resp;
    char root[256];             /* setup_keys: the data dir of p.coins */
    rd_coins_shared_t *shared;
} fixture_t;

static inline int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->p.raida_id = RAIDA_ID;
    f->p.coin_id = COIN_ID;
    f->p.max_body_size = MAX_BODY;
    f->p.admin_key_set = true;
    memcpy(f->p.admin_key, admin_key, sizeof(admin_key));
    if (rd_cidr_parse("127.0.0.0/8", &loopback[0]) < 0 || rd_cidr_parse("::1", &loopback[1]) < 0) {
        free(f);
        return -1;
    }
    f->p.admin_allow = loopback;
    f->p.admin_allow_count = 2;
    f->p.stats = rd_stats_create();
    if (f->p.stats == NULL) {
        free(f);
        return -1;
    }
    rd_response_init(&f->resp);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fixture_t *f = *state;
    rd_response_release(&f->resp);
    rd_stats_destroy(f->p.stats);
    free(f);
    return 0;
}

/* The 16 challenge bytes every test frame carries: fixed, so that answers
 * can be compared byte for byte. */
static inline void make_challenge(uint8_t *c)
{
    memcpy(c, random12, RD_CRC_INPUT_SIZE);
    rd_put_be(c + RD_CRC_INPUT_SIZE, crc32(0L, c, RD_CRC_INPUT_SIZE),
              RD_CHALLENGE_SIZE - RD_CRC_INPUT_SIZE);
}

/* A valid type-0 request built here, independently of rd_client. */
static inline size_t make_frame_echo(uint8_t *out, uint8_t group, uint8_t command,
                                     const uint8_t *payload, size_t payload_len, uint16_t echo)
{
    size_t body_size = RD_CHALLENGE_SIZE + payload_len + RD_TRAILER_SIZE;
    memset(out, 0, RD_LEGACY_HEADER_SIZE);
    out[RD_REQ_ROUTING] = RD_ROUTING_RAIDA;
    out[RD_REQ_RAIDA_ID] = RAIDA_ID;
    out[RD_REQ_GROUP] = group;
    out[RD_REQ_COMMAND] = command;
    rd_put_be(out + RD_REQ_COIN_ID, COIN_ID, RD_COIN_ID_SIZE);
    rd_put_be(out + RD_REQ32_BODY_SIZE, body_size, RD_BODY_SIZE_SIZE);
    rd_put_be(out + RD_REQ32_ECHO, echo, RD_ECHO_SIZE);
    uint8_t *body = out + RD_LEGACY_HEADER_SIZE;
    make_challenge(body);
    if (payload_len > 0)
        memcpy(body + RD_CHALLENGE_SIZE, payload, payload_len);
    memset(body + body_size - RD_TRAILER_SIZE, RD_TRAILER_BYTE, RD_TRAILER_SIZE);
    return RD_LEGACY_HEADER_SIZE + body_size;
}

static inline size_t make_frame(uint8_t *out, uint8_t group, uint8_t command,
                                const uint8_t *payload, size_t payload_len)
{
    return make_frame_echo(out, group, command, payload, payload_len, ECHO);
}

static inline void request_from(rd_request_t *req, const uint8_t *frame)
{
    memset(req, 0, sizeof(*req));
    memcpy(req->header, frame, RD_LEGACY_HEADER_SIZE);
    req->header_have = RD_LEGACY_HEADER_SIZE;
    req->header_size = RD_LEGACY_HEADER_SIZE;
}

/* Status of validate_header for a good echo frame with one byte changed. */
static inline int header_status_with(const fixture_t *f, size_t offset, uint8_t value,
                                     rd_request_t *req)
{
    uint8_t frame[64];
    make_frame(frame, 0, 0, NULL, 0);
    frame[offset] = value;
    request_from(req, frame);
    return rd_protocol_validate_header(&f->p, req);
}

static inline void expect_header_status(const fixture_t *f, size_t offset, uint8_t value, int status)
{
    rd_request_t req;
    assert_int_equal(header_status_with(f, offset, value, &req), status);
}

/* The header an answer must have, exec time aside (left 0: it varies). */
static inline void expected_header(uint8_t *h, uint8_t status, uint8_t group, uint16_t echo,
                                   uint32_t body_size, bool challenge)
{
    memset(h, 0, RD_LEGACY_HEADER_SIZE);
    h[RD_RESP_RAIDA_ID] = RAIDA_ID;
    h[RD_RESP_STATUS] = status;
    h[RD_RESP_GROUP] = group;
    rd_put_be(h + RD_RESP32_FRAMES, 1, RD_RESP32_FRAMES_SIZE);
    rd_put_be(h + RD_RESP32_ECHO, echo, RD_ECHO_SIZE);
    rd_put_be(h + RD_RESP_BODY_SIZE, body_size, RD_RESP_BODY_SIZE_SIZE);
    if (challenge)
        make_challenge(h + RD_RESP32_CHALLENGE);
}

/* All of a legacy answer's header but the exec time, which is only
 * bounded; returns it. */
static inline uint32_t assert_header(const uint8_t *got, const uint8_t *want)
{
    assert_memory_equal(got, want, RD_RESP32_EXEC_US);
    assert_memory_equal(got + RD_RESP32_CHALLENGE, want + RD_RESP32_CHALLENGE, RD_CHALLENGE_SIZE);
    uint32_t exec_us = (uint32_t)rd_get_be(got + RD_RESP32_EXEC_US, RD_EXEC_US_SIZE);
    assert_true(exec_us < EXEC_LIMIT);
    return exec_us;
}

static inline void handle(fixture_t *f, uint8_t *frame, size_t len)
{
    assert_true(rd_protocol_handle_frame(&f->p, &(rd_request_t){ 0 }, frame, len, &f->resp));
}

static inline void handle_expect_status(fixture_t *f, uint8_t *frame, size_t len, int status)
{
    handle(f, frame, len);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    assert_int_equal(f->resp.data[RD_RESP_STATUS], status);
}

/* CLIENT ("127.0.0.1", "::1") in the 16-byte form the TCP layer gives. */
static inline void client_addr(rd_request_t *req, const char *client)
{
    memset(req->client, 0, sizeof(req->client));
    if (strchr(client, ':') != NULL) {
        assert_int_equal(inet_pton(AF_INET6, client, req->client), 1);
    } else {
        req->client[10] = req->client[11] = 0xff;
        assert_int_equal(inet_pton(AF_INET, client, req->client + 12), 1);
    }
}

/* A whole frame run the way the TCP path runs it (header, body, command),
 * as sent by CLIENT; REQ is left as the run left it. */
static inline void handle_tcp(fixture_t *f, rd_request_t *req, uint8_t *frame, size_t len,
                              const char *client)
{
    memset(req, 0, sizeof(*req));
    client_addr(req, client);
    req->header_size = req->header_have = (uint16_t)rd_protocol_header_size(frame);
    assert_true(len >= req->header_size);
    memcpy(req->header, frame, req->header_size);
    int status = rd_protocol_validate_header(&f->p, req);
    if (status == RD_STATUS_NO_ERROR) {
        assert_int_equal(len - req->header_size, req->body_size);
        req->body = frame + req->header_size;
        req->body_complete = true;
        status = rd_protocol_validate_body(&f->p, req);
    }
    if (status == RD_STATUS_NO_ERROR)
        rd_protocol_run_command(&f->p, req, &f->resp);
    else
        rd_protocol_error_response(&f->p, req, status, &f->resp);
}

/* The admin key in clear is accepted over TCP from loopback only. */
static inline void send_stats(fixture_t *f, const uint8_t *key, size_t key_len)
{
    uint8_t frame[128];
    rd_request_t req;
    size_t len = make_frame(frame, 0, 2, key, key_len);
    handle_tcp(f, &req, frame, len, "127.0.0.1");
}

/* The coins of the encrypted requests (setup_keys writes their pages). */
#define DEN1        1
#define SN1         2000        /* page 1, record 976 */
#define DEN2        (-2)        /* folder fe */
#define SN2         5
#define SN_EMPTY    2001        /* in SN1's page, with status 0: no such coin */

static const uint8_t key1[16] = {
    0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87,
    0x98, 0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F,
};

static const uint8_t key2[16] = {
    0xF0, 0xE1, 0xD2, 0xC3, 0xB4, 0xA5, 0x96, 0x87,
    0x78, 0x69, 0x5A, 0x4B, 0x3C, 0x2D, 0x1E, 0x0F,
};

typedef struct coin {
    int8_t den;
    uint32_t sn;
} coin_t;

static const coin_t coin1 = { DEN1, SN1 };
static const coin_t coin2 = { DEN2, SN2 };

/* COIN as the headers carry it: denomination, then serial number (u32). */
static inline void put_coin(uint8_t *at, coin_t coin)
{
    at[0] = (uint8_t)coin.den;
    rd_put_be(at + RD_COIN_REF_SN, coin.sn, RD_COIN_REF_SIZE - RD_COIN_REF_SN);
}

static inline bool make_dir(const char *path)
{
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

/* Sets one record of a page file, making the file (zero-filled) if needed. */
static inline bool write_coin(const char *root, int8_t den, uint32_t sn, const uint8_t *key, uint8_t status)
{
    static uint8_t page[RD_COIN_PAGE_SIZE];
    char path[512];
    uint32_t no = sn / 1024;
    unsigned d = (uint8_t)den;
    snprintf(path, sizeof(path), "%s/Data", root);
    bool ok = make_dir(path);
    snprintf(path, sizeof(path), "%s/Data/%02x", root, d);
    ok = ok && make_dir(path);
    snprintf(path, sizeof(path), "%s/Data/%02x/%02x", root, d, no >> 8);
    ok = ok && make_dir(path);
    snprintf(path, sizeof(path), "%s/Data/%02x/%02x/%04x.bin", root, d, no >> 8, no);
    FILE *fp = fopen(path, "rb");
    memset(page, 0, sizeof(page));
    if (fp != NULL) {
        ok = ok && fread(page, 1, sizeof(page), fp) == sizeof(page);
        fclose(fp);
    }
    memcpy(page + (sn % 1024) * 17, key, 16);
    page[(sn % 1024) * 17 + 16] = status;
    fp = fopen(path, "wb");
    ok = ok && fp != NULL && fwrite(page, 1, sizeof(page), fp) == sizeof(page);
    return fp != NULL && fclose(fp) == 0 && ok;
}

static inline int setup_keys(void **state)
{
    if (setup(state) < 0)
        return -1;
    fixture_t *f = *state;
    snprintf(f->root, sizeof(f->root), "/tmp/test_protocol.XXXXXX");
    if (mkdtemp(f->root) == NULL
        || !write_coin(f->root, DEN1, SN1, key1, 1)
        || !write_coin(f->root, DEN1, SN_EMPTY, key2, 0)
        || !write_coin(f->root, DEN2, SN2, key2, 200))
        return -1;
    rd_coins_conf_t conf = { .data_dir = f->root, .uid = (uid_t)-1, .gid = (gid_t)-1,
                             .pending_max = 4096, .journal_max = 1 << 20,
                             .checkpoint_interval_ms = 60000, .page_recheck_ms = 1000 };
    char err[512];
    f->shared = rd_coins_prepare(&conf, err, sizeof(err));
    f->p.coins = f->shared != NULL ? rd_coins_open(f->shared, &conf) : NULL;
    return f->p.coins != NULL ? 0 : -1;
}

static inline int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline int teardown_keys(void **state)
{
    fixture_t *f = *state;
    rd_coins_close(f->p.coins);
    rd_coins_finish(f->shared);
    int rc = f->root[0] != '\0' ? nftw(f->root, remove_entry, 8, FTW_DEPTH | FTW_PHYS) : 0;
    return teardown(state) | rc;
}

/* Type 1's counter block: the header's nonce, padded with zero bytes. */
static inline void legacy_iv(const uint8_t *frame, uint8_t *iv)
{
    memcpy(iv, frame + RD_REQ32_NONCE, RD_REQ32_NONCE_SIZE);
    memset(iv + RD_REQ32_NONCE_SIZE, 0, RD_AES_BLOCK_SIZE - RD_REQ32_NONCE_SIZE);
}

/* A type-1 request naming COIN, encrypted with KEY (the right one or not). */
static inline size_t make_type1(uint8_t *out, uint8_t command, const uint8_t *payload, size_t plen,
                                coin_t coin, const uint8_t *key)
{
    uint8_t iv[RD_AES_BLOCK_SIZE];
    uint8_t *body = out + RD_LEGACY_HEADER_SIZE;
    size_t len = make_frame(out, 0, command, payload, plen);
    out[RD_REQ_ENC_TYPE] = RD_ENC_AES128;
    put_coin(out + RD_REQ32_COIN, coin);
    /* The nonce's last bytes are the echo bytes: only the ones before them are set. */
    for (int i = 0; i < RD_REQ32_ECHO - RD_REQ32_NONCE; i++)
        out[RD_REQ32_NONCE + i] = (uint8_t)(0xA0 + i);
    legacy_iv(out, iv);
    assert_int_equal(rd_crypto_aes128_ctr(key, iv, body, body,
                                          len - RD_LEGACY_HEADER_SIZE - RD_TRAILER_SIZE), 0);
    return len;
}

/* SHA-256 of K1, or of K1 || K2. */
static inline void hashed_key(const uint8_t *k1, const uint8_t *k2, uint8_t *out)
{
    uint8_t both[32];
    memcpy(both, k1, 16);
    if (k2 != NULL)
        memcpy(both + 16, k2, 16);
    assert_int_equal(rd_crypto_sha256(both, k2 != NULL ? 32 : 16, out), 0);
}

static inline void modern_header(uint8_t *h, uint8_t type, uint8_t command, size_t body_size,
                                 coin_t c1, coin_t c2)
{
    memset(h, 0, RD_MODERN_HEADER_SIZE);
    h[RD_REQ_ROUTING] = RD_ROUTING_RAIDA;
    h[RD_REQ_RAIDA_ID] = RAIDA_ID;
    h[RD_REQ_COMMAND] = command;
    rd_put_be(h + RD_REQ_COIN_ID, COIN_ID, RD_COIN_ID_SIZE);
    h[RD_REQ_ENC_TYPE] = type;
    rd_put_be(h + RD_REQ48_BODY_SIZE, body_size, RD_BODY_SIZE_SIZE);
    put_coin(h + RD_REQ48_COIN, c1);
    for (int i = RD_REQ48_NONCE; i < RD_MODERN_HEADER_SIZE; i++)
        h[i] = (uint8_t)(0x30 + i);
    if (type == RD_ENC_AES256_TWO)
        put_coin(h + RD_REQ48_COIN2, c2);
}

/* A type-4 or type-5 request encrypted and authenticated with HKEY. */
static inline size_t make_modern(uint8_t *out, uint8_t type, uint8_t command, const uint8_t *payload,
                                 size_t plen, coin_t c1, coin_t c2, const uint8_t *hkey)
{
    size_t body_size = plen + RD_HMAC_SIZE + RD_TRAILER_SIZE;
    uint8_t *b = out + RD_MODERN_HEADER_SIZE;
    modern_header(out, type, command, body_size, c1, c2);
    if (plen > 0)
        memcpy(b, payload, plen);
    assert_int_equal(rd_crypto_aes256_ctr(hkey, out + RD_REQ48_NONCE, b, b, plen), 0);
    assert_int_equal(rd_crypto_hmac_sha256(hkey, 32, b, plen, b + plen), 0);
    memset(b + plen + RD_HMAC_SIZE, RD_TRAILER_BYTE, RD_TRAILER_SIZE);
    return RD_MODERN_HEADER_SIZE + body_size;
}

static inline size_t make_type4(uint8_t *out, uint8_t command, const uint8_t *payload, size_t plen)
{
    uint8_t hkey[32];
    hashed_key(key1, NULL, hkey);
    return make_modern(out, 4, command, payload, plen, coin1, coin2, hkey);
}

static inline size_t make_type5(uint8_t *out, uint8_t command, const uint8_t *payload, size_t plen)
{
    uint8_t hkey[32];
    hashed_key(key1, key2, hkey);
    return make_modern(out, 5, command, payload, plen, coin1, coin2, hkey);
}

static inline uint8_t handle_status(fixture_t *f, uint8_t *frame, size_t len)
{
    handle(f, frame, len);
    return f->resp.data[RD_RESP_STATUS];
}

/* The fixed part of a 48-byte answer to a request naming coin1: all
 * before the fresh nonce, the exec time only bounded. */
static inline void assert_modern_header(const fixture_t *f, uint8_t type, uint8_t status,
                                        uint32_t body_size)
{
    const uint8_t *h = f->resp.data;
    const size_t after_exec = RD_RESP48_EXEC_US + RD_EXEC_US_SIZE;
    uint8_t want[RD_RESP48_NONCE] = { 0 };
    want[RD_RESP_RAIDA_ID] = RAIDA_ID;
    want[RD_RESP_STATUS] = status;
    rd_put_be(want + RD_RESP_BODY_SIZE, body_size, RD_RESP_BODY_SIZE_SIZE);
    want[RD_RESP48_ENC_TYPE] = type;
    put_coin(want + RD_RESP48_COIN, coin1);
    assert_int_equal(f->resp.len, RD_MODERN_HEADER_SIZE + body_size);
    assert_memory_equal(h, want, RD_RESP48_EXEC_US);
    assert_true(rd_get_be(h + RD_RESP48_EXEC_US, RD_EXEC_US_SIZE) < EXEC_LIMIT);
    assert_memory_equal(h + after_exec, want + after_exec, RD_RESP48_NONCE - after_exec);
}

/* Checks the HMAC and the trailer of a 48-byte answer and decrypts its
 * payload into OUT; returns the payload's length. */
static inline size_t open_modern_answer(const fixture_t *f, const uint8_t *hkey, uint8_t *out)
{
    const uint8_t *r = f->resp.data;
    const uint8_t *b = r + RD_MODERN_HEADER_SIZE;
    size_t plen = f->resp.len - RD_MODERN_HEADER_SIZE - RD_HMAC_SIZE - RD_TRAILER_SIZE;
    uint8_t mac[RD_HMAC_SIZE];
    assert_true(f->resp.len >= RD_MODERN_HEADER_SIZE + RD_HMAC_SIZE + RD_TRAILER_SIZE);
    assert_int_equal(rd_crypto_hmac_sha256(hkey, 32, b, plen, mac), 0);
    assert_memory_equal(b + plen, mac, RD_HMAC_SIZE);
    assert_int_equal(r[f->resp.len - 2], RD_TRAILER_BYTE);
    assert_int_equal(r[f->resp.len - 1], RD_TRAILER_BYTE);
    assert_int_equal(rd_crypto_aes256_ctr(hkey, r + RD_RESP48_NONCE, b, out, plen), 0);
    return plen;
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define K(name) cmocka_unit_test_setup_teardown(name, setup_keys, teardown_keys)

#endif
