/* Fuzz target: the payloads of the authentication commands (src/rd_auth.c).
 *
 * Input: byte 0 picks the command (detect, detect sum, pown, pown sum: byte
 * 0 modulo 4); the rest is the command payload, in a block of exactly that
 * size (AddressSanitizer sees any read past it). The parser's verdict is
 * checked against the lengths worked out here, then the handler runs over
 * a real coin store (fuzz_common.h: coins 1/1 and 1/2, a damaged page for
 * denomination 2) and its answer is checked: the status is one the command
 * may give, and a mixed answer carries exactly ceil(N/8) bytes of bitfield
 * with the unused bits clear. */
#include "config.h"

#include "fuzz_common.h"
#include "rd_auth.h"

static const uint8_t commands[] = { RD_CMD_DETECT, RD_CMD_DETECT_SUM, RD_CMD_POWN,
                                    RD_CMD_POWN_SUM };

/* Bytes per coin and after the coins, from protocol.md. */
static void layout(uint8_t command, size_t *stride, size_t *tail)
{
    *stride = command == RD_CMD_DETECT ? 21 : command == RD_CMD_POWN ? 37 : 5;
    *tail = command == RD_CMD_DETECT_SUM ? 16 : command == RD_CMD_POWN_SUM ? 32 : 0;
}

static int expected_parse(uint8_t command, size_t len)
{
    size_t stride, tail;
    layout(command, &stride, &tail);
    if (len < stride + tail)
        return RD_STATUS_INVALID_PACKET_LENGTH;
    if ((len - tail) % stride != 0)
        return RD_STATUS_NOT_WHOLE_COINS;
    return RD_STATUS_NO_ERROR;
}

static int run(const rd_protocol_t *p, uint8_t command, rd_request_t *req, rd_response_t *resp)
{
    switch (command) {
    case RD_CMD_DETECT: return rd_auth_detect(p, req, resp);
    case RD_CMD_DETECT_SUM: return rd_auth_detect_sum(p, req, resp);
    case RD_CMD_POWN: return rd_auth_pown(p, req, resp);
    default: return rd_auth_pown_sum(p, req, resp);
    }
}

static void check_answer(int status, const rd_auth_payload_t *pl, const rd_response_t *resp)
{
    bool sum = pl->command == RD_CMD_DETECT_SUM || pl->command == RD_CMD_POWN_SUM;
    FUZZ_CHECK(status == RD_STATUS_ALL_PASS || status == RD_STATUS_ALL_FAIL
               || status == RD_STATUS_INTERNAL_ERROR || status == RD_STATUS_MEMORY_ALLOC
               || (sum && status == RD_STATUS_INVALID_COIN) || (!sum && status == RD_STATUS_MIXED));
    if (status != RD_STATUS_MIXED) {
        FUZZ_CHECK(resp->len == 0);
        return;
    }
    FUZZ_CHECK(resp->len == (pl->n + 7) / 8);
    if (pl->n % 8 != 0)
        FUZZ_CHECK((resp->data[resp->len - 1] >> (pl->n % 8)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rd_protocol_t *p = fuzz_protocol();
    if (size < 1)
        return 0;
    uint8_t command = commands[data[0] % sizeof(commands)];
    size_t len = size - 1;
    uint8_t *payload = malloc(len > 0 ? len : 1);
    FUZZ_CHECK(payload != NULL);
    memcpy(payload, data + 1, len);

    rd_auth_payload_t pl;
    int parsed = rd_auth_parse(command, payload, len, &pl);
    int want = expected_parse(command, len);
    if (want != RD_STATUS_NO_ERROR) {
        FUZZ_CHECK(parsed == want);
    } else {
        size_t stride, tail;
        layout(command, &stride, &tail);
        FUZZ_CHECK(parsed == RD_STATUS_NO_ERROR || parsed == RD_STATUS_INVALID_COIN
                   || parsed == RD_STATUS_MEMORY_ALLOC);
        FUZZ_CHECK(pl.n * stride + tail == len && pl.n >= 1);
    }

    rd_request_t req;
    rd_response_t resp;
    memset(&req, 0, sizeof(req));
    rd_response_init(&resp);
    resp.len = resp.header_len = 0;
    req.group = 1;
    req.command = command;
    req.payload = payload;
    req.payload_len = len;
    int status = run(p, command, &req, &resp);
    if (parsed != RD_STATUS_NO_ERROR)
        FUZZ_CHECK(status == parsed);
    else
        check_answer(status, &pl, &resp);
    if (req.commit_lsn != 0)
        FUZZ_CHECK(rd_protocol_commit(p, req.commit_lsn) == 0);
    rd_protocol_checkpoint(p, false);
    rd_response_release(&resp);
    free(payload);
    return 0;
}
