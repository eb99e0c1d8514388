/* Fuzz target: a request header as the TCP reader collects it.
 *
 * The input is what was received before the header was complete or the
 * connection gave up: its first 48 bytes at most. As in rd_tcp.c,
 * byte 16 (known from 17 bytes on) gives the header size;
 * rd_protocol_validate_header runs on a complete header, and a refused or
 * incomplete one is answered with rd_protocol_error_response, whose answer
 * must be a bodiless error in the right family, with the request's group
 * and (whole legacy header only) echo bytes. */
#include "config.h"

#include "fuzz_common.h"
#include "rd_commands.h"

static void check_accepted(const rd_protocol_t *p, const rd_request_t *req)
{
    const uint8_t *h = req->header;

    FUZZ_CHECK(req->header_have >= RD_LEGACY_HEADER_SIZE && req->header_have >= req->header_size);
    FUZZ_CHECK(req->header_valid);
    FUZZ_CHECK(req->group == h[RD_REQ_GROUP] && req->command == h[RD_REQ_COMMAND]
               && req->enc_type == h[RD_REQ_ENC_TYPE]);
    FUZZ_CHECK(rd_command_lookup(req->group, req->command) != NULL);
    FUZZ_CHECK(h[RD_REQ_ROUTING] == RD_ROUTING_RAIDA && h[RD_REQ_SPLIT] == 0
               && h[RD_REQ_RAIDA_ID] == p->raida_id && h[RD_REQ_SHARD] == 0);
    FUZZ_CHECK(rd_get_be(h + RD_REQ_COIN_ID, RD_COIN_ID_SIZE) == p->coin_id);
    FUZZ_CHECK(req->body_size >= RD_MIN_BODY_SIZE && req->body_size <= p->max_body_size);
    /* The body size is a u16: bytes 22-23, or 17-18 in the 48-byte family. */
    if (req->header_size == RD_LEGACY_HEADER_SIZE) {
        FUZZ_CHECK(req->body_size == rd_get_be(h + RD_REQ32_BODY_SIZE, RD_BODY_SIZE_SIZE));
    } else {
        FUZZ_CHECK(req->body_size == rd_get_be(h + RD_REQ48_BODY_SIZE, RD_BODY_SIZE_SIZE));
        FUZZ_CHECK(req->body_size >= RD_MODERN_MIN_BODY_SIZE);     /* room for the HMAC */
    }
}

static void check_refused(const rd_protocol_t *p, const rd_request_t *req, int status)
{
    rd_response_t resp;
    uint64_t before = fuzz_requests(p);

    FUZZ_CHECK(status > 0 && status <= 255 && status != RD_STATUS_SUCCESS);
    if (status == RD_STATUS_INVALID_GROUP || status == RD_STATUS_INVALID_COMMAND)
        FUZZ_CHECK(!req->header_valid);

    rd_response_init(&resp);
    rd_protocol_error_response(p, req, status, &resp);
    FUZZ_CHECK(fuzz_check_answer(p, req, &resp) == status);
    FUZZ_CHECK(resp.len == fuzz_answer_header_size(req));    /* no body */
    if (resp.len == RD_RESPONSE_HEADER_SIZE)
        FUZZ_CHECK(rd_get_be(resp.data + RD_RESP32_EXEC_US, RD_EXEC_US_SIZE) == 0);   /* none ran */
    /* Counted once, when the network layer sends it, not when built. */
    FUZZ_CHECK(fuzz_requests(p) == before);
    rd_protocol_count(p, req, &resp);
    FUZZ_CHECK(fuzz_requests(p) == before + 1);
    rd_response_release(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rd_protocol_t *p = fuzz_protocol();
    rd_request_t req;
    int status;

    memset(&req, 0, sizeof(req));
    req.header_have = (uint16_t)(size < RD_MAX_HEADER_SIZE ? size : RD_MAX_HEADER_SIZE);
    memcpy(req.header, data, req.header_have);
    if (req.header_have >= RD_PEEK_SIZE) {
        req.header_size = (uint16_t)rd_protocol_header_size(req.header);
        FUZZ_CHECK(req.header_size == 0 || req.header_size == RD_LEGACY_HEADER_SIZE
                   || req.header_size == RD_MODERN_HEADER_SIZE);
    }

    if (req.header_have >= RD_PEEK_SIZE && req.header_size == 0)
        status = RD_STATUS_INVALID_ENCRYPTION_CODE;     /* unknown family */
    else if (req.header_size == 0 || req.header_have < req.header_size)
        status = RD_STATUS_INVALID_PACKET_LENGTH;       /* the client stopped short */
    else
        status = rd_protocol_validate_header(p, &req);

    if (status == RD_STATUS_NO_ERROR)
        check_accepted(p, &req);
    else
        check_refused(p, &req, status);
    return 0;
}
