/* The fixture of the frame-level unit tests (test_protocol.c,
 * test_crypt.c, test_commands.c, test_client.c): a protocol set up
 * as a server would be, requests built here byte by byte (independently of
 * rd_client and of include/rd_frame.h's names, so that the tests check the
 * wire format rather than restate it), and a coin store holding the keys
 * of the encrypted requests. */
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

#include "rd_cidr.h"
#include "rd_coins.h"
#include "rd_crypto.h"
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

static inline uint32_t be(const uint8_t *b, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | b[i];
    return v;
}

static inline uint64_t be64(const uint8_t *b)
{
    return (uint64_t)be(b, 4) << 32 | be(b + 4, 4);
}

/* The 16 challenge bytes every test frame carries: fixed, so that answers
 * can be compared byte for byte. */
static inline void make_challenge(uint8_t *c)
{
    memcpy(c, random12, 12);
    uint32_t crc = (uint32_t)crc32(0L, c, 12);
    c[12] = (uint8_t)(crc >> 24);
    c[13] = (uint8_t)(crc >> 16);
    c[14] = (uint8_t)(crc >> 8);
    c[15] = (uint8_t)crc;
}

/* A valid type-0 request built here, independently of rd_client. */
static inline size_t make_frame_echo(uint8_t *out, uint8_t group, uint8_t command,
                                     const uint8_t *payload, size_t payload_len, uint16_t echo)
{
    size_t body_size = 16 + payload_len + 2;
    memset(out, 0, 32);
    out[0] = 1;
    out[2] = RAIDA_ID;
    out[4] = group;
    out[5] = command;
    out[6] = COIN_ID >> 8;
    out[7] = COIN_ID & 0xFF;
    out[22] = (uint8_t)(body_size >> 8);
    out[23] = (uint8_t)body_size;
    out[30] = (uint8_t)(echo >> 8);
    out[31] = (uint8_t)echo;
    uint8_t *body = out + 32;
    make_challenge(body);
    if (payload_len > 0)
        memcpy(body + 16, payload, payload_len);
    body[body_size - 2] = 0x3E;
    body[body_size - 1] = 0x3E;
    return 32 + body_size;
}

static inline size_t make_frame(uint8_t *out, uint8_t group, uint8_t command,
                                const uint8_t *payload, size_t payload_len)
{
    return make_frame_echo(out, group, command, payload, payload_len, ECHO);
}

