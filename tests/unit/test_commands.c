/* rd_commands.c and the status group (rd_mod_status.c): the built-in
 * command table and names, the admin key of stats, and the exact bytes of
 * version and stats answers. */
#include "config.h"

#include "protocol_fixture.h"
#include "rd_commands.h"

static void test_admin_key_wrong_38(void **state)
{
    fixture_t *f = *state;
    uint8_t key[16];
    for (size_t i = 0; i < 16; i++) {
        memcpy(key, admin_key, 16);
        key[i] ^= 0x01;             /* any single byte */
        send_stats(f, key, 16);
        assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
        assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    }
}

static void test_admin_key_unset_38(void **state)
{
    fixture_t *f = *state;
    f->p.admin_key_set = false;
    send_stats(f, admin_key, 16);
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
    /* Nor does the all-zero key of an unset configuration open it. */
    uint8_t zero[16] = { 0 };
    memset(f->p.admin_key, 0, 16);
    send_stats(f, zero, 16);
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
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
        assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
    }
    send_stats(f, longer, 17);
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
}

static void test_version_response_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE + 10];
    uint8_t *body = want + RD_LEGACY_HEADER_SIZE;
    size_t len = make_frame(frame, 0, 1, NULL, 0);
    handle(f, frame, len);
    expected_header(want, 250, 0, ECHO, 10, true);     /* 8 bytes and the trailer */
    memcpy(body, "20261125", 8);
    body[8] = body[9] = RD_TRAILER_BYTE;
    assert_int_equal(f->resp.len, sizeof(want));
    assert_header(f->resp.data, want);
    assert_memory_equal(f->resp.data + RD_LEGACY_HEADER_SIZE, body, 10);
    assert_memory_equal(f->resp.data + RD_LEGACY_HEADER_SIZE, RAIDAD_BUILD_VERSION, 8);
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
    frame[RD_REQ_COIN_ID + 1] ^= 1;                     /* the coin id's second byte */
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
    const uint8_t *pl = f->resp.data + RD_LEGACY_HEADER_SIZE;
    uint8_t want[RD_LEGACY_HEADER_SIZE];
    expected_header(want, 250, 0, ECHO, (uint32_t)(payload_len + RD_TRAILER_SIZE), true);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE + payload_len + RD_TRAILER_SIZE);
    assert_header(f->resp.data, want);
    assert_true(rd_get_be(pl, 4) <= 2);                 /* uptime of a fresh counter set */
    assert_memory_equal(pl + 4, counters, sizeof(counters));
    assert_int_equal(f->resp.data[f->resp.len - 2], RD_TRAILER_BYTE);
    assert_int_equal(f->resp.data[f->resp.len - 1], RD_TRAILER_BYTE);
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
    assert_int_equal(f->resp.data[RD_RESP_STATUS], 250);
    assert_ptr_not_equal(f->resp.data, f->resp.inline_buf);

    const uint8_t *pl = f->resp.data + RD_LEGACY_HEADER_SIZE;
    size_t n_cmd = RD_STATS_GROUPS * 52;
    size_t payload_len = 4 + 8 + 2 + 256 * 9 + 2 + n_cmd * 10;
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE + payload_len + RD_TRAILER_SIZE);
    assert_int_equal(rd_get_be(f->resp.data + RD_RESP_BODY_SIZE, RD_RESP_BODY_SIZE_SIZE),
                     payload_len + RD_TRAILER_SIZE);
    assert_int_equal(rd_get_be(pl + 4, 8), requests);
    assert_int_equal(rd_get_be(pl + 12, 2), 256);
    const uint8_t *e = pl + 14;
    for (unsigned s = 0; s < 256; s++, e += 9) {
        assert_int_equal(e[0], s);
        assert_int_equal(rd_get_be(e + 1, 8), s == 250 ? 1 + n_cmd : 1);
    }
    assert_int_equal(rd_get_be(e, 2), n_cmd);
    e += 2;
    for (unsigned g = 0; g < RD_STATS_GROUPS; g++) {
        for (unsigned c = 0; c < 256; c += 5, e += 10) {
            assert_int_equal(e[0], g);
            assert_int_equal(e[1], c);
            assert_int_equal(rd_get_be(e + 2, 8), 1);
        }
    }
    assert_int_equal(e[0], RD_TRAILER_BYTE);
    assert_int_equal(e[1], RD_TRAILER_BYTE);
    assert_ptr_equal(e + RD_TRAILER_SIZE, f->resp.data + f->resp.len);

    rd_response_release(&f->resp);
    assert_ptr_equal(f->resp.data, f->resp.inline_buf);
    assert_int_equal(f->resp.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_admin_key_wrong_38),
        T(test_admin_key_unset_38),
        T(test_admin_key_length_38),
        T(test_version_response_bytes),
        T(test_stats_response_bytes),
        T(test_command_names),
        T(test_stats_response_on_heap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
