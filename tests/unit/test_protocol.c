/* rd_protocol.c: header and body validation in their documented order,
 * the admin channel, the answers' headers byte for byte, whole datagrams
 * (rd_protocol_handle_frame) and what the protocol counts. */
#include "config.h"

#include "protocol_fixture.h"
#include "rd_clock.h"
#include "rd_commands.h"

static void test_header_size_by_type(void **state)
{
    (void)state;
    uint8_t peek[RD_PEEK_SIZE] = { 0 };
    for (unsigned t = 0; t < 256; t++) {
        peek[RD_REQ_ENC_TYPE] = (uint8_t)t;
        size_t want = (t == 4 || t == 5) ? RD_MODERN_HEADER_SIZE : RD_LEGACY_HEADER_SIZE;
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
    expect_header_status(*state, RD_REQ_ROUTING, 0, RD_STATUS_INVALID_ROUTING);
    expect_header_status(*state, RD_REQ_ROUTING, 2, RD_STATUS_INVALID_ROUTING);
    expect_header_status(*state, RD_REQ_ROUTING, 255, RD_STATUS_INVALID_ROUTING);
}

static void test_split_2(void **state)
{
    expect_header_status(*state, RD_REQ_SPLIT, 1, RD_STATUS_INVALID_SPLIT);
    expect_header_status(*state, RD_REQ_SPLIT, 255, RD_STATUS_INVALID_SPLIT);
}

static void test_raida_id_3(void **state)
{
    expect_header_status(*state, RD_REQ_RAIDA_ID, 0, RD_STATUS_INVALID_RAIDA_ID);
    expect_header_status(*state, RD_REQ_RAIDA_ID, RAIDA_ID + 1, RD_STATUS_INVALID_RAIDA_ID);
    expect_header_status(*state, RD_REQ_RAIDA_ID, 25, RD_STATUS_INVALID_RAIDA_ID);
}

static void test_shard_4(void **state)
{
    expect_header_status(*state, RD_REQ_SHARD, 1, RD_STATUS_INVALID_SHARD);
    expect_header_status(*state, RD_REQ_SHARD, 255, RD_STATUS_INVALID_SHARD);
}

static void test_group_5(void **state)
{
    rd_request_t req;
    for (unsigned g = 2; g < 256; g++) {
        assert_int_equal(header_status_with(*state, RD_REQ_GROUP, (uint8_t)g, &req),
                         RD_STATUS_INVALID_GROUP);
        assert_false(req.header_valid);
    }
}

static void test_command_6(void **state)
{
    rd_request_t req;
    const uint8_t bad[] = { 4, 99, 255 };
    for (size_t i = 0; i < sizeof(bad); i++) {
        assert_int_equal(header_status_with(*state, RD_REQ_COMMAND, bad[i], &req),
                         RD_STATUS_INVALID_COMMAND);
        assert_false(req.header_valid);
    }
}

static void test_coin_id_7(void **state)
{
    rd_request_t req;
    const size_t low = RD_REQ_COIN_ID + 1;     /* the coin id's second byte */
    assert_int_equal(header_status_with(*state, RD_REQ_COIN_ID, 0x00, &req),
                     RD_STATUS_INVALID_COIN_ID);
    assert_true(req.header_valid);  /* group and command named a handler */
    assert_int_equal(header_status_with(*state, low, 0x07, &req), RD_STATUS_INVALID_COIN_ID);
    assert_int_equal(header_status_with(*state, low, 0x01, &req), RD_STATUS_INVALID_COIN_ID);
}

/* Types 0, 1, 4 and 5 are served; 2 (the locker key) is not, yet. */
static void test_enc_type_27(void **state)
{
    fixture_t *f = *state;
    const uint8_t types[] = { 2, 3, 6, 9, 255 };
    for (size_t i = 0; i < sizeof(types); i++) {
        rd_request_t req;
        assert_int_equal(header_status_with(f, RD_REQ_ENC_TYPE, types[i], &req),
                         RD_STATUS_INVALID_ENCRYPTION_CODE);
        assert_int_equal(req.enc_type, types[i]);

        /* A whole datagram gets the same answer. */
        uint8_t frame[128];
        size_t len = make_frame(frame, 0, 0, NULL, 0);
        frame[RD_REQ_ENC_TYPE] = types[i];
        handle_expect_status(f, frame, len, RD_STATUS_INVALID_ENCRYPTION_CODE);
    }
    /* 4 and 5 need the 48-byte header: 32 bytes of one are too short. */
    rd_request_t req;
    assert_int_equal(header_status_with(f, RD_REQ_ENC_TYPE, 4, &req),
                     RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(header_status_with(f, RD_REQ_ENC_TYPE, 5, &req),
                     RD_STATUS_INVALID_PACKET_LENGTH);
    assert_int_equal(header_status_with(f, RD_REQ_ENC_TYPE, 1, &req), RD_STATUS_NO_ERROR);
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
        rd_put_be(frame + RD_REQ32_BODY_SIZE, cases[i].size, RD_BODY_SIZE_SIZE);
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
        { RD_REQ_ROUTING, 9, RD_STATUS_INVALID_ROUTING },
        { RD_REQ_SPLIT, 9, RD_STATUS_INVALID_SPLIT },
        { RD_REQ_RAIDA_ID, 9, RD_STATUS_INVALID_RAIDA_ID },
        { RD_REQ_SHARD, 9, RD_STATUS_INVALID_SHARD },
        { RD_REQ_GROUP, 9, RD_STATUS_INVALID_GROUP },
        { RD_REQ_COMMAND, 9, RD_STATUS_INVALID_COMMAND },
        { RD_REQ_COIN_ID, 9, RD_STATUS_INVALID_COIN_ID },
        { RD_REQ_ENC_TYPE, 9, RD_STATUS_INVALID_ENCRYPTION_CODE },
        { RD_REQ32_BODY_SIZE + 1, 1, RD_STATUS_INVALID_PACKET_LENGTH },    /* body size 1 */
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

static int body_status(fixture_t *f, uint8_t *frame, rd_request_t *req)
{
    request_from(req, frame);
    assert_int_equal(rd_protocol_validate_header(&f->p, req), RD_STATUS_NO_ERROR);
    req->body = frame + RD_LEGACY_HEADER_SIZE;
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
    frame[RD_LEGACY_HEADER_SIZE] ^= 1;
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_INVALID_EOF);
}

static void test_crc_37(void **state)
{
    uint8_t frame[64];
    rd_request_t req;
    make_frame(frame, 0, 0, NULL, 0);
    frame[RD_LEGACY_HEADER_SIZE + 11] ^= 0x80;                          /* a random byte */
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_INVALID_CRC);
    make_frame(frame, 0, 0, NULL, 0);
    frame[RD_LEGACY_HEADER_SIZE + RD_CHALLENGE_SIZE - 1] ^= 0x01;       /* the CRC itself */
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_INVALID_CRC);
}

