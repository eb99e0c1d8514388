/* The RAIDA frame, server side (include/rd_protocol.h): checks a request's
 * header and body, hands a valid one to its command (rd_commands.h) after
 * the encryption layer opened it (rd_crypt.h), and writes the
 * answer's header. The bytes themselves are named in include/rd_frame.h
 * and described in docs/protocol.md. */
#include "config.h"

#include <string.h>
#include <time.h>

#include "rd_bytes.h"
#include "rd_cidr.h"
#include "rd_clock.h"
#include "rd_coins.h"
#include "rd_commands.h"
#include "rd_crypt.h"
#include "rd_crypto.h"
#include "rd_protocol.h"
#include "rd_stats.h"

/* rd_frame.h stays a leaf, so it spells the client address's size itself. */
_Static_assert(RD_FRAME_ADDR_SIZE == RD_ADDR_SIZE, "rd_request_t.client is an rd_cidr.h address");

/* ---- response header ----------------------------------------------------- */

/* An answer is in the request's family once its whole header was read;
 * before, the layout of what came is not known to be the 48-byte one. */
static size_t response_header_size(const rd_request_t *req)
{
    if (req != NULL && req->header_size == RD_MODERN_HEADER_SIZE
        && req->header_have >= RD_MODERN_HEADER_SIZE)
        return RD_MODERN_HEADER_SIZE;
    return RD_LEGACY_HEADER_SIZE;
}

static uint8_t request_group(const rd_request_t *req)
{
    return req != NULL && req->header_have > RD_REQ_GROUP ? req->header[RD_REQ_GROUP] : 0;
}

static void copy_echo(const rd_request_t *req, uint8_t *h)
{
    if (req != NULL && req->header_have >= RD_LEGACY_HEADER_SIZE
        && req->header_size == RD_LEGACY_HEADER_SIZE)
        memcpy(h + RD_RESP32_ECHO, req->header + RD_REQ32_ECHO, RD_ECHO_SIZE);
}

/* For type 0 the challenge hash is the challenge itself: it proves to the
 * client that this answer belongs to its request. Type 1's is only known
 * once the body was decrypted and its CRC matched. */
static void copy_challenge(const rd_request_t *req, uint8_t *h)
{
    if (req == NULL)
        return;
    if (req->body_complete && req->body != NULL
        && req->body_size >= RD_CHALLENGE_SIZE && req->enc_type == RD_ENC_NONE)
        memcpy(h + RD_RESP32_CHALLENGE, req->body, RD_CHALLENGE_SIZE);
    else if (req->challenge_set)
        memcpy(h + RD_RESP32_CHALLENGE, req->challenge_hash, RD_CHALLENGE_SIZE);
}

static void write_legacy_header(const rd_protocol_t *p, const rd_request_t *req, uint8_t status,
                                uint32_t body_size, uint32_t exec_us, uint8_t *h)
{
    memset(h, 0, RD_LEGACY_HEADER_SIZE);
    h[RD_RESP_RAIDA_ID] = p->raida_id;
    h[RD_RESP_STATUS] = status;
    h[RD_RESP_GROUP] = request_group(req);
    rd_put_be(h + RD_RESP32_FRAMES, 1, RD_RESP32_FRAMES_SIZE);     /* one frame */
    copy_echo(req, h);
    rd_put_be(h + RD_RESP_BODY_SIZE, body_size, RD_RESP_BODY_SIZE_SIZE);
    rd_put_be(h + RD_RESP32_EXEC_US, exec_us, RD_EXEC_US_SIZE);
    copy_challenge(req, h);
}

