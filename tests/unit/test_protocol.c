#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>
#include <cmocka.h>

#include "rd_cidr.h"
#include "rd_client.h"
#include "rd_commands.h"
#include "rd_crypto.h"
#include "rd_coins.h"
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
static rd_cidr_t loopback[2];

typedef struct fixture {
    rd_protocol_t p;
    rd_response_t resp;
    char root[256];             /* setup_keys: the data dir of p.coins */
    rd_coins_shared_t *shared;
} fixture_t;

static int setup(void **state)
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

static int teardown(void **state)
{
    fixture_t *f = *state;
    rd_response_release(&f->resp);
    rd_stats_destroy(f->p.stats);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static uint32_t be(const uint8_t *b, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | b[i];
    return v;
}

static uint64_t be64(const uint8_t *b)
{
    return (uint64_t)be(b, 4) << 32 | be(b + 4, 4);
}

/* The 16 challenge bytes every test frame carries: fixed, so that answers
 * can be compared byte for byte. */
static void make_challenge(uint8_t *c)
{
    memcpy(c, random12, 12);
    uint32_t crc = (uint32_t)crc32(0L, c, 12);
    c[12] = (uint8_t)(crc >> 24);
    c[13] = (uint8_t)(crc >> 16);
    c[14] = (uint8_t)(crc >> 8);
    c[15] = (uint8_t)crc;
}

/* A valid type-0 request built here, independently of rd_client. */
static size_t make_frame_echo(uint8_t *out, uint8_t group, uint8_t command,
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

static size_t make_frame(uint8_t *out, uint8_t group, uint8_t command,
                         const uint8_t *payload, size_t payload_len)
{
    return make_frame_echo(out, group, command, payload, payload_len, ECHO);
}

static void request_from(rd_request_t *req, const uint8_t *frame)
{
    memset(req, 0, sizeof(*req));
    memcpy(req->header, frame, 32);
    req->header_have = 32;
    req->header_size = 32;
}

/* Status of validate_header for a good echo frame with one byte changed. */
static int header_status_with(const fixture_t *f, size_t offset, uint8_t value,
                              rd_request_t *req)
{
    uint8_t frame[64];
    make_frame(frame, 0, 0, NULL, 0);
    frame[offset] = value;
    request_from(req, frame);
    return rd_protocol_validate_header(&f->p, req);
}

static void expect_header_status(const fixture_t *f, size_t offset, uint8_t value, int status)
{
    rd_request_t req;
    assert_int_equal(header_status_with(f, offset, value, &req), status);
}

/* The header an answer must have, exec time (12-15) aside. */
static void expected_header(uint8_t *h, uint8_t status, uint8_t group, uint16_t echo,
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

static uint32_t assert_header(const uint8_t *got, const uint8_t *want)
{
    assert_memory_equal(got, want, 12);
    assert_memory_equal(got + 16, want + 16, 16);
    uint32_t exec_us = be(got + 12, 4);
    assert_true(exec_us < EXEC_LIMIT);
    return exec_us;
}

static void handle(fixture_t *f, uint8_t *frame, size_t len)
{
    assert_true(rd_protocol_handle_frame(&f->p, &(rd_request_t){ 0 }, frame, len, &f->resp));
}

static void handle_expect_status(fixture_t *f, uint8_t *frame, size_t len, int status)
{
    handle(f, frame, len);
    assert_int_equal(f->resp.len, 32);
    assert_int_equal(f->resp.data[2], status);
}

/* CLIENT ("127.0.0.1", "::1") in the 16-byte form the TCP layer gives. */
static void client_addr(rd_request_t *req, const char *client)
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
static void handle_tcp(fixture_t *f, rd_request_t *req, uint8_t *frame, size_t len,
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
static void send_stats(fixture_t *f, const uint8_t *key, size_t key_len)
{
    uint8_t frame[128];
    rd_request_t req;
    size_t len = make_frame(frame, 0, 2, key, key_len);
    handle_tcp(f, &req, frame, len, "127.0.0.1");
}

/* ---- header size and header validation ----------------------------------- */

static void test_header_size_by_type(void **state)
{
    (void)state;
    uint8_t peek[RD_PEEK_SIZE] = { 0 };
    for (unsigned t = 0; t < 256; t++) {
        peek[16] = (uint8_t)t;
        size_t want = (t == 4 || t == 5) ? 48 : 32;
        assert_int_equal(rd_protocol_header_size(peek), want);
    }
}

static void test_validate_header_ok(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64];
    rd_request_t req;
    make_frame(frame, 0, 1, NULL, 0);
    request_from(&req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, &req), RD_STATUS_NO_ERROR);
    assert_true(req.header_valid);
    assert_int_equal(req.group, 0);
    assert_int_equal(req.command, 1);
    assert_int_equal(req.enc_type, 0);
    assert_int_equal(req.body_size, 18);
}

static void test_routing_255(void **state)
{
    expect_header_status(*state, 0, 0, RD_STATUS_INVALID_ROUTING);
    expect_header_status(*state, 0, 2, RD_STATUS_INVALID_ROUTING);
    expect_header_status(*state, 0, 255, RD_STATUS_INVALID_ROUTING);
}

static void test_split_2(void **state)
{
    expect_header_status(*state, 1, 1, RD_STATUS_INVALID_SPLIT);
    expect_header_status(*state, 1, 255, RD_STATUS_INVALID_SPLIT);
}

static void test_raida_id_3(void **state)
{
    expect_header_status(*state, 2, 0, RD_STATUS_INVALID_RAIDA_ID);
    expect_header_status(*state, 2, RAIDA_ID + 1, RD_STATUS_INVALID_RAIDA_ID);
    expect_header_status(*state, 2, 25, RD_STATUS_INVALID_RAIDA_ID);
}

static void test_shard_4(void **state)
{
    expect_header_status(*state, 3, 1, RD_STATUS_INVALID_SHARD);
    expect_header_status(*state, 3, 255, RD_STATUS_INVALID_SHARD);
}

static void test_group_5(void **state)
{
    rd_request_t req;
    for (unsigned g = 2; g < 256; g++) {
        assert_int_equal(header_status_with(*state, 4, (uint8_t)g, &req), RD_STATUS_INVALID_GROUP);
        assert_false(req.header_valid);
    }
}

static void test_command_6(void **state)
{
    rd_request_t req;
    const uint8_t bad[] = { 4, 99, 255 };
    for (size_t i = 0; i < sizeof(bad); i++) {
        assert_int_equal(header_status_with(*state, 5, bad[i], &req), RD_STATUS_INVALID_COMMAND);
        assert_false(req.header_valid);
    }
}

static void test_coin_id_7(void **state)
{
    rd_request_t req;
    assert_int_equal(header_status_with(*state, 6, 0x00, &req), RD_STATUS_INVALID_COIN_ID);
    assert_true(req.header_valid);  /* group and command named a handler */
    assert_int_equal(header_status_with(*state, 7, 0x07, &req), RD_STATUS_INVALID_COIN_ID);
    assert_int_equal(header_status_with(*state, 7, 0x01, &req), RD_STATUS_INVALID_COIN_ID);
}

/* Types 0, 1, 4 and 5 are served; 2 (the locker key) is not, yet. */
static void test_enc_type_27(void **state)
{
    fixture_t *f = *state;
    const uint8_t types[] = { 2, 3, 6, 9, 255 };
    for (size_t i = 0; i < sizeof(types); i++) {
        rd_request_t req;
        assert_int_equal(header_status_with(f, 16, types[i], &req),
                         RD_STATUS_INVALID_ENCRYPTION_CODE);
        assert_int_equal(req.enc_type, types[i]);

        /* A whole datagram gets the same answer. */
        uint8_t frame[128];
        size_t len = make_frame(frame, 0, 0, NULL, 0);
        frame[16] = types[i];
        handle_expect_status(f, frame, len, RD_STATUS_INVALID_ENCRYPTION_CODE);
    }
    /* 4 and 5 need the 48-byte header: 32 bytes of one are too short. */
    rd_request_t req;
    assert_int_equal(header_status_with(f, 16, 4, &req), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(header_status_with(f, 16, 5, &req), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(header_status_with(f, 16, 1, &req), RD_STATUS_NO_ERROR);
}

static void test_body_size_16(void **state)
{
    fixture_t *f = *state;
    const struct { uint16_t size; int status; } cases[] = {
        { 0, RD_STATUS_INVALID_PACKET_LENGTH },
        { 17, RD_STATUS_INVALID_PACKET_LENGTH },
        { 18, RD_STATUS_NO_ERROR },
        { MAX_BODY, RD_STATUS_NO_ERROR },
        { MAX_BODY + 1, RD_STATUS_INVALID_PACKET_LENGTH },
        { 0xFFFF, RD_STATUS_INVALID_PACKET_LENGTH },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t frame[64];
        rd_request_t req;
        make_frame(frame, 0, 0, NULL, 0);
        frame[22] = (uint8_t)(cases[i].size >> 8);
        frame[23] = (uint8_t)cases[i].size;
        request_from(&req, frame);
        assert_int_equal(rd_protocol_validate_header(&f->p, &req), cases[i].status);
        assert_int_equal(req.body_size, cases[i].size);
    }
}

/* With several faults, the first in the documented order is the answer. */
static void test_check_order(void **state)
{
    fixture_t *f = *state;
    const struct { size_t offset; uint8_t value; int status; } faults[] = {
        { 0, 9, RD_STATUS_INVALID_ROUTING },
        { 1, 9, RD_STATUS_INVALID_SPLIT },
        { 2, 9, RD_STATUS_INVALID_RAIDA_ID },
        { 3, 9, RD_STATUS_INVALID_SHARD },
        { 4, 9, RD_STATUS_INVALID_GROUP },
        { 5, 9, RD_STATUS_INVALID_COMMAND },
        { 6, 9, RD_STATUS_INVALID_COIN_ID },
        { 16, 9, RD_STATUS_INVALID_ENCRYPTION_CODE },
        { 23, 1, RD_STATUS_INVALID_PACKET_LENGTH },
    };
    size_t n = sizeof(faults) / sizeof(faults[0]);
    for (size_t first = 0; first < n; first++) {
        uint8_t frame[64];
        rd_request_t req;
        make_frame(frame, 0, 0, NULL, 0);
        for (size_t i = first; i < n; i++)
            frame[faults[i].offset] = faults[i].value;
        request_from(&req, frame);
        assert_int_equal(rd_protocol_validate_header(&f->p, &req), faults[first].status);
    }
}

/* ---- body validation ----------------------------------------------------- */

static int body_status(fixture_t *f, uint8_t *frame, rd_request_t *req)
{
    request_from(req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, req), RD_STATUS_NO_ERROR);
    req->body = frame + 32;
    req->body_complete = true;
    return rd_protocol_validate_body(&f->p, req);
}

static void test_trailer_33(void **state)
{
    uint8_t frame[64];
    rd_request_t req;
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    frame[len - 1] = 0x3F;
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_INVALID_EOF);
    len = make_frame(frame, 0, 0, NULL, 0);
    frame[len - 2] = 0x00;
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_INVALID_EOF);
    /* The trailer is checked before the CRC. */
    frame[32] ^= 1;
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_INVALID_EOF);
}

