/* Fuzz target: one whole UDP datagram through rd_protocol_handle_frame.
 *
 * The datagram lies in a block of exactly its size (the body is decrypted
 * in place, so it is a writable copy). The answer, if any, must be one
 * (fuzz_check_answer: the right family, this server, the request's group,
 * echo bytes and challenge as far as the request had them, no body unless
 * success), and a type-0 frame must succeed only when it is valid byte for
 * byte, checked here independently of rd_protocol.c.
 *
 * Dispatch goes through a generation's module table (rd_module.h), as in
 * a worker: the built-in modules and a module of this target, "mirror"
 * (group 50: command 0 answers the payload), added as a loaded one is. */
#include "config.h"

#include "fuzz_common.h"
#include "rd_commands.h"
#include "rd_module.h"

#define MIRROR_GROUP 50

static int mirror(const raidad_request_t *req, raidad_response_t *resp)
{
    uint8_t *dst = req->services->append(resp, req->payload_len);

    if (dst == NULL)
        return RAIDAD_STATUS_MEMORY_ALLOC;
    if (req->payload_len > 0)
        memcpy(dst, req->payload, req->payload_len);
    return RAIDAD_STATUS_SUCCESS;
}

static const raidad_command_t mirror_commands[] = {
    { 0, "mirror", mirror, RAIDAD_CMD_INLINE },
};
static const raidad_group_t mirror_groups[] = { { MIRROR_GROUP, mirror_commands, 1 } };
static const raidad_module_t mirror_module = {
    .abi = RAIDAD_MODULE_ABI, .name = "mirror", .groups = mirror_groups, .group_count = 1,
};

/* fuzz_protocol() with a generation's module set. */
static const rd_protocol_t *frame_protocol(void)
{
    static rd_protocol_t p;
    static bool ready;

    if (!ready) {
        rd_module_set_t *set = rd_command_set_create();
        char why[256];

        FUZZ_CHECK(set != NULL && rd_module_set_add(set, &mirror_module, NULL, why, sizeof(why)));
        p = *fuzz_protocol();
        p.modules = set;
        ready = true;
    }
    return &p;
}

/* True if FRAME is a type-0 request this server must run. */
static bool plain_frame_valid(const rd_protocol_t *p, const uint8_t *f, size_t len)
{
    if (len < RD_LEGACY_HEADER_SIZE || f[RD_REQ_ENC_TYPE] != RD_ENC_NONE)
        return false;
    if (f[RD_REQ_ROUTING] != RD_ROUTING_RAIDA || f[RD_REQ_SPLIT] != 0
        || f[RD_REQ_RAIDA_ID] != p->raida_id || f[RD_REQ_SHARD] != 0
        || rd_module_set_lookup(p->modules, f[RD_REQ_GROUP], f[RD_REQ_COMMAND]) == NULL
        || rd_get_be(f + RD_REQ_COIN_ID, RD_COIN_ID_SIZE) != p->coin_id)
        return false;
    size_t body_size = rd_get_be(f + RD_REQ32_BODY_SIZE, RD_BODY_SIZE_SIZE);
    if (body_size < RD_MIN_BODY_SIZE || body_size > p->max_body_size
        || len != RD_LEGACY_HEADER_SIZE + body_size)
        return false;
    const uint8_t *b = f + RD_LEGACY_HEADER_SIZE;
    return fuzz_body_status(true, b, body_size) == RD_STATUS_NO_ERROR;
}

static void check_answer(const rd_protocol_t *p, const rd_request_t *req,
                         const uint8_t *frame, size_t len, const rd_response_t *resp)
{
    size_t family = rd_protocol_header_size(frame);
    uint8_t status = fuzz_check_answer(p, req, resp);
    size_t body = resp->len - fuzz_answer_header_size(req);

    /* A whole datagram always holds a whole header. */
    FUZZ_CHECK(req->header_have == family && req->header_size == family);
    FUZZ_CHECK(memcmp(req->header, frame, family) == 0);
    if (frame[RD_REQ_ENC_TYPE] != RD_ENC_NONE)
        return;

    if (status == RD_STATUS_SUCCESS) {
        FUZZ_CHECK(plain_frame_valid(p, frame, len));
        size_t payload = len - RD_LEGACY_HEADER_SIZE - RD_MIN_BODY_SIZE;
        if (frame[RD_REQ_GROUP] == MIRROR_GROUP)
            FUZZ_CHECK(body == (payload > 0 ? payload + RD_TRAILER_SIZE : 0)
                       && memcmp(resp->data + RD_LEGACY_HEADER_SIZE,
                                 frame + RD_LEGACY_HEADER_SIZE + RD_CHALLENGE_SIZE, payload) == 0);
        else if (frame[RD_REQ_COMMAND] == RD_CMD_ECHO)
            FUZZ_CHECK(body == 0);
        else if (frame[RD_REQ_COMMAND] == RD_CMD_VERSION)
            FUZZ_CHECK(body == 8 + RD_TRAILER_SIZE);
    } else if (frame[RD_REQ_GROUP] == RD_GROUP_STATUS && plain_frame_valid(p, frame, len)) {
        /* In the status group only the stats key may fail a valid frame; a
         * command of another group may refuse its payload (fuzz_auth checks
         * the authentication group's answers). */
        FUZZ_CHECK(frame[RD_REQ_COMMAND] == RD_CMD_STATS && status == RD_STATUS_ADMIN_AUTH);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rd_protocol_t *p = frame_protocol();
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
    size_t family = size >= RD_PEEK_SIZE ? rd_protocol_header_size(orig) : 0;
    /* Too short to be answered: shorter than its header. */
    FUZZ_CHECK(answered == (size >= RD_LEGACY_HEADER_SIZE && size >= family));
    if (answered) {
        FUZZ_CHECK(fuzz_requests(p) == before + 1);
        /* The body is used where it lies in the datagram. */
        FUZZ_CHECK(!req.body_complete || (req.body == frame + family
                                          && req.body_size == size - family));
        check_answer(p, &req, orig, size, &resp);
    } else {
        FUZZ_CHECK(resp.len == 0 && fuzz_requests(p) == before);
    }
    if (size >= RD_PEEK_SIZE && orig[RD_REQ_ENC_TYPE] == RD_ENC_NONE)
        FUZZ_CHECK(memcmp(frame, orig, size) == 0);     /* type 0: nothing to decrypt */

    rd_response_release(&resp);
    free(orig);
    free(frame);
    return 0;
}