/* The answer's nonce (RD_RESP48_NONCE on) was written when it was sealed. */
static void write_modern_header(const rd_protocol_t *p, const rd_request_t *req, uint8_t status,
                                uint32_t body_size, uint32_t exec_us, uint8_t *h)
{
    memset(h, 0, RD_RESP48_NONCE);
    h[RD_RESP_RAIDA_ID] = p->raida_id;
    h[RD_RESP_STATUS] = status;
    h[RD_RESP_GROUP] = request_group(req);
    rd_put_be(h + RD_RESP48_EXEC_US, exec_us, RD_EXEC_US_SIZE);
    rd_put_be(h + RD_RESP_BODY_SIZE, body_size, RD_RESP_BODY_SIZE_SIZE);
    h[RD_RESP48_ENC_TYPE] = req->header[RD_REQ_ENC_TYPE];
    memcpy(h + RD_RESP48_COIN, req->header + RD_REQ48_COIN, RD_COIN_REF_SIZE);
}

/* The one place every response goes through: encrypts it like the
 * request, adds the trailer, writes the header and counts the answer. */
static void finish_response(const rd_protocol_t *p, const rd_request_t *req, int status,
                            uint32_t exec_us, rd_response_t *resp)
{
    status = rd_crypt_seal(req, resp, status);
    size_t payload_len = resp->len - resp->header_len;
    if (payload_len > RD_MAX_RESPONSE_BODY - RD_TRAILER_SIZE) {
        status = RD_STATUS_INTERNAL_ERROR;  /* cannot be described by a u24 */
        payload_len = 0;
        resp->len = resp->header_len;
    }
    uint32_t body_size = 0;
    if (payload_len > 0) {
        resp->data[resp->len++] = RD_TRAILER_BYTE;
        resp->data[resp->len++] = RD_TRAILER_BYTE;
        body_size = (uint32_t)(payload_len + RD_TRAILER_SIZE);
    }
    if (resp->header_len == RD_MODERN_HEADER_SIZE)
        write_modern_header(p, req, (uint8_t)status, body_size, exec_us, resp->data);
    else
        write_legacy_header(p, req, (uint8_t)status, body_size, exec_us, resp->data);
}

void rd_protocol_count(const rd_protocol_t *p, const rd_request_t *req,
                       const rd_response_t *resp)
{
    if (p->stats != NULL)
        rd_stats_count(p->stats, req->header_valid, req->group, req->command,
                       resp->data[RD_RESP_STATUS]);
}