static void test_crc_37(void **state)
{
    uint8_t frame[64];
    rd_request_t req;
    make_frame(frame, 0, 0, NULL, 0);
    frame[32 + 11] ^= 0x80;         /* a random byte */
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_INVALID_CRC);
    make_frame(frame, 0, 0, NULL, 0);
    frame[32 + 15] ^= 0x01;         /* the CRC itself */
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_INVALID_CRC);
}

static void test_validate_body_payload(void **state)
{
    uint8_t frame[64];
    rd_request_t req;
    const uint8_t payload[5] = { 1, 2, 3, 4, 5 };
    make_frame(frame, 0, 0, payload, sizeof(payload));
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_NO_ERROR);
    assert_ptr_equal(req.payload, frame + 48);
    assert_int_equal(req.payload_len, 5);
    make_frame(frame, 0, 0, NULL, 0);
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_NO_ERROR);
    assert_int_equal(req.payload_len, 0);
}

/* ---- admin key ----------------------------------------------------------- */

static void test_admin_key_wrong_38(void **state)
{
    fixture_t *f = *state;
    uint8_t key[16];
    for (size_t i = 0; i < 16; i++) {
        memcpy(key, admin_key, 16);
        key[i] ^= 0x01;             /* any single byte */
        send_stats(f, key, 16);
        assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
        assert_int_equal(f->resp.len, 32);
    }
}