static void test_validate_body_payload(void **state)
{
    uint8_t frame[64];
    rd_request_t req;
    const uint8_t payload[5] = { 1, 2, 3, 4, 5 };
    make_frame(frame, 0, 0, payload, sizeof(payload));
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_NO_ERROR);
    assert_ptr_equal(req.payload, frame + RD_LEGACY_HEADER_SIZE + RD_CHALLENGE_SIZE);
    assert_int_equal(req.payload_len, 5);
    make_frame(frame, 0, 0, NULL, 0);
    assert_int_equal(body_status(*state, frame, &req), RD_STATUS_NO_ERROR);
    assert_int_equal(req.payload_len, 0);
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
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_SUCCESS);
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
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
    assert_false(req.authenticated);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    static const char *const allowed[] = { "127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1" };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        handle_tcp(f, &req, frame, len, allowed[i]);
        assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_SUCCESS);
    }
    static const char *const refused[] = { "192.0.2.1", "10.0.0.1", "::2", "2001:db8::1", "::" };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        handle_tcp(f, &req, frame, len, refused[i]);
        assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
        assert_false(req.authenticated);
    }
    /* an empty list: never in clear */
    f->p.admin_allow_count = 0;
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
    /* a list without loopback */
    rd_cidr_t lan;
    assert_int_equal(rd_cidr_parse("192.0.2.0/24", &lan), 0);
    f->p.admin_allow = &lan;
    f->p.admin_allow_count = 1;
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_ADMIN_AUTH);
    handle_tcp(f, &req, frame, len, "192.0.2.9");
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_SUCCESS);
    /* echo and version never needed the key */
    len = make_frame(frame, 0, 1, NULL, 0);
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_SUCCESS);
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

