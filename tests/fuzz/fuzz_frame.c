/* Fuzz target: one whole UDP datagram through rd_protocol_handle_frame.
 *
 * The datagram lies in a block of exactly its size (the body is decrypted
 * in place, so it is a writable copy). The answer, if any, must decode with
 * rd_client_parse, come from this server, carry the request's group, echo
 * bytes and challenge as far as the request had them, and succeed only for
 * a frame that is valid byte for byte. */
#include "config.h"

#include <zlib.h>

#include "fuzz_common.h"
#include "rd_client.h"
#include "rd_commands.h"

/* True if FRAME is a type-0 request this server must run, checked here
 * independently of rd_protocol.c. */
static bool frame_valid(const rd_protocol_t *p, const uint8_t *f, size_t len)
{
    if (len < RD_LEGACY_HEADER_SIZE || f[16] != 0)
        return false;
    if (f[0] != 1 || f[1] != 0 || f[2] != p->raida_id || f[3] != 0
        || rd_command_lookup(f[4], f[5]) == NULL || fuzz_be(f + 6, 2) != p->coin_id)
        return false;
    size_t body_size = fuzz_be(f + 22, 2);
    if (body_size < RD_MIN_BODY_SIZE || body_size > p->max_body_size
        || len != RD_LEGACY_HEADER_SIZE + body_size)
        return false;
    const uint8_t *b = f + RD_LEGACY_HEADER_SIZE;
    return b[body_size - 2] == 0x3E && b[body_size - 1] == 0x3E
        && crc32(0L, b, 12) == fuzz_be(b + 12, 4);
}

static void check_answer(const rd_protocol_t *p, const rd_request_t *req,
                         const uint8_t *frame, size_t len, const rd_response_t *resp)
{
    rd_client_response_t parsed;
    size_t family = rd_protocol_header_size(frame);

    FUZZ_CHECK(resp->len >= RD_RESPONSE_HEADER_SIZE && resp->len <= resp->cap);
    FUZZ_CHECK(resp->data[2] != RD_STATUS_NO_ERROR);
    if (family == RD_MODERN_HEADER_SIZE)
        return;     /* answered in the 48-byte family: not rd_client's format */

    FUZZ_CHECK(rd_client_parse(resp->data, resp->len, &parsed) == 0);
    FUZZ_CHECK(resp->len == RD_RESPONSE_HEADER_SIZE + parsed.body_size);
    FUZZ_CHECK(parsed.raida_id == p->raida_id && parsed.shard == 0 && parsed.frames == 1);
    FUZZ_CHECK(parsed.group == frame[4]);
    /* The echo bytes need a whole header of the legacy family. */
    if (family == RD_LEGACY_HEADER_SIZE)
        FUZZ_CHECK(parsed.echo == fuzz_be(frame + 30, 2));
    else
        FUZZ_CHECK(parsed.echo == 0);

    if (parsed.status == RD_STATUS_SUCCESS) {
        FUZZ_CHECK(frame_valid(p, frame, len));
        if (frame[5] == 0)
            FUZZ_CHECK(resp->len == RD_RESPONSE_HEADER_SIZE);
        else if (frame[5] == 1)
            FUZZ_CHECK(parsed.payload_len == 8);
    } else {
        FUZZ_CHECK(parsed.payload_len == 0 && resp->len == RD_RESPONSE_HEADER_SIZE);
        if (frame_valid(p, frame, len))     /* only the stats key may fail it */
            FUZZ_CHECK(frame[5] == 2 && parsed.status == RD_STATUS_ADMIN_AUTH);
    }

    if (frame[16] == 0 && req->body_complete) {
        FUZZ_CHECK(req->body == NULL || (req->body >= frame && req->body <= frame + len));
        FUZZ_CHECK(memcmp(parsed.challenge_hash, frame + RD_LEGACY_HEADER_SIZE,
                          RD_CHALLENGE_SIZE) == 0);
    } else if (frame[16] == 0 || family == 0) {
        FUZZ_CHECK(fuzz_all_zero(parsed.challenge_hash, sizeof(parsed.challenge_hash)));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rd_protocol_t *p = fuzz_protocol();
    rd_request_t req;
    rd_response_t resp;
    uint8_t *frame = malloc(size > 0 ? size : 1);
    uint8_t *orig = malloc(size > 0 ? size : 1);

    FUZZ_CHECK(frame != NULL && orig != NULL);
    memcpy(frame, data, size);
    memcpy(orig, data, size);
    memset(&req, 0xA5, sizeof(req));    /* handle_frame must set it up itself */
    rd_response_init(&resp);

    uint64_t before = fuzz_requests(p);
    bool answered = rd_protocol_handle_frame(p, &req, frame, size, &resp);
    if (size < RD_LEGACY_HEADER_SIZE)
        FUZZ_CHECK(!answered);
    if (size >= RD_MAX_HEADER_SIZE)
        FUZZ_CHECK(answered);
    if (answered) {
        FUZZ_CHECK(fuzz_requests(p) == before + 1);
        check_answer(p, &req, orig, size, &resp);
    } else {
        FUZZ_CHECK(resp.len == 0 && fuzz_requests(p) == before);
    }
    if (size >= RD_LEGACY_HEADER_SIZE && orig[16] == 0)
        FUZZ_CHECK(memcmp(frame, orig, size) == 0);     /* type 0: nothing to decrypt */

    rd_response_release(&resp);
    free(orig);
    free(frame);
    return 0;
}