static uint32_t elapsed_us(uint64_t start_ns)
{
    uint64_t us = (rd_clock_ns() - start_ns) / 1000u;
    return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* ---- header -------------------------------------------------------------- */

/* An unknown type is read as the legacy family, the default: the whole
 * header then arrives, and the answer (27) carries the request's echo bytes. */
size_t rd_protocol_header_size(const uint8_t *peek)
{
    switch (peek[RD_REQ_ENC_TYPE]) {
    case RD_ENC_AES256: case RD_ENC_AES256_TWO:
        return RD_MODERN_HEADER_SIZE;
    default:
        return RD_LEGACY_HEADER_SIZE;
    }
}

/* Shard 0 is the only one there is for now. */
static bool shard_known(uint8_t shard)
{
    return shard == 0;
}

static int check_route(const rd_protocol_t *p, const uint8_t *h)
{
    if (h[RD_REQ_ROUTING] != RD_ROUTING_RAIDA)
        return RD_STATUS_INVALID_ROUTING;
    if (h[RD_REQ_SPLIT] != 0)
        return RD_STATUS_INVALID_SPLIT;
    if (h[RD_REQ_RAIDA_ID] != p->raida_id)
        return RD_STATUS_INVALID_RAIDA_ID;
    if (!shard_known(h[RD_REQ_SHARD]))
        return RD_STATUS_INVALID_SHARD;
    return RD_STATUS_NO_ERROR;
}

static const rd_module_set_t *modules(const rd_protocol_t *p)
{
    return p->modules != NULL ? p->modules : rd_module_set_default();
}

/* O(1): the generation's table by group, then by command. */
static int check_handler(const rd_protocol_t *p, rd_request_t *req)
{
    const rd_module_set_t *set = modules(p);

    if (!rd_module_set_group_known(set, req->group))
        return RD_STATUS_INVALID_GROUP;
    req->cmd = rd_module_set_lookup(set, req->group, req->command);
    if (req->cmd == NULL)
        return RD_STATUS_INVALID_COMMAND;
    req->header_valid = true;
    return RD_STATUS_NO_ERROR;
}

static int check_body_size(const rd_protocol_t *p, const rd_request_t *req)
{
    const rd_command_t *cmd = req->cmd;
    if (req->body_size == 0 && cmd != NULL && cmd->payload)
        return RD_STATUS_EMPTY_REQUEST;
    if (req->body_size > p->max_body_size || req->body_size < rd_crypt_min_body(req->enc_type))
        return RD_STATUS_INVALID_PACKET_LENGTH;
    return RD_STATUS_NO_ERROR;
}

int rd_protocol_validate_header(const rd_protocol_t *p, rd_request_t *req)
{
    const uint8_t *h = req->header;
    req->header_valid = false;
    req->cmd = NULL;
    if (req->header_have < RD_LEGACY_HEADER_SIZE)
        return RD_STATUS_INVALID_PACKET_LENGTH;
    req->group = h[RD_REQ_GROUP];
    req->command = h[RD_REQ_COMMAND];
    req->enc_type = h[RD_REQ_ENC_TYPE];

    int status = check_route(p, h);
    if (status == RD_STATUS_NO_ERROR)
        status = check_handler(p, req);
    if (status != RD_STATUS_NO_ERROR)
        return status;
    if ((uint32_t)rd_get_be(h + RD_REQ_COIN_ID, RD_COIN_ID_SIZE) != p->coin_id)
        return RD_STATUS_INVALID_COIN_ID;
    status = rd_crypt_parse_header(req);
    if (status != RD_STATUS_NO_ERROR)
        return status;
    return check_body_size(p, req);
}

/* ---- body ---------------------------------------------------------------- */

int rd_protocol_validate_body(const rd_protocol_t *p, rd_request_t *req)
{
    (void)p;
    const uint8_t *b = req->body;
    size_t size = req->body_size;
    uint32_t min_size = rd_crypt_min_body(req->enc_type);
    if (min_size == 0)
        return RD_STATUS_INVALID_ENCRYPTION_CODE;
    if (b == NULL || size < min_size)
        return RD_STATUS_INVALID_PACKET_LENGTH;
    if (b[size - 2] != RD_TRAILER_BYTE || b[size - 1] != RD_TRAILER_BYTE)
        return RD_STATUS_INVALID_EOF;
    if (req->enc_type != RD_ENC_NONE)
        return RD_STATUS_NO_ERROR;      /* the rest needs the key: rd_crypt_open */
    if (!rd_crypt_challenge_ok(b))
        return RD_STATUS_INVALID_CRC;
    req->payload = b + RD_CHALLENGE_SIZE;
    req->payload_len = size - RD_MIN_BODY_SIZE;
    return RD_STATUS_NO_ERROR;
}

/* ---- running ------------------------------------------------------------- */

/* The admin key in clear can be read by anyone on the path: accepted only
 * over TCP from the admin_allow addresses (loopback by default), where no
 * one else sees it and no spoofed source can be answered; everywhere else
 * it must come encrypted. Refused like a wrong key (38), before the key is
 * even compared, so that the answer tells nothing about it. */
static bool admin_channel_ok(const rd_protocol_t *p, const rd_request_t *req)
{
    if (req->enc_type != RD_ENC_NONE)
        return true;
    return !req->datagram && rd_cidr_match(p->admin_allow, p->admin_allow_count, req->client);
}

static int dispatch(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    const rd_command_t *cmd = req->header_valid ? req->cmd : NULL;
    if (cmd == NULL)
        return RD_STATUS_INVALID_COMMAND;
    if (cmd->admin && !admin_channel_ok(p, req))
        return RD_STATUS_ADMIN_AUTH;
    int status = rd_command_run(cmd, p, req, resp);
    if (status == RD_STATUS_MEMORY_ALLOC)
        resp->len = resp->header_len;   /* a partial payload means nothing */
    if (cmd->admin && status == RD_STATUS_SUCCESS)
        req->authenticated = true;
    return status;
}

void rd_protocol_run_command(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    req->start_ns = rd_clock_ns();
    req->commit_lsn = 0;
    rd_response_start(resp, response_header_size(req));
    int status = rd_crypt_open(p, req);
    if (status == RD_STATUS_NO_ERROR) {
        req->authenticated = req->enc_type != RD_ENC_NONE;
        status = dispatch(p, req, resp);
    }
    finish_response(p, req, status, elapsed_us(req->start_ns), resp);
    rd_crypto_wipe(req->key, sizeof(req->key));
}

void rd_protocol_error_response(const rd_protocol_t *p, const rd_request_t *req,
                                int status, rd_response_t *resp)
{
    rd_response_start(resp, response_header_size(req));
    finish_response(p, req, status, 0, resp);
}

/* A datagram's header is copied (the request keeps its own), its body is
 * used where it lies. */
static int frame_request(const rd_protocol_t *p, uint8_t *frame, size_t len,
                         size_t header_size, rd_request_t *req)
{
    memcpy(req->header, frame, header_size);
    req->header_have = (uint16_t)header_size;
    req->header_size = (uint16_t)header_size;
    int status = rd_protocol_validate_header(p, req);
    if (status != RD_STATUS_NO_ERROR)
        return status;
    if (len - header_size != req->body_size)
        return RD_STATUS_INVALID_PACKET_LENGTH;
    req->body = frame + header_size;
    req->body_complete = true;
    return rd_protocol_validate_body(p, req);
}

int rd_protocol_read_frame(const rd_protocol_t *p, rd_request_t *req, uint8_t *frame,
                           size_t len)
{
    if (len < RD_LEGACY_HEADER_SIZE)
        return -1;
    memset(req, 0, sizeof(*req));
    req->datagram = true;
    size_t header_size = rd_protocol_header_size(frame);
    if (len < header_size)
        return -1;
    return frame_request(p, frame, len, header_size, req);
}

bool rd_protocol_handle_frame(const rd_protocol_t *p, rd_request_t *req, uint8_t *frame,
                              size_t len, rd_response_t *resp)
{
    int status = rd_protocol_read_frame(p, req, frame, len);
    if (status < 0)
        return false;
    if (status != RD_STATUS_NO_ERROR)
        rd_protocol_error_response(p, req, status, resp);
    else
        rd_protocol_run_command(p, req, resp);
    rd_protocol_count(p, req, resp);
    return true;
}

bool rd_protocol_is_quick(const rd_request_t *req)
{
    return req->enc_type == RD_ENC_NONE && req->header_valid && req->cmd != NULL && req->cmd->quick;
}

const char *rd_protocol_request_name(const rd_request_t *req)
{
    return req->header_valid && req->cmd != NULL ? req->cmd->name : "unknown";
}

bool rd_protocol_durable(const rd_protocol_t *p, const rd_request_t *req)
{
    return req->commit_lsn == 0 || p->coins == NULL || rd_coins_synced(p->coins, req->commit_lsn);
}

int rd_protocol_commit(const rd_protocol_t *p, uint64_t lsn)
{
    return p->coins == NULL ? 0 : rd_coins_sync(p->coins, lsn);
}

void rd_protocol_checkpoint(const rd_protocol_t *p, bool force)
{
    if (p->coins != NULL)
        rd_coins_checkpoint(p->coins, force);
}

const char *rd_protocol_command_name(uint8_t group, uint8_t command)
{
    /* The default set: raida-cli names what it sent by it. */
    const rd_command_t *cmd = rd_command_lookup(group, command);
    return cmd != NULL ? cmd->name : "unknown";
}