static void test_echo_response_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    handle(f, frame, len);
    expected_header(want, 250, 0, ECHO, 0, true);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    assert_header(f->resp.data, want);
    assert_ptr_equal(f->resp.data, f->resp.inline_buf);    /* no allocation */
}

static void test_error_response_bytes(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    size_t len = make_frame_echo(frame, 0, 1, NULL, 0, 0x1234);
    frame[RD_REQ_COIN_ID] = 0x55;                       /* wrong coin id */
    handle(f, frame, len);
    /* A header error: the body was never accepted, so no challenge. */
    expected_header(want, RD_STATUS_INVALID_COIN_ID, 0, 0x1234, 0, false);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);       /* exec time 0 too */
}

static void test_error_response_partial_header(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    rd_request_t req;
    make_frame(frame, 9, 0, NULL, 0);
    request_from(&req, frame);

    req.header_have = 3;                                /* not even the group */
    rd_protocol_error_response(&f->p, &req, RD_STATUS_INVALID_PACKET_LENGTH, &f->resp);
    expected_header(want, 16, 0, 0, 0, false);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);

    req.header_have = 10;                               /* group, no echo yet */
    rd_protocol_error_response(&f->p, &req, RD_STATUS_INVALID_PACKET_LENGTH, &f->resp);
    expected_header(want, 16, 9, 0, 0, false);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);

    req.header_have = RD_LEGACY_HEADER_SIZE;
    req.header_size = RD_MODERN_HEADER_SIZE;            /* other family: no echo there */
    rd_protocol_error_response(&f->p, &req, RD_STATUS_INVALID_ENCRYPTION_CODE, &f->resp);
    expected_header(want, 27, 9, 0, 0, false);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);

    req.header_size = RD_LEGACY_HEADER_SIZE;
    req.body = frame + RD_LEGACY_HEADER_SIZE;
    req.body_size = RD_MIN_BODY_SIZE;
    req.body_complete = true;
    rd_protocol_error_response(&f->p, &req, RD_STATUS_INVALID_CRC, &f->resp);
    expected_header(want, 37, 9, ECHO, 0, true);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
}

static void test_challenge_carried_on_body_error(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    frame[RD_LEGACY_HEADER_SIZE + 14] ^= 0xFF;          /* break the CRC */
    handle(f, frame, len);
    expected_header(want, RD_STATUS_INVALID_CRC, 0, ECHO, 0, true);
    want[RD_RESP32_CHALLENGE + 14] ^= 0xFF;             /* the bytes as sent */
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);
}