/* Only a proven key may earn an answer larger than the request over UDP. */
static void test_authenticated_only_with_a_key(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[96], wrong[16];
    rd_request_t req;
    size_t len;

    len = make_frame(frame, 0, 0, NULL, 0);
    assert_true(rd_protocol_handle_frame(&f->p, &req, frame, len, &f->resp));
    assert_false(req.authenticated);
    len = make_frame(frame, 0, 2, admin_key, 16);
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(f->resp.data[2], RD_STATUS_SUCCESS);
    assert_true(req.authenticated);
    memcpy(wrong, admin_key, 16);
    wrong[0] ^= 1;
    len = make_frame(frame, 0, 2, wrong, 16);
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_false(req.authenticated);
}

/* In clear, the admin key counts only over TCP from admin_allow: never in
 * a datagram, from elsewhere, or from an unknown address; refused with 38
 * even when it is right. Encrypted, it counts from anywhere. */
static void test_admin_clear_only_from_allowed(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[96];
    rd_request_t req;
    size_t len = make_frame(frame, 0, 2, admin_key, 16);

    assert_true(rd_protocol_handle_frame(&f->p, &req, frame, len, &f->resp));
    assert_true(req.datagram);
    assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
    assert_false(req.authenticated);
    assert_int_equal(f->resp.len, 32);
    static const char *const allowed[] = { "127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1" };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        handle_tcp(f, &req, frame, len, allowed[i]);
        assert_int_equal(f->resp.data[2], RD_STATUS_SUCCESS);
    }
    static const char *const refused[] = { "192.0.2.1", "10.0.0.1", "::2", "2001:db8::1", "::" };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        handle_tcp(f, &req, frame, len, refused[i]);
        assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
        assert_false(req.authenticated);
    }
    /* an empty list: never in clear */
    f->p.admin_allow_count = 0;
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
    /* a list without loopback */
    rd_cidr_t lan;
    assert_int_equal(rd_cidr_parse("192.0.2.0/24", &lan), 0);
    f->p.admin_allow = &lan;
    f->p.admin_allow_count = 1;
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
    handle_tcp(f, &req, frame, len, "192.0.2.9");
    assert_int_equal(f->resp.data[2], RD_STATUS_SUCCESS);
    /* echo and version never needed the key */
    len = make_frame(frame, 0, 1, NULL, 0);
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(f->resp.data[2], RD_STATUS_SUCCESS);
}

/* Only plain status commands may skip the pool. */
static void test_quick_only_plain_status_commands(void **state)
{
    rd_request_t req;

    (void)state;
    memset(&req, 0, sizeof(req));
    req.header_valid = true;
    for (uint8_t cmd = 0; cmd <= 2; cmd++) {
        req.command = cmd;
        req.cmd = rd_command_lookup(0, cmd);
        req.enc_type = 0;
        assert_true(rd_protocol_is_quick(&req));
        req.enc_type = 1;
        assert_false(rd_protocol_is_quick(&req));
        req.enc_type = 4;
        assert_false(rd_protocol_is_quick(&req));
    }
    req.enc_type = 0;
    req.command = 99;
    req.cmd = rd_command_lookup(0, 99);
    assert_false(rd_protocol_is_quick(&req));
    req.group = 7;
    req.command = 0;
    req.cmd = rd_command_lookup(7, 0);
    assert_false(rd_protocol_is_quick(&req));
}

static void test_admin_key_unset_38(void **state)
{
    fixture_t *f = *state;
    f->p.admin_key_set = false;
    send_stats(f, admin_key, 16);
    assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
    /* Nor does the all-zero key of an unset configuration open it. */
    uint8_t zero[16] = { 0 };
    memset(f->p.admin_key, 0, 16);
    send_stats(f, zero, 16);
    assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
}

static void test_admin_key_length_38(void **state)
{
    fixture_t *f = *state;
    uint8_t longer[17];
    memcpy(longer, admin_key, 16);
    longer[16] = 0;
    const size_t lens[] = { 0, 1, 15 };
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        send_stats(f, admin_key, lens[i]);
        assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
    }
    send_stats(f, longer, 17);
    assert_int_equal(f->resp.data[2], RD_STATUS_ADMIN_AUTH);
    assert_int_equal(f->resp.len, 32);
}

/* ---- byte-exact responses ------------------------------------------------ */

static void test_echo_response_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    handle(f, frame, len);
    expected_header(want, 250, 0, ECHO, 0, true);
    assert_int_equal(f->resp.len, 32);
    assert_header(f->resp.data, want);
    assert_ptr_equal(f->resp.data, f->resp.inline_buf);    /* no allocation */
}

static void test_version_response_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[42];
    size_t len = make_frame(frame, 0, 1, NULL, 0);
    handle(f, frame, len);
    expected_header(want, 250, 0, ECHO, 10, true);
    memcpy(want + 32, "20261125", 8);
    want[40] = 0x3E;
    want[41] = 0x3E;
    assert_int_equal(f->resp.len, 42);
    assert_header(f->resp.data, want);
    assert_memory_equal(f->resp.data + 32, want + 32, 10);
    assert_memory_equal(f->resp.data + 32, RAIDAD_BUILD_VERSION, 8);
    assert_ptr_equal(f->resp.data, f->resp.inline_buf);
}

static void test_stats_response_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[128];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    handle(f, frame, len);                              /* 250, 0.0 */
    len = make_frame(frame, 0, 1, NULL, 0);
    handle(f, frame, len);                              /* 250, 0.1 */
    len = make_frame(frame, 0, 0, NULL, 0);
    frame[7] ^= 1;
    handle(f, frame, len);                              /* 7, 0.0 */
    send_stats(f, admin_key, 16);

    static const uint8_t counters[] = {
        0, 0, 0, 0, 0, 0, 0, 3,                         /* requests */
        0, 2,                                           /* statuses */
        7, 0, 0, 0, 0, 0, 0, 0, 1,
        250, 0, 0, 0, 0, 0, 0, 0, 2,
        0, 2,                                           /* commands */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        0, 1, 0, 0, 0, 0, 0, 0, 0, 1,
    };
    size_t payload_len = 4 + sizeof(counters);
    uint8_t want[32];
    expected_header(want, 250, 0, ECHO, (uint32_t)payload_len + 2, true);
    assert_int_equal(f->resp.len, 32 + payload_len + 2);
    assert_header(f->resp.data, want);
    assert_true(be(f->resp.data + 32, 4) <= 2);        /* uptime of a fresh counter set */
    assert_memory_equal(f->resp.data + 36, counters, sizeof(counters));
    assert_int_equal(f->resp.data[f->resp.len - 2], 0x3E);
    assert_int_equal(f->resp.data[f->resp.len - 1], 0x3E);
}

