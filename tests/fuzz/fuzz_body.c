/* Fuzz target: a request body behind a valid header.
 *
 * Input: byte 0 picks the command (echo, version or stats, modulo 3), the
 * rest is the body; the header (type 0, RAIDA 7, coin 0x0106) announces its
 * length. The body lies in a block of exactly that size, as the TCP reader
 * allocates it, so that AddressSanitizer sees any read past its end. Then
 * validate_body, and run_command or error_response, as rd_connection.c
 * does. Every answer is decoded with rd_client_parse and checked against
 * what the protocol says it must be. */
#include "config.h"

#include <zlib.h>

#include "fuzz_common.h"
#include "rd_client.h"

static const uint8_t commands[] = { 0, 1, 2 };     /* echo, version, stats */

static void make_header(uint8_t *h, uint8_t command, size_t body_size)
{
    memset(h, 0, RD_LEGACY_HEADER_SIZE);
    h[0] = 1;
    h[2] = FUZZ_RAIDA_ID;
    h[4] = 0;
    h[5] = command;
    h[6] = FUZZ_COIN_ID >> 8;
    h[7] = FUZZ_COIN_ID & 0xFF;
    h[22] = (uint8_t)(body_size >> 8);
    h[23] = (uint8_t)body_size;
    h[30] = FUZZ_ECHO >> 8;
    h[31] = FUZZ_ECHO & 0xFF;
}

/* What validate_body must answer, worked out here independently. */
static int expected_body_status(const uint8_t *b, size_t n)
{
    if (n < RD_MIN_BODY_SIZE)
        return RD_STATUS_INVALID_PACKET_LENGTH;
    if (b[n - 2] != 0x3E || b[n - 1] != 0x3E)
        return RD_STATUS_INVALID_EOF;
    if (crc32(0L, b, 12) != fuzz_be(b + 12, 4))
        return RD_STATUS_INVALID_CRC;
    return RD_STATUS_NO_ERROR;
}

static void check_response(const rd_protocol_t *p, const rd_request_t *req,
                           const rd_response_t *resp, rd_client_response_t *parsed)
{
    FUZZ_CHECK(resp->len >= RD_RESPONSE_HEADER_SIZE);
    FUZZ_CHECK(rd_client_parse(resp->data, resp->len, parsed) == 0);
    FUZZ_CHECK(resp->len == RD_RESPONSE_HEADER_SIZE + parsed->body_size);
    FUZZ_CHECK(parsed->raida_id == p->raida_id && parsed->shard == 0);
    FUZZ_CHECK(parsed->group == 0 && parsed->frames == 1 && parsed->echo == FUZZ_ECHO);
    if (req->body_complete && req->body_size >= RD_CHALLENGE_SIZE)
        FUZZ_CHECK(memcmp(parsed->challenge_hash, req->body, RD_CHALLENGE_SIZE) == 0);
    else
        FUZZ_CHECK(fuzz_all_zero(parsed->challenge_hash, sizeof(parsed->challenge_hash)));
}

static void check_refused(const rd_protocol_t *p, const rd_request_t *req, int status)
{
    rd_response_t resp;
    rd_client_response_t parsed;

    rd_response_init(&resp);
    rd_protocol_error_response(p, req, status, &resp);
    check_response(p, req, &resp, &parsed);
    FUZZ_CHECK(resp.len == RD_RESPONSE_HEADER_SIZE && parsed.status == status);
    rd_response_release(&resp);
}

static void check_run(const rd_protocol_t *p, rd_request_t *req)
{
    rd_response_t resp;
    rd_client_response_t parsed;
    uint64_t before = fuzz_requests(p);
    bool key_ok = req->payload_len == sizeof(p->admin_key)
        && memcmp(req->payload, p->admin_key, sizeof(p->admin_key)) == 0;

    rd_response_init(&resp);
    rd_protocol_run_command(p, req, &resp);
    check_response(p, req, &resp, &parsed);
    FUZZ_CHECK(fuzz_requests(p) == before + 1);
    switch (req->command) {
    case 0:     /* echo: success, no body */
        FUZZ_CHECK(parsed.status == RD_STATUS_SUCCESS && resp.len == RD_RESPONSE_HEADER_SIZE);
        break;
    case 1:     /* version: 8 bytes */
        FUZZ_CHECK(parsed.status == RD_STATUS_SUCCESS && parsed.payload_len == 8);
        break;
    default:    /* stats: uptime, requests, two counted lists; or refused */
        if (key_ok) {
            FUZZ_CHECK(parsed.status == RD_STATUS_SUCCESS);
            FUZZ_CHECK(parsed.payload_len >= 4 + 8 + 2 + 2);
        } else {
            FUZZ_CHECK(parsed.status == RD_STATUS_ADMIN_AUTH && parsed.payload_len == 0);
        }
        break;
    }
    rd_response_release(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rd_protocol_t *p = fuzz_protocol();
    rd_request_t req;

    if (size < 1 || size - 1 > 0xFFFF)
        return -1;  /* a u16 cannot announce it: not an input of this target */
    uint8_t command = commands[data[0] % sizeof(commands)];
    size_t body_size = size - 1;

    memset(&req, 0, sizeof(req));
    make_header(req.header, command, body_size);
    req.header_have = RD_LEGACY_HEADER_SIZE;
    req.header_size = RD_LEGACY_HEADER_SIZE;
    int status = rd_protocol_validate_header(p, &req);
    if (body_size < RD_MIN_BODY_SIZE || body_size > p->max_body_size) {
        FUZZ_CHECK(status == RD_STATUS_INVALID_PACKET_LENGTH);
        check_refused(p, &req, status);
        if (body_size < RD_MIN_BODY_SIZE) {
            /* Never reached through the header, but the body check must
             * refuse a short body on its own too. */
            uint8_t *small = malloc(body_size > 0 ? body_size : 1);
            FUZZ_CHECK(small != NULL);
            memcpy(small, data + 1, body_size);
            req.body = small;
            req.body_size = (uint32_t)body_size;
            req.body_complete = true;
            FUZZ_CHECK(rd_protocol_validate_body(p, &req) == RD_STATUS_INVALID_PACKET_LENGTH);
            free(small);
        }
        return 0;
    }
    FUZZ_CHECK(status == RD_STATUS_NO_ERROR && req.body_size == body_size);

    /* Exactly body_size bytes, never a NULL for an empty body. */
    uint8_t *body = malloc(body_size > 0 ? body_size : 1);
    FUZZ_CHECK(body != NULL);
    memcpy(body, data + 1, body_size);
    req.body = body;
    req.body_complete = true;

    status = rd_protocol_validate_body(p, &req);
    FUZZ_CHECK(status == expected_body_status(data + 1, body_size));
    if (status == RD_STATUS_NO_ERROR) {
        FUZZ_CHECK(req.payload == body + RD_CHALLENGE_SIZE);
        FUZZ_CHECK(req.payload_len == body_size - RD_MIN_BODY_SIZE);
        check_run(p, &req);
    } else {
        check_refused(p, &req, status);
    }
    /* Type 0 is never changed in place. */
    FUZZ_CHECK(memcmp(body, data + 1, body_size) == 0);
    free(body);
    return 0;
}