static void test_echo_bytes_carried(void **state)
{
    fixture_t *f = *state;
    const uint16_t echoes[] = { 0x0000, 0x0001, 0x8000, 0xFFFF, 0xA55A };
    for (size_t i = 0; i < sizeof(echoes) / sizeof(echoes[0]); i++) {
        uint8_t frame[64];
        size_t len = make_frame_echo(frame, 0, 0, NULL, 0, echoes[i]);
        uint8_t *challenge = frame + RD_LEGACY_HEADER_SIZE;
        challenge[0] = (uint8_t)i;                      /* a challenge of its own ... */
        rd_put_be(challenge + RD_CRC_INPUT_SIZE, crc32(0L, challenge, RD_CRC_INPUT_SIZE),
                  RD_CHALLENGE_SIZE - RD_CRC_INPUT_SIZE);
        handle(f, frame, len);
        assert_int_equal(f->resp.data[RD_RESP_STATUS], 250);
        assert_int_equal(rd_get_be(f->resp.data + RD_RESP32_ECHO, RD_ECHO_SIZE), echoes[i]);
        assert_memory_equal(f->resp.data + RD_RESP32_CHALLENGE, challenge,
                            RD_CHALLENGE_SIZE);         /* ... sent back */
    }
}

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
    frame[RD_REQ_ENC_TYPE] = 4;
    assert_false(rd_protocol_handle_frame(&f->p, &(rd_request_t){ 0 }, frame, 40, &f->resp));
    assert_int_equal(f->resp.len, 0);
    assert_int_equal(f->p.stats->requests, 0);
}

static void test_handle_frame_length_mismatch(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    expected_header(want, RD_STATUS_INVALID_PACKET_LENGTH, 0, ECHO, 0, false);
    handle(f, frame, len + 1);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);
    handle(f, frame, len - 1);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);
    handle(f, frame, RD_LEGACY_HEADER_SIZE);            /* header alone */
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);
}

static void test_handle_frame_unknown_type(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64], want[RD_LEGACY_HEADER_SIZE];
    size_t len = make_frame(frame, 0, 1, NULL, 0);
    frame[RD_REQ_ENC_TYPE] = 3;
    handle(f, frame, len);
    /* An unknown type is read as the legacy family: its echo bytes come back. */
    expected_header(want, RD_STATUS_INVALID_ENCRYPTION_CODE, 0, ECHO, 0, false);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);
    frame[RD_REQ_ENC_TYPE] = 200;
    handle(f, frame, RD_LEGACY_HEADER_SIZE);
    assert_memory_equal(f->resp.data, want, RD_LEGACY_HEADER_SIZE);
}

static void test_handle_frame_good(void **state)
{
    fixture_t *f = *state;
    uint8_t frame[64];
    size_t len = make_frame(frame, 0, 0, NULL, 0);
    handle(f, frame, len);
    assert_int_equal(f->resp.data[RD_RESP_STATUS], 250);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    /* The same record answers the next request (the header is rewritten). */
    len = make_frame(frame, 0, 1, NULL, 0);
    handle(f, frame, len);
    assert_int_equal(f->resp.len, 42);
    len = make_frame(frame, 0, 0, NULL, 0);
    handle(f, frame, len);
    assert_int_equal(f->resp.len, RD_LEGACY_HEADER_SIZE);
    assert_int_equal(rd_get_be(f->resp.data + RD_RESP_BODY_SIZE, RD_RESP_BODY_SIZE_SIZE), 0);
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
    assert_int_equal(f->resp.data[RD_RESP_STATUS], RD_STATUS_INVALID_COMMAND);
    assert_true(req.start_ns > 0);
    assert_true(req.start_ns <= rd_clock_ns());
}

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
}

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
        T(test_authenticated_only_with_a_key),
        T(test_admin_clear_only_from_allowed),
        T(test_quick_only_plain_status_commands),
        T(test_echo_response_bytes),
        T(test_error_response_bytes),
        T(test_error_response_partial_header),
        T(test_challenge_carried_on_body_error),
        T(test_echo_bytes_carried),
        T(test_handle_frame_short),
        T(test_handle_frame_length_mismatch),
        T(test_handle_frame_unknown_type),
        T(test_handle_frame_good),
        T(test_run_command_unknown_6),
        T(test_stats_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