static void test_error_response_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    size_t len = make_frame_echo(frame, 0, 1, NULL, 0, 0x1234);
    frame[6] = 0x55;                                    /* wrong coin id */
    handle(f, frame, len);
    /* A header error: the body was never accepted, so no challenge. */
    expected_header(want, RD_STATUS_INVALID_COIN_ID, 0, 0x1234, 0, false);
    assert_int_equal(f->resp.len, 32);
    assert_memory_equal(f->resp.data, want, 32);       /* exec time 0 too */
}

static void test_error_response_partial_header(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    rd_request_t req;
    make_frame(frame, 9, 0, NULL, 0);
    request_from(&req, frame);

    req.header_have = 3;                                /* not even the group */
    rd_protocol_error_response(&f->p, &req, RD_STATUS_INVALID_PACKET_LENGTH, &f->resp);
    expected_header(want, 16, 0, 0, 0, false);
    assert_memory_equal(f->resp.data, want, 32);

    req.header_have = 10;                               /* group, no echo yet */
    rd_protocol_error_response(&f->p, &req, RD_STATUS_INVALID_PACKET_LENGTH, &f->resp);
    expected_header(want, 16, 9, 0, 0, false);
    assert_memory_equal(f->resp.data, want, 32);

    req.header_have = 32;
    req.header_size = 48;                               /* other family: no echo there */
    rd_protocol_error_response(&f->p, &req, RD_STATUS_INVALID_ENCRYPTION_CODE, &f->resp);
    expected_header(want, 27, 9, 0, 0, false);
    assert_memory_equal(f->resp.data, want, 32);

    req.header_size = 32;
    req.body = frame + 32;
    req.body_size = 18;
    req.body_complete = true;
    rd_protocol_error_response(&f->p, &req, RD_STATUS_INVALID_CRC, &f->resp);
    expected_header(want, 37, 9, ECHO, 0, true);
    assert_memory_equal(f->resp.data, want, 32);
    assert_int_equal(f->resp.len, 32);
}

static void test_challenge_carried_on_body_error(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    frame[32 + 14] ^= 0xFF;                             /* break the CRC */
    handle(f, frame, len);
    expected_header(want, RD_STATUS_INVALID_CRC, 0, ECHO, 0, true);
    want[16 + 14] ^= 0xFF;                              /* the bytes as sent */
    assert_memory_equal(f->resp.data, want, 32);
}

static void test_echo_bytes_carried(void **state)
{
    fixture_t *f = *state;
    const uint16_t echoes[] = { 0x0000, 0x0001, 0x8000, 0xFFFF, 0xA55A };
    for (size_t i = 0; i < sizeof(echoes) / sizeof(echoes[0]); i++) {
        uint8_t frame[64];
        size_t len = make_frame_echo(frame, 0, 0, NULL, 0, echoes[i]);
        frame[32] = (uint8_t)i;                         /* a challenge of its own ... */
        uint32_t crc = (uint32_t)crc32(0L, frame + 32, 12);
        for (int b = 0; b < 4; b++)
            frame[44 + b] = (uint8_t)(crc >> (24 - 8 * b));
        handle(f, frame, len);
        assert_int_equal(f->resp.data[2], 250);
        assert_int_equal(be(f->resp.data + 6, 2), echoes[i]);
        assert_memory_equal(f->resp.data + 16, frame + 32, 16);   /* ... sent back */
    }
}

/* ---- handle_frame -------------------------------------------------------- */

static void test_handle_frame_short(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64];
    make_frame(frame, 0, 0, NULL, 0);
    const size_t lens[] = { 0, 1, 17, 31 };
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        assert_false(rd_protocol_handle_frame(&f->p, &(rd_request_t){ 0 }, frame, lens[i], &f->resp));
        assert_int_equal(f->resp.len, 0);
    }
    /* The 48-byte family needs 48 bytes before anything can be said. */
    frame[16] = 4;
    assert_false(rd_protocol_handle_frame(&f->p, &(rd_request_t){ 0 }, frame, 40, &f->resp));
    assert_int_equal(f->resp.len, 0);
    assert_int_equal(f->p.stats->requests, 0);
}

static void test_handle_frame_length_mismatch(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    expected_header(want, RD_STATUS_INVALID_PACKET_LENGTH, 0, ECHO, 0, false);
    handle(f, frame, len + 1);
    assert_memory_equal(f->resp.data, want, 32);
    handle(f, frame, len - 1);
    assert_memory_equal(f->resp.data, want, 32);
    handle(f, frame, 32);                               /* header alone */
    assert_memory_equal(f->resp.data, want, 32);
}

static void test_handle_frame_unknown_type(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[32];
    size_t len = make_frame(frame, 0, 1, NULL, 0);
    frame[16] = 3;
    handle(f, frame, len);
    /* An unknown type is read as the legacy family: its echo bytes come back. */
    expected_header(want, RD_STATUS_INVALID_ENCRYPTION_CODE, 0, ECHO, 0, false);
    assert_memory_equal(f->resp.data, want, 32);
    frame[16] = 200;
    handle(f, frame, 32);
    assert_memory_equal(f->resp.data, want, 32);
}

static void test_handle_frame_good(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    handle(f, frame, len);
    assert_int_equal(f->resp.data[2], 250);
    assert_int_equal(f->resp.len, 32);
    /* The same record answers the next request (the header is rewritten). */
    len = make_frame(frame, 0, 1, NULL, 0);
    handle(f, frame, len);
    assert_int_equal(f->resp.len, 42);
    len = make_frame(frame, 0, 0, NULL, 0);
    handle(f, frame, len);
    assert_int_equal(f->resp.len, 32);
    assert_int_equal(be(f->resp.data + 9, 3), 0);
}

static void test_run_command_unknown_6(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64];
    rd_request_t req;
    make_frame(frame, 0, 9, NULL, 0);
    request_from(&req, frame);
    req.group = 0;
    req.command = 9;
    rd_protocol_run_command(&f->p, &req, &f->resp);
    assert_int_equal(f->resp.data[2], RD_STATUS_INVALID_COMMAND);
    assert_true(req.start_ns > 0);
    assert_true(req.start_ns <= rd_protocol_now_ns());
}

