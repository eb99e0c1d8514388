/* Fuzz target: a request body behind a valid header.
 *
 * Input: byte 0 picks the command (echo, version, stats: byte 0 modulo 3)
 * and the encryption type (0, 1, 4, 5: byte 0 / 3 modulo 4), and the
 * client (192.0.2.1 when byte 0 / 12 modulo 4 is 3, else 127.0.0.1: the
 * admin key counts in clear from loopback only); the rest is the body.
 * The header (RAIDA 7, coin 0x0106, the key store's coin 1, and
 * coin 2 for type 5, a fixed nonce) announces the body's length. The body
 * lies in a block of exactly that size, as the TCP reader allocates it, so
 * that AddressSanitizer sees any access past its end. Then validate_body,
 * and run_command or error_response, as rd_tcp.c does; every answer
 * is checked (fuzz_check_answer), type 0's against what the protocol says,
 * worked out here independently. */
#include "config.h"

#include "fuzz_common.h"
#include "rd_bytes.h"

static const uint8_t enc_types[] = { 0, 1, 4, 5 };

static bool modern(uint8_t enc)
{
    return enc == 4 || enc == 5;
}

static uint32_t min_body(uint8_t enc)
{
    return modern(enc) ? RD_MODERN_MIN_BODY_SIZE : RD_MIN_BODY_SIZE;
}

/* Coin SN of denomination FUZZ_DEN, as the headers carry a coin. */
static void put_coin(uint8_t *at, uint32_t sn)
{
    at[0] = FUZZ_DEN;
    rd_put_be(at + RD_COIN_REF_SN, sn, RD_COIN_REF_SIZE - RD_COIN_REF_SN);
}

/* Both families; the nonce is bytes 24-31 (type 1) or 24-47 (types 4, 5;
 * type 5's second coin is its first five bytes), as gen_corpus.py writes. */
static void make_header(rd_request_t *req, uint8_t enc, uint8_t command, size_t body_size)
{
    uint8_t *h = req->header;
    size_t hs = modern(enc) ? RD_MODERN_HEADER_SIZE : RD_LEGACY_HEADER_SIZE;
    size_t nonce = modern(enc) ? RD_REQ48_NONCE : RD_REQ32_NONCE;

    memset(h, 0, RD_MAX_HEADER_SIZE);
    h[RD_REQ_ROUTING] = RD_ROUTING_RAIDA;
    h[RD_REQ_RAIDA_ID] = FUZZ_RAIDA_ID;
    h[RD_REQ_COMMAND] = command;
    rd_put_be(h + RD_REQ_COIN_ID, FUZZ_COIN_ID, RD_COIN_ID_SIZE);
    h[RD_REQ_ENC_TYPE] = enc;
    /* Type 0 gets the filler too (it ignores it); the echo goes over its end below. */
    for (size_t i = nonce; i < hs; i++)
        h[i] = (uint8_t)(0x40 + i);
    if (modern(enc)) {
        rd_put_be(h + RD_REQ48_BODY_SIZE, body_size, RD_BODY_SIZE_SIZE);
        put_coin(h + RD_REQ48_COIN, FUZZ_SN1);
        if (enc == RD_ENC_AES256_TWO)
            put_coin(h + RD_REQ48_COIN2, FUZZ_SN2);
    } else {
        if (enc == RD_ENC_AES128)
            put_coin(h + RD_REQ32_COIN, FUZZ_SN1);
        rd_put_be(h + RD_REQ32_BODY_SIZE, body_size, RD_BODY_SIZE_SIZE);
        rd_put_be(h + RD_REQ32_ECHO, FUZZ_ECHO, RD_ECHO_SIZE);
    }
    req->header_have = (uint16_t)hs;
    req->header_size = (uint16_t)hs;
}

/* What validate_body must answer: all of it for type 0; the length and
 * the trailer for the others (their CRC or HMAC needs the key). */
static int expected_body_status(uint8_t enc, const uint8_t *b, size_t n)
{
    if (n < min_body(enc))
        return RD_STATUS_INVALID_PACKET_LENGTH;
    return fuzz_body_status(enc == RD_ENC_NONE, b, n);
}

static void check_refused(const rd_protocol_t *p, const rd_request_t *req, int status)
{
    rd_response_t resp;

    rd_response_init(&resp);
    rd_protocol_error_response(p, req, status, &resp);
    FUZZ_CHECK(fuzz_check_answer(p, req, &resp) == status);
    FUZZ_CHECK(resp.len == fuzz_answer_header_size(req));
    rd_response_release(&resp);
}

