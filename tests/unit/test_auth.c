/* The authentication commands (src/rd_auth.c): each payload's parsing and
 * statuses, the bitfield, and the handlers over a real coin store in a
 * temporary folder; a header-only request through the frame parser. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coins_fixture.h"
#include "rd_auth.h"
#include "rd_bytes.h"
#include "rd_protocol.h"

typedef struct state {
    fixture_t f;
    rd_protocol_t proto;
} state_t;

static int setup(void **st)
{
    state_t *s = calloc(1, sizeof(*s));
    fx_init(&s->f, "test_auth");
    /* Coins 0/0..0/9 and 1/5000 issued, 0/10 on the page but free. */
    for (uint32_t sn = 0; sn < 10; sn++)
        fx_coin(&s->f, 0, sn, NULL, 3);
    fx_coin(&s->f, 0, 10, NULL, 0);
    fx_coin(&s->f, 1, 5000, NULL, 3);
    fx_open(&s->f);
    s->proto = (rd_protocol_t){ .raida_id = 0, .coin_id = 6, .max_body_size = 65536,
                                .coins = s->f.store };
    *st = s;
    return 0;
}

static int teardown(void **st)
{
    state_t *s = *st;
    fx_free(&s->f);
    free(s);
    return 0;
}

static uint8_t *put_id(uint8_t *p, int8_t den, uint32_t sn)
{
    p[0] = (uint8_t)den;
    rd_put_be(p + 1, sn, 4);
    return p + 5;
}

/* ---- parsing ------------------------------------------------------------- */

static void test_parse_lengths(void **st)
{
    uint8_t buf[512] = { 0 };
    rd_auth_payload_t pl;
    (void)st;
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT, buf, 0, &pl), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT, buf, 20, &pl), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT, buf, 21, &pl), RD_STATUS_NO_ERROR);
    assert_int_equal(pl.n, 1);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT, buf, 22, &pl), RD_STATUS_NOT_WHOLE_COINS);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT, buf, 210, &pl), RD_STATUS_NO_ERROR);
    assert_int_equal(pl.n, 10);
    assert_int_equal(rd_auth_parse(RD_CMD_POWN, buf, 36, &pl), RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(rd_auth_parse(RD_CMD_POWN, buf, 74, &pl), RD_STATUS_NO_ERROR);
    assert_int_equal(pl.n, 2);
    assert_int_equal(rd_auth_parse(RD_CMD_POWN, buf, 75, &pl), RD_STATUS_NOT_WHOLE_COINS);
    /* Sums: coins of 5 bytes, then 16 (detect sum) or 32 (pown sum). */
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT_SUM, buf, 20, &pl),
                     RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT_SUM, buf, 22, &pl), RD_STATUS_NOT_WHOLE_COINS);
    assert_int_equal(rd_auth_parse(RD_CMD_POWN_SUM, buf, 36, &pl),
                     RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(rd_auth_parse(RD_CMD_POWN_SUM, buf, 38, &pl), RD_STATUS_NOT_WHOLE_COINS);
    put_id(put_id(buf, 0, 1), 0, 2);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT_SUM, buf, 26, &pl), RD_STATUS_NO_ERROR);
    assert_int_equal(pl.n, 2);
    assert_ptr_equal(pl.sum, buf + 10);
    assert_int_equal(rd_auth_parse(RD_CMD_POWN_SUM, buf, 42, &pl), RD_STATUS_NO_ERROR);
    assert_ptr_equal(pl.delta, buf + 26);
}

static void test_parse_coin_fields(void **st)
{
    uint8_t buf[74] = { 0 };
    rd_auth_payload_t pl;
    rd_auth_coin_t c;
    (void)st;
    uint8_t *p = put_id(buf, -8, 1023999);
    memset(p, 0xAA, 16);
    memset(p + 16, 0xBB, 16);
    assert_int_equal(rd_auth_parse(RD_CMD_POWN, buf, 37, &pl), RD_STATUS_NO_ERROR);
    rd_auth_coin(&pl, 0, &c);
    assert_int_equal(c.den, -8);
    assert_int_equal(c.sn, 1023999);
    assert_int_equal(c.an[0], 0xAA);
    assert_int_equal(c.pan[15], 0xBB);
}