static void test_command_names(void **state)
{
    (void)state;
    assert_string_equal(rd_protocol_command_name(0, 0), "echo");
    assert_string_equal(rd_protocol_command_name(0, 1), "version");
    assert_string_equal(rd_protocol_command_name(0, 2), "stats");
    assert_string_equal(rd_protocol_command_name(0, 3), "audit");
    assert_string_equal(rd_protocol_command_name(1, 10), "detect");
    assert_string_equal(rd_protocol_command_name(1, 21), "pown_sum");
    assert_string_equal(rd_protocol_command_name(1, 0), "unknown");
    assert_true(rd_command_group_known(0));
    assert_true(rd_command_group_known(1));
    assert_false(rd_command_group_known(2));
    assert_null(rd_command_lookup(0, 4));
    assert_null(rd_command_lookup(1, 12));
    assert_non_null(rd_command_lookup(0, 2));
}

/* ---- stats --------------------------------------------------------------- */

static void test_stats_counters(void **state)
{
    fixture_t *f = *state;
    rd_stats_t *st = f->p.stats;
    uint8_t frame[64];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    handle(f, frame, len);
    handle(f, frame, len);
    len = make_frame(frame, 0, 1, NULL, 0);
    handle(f, frame, len);
    len = make_frame(frame, 17, 0, NULL, 0);            /* unknown group: status only */
    handle(f, frame, len);
    len = make_frame(frame, 0, 1, NULL, 0);
    frame[len - 1] = 0;                                 /* 33, but 0.1 was named */
    handle(f, frame, len);

    assert_int_equal(st->requests, 5);
    assert_int_equal(st->by_status[250], 3);
    assert_int_equal(st->by_status[RD_STATUS_INVALID_GROUP], 1);
    assert_int_equal(st->by_status[RD_STATUS_INVALID_EOF], 1);
    assert_int_equal(st->by_command[0][0], 2);
    assert_int_equal(st->by_command[0][1], 2);
    assert_int_equal(st->by_command[17][0], 0);
    assert_true(st->started > 0);

    rd_stats_count(st, 1, RD_STATS_GROUPS, 0, 250);     /* beyond the table: status only */
    assert_int_equal(st->requests, 6);
    assert_int_equal(st->by_status[250], 4);
    rd_stats_count(NULL, 1, 0, 0, 250);                 /* no counters, no crash */
}

/* Workers are forked after the counters exist; they must add to the same
 * totals. */
static void test_stats_shared_across_fork(void **state)
{
    fixture_t *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rd_stats_count(f->p.stats, 1, 0, 1, 250);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(f->p.stats->requests, 1);
    assert_int_equal(f->p.stats->by_command[0][1], 1);
}

/* ---- response buffer ----------------------------------------------------- */

static void test_response_append_grows(void **state)
{
    (void)state;
    rd_response_t r;
    rd_response_init(&r);
    assert_ptr_equal(r.data, r.inline_buf);
    uint8_t *a = rd_response_append(&r, RD_RESPONSE_INLINE - 2);   /* trailer still fits */
    assert_non_null(a);
    memset(a, 0x5A, RD_RESPONSE_INLINE - 2);
    assert_ptr_equal(r.data, r.inline_buf);
    uint8_t *b = rd_response_append(&r, 1);                        /* now it does not */
    assert_non_null(b);
    *b = 0x77;
    assert_ptr_not_equal(r.data, r.inline_buf);
    assert_int_equal(r.len, RD_RESPONSE_INLINE - 1);
    assert_true(r.cap >= r.len + 2);
    assert_int_equal(r.data[0], 0x5A);
    assert_int_equal(r.data[RD_RESPONSE_INLINE - 3], 0x5A);
    assert_int_equal(r.data[RD_RESPONSE_INLINE - 2], 0x77);
    assert_non_null(rd_response_append(&r, 100000));
    assert_int_equal(r.data[RD_RESPONSE_INLINE - 2], 0x77);
    assert_null(rd_response_append(&r, SIZE_MAX));
    rd_response_release(&r);
    assert_ptr_equal(r.data, r.inline_buf);
    assert_int_equal(r.len, 0);
    rd_response_release(&r);                                       /* twice is harmless */
}

static void test_stats_response_on_heap(void **state)
{
    fixture_t *f = *state;
    rd_stats_t *st = f->p.stats;
    for (unsigned s = 0; s < 256; s++)
        rd_stats_count(st, 0, 0, 0, (uint8_t)s);
    for (unsigned g = 0; g < RD_STATS_GROUPS; g++)
        for (unsigned c = 0; c < 256; c += 5)
            rd_stats_count(st, 1, (uint8_t)g, (uint8_t)c, 250);
    uint64_t requests = st->requests;

    send_stats(f, admin_key, 16);
    assert_int_equal(f->resp.data[2], 250);
    assert_ptr_not_equal(f->resp.data, f->resp.inline_buf);

    const uint8_t *pl = f->resp.data + 32;
    size_t n_cmd = RD_STATS_GROUPS * 52;
    size_t payload_len = 4 + 8 + 2 + 256 * 9 + 2 + n_cmd * 10;
    assert_int_equal(f->resp.len, 32 + payload_len + 2);
    assert_int_equal(be(f->resp.data + 9, 3), payload_len + 2);
    assert_int_equal(be64(pl + 4), requests);
    assert_int_equal(be(pl + 12, 2), 256);
    const uint8_t *e = pl + 14;
    for (unsigned s = 0; s < 256; s++, e += 9) {
        assert_int_equal(e[0], s);
        assert_int_equal(be64(e + 1), s == 250 ? 1 + n_cmd : 1);
    }
    assert_int_equal(be(e, 2), n_cmd);
    e += 2;
    for (unsigned g = 0; g < RD_STATS_GROUPS; g++) {
        for (unsigned c = 0; c < 256; c += 5, e += 10) {
            assert_int_equal(e[0], g);
            assert_int_equal(e[1], c);
            assert_int_equal(be64(e + 2), 1);
        }
    }
    assert_int_equal(e[0], 0x3E);
    assert_int_equal(e[1], 0x3E);
    assert_ptr_equal(e + 2, f->resp.data + f->resp.len);

    rd_response_release(&f->resp);
    assert_ptr_equal(f->resp.data, f->resp.inline_buf);
    assert_int_equal(f->resp.len, 0);
}

/* ---- client -------------------------------------------------------------- */