static void check_run(const rd_protocol_t *p, rd_request_t *req)
{
    rd_response_t resp;
    uint64_t before = fuzz_requests(p);
    uint8_t enc = req->enc_type;
    bool key_ok = false;

    /* In clear the key counts only from admin_allow (127.0.0.1 is, 192.0.2.1 not). */
    if (enc == 0)
        key_ok = req->payload_len == sizeof(p->admin_key)
            && memcmp(req->payload, p->admin_key, sizeof(p->admin_key)) == 0
            && req->client[12] == 127;

    rd_response_init(&resp);
    rd_protocol_run_command(p, req, &resp);
    uint8_t status = fuzz_check_answer(p, req, &resp);
    size_t body = resp.len - fuzz_answer_header_size(req);
    /* Counted once, when the network layer sends it, not when built. */
    FUZZ_CHECK(fuzz_requests(p) == before);
    rd_protocol_count(p, req, &resp);
    FUZZ_CHECK(fuzz_requests(p) == before + 1);
    FUZZ_CHECK(fuzz_all_zero(req->key, sizeof(req->key)));     /* wiped */

    if (enc != 0) {
        /* The body was opened with the key, or refused for it. */
        FUZZ_CHECK(status == RD_STATUS_SUCCESS || status == RD_STATUS_ADMIN_AUTH
                   || status == (modern(enc) ? RD_STATUS_INVALID_HMAC : RD_STATUS_INVALID_CRC));
        if (status == RD_STATUS_SUCCESS && req->command == 0)
            FUZZ_CHECK(body == 0);
        if (status == RD_STATUS_SUCCESS && req->command == 1)
            FUZZ_CHECK(body == 8 + RD_TRAILER_SIZE + (modern(enc) ? RD_HMAC_SIZE : 0));
    } else if (req->command == 0) {         /* echo: success, no body */
        FUZZ_CHECK(status == RD_STATUS_SUCCESS && body == 0);
    } else if (req->command == 1) {         /* version: 8 bytes */
        FUZZ_CHECK(status == RD_STATUS_SUCCESS && body == 8 + RD_TRAILER_SIZE);
    } else if (key_ok) {                    /* stats: uptime, requests, two lists */
        FUZZ_CHECK(status == RD_STATUS_SUCCESS && body >= 4 + 8 + 2 + 2 + RD_TRAILER_SIZE);
    } else {
        FUZZ_CHECK(status == RD_STATUS_ADMIN_AUTH && body == 0);
    }
    rd_response_release(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rd_protocol_t *p = fuzz_protocol();
    rd_request_t req;

    if (size < 1 || size - 1 > 0xFFFF)
        return -1;  /* a u16 cannot announce it: not an input of this target */
    uint8_t command = (uint8_t)(data[0] % 3);
    uint8_t enc = enc_types[(data[0] / 3) % sizeof(enc_types)];
    static const uint8_t from_loopback[RD_ADDR_SIZE] = { [10] = 0xff, [11] = 0xff, 127, 0, 0, 1 };
    static const uint8_t from_elsewhere[RD_ADDR_SIZE] = { [10] = 0xff, [11] = 0xff, 192, 0, 2, 1 };
    const uint8_t *in = data + 1;
    size_t body_size = size - 1;

    memset(&req, 0, sizeof(req));
    /* As the TCP layer leaves it: the client's address. */
    memcpy(req.client, (data[0] / 12) % 4 != 3 ? from_loopback : from_elsewhere, RD_ADDR_SIZE);
    make_header(&req, enc, command, body_size);
    int status = rd_protocol_validate_header(p, &req);
    if (body_size < min_body(enc) || body_size > p->max_body_size) {
        FUZZ_CHECK(status == RD_STATUS_INVALID_PACKET_LENGTH);
        check_refused(p, &req, status);
        if (body_size < min_body(enc)) {
            /* Never reached through the header, but the body check must
             * refuse a short body on its own too. */
            uint8_t *small = malloc(body_size > 0 ? body_size : 1);
            FUZZ_CHECK(small != NULL);
            memcpy(small, in, body_size);
            req.body = small;
            req.body_size = (uint32_t)body_size;
            req.body_complete = true;
            FUZZ_CHECK(rd_protocol_validate_body(p, &req) == RD_STATUS_INVALID_PACKET_LENGTH);
            free(small);
        }
        return 0;
    }
    FUZZ_CHECK(status == RD_STATUS_NO_ERROR && req.body_size == body_size);
    FUZZ_CHECK(req.header_valid && req.enc_type == enc);

    uint8_t *body = malloc(body_size);
    FUZZ_CHECK(body != NULL);
    memcpy(body, in, body_size);
    req.body = body;
    req.body_complete = true;

    status = rd_protocol_validate_body(p, &req);
    FUZZ_CHECK(status == expected_body_status(enc, in, body_size));
    if (status == RD_STATUS_NO_ERROR) {
        if (enc == 0) {
            FUZZ_CHECK(req.payload == body + RD_CHALLENGE_SIZE);
            FUZZ_CHECK(req.payload_len == body_size - RD_MIN_BODY_SIZE);
        }
        check_run(p, &req);
    } else {
        check_refused(p, &req, status);
    }
    if (enc == 0)   /* nothing to decrypt: the body is left as it came */
        FUZZ_CHECK(memcmp(body, in, body_size) == 0);
    free(body);
    return 0;
}
