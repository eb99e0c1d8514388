/* rd_frame.c and include/rd_frame.h: the response buffer (inline, then on
 * the heap; room for the trailer always kept), the one table of status
 * names, and the named offsets checked against the bytes docs/protocol.md
 * gives them, so that a name can never drift from the wire. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "rd_frame.h"

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

/* A reused record keeps its block; a zero-filled one starts inline. */
static void test_response_start(void **state)
{
    (void)state;
    rd_response_t r;
    memset(&r, 0, sizeof(r));
    rd_response_start(&r, RD_MODERN_HEADER_SIZE);
    assert_ptr_equal(r.data, r.inline_buf);
    assert_int_equal(r.len, RD_MODERN_HEADER_SIZE);
    assert_int_equal(r.header_len, RD_MODERN_HEADER_SIZE);
    assert_non_null(rd_response_append(&r, 1000));
    uint8_t *block = r.data;
    rd_response_start(&r, RD_LEGACY_HEADER_SIZE);
    assert_ptr_equal(r.data, block);
    assert_int_equal(r.len, RD_LEGACY_HEADER_SIZE);
    assert_int_equal(r.header_len, RD_LEGACY_HEADER_SIZE);
    rd_response_release(&r);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(rd_frame_status_name(250), "success");
    assert_string_equal(rd_frame_status_name(37), "invalid CRC");
    assert_string_equal(rd_frame_status_name(255), "invalid routing");
    assert_string_equal(rd_frame_status_name(1), "unknown");
    const uint8_t known[] = { 0, 2, 3, 4, 5, 6, 7, 16, 25, 27, 33, 34, 36, 37, 38, 39, 40,
                              160, 204, 241, 242, 243, 250, 252, 254, 255 };
    for (size_t i = 0; i < sizeof(known); i++)
        assert_string_not_equal(rd_frame_status_name(known[i]), "unknown");
}

/* The numbers of docs/protocol.md's tables, written out once more here. */
static void test_offsets_as_documented(void **state)
{
    (void)state;
    const struct { int named, documented; } at[] = {
        { RD_REQ_ROUTING, 0 }, { RD_REQ_SPLIT, 1 }, { RD_REQ_RAIDA_ID, 2 }, { RD_REQ_SHARD, 3 },
        { RD_REQ_GROUP, 4 }, { RD_REQ_COMMAND, 5 }, { RD_REQ_COIN_ID, 6 },
        { RD_REQ_ENC_TYPE, 16 }, { RD_PEEK_SIZE, 17 },
        { RD_REQ32_COIN, 17 }, { RD_REQ32_BODY_SIZE, 22 }, { RD_REQ32_NONCE, 24 },
        { RD_REQ32_NONCE_SIZE, 8 }, { RD_REQ32_ECHO, 30 },
        { RD_REQ48_BODY_SIZE, 17 }, { RD_REQ48_COIN, 19 }, { RD_REQ48_NONCE, 24 },
        { RD_REQ48_NONCE_SIZE, 24 }, { RD_REQ48_COIN2, 24 },
        { RD_RESP_RAIDA_ID, 0 }, { RD_RESP_SHARD, 1 }, { RD_RESP_STATUS, 2 }, { RD_RESP_GROUP, 3 },
        { RD_RESP_BODY_SIZE, 9 }, { RD_RESP32_FRAMES, 4 }, { RD_RESP32_ECHO, 6 },
        { RD_RESP32_EXEC_US, 12 }, { RD_RESP32_CHALLENGE, 16 },
        { RD_RESP48_EXEC_US, 4 }, { RD_RESP48_ENC_TYPE, 16 }, { RD_RESP48_COIN, 17 },
        { RD_RESP48_NONCE, 24 },
        { RD_LEGACY_HEADER_SIZE, 32 }, { RD_MODERN_HEADER_SIZE, 48 }, { RD_CHALLENGE_SIZE, 16 },
        { RD_MIN_BODY_SIZE, 18 }, { RD_MODERN_MIN_BODY_SIZE, 34 }, { RD_TRAILER_BYTE, 0x3E },
    };
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
        assert_int_equal(at[i].named, at[i].documented);
    /* The fields of a header family end inside it, and nonces stay clear
     * of the fields before them. */
    assert_true(RD_REQ32_ECHO + RD_ECHO_SIZE == RD_LEGACY_HEADER_SIZE);
    assert_true(RD_REQ32_NONCE + RD_REQ32_NONCE_SIZE == RD_LEGACY_HEADER_SIZE);
    assert_true(RD_REQ48_NONCE + RD_REQ48_NONCE_SIZE == RD_MODERN_HEADER_SIZE);
    assert_true(RD_RESP48_NONCE + RD_REQ48_NONCE_SIZE == RD_MODERN_HEADER_SIZE);
    assert_true(RD_REQ48_COIN + RD_COIN_REF_SIZE <= RD_REQ48_NONCE);
    assert_true(RD_RESP32_CHALLENGE + RD_CHALLENGE_SIZE == RD_LEGACY_HEADER_SIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_append_grows),
        cmocka_unit_test(test_response_start),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_offsets_as_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