/* A sum naming a coin twice would XOR it away: refused, as is a coin that
 * cannot exist. */
static void test_parse_sum_refusals(void **st)
{
    uint8_t buf[64] = { 0 };
    rd_auth_payload_t pl;
    (void)st;
    put_id(put_id(put_id(buf, 0, 1), 0, 2), 0, 1);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT_SUM, buf, 31, &pl), RD_STATUS_INVALID_COIN);
    put_id(put_id(buf, 0, 1), 7, 2);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT_SUM, buf, 26, &pl), RD_STATUS_INVALID_COIN);
    put_id(put_id(buf, 0, 1), 0, 1024000);
    assert_int_equal(rd_auth_parse(RD_CMD_POWN_SUM, buf, 42, &pl), RD_STATUS_INVALID_COIN);
    /* Same serial number, other denomination: two coins. */
    put_id(put_id(buf, 0, 1), 1, 1);
    assert_int_equal(rd_auth_parse(RD_CMD_DETECT_SUM, buf, 26, &pl), RD_STATUS_NO_ERROR);
}

/* protocol.md: 10 coins of which 0, 3 and 9 fail give f6 01. */
static void test_bitfield_example(void **st)
{
    bool passed[10];
    uint8_t out[2];
    (void)st;
    for (int i = 0; i < 10; i++)
        passed[i] = i != 0 && i != 3 && i != 9;
    rd_auth_bitfield(passed, 10, out);
    assert_int_equal(out[0], 0xf6);
    assert_int_equal(out[1], 0x01);
}

/* ---- the handlers -------------------------------------------------------- */

typedef struct run {
    rd_request_t req;
    rd_response_t resp;
    int status;
} run_t;

/* The handler alone, on a request that already waits for WAIT (as the key
 * of an encrypted request makes it: src/rd_crypt.c); nothing is synced. */
static void run_waiting(state_t *s, uint8_t group, uint8_t command, const uint8_t *payload,
                        size_t len, uint64_t wait, run_t *r)
{
    memset(&r->req, 0, sizeof(r->req));
    r->req.commit_lsn = wait;
    rd_response_init(&r->resp);
    r->resp.len = 0;
    r->resp.header_len = 0;
    r->req.group = group;
    r->req.command = command;
    r->req.payload = payload;
    r->req.payload_len = len;
    switch (command) {
    case 3: r->status = rd_auth_audit(&s->proto, &r->req, &r->resp); break;
    case RD_CMD_DETECT: r->status = rd_auth_detect(&s->proto, &r->req, &r->resp); break;
    case RD_CMD_DETECT_SUM: r->status = rd_auth_detect_sum(&s->proto, &r->req, &r->resp); break;
    case RD_CMD_POWN: r->status = rd_auth_pown(&s->proto, &r->req, &r->resp); break;
    default: r->status = rd_auth_pown_sum(&s->proto, &r->req, &r->resp); break;
    }
}

/* The handler, then the wait for what its answer depends on. */
static void run_cmd(state_t *s, uint8_t group, uint8_t command, const uint8_t *payload, size_t len,
                    run_t *r)
{
    run_waiting(s, group, command, payload, len, 0, r);
    if (r->req.commit_lsn != 0)
        assert_int_equal(rd_protocol_commit(&s->proto, r->req.commit_lsn), 0);
}

static size_t detect_payload(uint8_t *buf, const int8_t *dens, const uint32_t *sns, size_t n,
                             const bool *right)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        p = put_id(p, dens[i], sns[i]);
        fx_an(dens[i], sns[i], p);
        if (!right[i])
            p[0] ^= 0xFF;
        p += 16;
    }
    return (size_t)(p - buf);
}