static void test_client_build_bytes(void **state)
{
    (void)state;
    const uint8_t payload[3] = { 0xDE, 0xAD, 0x01 };
    rd_client_request_t r = {
        .raida_id = 24, .coin_id = 0x0203, .shard = 1, .group = 5, .command = 9,
        .echo = 0x4321, .payload = payload, .payload_len = sizeof(payload),
    };
    uint8_t out[128], challenge[16];
    size_t len = rd_client_build(&r, out, sizeof(out), challenge);
    assert_int_equal(len, 32 + 16 + 3 + 2);
    const uint8_t header[32] = {
        1, 0, 24, 1, 5, 9, 0x02, 0x03, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 21, 0, 0, 0, 0, 0, 0, 0x43, 0x21,
    };
    assert_memory_equal(out, header, 32);
    assert_int_equal(be(out + 44, 4), (uint32_t)crc32(0L, out + 32, 12));
    assert_memory_equal(challenge, out + 32, 16);
    assert_memory_equal(out + 48, payload, 3);
    assert_int_equal(out[51], 0x3E);
    assert_int_equal(out[52], 0x3E);

    /* Two requests do not share a challenge. */
    uint8_t again[16];
    assert_int_equal(rd_client_build(&r, out, sizeof(out), again), len);
    assert_memory_not_equal(challenge, again, 12);

    assert_int_equal(rd_client_build(&r, out, len - 1, NULL), 0);
    assert_int_equal(rd_client_build(&r, out, len, NULL), len);
}