static inline void request_from(rd_request_t *req, const uint8_t *frame)
{
    memset(req, 0, sizeof(*req));
    memcpy(req->header, frame, 32);
    req->header_have = 32;
    req->header_size = 32;
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

/* The header an answer must have, exec time (12-15) aside. */
static inline void expected_header(uint8_t *h, uint8_t status, uint8_t group, uint16_t echo,
                                   uint32_t body_size, bool challenge)
{
    memset(h, 0, 32);
    h[0] = RAIDA_ID;
    h[2] = status;
    h[3] = group;
    h[5] = 1;
    h[6] = (uint8_t)(echo >> 8);
    h[7] = (uint8_t)echo;
    h[9] = (uint8_t)(body_size >> 16);
    h[10] = (uint8_t)(body_size >> 8);
    h[11] = (uint8_t)body_size;
    if (challenge)
        make_challenge(h + 16);
}

static inline uint32_t assert_header(const uint8_t *got, const uint8_t *want)
{
    assert_memory_equal(got, want, 12);
    assert_memory_equal(got + 16, want + 16, 16);
    uint32_t exec_us = be(got + 12, 4);
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
    assert_int_equal(f->resp.len, 32);
    assert_int_equal(f->resp.data[2], status);
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

static inline void put_be32(uint8_t *b, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
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

static inline void legacy_iv(const uint8_t *frame, uint8_t *iv)
{
    memcpy(iv, frame + 24, 8);
    memset(iv + 8, 0, 8);
}

/* A type-1 request naming COIN, encrypted with KEY (the right one or not). */
static inline size_t make_type1(uint8_t *out, uint8_t command, const uint8_t *payload, size_t plen,
                                coin_t coin, const uint8_t *key)
{
    uint8_t iv[16];
    size_t len = make_frame(out, 0, command, payload, plen);
    out[16] = 1;
    out[17] = (uint8_t)coin.den;
    put_be32(out + 18, coin.sn);
    for (int i = 0; i < 6; i++)
        out[24 + i] = (uint8_t)(0xA0 + i);     /* 30-31, the echo bytes, end the nonce */
    legacy_iv(out, iv);
    assert_int_equal(rd_crypto_aes128_ctr(key, iv, out + 32, out + 32, len - 34), 0);
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
    memset(h, 0, 48);
    h[0] = 1;
    h[2] = RAIDA_ID;
    h[5] = command;
    h[6] = COIN_ID >> 8;
    h[7] = COIN_ID & 0xFF;
    h[16] = type;
    h[17] = (uint8_t)(body_size >> 8);
    h[18] = (uint8_t)body_size;
    h[19] = (uint8_t)c1.den;
    put_be32(h + 20, c1.sn);
    for (int i = 24; i < 48; i++)
        h[i] = (uint8_t)(0x30 + i);
    if (type == 5) {
        h[24] = (uint8_t)c2.den;
        put_be32(h + 25, c2.sn);
    }
}

/* A type-4 or type-5 request encrypted and authenticated with HKEY. */
static inline size_t make_modern(uint8_t *out, uint8_t type, uint8_t command, const uint8_t *payload,
                                 size_t plen, coin_t c1, coin_t c2, const uint8_t *hkey)
{
    size_t body_size = plen + 34;
    uint8_t *b = out + 48;
    modern_header(out, type, command, body_size, c1, c2);
    if (plen > 0)
        memcpy(b, payload, plen);
    assert_int_equal(rd_crypto_aes256_ctr(hkey, out + 24, b, b, plen), 0);
    assert_int_equal(rd_crypto_hmac_sha256(hkey, 32, b, plen, b + plen), 0);
    b[plen + 32] = 0x3E;
    b[plen + 33] = 0x3E;
    return 48 + body_size;
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
    return f->resp.data[2];
}

/* The fixed part of a 48-byte answer to a request naming coin1. */
static inline void assert_modern_header(const fixture_t *f, uint8_t type, uint8_t status,
                                        uint32_t body_size)
{
    const uint8_t *h = f->resp.data;
    uint8_t want[24] = { RAIDA_ID, 0, status, 0 };
    want[9] = (uint8_t)(body_size >> 16);
    want[10] = (uint8_t)(body_size >> 8);
    want[11] = (uint8_t)body_size;
    want[16] = type;
    want[17] = (uint8_t)DEN1;
    put_be32(want + 18, SN1);
    assert_int_equal(f->resp.len, 48 + body_size);
    assert_memory_equal(h, want, 4);
    assert_true(be(h + 4, 4) < EXEC_LIMIT);
    assert_memory_equal(h + 8, want + 8, 16);
}

/* Checks the HMAC and the trailer of a 48-byte answer and decrypts its
 * payload into OUT; returns the payload's length. */
static inline size_t open_modern_answer(const fixture_t *f, const uint8_t *hkey, uint8_t *out)
{
    const uint8_t *r = f->resp.data;
    size_t plen = f->resp.len - 48 - 34;
    uint8_t mac[32];
    assert_true(f->resp.len >= 48 + 34);
    assert_int_equal(rd_crypto_hmac_sha256(hkey, 32, r + 48, plen, mac), 0);
    assert_memory_equal(r + 48 + plen, mac, 32);
    assert_int_equal(r[f->resp.len - 2], 0x3E);
    assert_int_equal(r[f->resp.len - 1], 0x3E);
    assert_int_equal(rd_crypto_aes256_ctr(hkey, r + 24, r + 48, out, plen), 0);
    return plen;
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define K(name) cmocka_unit_test_setup_teardown(name, setup_keys, teardown_keys)

#endif