static void test_detect_statuses(void **st)
{
    state_t *s = *st;
    uint8_t buf[21 * 10];
    int8_t dens[10] = { 0 };
    uint32_t sns[10];
    bool right[10];
    run_t r;
    for (int i = 0; i < 10; i++) {
        sns[i] = (uint32_t)i;
        right[i] = true;
    }
    run_cmd(s, 1, RD_CMD_DETECT, buf, detect_payload(buf, dens, sns, 10, right), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_PASS);
    assert_int_equal(r.resp.len, 0);
    /* Coins 0, 3 and 9 fail: 0 with a wrong AN, 3 not issued (0/10),
     * 9 a denomination that cannot exist. */
    right[0] = false;
    sns[3] = 10;
    dens[9] = 7;
    run_cmd(s, 1, RD_CMD_DETECT, buf, detect_payload(buf, dens, sns, 10, right), &r);
    assert_int_equal(r.status, RD_STATUS_MIXED);
    assert_int_equal(r.resp.len, 2);
    assert_int_equal(r.resp.data[0], 0xf6);
    assert_int_equal(r.resp.data[1], 0x01);
    for (int i = 0; i < 10; i++)
        right[i] = false;
    run_cmd(s, 1, RD_CMD_DETECT, buf, detect_payload(buf, dens, sns, 10, right), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    /* No page at all, and a serial number past the last page. */
    dens[0] = 4;
    sns[1] = 1024000 + 1;
    right[0] = right[1] = true;
    run_cmd(s, 1, RD_CMD_DETECT, buf, detect_payload(buf, dens, sns, 2, right), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    run_cmd(s, 1, RD_CMD_DETECT, buf, 20, &r);
    assert_int_equal(r.status, RD_STATUS_INVALID_PACKET_LENGTH);
    run_cmd(s, 1, RD_CMD_DETECT, buf, 43, &r);
    assert_int_equal(r.status, RD_STATUS_NOT_WHOLE_COINS);
    rd_response_release(&r.resp);
}

static void test_pown_changes_only_passing(void **st)
{
    state_t *s = *st;
    uint8_t buf[37 * 2], *p = buf, rec[RD_COIN_RECORD_SIZE], old1[16];
    run_t r;
    p = put_id(p, 0, 0);
    fx_an(0, 0, p);
    memset(p + 16, 0x51, 16);
    p = put_id(p + 32, 0, 1);
    fx_an(0, 1, p);
    fx_an(0, 1, old1);
    p[0] ^= 1;                                  /* wrong AN */
    memset(p + 16, 0x52, 16);
    run_cmd(s, 1, RD_CMD_POWN, buf, sizeof(buf), &r);
    assert_int_equal(r.status, RD_STATUS_MIXED);
    assert_int_equal(r.resp.len, 1);
    assert_int_equal(r.resp.data[0], 0x01);
    fx_read(&s->f, 0, 0, rec);                  /* durable in the page */
    memset(buf, 0x51, 16);
    assert_memory_equal(rec, buf, 16);
    assert_int_equal(rec[16], rd_mfs_now(time(NULL)));
    fx_read(&s->f, 0, 1, rec);
    assert_memory_equal(rec, old1, 16);
    /* The old AN no longer passes; the PAN does. */
    p = put_id(buf, 0, 0);
    fx_an(0, 0, p);
    memset(p + 16, 0x53, 16);
    run_cmd(s, 1, RD_CMD_POWN, buf, 37, &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    memset(p, 0x51, 16);
    run_cmd(s, 1, RD_CMD_POWN, buf, 37, &r);
    assert_int_equal(r.status, RD_STATUS_ALL_PASS);
    run_cmd(s, 1, RD_CMD_POWN, buf, 37, &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    rd_response_release(&r.resp);
}

/* A pown naming one coin twice runs its records in order: the second sees
 * what the first wrote. */
static void test_pown_same_coin_twice_in_order(void **st)
{
    state_t *s = *st;
    uint8_t buf[37 * 2], *p, rec[RD_COIN_RECORD_SIZE], want[16];
    run_t r;
    p = put_id(buf, 0, 2);
    fx_an(0, 2, p);
    memset(p + 16, 0x61, 16);
    p = put_id(p + 32, 0, 2);
    fx_an(0, 2, p);                             /* the old AN again: fails */
    memset(p + 16, 0x62, 16);
    run_cmd(s, 1, RD_CMD_POWN, buf, sizeof(buf), &r);
    assert_int_equal(r.status, RD_STATUS_MIXED);
    assert_int_equal(r.resp.data[0], 0x01);
    fx_read(&s->f, 0, 2, rec);
    memset(want, 0x61, 16);
    assert_memory_equal(rec, want, 16);
    p = put_id(buf, 0, 2);
    memset(p, 0x61, 16);
    memset(p + 16, 0x63, 16);
    p = put_id(p + 32, 0, 2);
    memset(p, 0x63, 16);                        /* the first one's PAN: passes */
    memset(p + 16, 0x64, 16);
    run_cmd(s, 1, RD_CMD_POWN, buf, sizeof(buf), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_PASS);
    fx_read(&s->f, 0, 2, rec);
    memset(want, 0x64, 16);
    assert_memory_equal(rec, want, 16);
    rd_response_release(&r.resp);
}

static size_t sum_payload(uint8_t *buf, const uint32_t *sns, size_t n, bool right, bool delta)
{
    uint8_t *p = buf, an[16], sum[16] = { 0 };
    for (size_t i = 0; i < n; i++) {
        p = put_id(p, 0, sns[i]);
        fx_an(0, sns[i], an);
        for (int k = 0; k < 16; k++)
            sum[k] ^= an[k];
    }
    if (!right)
        sum[5] ^= 0x10;
    memcpy(p, sum, 16);
    p += 16;
    if (delta) {
        memset(p, 0x0F, 16);
        p += 16;
    }
    return (size_t)(p - buf);
}

static void test_detect_sum(void **st)
{
    state_t *s = *st;
    uint8_t buf[128];
    uint32_t sns[3] = { 4, 5, 6 };
    run_t r;
    run_cmd(s, 1, RD_CMD_DETECT_SUM, buf, sum_payload(buf, sns, 3, true, false), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_PASS);
    run_cmd(s, 1, RD_CMD_DETECT_SUM, buf, sum_payload(buf, sns, 3, false, false), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    sns[1] = 10;                                /* not issued */
    run_cmd(s, 1, RD_CMD_DETECT_SUM, buf, sum_payload(buf, sns, 3, true, false), &r);
    assert_int_equal(r.status, RD_STATUS_INVALID_COIN);
    sns[1] = 2000;                              /* no page */
    run_cmd(s, 1, RD_CMD_DETECT_SUM, buf, sum_payload(buf, sns, 3, true, false), &r);
    assert_int_equal(r.status, RD_STATUS_INVALID_COIN);
    sns[1] = 4;                                 /* twice */
    run_cmd(s, 1, RD_CMD_DETECT_SUM, buf, sum_payload(buf, sns, 3, true, false), &r);
    assert_int_equal(r.status, RD_STATUS_INVALID_COIN);
}

static void test_pown_sum_all_or_nothing(void **st)
{
    state_t *s = *st;
    uint8_t buf[128], rec[RD_COIN_RECORD_SIZE], an[16];
    uint32_t sns[3] = { 7, 8, 9 };
    run_t r;
    run_cmd(s, 1, RD_CMD_POWN_SUM, buf, sum_payload(buf, sns, 3, false, true), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    fx_read(&s->f, 0, 7, rec);
    fx_an(0, 7, an);
    assert_memory_equal(rec, an, 16);
    run_cmd(s, 1, RD_CMD_POWN_SUM, buf, sum_payload(buf, sns, 3, true, true), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_PASS);
    for (int i = 0; i < 3; i++) {
        fx_read(&s->f, 0, sns[i], rec);
        fx_an(0, sns[i], an);
        for (int k = 0; k < 16; k++)
            an[k] ^= 0x0F;
        assert_memory_equal(rec, an, 16);
        assert_int_equal(rec[16], rd_mfs_now(time(NULL)));
    }
    /* The same sum again: the ANs have changed (an odd number of them, so
     * their XOR has too), it fails. */
    run_cmd(s, 1, RD_CMD_POWN_SUM, buf, sum_payload(buf, sns, 3, true, true), &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
}

/* A handler adds its own wait to the one the request has, never lowers
 * it: an answer encrypted with a PAN not yet on stable storage waits for
 * that PAN's pown, whatever the command read or wrote itself. */
static void test_handlers_keep_the_wait(void **st)
{
    state_t *s = *st;
    uint8_t pown[37], buf[128];
    int8_t dens[1] = { 0 };
    uint32_t sns[2] = { 1, 2 };
    bool right[1] = { true };
    run_t r;
    put_id(pown, 0, 0);
    fx_an(0, 0, pown + 5);
    memset(pown + 21, 0x71, 16);
    run_waiting(s, 1, RD_CMD_POWN, pown, sizeof(pown), 0, &r);
    assert_int_equal(r.status, RD_STATUS_ALL_PASS);
    uint64_t key_lsn = r.req.commit_lsn;
    assert_true(key_lsn != 0);
    assert_false(rd_coins_synced(s->f.store, key_lsn));
    /* Commands that change nothing, or fail: their own wait is 0. */
    run_waiting(s, 1, RD_CMD_DETECT, buf, detect_payload(buf, dens, sns, 1, right), key_lsn, &r);
    assert_int_equal(r.status, RD_STATUS_ALL_PASS);
    assert_true(r.req.commit_lsn == key_lsn);
    run_waiting(s, 1, RD_CMD_DETECT_SUM, buf, sum_payload(buf, sns, 2, true, false), key_lsn,
                &r);
    assert_int_equal(r.status, RD_STATUS_ALL_PASS);
    assert_true(r.req.commit_lsn == key_lsn);
    run_waiting(s, 1, RD_CMD_POWN_SUM, buf, sum_payload(buf, sns, 2, false, true), key_lsn, &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    assert_true(r.req.commit_lsn == key_lsn);
    memcpy(pown + 5, pown + 21, 16);            /* its PAN again as AN... */
    pown[5] ^= 1;                               /* ...but wrong: fails */
    run_waiting(s, 1, RD_CMD_POWN, pown, sizeof(pown), key_lsn, &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    assert_true(r.req.commit_lsn == key_lsn);
    assert_int_equal(rd_protocol_commit(&s->proto, key_lsn), 0);
    rd_response_release(&r.resp);
}

static void test_audit_counts(void **st)
{
    state_t *s = *st;
    run_t r;
    run_cmd(s, 0, 3, NULL, 0, &r);
    assert_int_equal(r.status, RD_STATUS_SUCCESS);
    assert_int_equal(r.resp.len, 75);
    for (int d = 0; d < 15; d++) {
        const uint8_t *e = r.resp.data + d * 5;
        assert_int_equal((int8_t)e[0], d - 8);
        uint32_t want = d == 8 ? 10 : d == 9 ? 1 : 0;
        assert_int_equal(rd_get_be(e + 1, 4), want);
    }
    rd_response_release(&r.resp);
}

/* Without a store every coin is missing, nothing crashes. */
static void test_no_store(void **st)
{
    state_t *s = *st;
    uint8_t buf[64] = { 0 };
    uint32_t sns[1] = { 1 };
    run_t r;
    s->proto.coins = NULL;
    run_cmd(s, 1, RD_CMD_DETECT, buf, 21, &r);
    assert_int_equal(r.status, RD_STATUS_ALL_FAIL);
    run_cmd(s, 1, RD_CMD_DETECT_SUM, buf, sum_payload(buf, sns, 1, true, false), &r);
    assert_int_equal(r.status, RD_STATUS_INVALID_COIN);
    run_cmd(s, 0, 3, NULL, 0, &r);
    assert_int_equal(r.status, RD_STATUS_SUCCESS);
    rd_response_release(&r.resp);
}

/* Body size 0 to any of the four: 36, from the header alone. */
static void test_header_only_is_empty_request(void **st)
{
    state_t *s = *st;
    static const uint8_t cmds[] = { 10, 11, 20, 21 };
    for (size_t i = 0; i < sizeof(cmds); i++) {
        uint8_t frame[32] = { 1, 0, 0, 0, 1, cmds[i], 0, 6 };
        rd_request_t req;
        rd_response_t resp;
        rd_response_init(&resp);
        assert_true(rd_protocol_handle_frame(&s->proto, &req, frame, sizeof(frame), &resp));
        assert_int_equal(resp.data[2], RD_STATUS_EMPTY_REQUEST);
        rd_response_release(&resp);
    }
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_lengths),
        cmocka_unit_test(test_parse_coin_fields),
        cmocka_unit_test(test_parse_sum_refusals),
        cmocka_unit_test(test_bitfield_example),
        T(test_detect_statuses),
        T(test_pown_changes_only_passing),
        T(test_pown_same_coin_twice_in_order),
        T(test_detect_sum),
        T(test_pown_sum_all_or_nothing),
        T(test_handlers_keep_the_wait),
        T(test_audit_counts),
        T(test_no_store),
        T(test_header_only_is_empty_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