static void test_client_round_trip(void **state)
{
    fixture_t *f = *state;
    rd_client_request_t r = {
        .raida_id = RAIDA_ID, .coin_id = COIN_ID, .group = 0, .command = 1, .echo = 0x0A0B,
    };
    uint8_t frame[128], challenge[16];
    size_t len = rd_client_build(&r, frame, sizeof(frame), challenge);
    assert_int_equal(len, 50);
    handle(f, frame, len);

    rd_client_response_t resp;
    assert_int_equal(rd_client_parse(f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.raida_id, RAIDA_ID);
    assert_int_equal(resp.shard, 0);
    assert_int_equal(resp.status, 250);
    assert_int_equal(resp.group, 0);
    assert_int_equal(resp.frames, 1);
    assert_int_equal(resp.echo, 0x0A0B);
    assert_int_equal(resp.body_size, 10);
    assert_true(resp.exec_us < EXEC_LIMIT);
    assert_memory_equal(resp.challenge_hash, challenge, 16);
    assert_int_equal(resp.payload_len, 8);
    assert_memory_equal(resp.payload, RAIDAD_BUILD_VERSION, 8);

    /* Stats with the key as payload. */
    r.command = 2;
    r.payload = admin_key;
    r.payload_len = 16;
    len = rd_client_build(&r, frame, sizeof(frame), challenge);
    assert_int_equal(len, 66);
    rd_request_t req;
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(rd_client_parse(f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.status, 250);
    assert_memory_equal(resp.challenge_hash, challenge, 16);
    assert_int_equal(be64(resp.payload + 4), 1);
}

static void test_client_parse_rejects(void **state)
{
    (void)state;
    uint8_t buf[64] = { 0 };
    rd_client_response_t r;
    assert_int_equal(rd_client_parse(buf, 31, &r), -1);
    assert_int_equal(rd_client_parse(buf, 32, &r), 0);      /* no body at all */
    assert_int_equal(r.payload_len, 0);

    buf[11] = 10;                                           /* 8 bytes + trailer */
    memcpy(buf + 32, "20261125", 8);
    buf[40] = 0x3E;
    buf[41] = 0x3E;
    assert_int_equal(rd_client_parse(buf, 42, &r), 0);
    assert_int_equal(r.payload_len, 8);
    assert_int_equal(rd_client_parse(buf, 41, &r), -1);     /* truncated */
    assert_int_equal(rd_client_parse(buf, 32, &r), -1);
    buf[41] = 0;
    assert_int_equal(rd_client_parse(buf, 42, &r), -1);     /* no trailer */
    buf[11] = 1;
    assert_int_equal(rd_client_parse(buf, 42, &r), -1);     /* no room for one */
    buf[11] = 2;
    buf[32] = buf[33] = 0x3E;
    assert_int_equal(rd_client_parse(buf, 34, &r), 0);      /* trailer alone */
    assert_int_equal(r.payload_len, 0);
    buf[9] = 0x01;                                          /* 64 KiB + 2: too long */
    assert_int_equal(rd_client_parse(buf, sizeof(buf), &r), -1);
}

static void test_client_status_names(void **state)
{
    (void)state;
    assert_string_equal(rd_status_name(250), "success");
    assert_string_equal(rd_status_name(37), "invalid CRC");
    assert_string_equal(rd_status_name(255), "invalid routing");
    assert_string_equal(rd_status_name(1), "unknown");
    const uint8_t known[] = { 0, 2, 3, 4, 5, 6, 7, 16, 25, 27, 33, 34, 36, 37, 38,
                              160, 204, 250, 252, 254, 255 };
    for (size_t i = 0; i < sizeof(known); i++)
        assert_string_not_equal(rd_status_name(known[i]), "unknown");
}

/* ---- encrypted requests: fixture ----------------------------------------- */

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

static void put_be32(uint8_t *b, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static bool make_dir(const char *path)
{
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

/* Sets one record of a page file, making the file (zero-filled) if needed. */
static bool write_coin(const char *root, int8_t den, uint32_t sn, const uint8_t *key, uint8_t status)
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

static int setup_keys(void **state)
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

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown_keys(void **state)
{
    fixture_t *f = *state;
    rd_coins_close(f->p.coins);
    rd_coins_finish(f->shared);
    int rc = f->root[0] != '\0' ? nftw(f->root, remove_entry, 8, FTW_DEPTH | FTW_PHYS) : 0;
    return teardown(state) | rc;
}

/* ---- encrypted requests: frames built here, independently of rd_client -- */

static void legacy_iv(const uint8_t *frame, uint8_t *iv)
{
    memcpy(iv, frame + 24, 8);
    memset(iv + 8, 0, 8);
}

/* A type-1 request naming COIN, encrypted with KEY (the right one or not). */
static size_t make_type1(uint8_t *out, uint8_t command, const uint8_t *payload, size_t plen,
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
    assert_int_equal(rd_aes128_ctr(key, iv, out + 32, out + 32, len - 34), 0);
    return len;
}

/* SHA-256 of K1, or of K1 || K2. */
static void hashed_key(const uint8_t *k1, const uint8_t *k2, uint8_t *out)
{
    uint8_t both[32];
    memcpy(both, k1, 16);
    if (k2 != NULL)
        memcpy(both + 16, k2, 16);
    assert_int_equal(rd_sha256(both, k2 != NULL ? 32 : 16, out), 0);
}

static void modern_header(uint8_t *h, uint8_t type, uint8_t command, size_t body_size,
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
static size_t make_modern(uint8_t *out, uint8_t type, uint8_t command, const uint8_t *payload,
                          size_t plen, coin_t c1, coin_t c2, const uint8_t *hkey)
{
    size_t body_size = plen + 34;
    uint8_t *b = out + 48;
    modern_header(out, type, command, body_size, c1, c2);
    if (plen > 0)
        memcpy(b, payload, plen);
    assert_int_equal(rd_aes256_ctr(hkey, out + 24, b, b, plen), 0);
    assert_int_equal(rd_hmac_sha256(hkey, 32, b, plen, b + plen), 0);
    b[plen + 32] = 0x3E;
    b[plen + 33] = 0x3E;
    return 48 + body_size;
}

static size_t make_type4(uint8_t *out, uint8_t command, const uint8_t *payload, size_t plen)
{
    uint8_t hkey[32];
    hashed_key(key1, NULL, hkey);
    return make_modern(out, 4, command, payload, plen, coin1, coin2, hkey);
}

static size_t make_type5(uint8_t *out, uint8_t command, const uint8_t *payload, size_t plen)
{
    uint8_t hkey[32];
    hashed_key(key1, key2, hkey);
    return make_modern(out, 5, command, payload, plen, coin1, coin2, hkey);
}

static uint8_t handle_status(fixture_t *f, uint8_t *frame, size_t len)
{
    handle(f, frame, len);
    return f->resp.data[2];
}

/* The fixed part of a 48-byte answer to a request naming coin1. */
static void assert_modern_header(const fixture_t *f, uint8_t type, uint8_t status,
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
static size_t open_modern_answer(const fixture_t *f, const uint8_t *hkey, uint8_t *out)
{
    const uint8_t *r = f->resp.data;
    size_t plen = f->resp.len - 48 - 34;
    uint8_t mac[32];
    assert_true(f->resp.len >= 48 + 34);
    assert_int_equal(rd_hmac_sha256(hkey, 32, r + 48, plen, mac), 0);
    assert_memory_equal(r + 48 + plen, mac, 32);
    assert_int_equal(r[f->resp.len - 2], 0x3E);
    assert_int_equal(r[f->resp.len - 1], 0x3E);
    assert_int_equal(rd_aes256_ctr(hkey, r + 24, r + 48, out, plen), 0);
    return plen;
}

/* ---- type 1 -------------------------------------------------------------- */

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
    assert_int_equal(rd_aes128_ctr(key1, iv, (const uint8_t *)"20261125", want + 32, 8), 0);
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
    assert_int_equal(rd_aes128_ctr(key1, iv, f->resp.data + 32, plain, plen), 0);
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

/* ---- types 4 and 5 ------------------------------------------------------- */

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

/* ---- client, encrypted --------------------------------------------------- */

static rd_client_request_t client_request(uint8_t type, uint8_t command)
{
    rd_client_request_t r = {
        .raida_id = RAIDA_ID, .coin_id = COIN_ID, .command = command, .echo = 0x1234,
        .enc_type = type,
    };
    r.coin[0] = (rd_client_coin_t){ .den = DEN1, .sn = SN1 };
    r.coin[1] = (rd_client_coin_t){ .den = DEN2, .sn = SN2 };
    memcpy(r.coin[0].key, key1, 16);
    memcpy(r.coin[1].key, key2, 16);
    return r;
}

static void client_version(fixture_t *f, uint8_t type)
{
    rd_client_request_t r = client_request(type, 1);
    rd_client_ctx_t ctx;
    rd_client_response_t resp;
    uint8_t frame[128];
    size_t len = rd_client_seal(&r, frame, sizeof(frame), &ctx);
    assert_int_equal(len, rd_client_frame_size(&r));
    assert_int_equal(len, type >= 4 ? 48 + 34 : 32 + 18);
    handle(f, frame, len);
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.status, 250);
    assert_true(resp.authentic);
    assert_int_equal(resp.enc_type, type);
    assert_int_equal(resp.payload_len, 8);
    assert_memory_equal(resp.payload, "20261125", 8);
    if (type >= 4) {
        assert_int_equal(resp.den, DEN1);
        assert_int_equal(resp.sn, SN1);
    } else {
        assert_int_equal(resp.echo, 0x1234);
    }
}

static void client_stats(fixture_t *f, uint8_t type)
{
    rd_client_request_t r = client_request(type, 2);
    rd_client_ctx_t ctx;
    rd_client_response_t resp;
    uint8_t frame[128];
    r.payload = admin_key;
    r.payload_len = 16;
    size_t len = rd_client_seal(&r, frame, sizeof(frame), &ctx);
    assert_true(len > 0);
    /* Encrypted, over UDP too; in clear, over TCP from loopback only. */
    if (type != 0) {
        handle(f, frame, len);
    } else {
        rd_request_t req;
        handle_tcp(f, &req, frame, len, "::1");
    }
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.status, 250);
    assert_true(resp.authentic);
    assert_true(resp.payload_len > 12);
    assert_true(be64(resp.payload + 4) >= 1);
}

static void test_client_encrypted_round_trip(void **state)
{
    const uint8_t types[] = { 0, 1, 4, 5 };
    for (size_t i = 0; i < sizeof(types); i++) {
        client_version(*state, types[i]);
        client_stats(*state, types[i]);
    }
    rd_client_request_t r = client_request(2, 0);
    rd_client_ctx_t ctx;
    uint8_t frame[128];
    assert_int_equal(rd_client_frame_size(&r), 0);
    assert_int_equal(rd_client_seal(&r, frame, sizeof(frame), &ctx), 0);
    r = client_request(4, 0);
    assert_int_equal(rd_client_seal(&r, frame, 48 + 33, &ctx), 0);
    assert_int_equal(rd_client_build(&r, frame, sizeof(frame), NULL), 0);   /* type 0 only */
}

/* An answer changed on the way is not authentic; type 4's is not decrypted. */
static void test_client_open_forged(void **state)
{
    fixture_t *f = *state;
    rd_client_response_t resp;
    rd_client_ctx_t ctx;
    uint8_t frame[128];
    rd_client_request_t r = client_request(4, 1);
    size_t len = rd_client_seal(&r, frame, sizeof(frame), &ctx);
    handle(f, frame, len);
    f->resp.data[48] ^= 1;
    uint8_t ct = f->resp.data[49];
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len, &resp), 0);
    assert_false(resp.authentic);
    assert_int_equal(f->resp.data[49], ct);
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len - 1, &resp), -1);
    assert_int_equal(rd_client_open(&ctx, f->resp.data, 47, &resp), -1);

    r = client_request(1, 1);
    memcpy(r.coin[0].key, key2, 16);                    /* wrong key: 37, no hash */
    len = rd_client_seal(&r, frame, sizeof(frame), &ctx);
    handle(f, frame, len);
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.status, RD_STATUS_INVALID_CRC);
    assert_false(resp.authentic);
}

/* ---- client exchange against a one-request server in a thread ------------ */

typedef struct server {
    int fd;
    bool udp;
    const rd_protocol_t *p;
} server_t;

static int bind_local(bool udp, char *port, size_t port_len)
{
    int fd = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0
        || getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(port, port_len, "%u", ntohs(sa.sin_port));
    return fd;
}

static size_t read_request(int fd, uint8_t *buf, size_t cap)
{
    size_t have = 0, want = 32;
    while (have < want && have < cap) {
        ssize_t n = recv(fd, buf + have, cap - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        if (have >= 32)
            want = 32 + be(buf + 22, 2);
    }
    return have;
}

static void *serve_one(void *arg)
{
    server_t *s = arg;
    uint8_t buf[2048];
    rd_response_t resp;
    rd_response_init(&resp);
    if (s->udp) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(s->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n > 0 && rd_protocol_handle_frame(s->p, &(rd_request_t){ 0 }, buf, (size_t)n, &resp))
            sendto(s->fd, resp.data, resp.len, 0, (struct sockaddr *)&from, fl);
    } else {
        int c = accept(s->fd, NULL, NULL);
        if (c >= 0) {
            size_t n = read_request(c, buf, sizeof(buf));
            if (rd_protocol_handle_frame(s->p, &(rd_request_t){ 0 }, buf, n, &resp))
                send(c, resp.data, resp.len, MSG_NOSIGNAL);
            close(c);
        }
    }
    rd_response_release(&resp);
    return NULL;
}

static void exchange_version(fixture_t *f, bool udp)
{
    char port[8];
    server_t s = { .udp = udp, .p = &f->p };
    s.fd = bind_local(udp, port, sizeof(port));
    assert_true(s.fd >= 0);
    assert_true(udp || listen(s.fd, 4) == 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve_one, &s), 0);

    rd_client_request_t r = { .raida_id = RAIDA_ID, .coin_id = COIN_ID, .command = 1, .echo = 77 };
    uint8_t req[64], resp[256], challenge[16];
    size_t req_len = rd_client_build(&r, req, sizeof(req), challenge);
    long n = rd_client_exchange("127.0.0.1", port, udp, req, req_len, resp, sizeof(resp), 2000);
    pthread_join(th, NULL);
    close(s.fd);

    assert_int_equal(n, 42);
    rd_client_response_t pr;
    assert_int_equal(rd_client_parse(resp, (size_t)n, &pr), 0);
    assert_int_equal(pr.status, 250);
    assert_int_equal(pr.echo, 77);
    assert_memory_equal(pr.challenge_hash, challenge, 16);
    assert_memory_equal(pr.payload, RAIDAD_BUILD_VERSION, 8);
}

static void test_client_exchange_tcp(void **state)
{
    exchange_version(*state, false);
}

static void test_client_exchange_udp(void **state)
{
    exchange_version(*state, true);
}

static void test_client_exchange_errors(void **state)
{
    (void)state;
    char port[8];
    uint8_t req[50] = { 0 }, resp[64];

    /* A UDP socket that never answers. */
    int fd = bind_local(true, port, sizeof(port));
    assert_true(fd >= 0);
    errno = 0;
    assert_int_equal(rd_client_exchange("127.0.0.1", port, true, req, sizeof(req),
                                        resp, sizeof(resp), 50), -1);
    assert_int_equal(errno, ETIMEDOUT);
    close(fd);

    /* A bound TCP port nobody listens on. */
    fd = bind_local(false, port, sizeof(port));
    assert_true(fd >= 0);
    errno = 0;
    assert_int_equal(rd_client_exchange("127.0.0.1", port, false, req, sizeof(req),
                                        resp, sizeof(resp), 500), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(fd);

    /* A silent TCP server: connected, but no answer in time. */
    fd = bind_local(false, port, sizeof(port));
    assert_true(fd >= 0);
    assert_int_equal(listen(fd, 1), 0);
    errno = 0;
    assert_int_equal(rd_client_exchange("127.0.0.1", port, false, req, sizeof(req),
                                        resp, sizeof(resp), 50), -1);
    assert_int_equal(errno, ETIMEDOUT);
    close(fd);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define K(name) cmocka_unit_test_setup_teardown(name, setup_keys, teardown_keys)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_header_size_by_type),
        T(test_validate_header_ok),
        T(test_routing_255),
        T(test_split_2),
        T(test_raida_id_3),
        T(test_shard_4),
        T(test_group_5),
        T(test_command_6),
        T(test_coin_id_7),
        T(test_enc_type_27),
        T(test_body_size_16),
        T(test_check_order),
        T(test_trailer_33),
        T(test_crc_37),
        T(test_validate_body_payload),
        T(test_admin_key_wrong_38),
        T(test_admin_key_unset_38),
        T(test_authenticated_only_with_a_key),
        T(test_admin_clear_only_from_allowed),
        T(test_quick_only_plain_status_commands),
        T(test_admin_key_length_38),
        T(test_echo_response_bytes),
        T(test_version_response_bytes),
        T(test_stats_response_bytes),
        T(test_error_response_bytes),
        T(test_error_response_partial_header),
        T(test_challenge_carried_on_body_error),
        T(test_echo_bytes_carried),
        T(test_handle_frame_short),
        T(test_handle_frame_length_mismatch),
        T(test_handle_frame_unknown_type),
        T(test_handle_frame_good),
        T(test_run_command_unknown_6),
        T(test_command_names),
        T(test_stats_counters),
        T(test_stats_shared_across_fork),
        T(test_response_append_grows),
        T(test_stats_response_on_heap),
        T(test_client_build_bytes),
        T(test_client_round_trip),
        T(test_client_parse_rejects),
        T(test_client_status_names),
        T(test_client_exchange_tcp),
        T(test_client_exchange_udp),
        T(test_client_exchange_errors),
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
        K(test_client_encrypted_round_trip),
        K(test_client_open_forged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
