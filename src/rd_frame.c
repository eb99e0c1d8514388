/* The response buffer every answer is built in (include/rd_frame.h), and
 * the one table of status names. A response starts in a small inline
 * buffer and moves to the heap only when its payload outgrows it; room
 * for the trailer is always kept, so that finishing an answer never has
 * to allocate. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "rd_frame.h"

/* ---- response buffer ----------------------------------------------------- */

void rd_response_init(rd_response_t *resp)
{
    resp->data = resp->inline_buf;
    resp->len = 0;
    resp->cap = sizeof(resp->inline_buf);
    resp->header_len = RD_RESPONSE_HEADER_SIZE;
}

void rd_response_release(rd_response_t *resp)
{
    if (resp->data != NULL && resp->data != resp->inline_buf)
        free(resp->data);
    rd_response_init(resp);
}

static bool response_grow(rd_response_t *resp, size_t need)
{
    size_t cap = resp->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;

    uint8_t *block;
    if (resp->data == resp->inline_buf) {
        block = malloc(cap);
        if (block == NULL)
            return false;
        memcpy(block, resp->inline_buf, resp->len);
    } else {
        block = realloc(resp->data, cap);
        if (block == NULL)
            return false;
    }
    resp->data = block;
    resp->cap = cap;
    return true;
}

uint8_t *rd_response_append(rd_response_t *resp, size_t n)
{
    if (n > SIZE_MAX - RD_TRAILER_SIZE - resp->len)
        return NULL;
    size_t need = resp->len + n + RD_TRAILER_SIZE;
    if (need > resp->cap && !response_grow(resp, need))
        return NULL;
    uint8_t *dst = resp->data + resp->len;
    resp->len += n;
    return dst;
}

/* A reused connection keeps its buffer. */
void rd_response_start(rd_response_t *resp, size_t header_len)
{
    if (resp->data == NULL)
        rd_response_init(resp);
    resp->header_len = header_len;
    resp->len = header_len;
}

/* ---- status names -------------------------------------------------------- */

static const struct {
    uint8_t code;
    const char *name;
} status_names[] = {
    { RD_STATUS_NO_ERROR,                "no error" },
    { RD_STATUS_INVALID_SPLIT,           "invalid split id" },
    { RD_STATUS_INVALID_RAIDA_ID,        "invalid RAIDA id" },
    { RD_STATUS_INVALID_SHARD,           "invalid shard" },
    { RD_STATUS_INVALID_GROUP,           "invalid command group" },
    { RD_STATUS_INVALID_COMMAND,         "invalid command" },
    { RD_STATUS_INVALID_COIN_ID,         "invalid coin id" },
    { RD_STATUS_INVALID_PACKET_LENGTH,   "invalid packet length" },
    { RD_STATUS_COIN_NOT_FOUND,          "encryption coin not found" },
    { RD_STATUS_INVALID_ENCRYPTION_CODE, "invalid encryption code" },
    { RD_STATUS_INVALID_EOF,             "invalid EOF" },
    { RD_STATUS_INVALID_ENCRYPTION,      "invalid encryption" },
    { RD_STATUS_EMPTY_REQUEST,           "empty request" },
    { RD_STATUS_INVALID_CRC,             "invalid CRC" },
    { RD_STATUS_ADMIN_AUTH,              "admin authentication failed" },
    { RD_STATUS_NOT_WHOLE_COINS,         "payload not a whole number of coin records" },
    { RD_STATUS_INVALID_COIN,            "invalid serial number or denomination" },
    { RD_STATUS_RATE_EXCEEDED,           "request rate exceeded" },
    { RD_STATUS_INVALID_HMAC,            "invalid HMAC" },
    { RD_STATUS_ALL_PASS,                "all coins passed" },
    { RD_STATUS_ALL_FAIL,                "all coins failed" },
    { RD_STATUS_MIXED,                   "mixed: some coins passed" },
    { RD_STATUS_SUCCESS,                 "success" },
    { RD_STATUS_INTERNAL_ERROR,          "internal error" },
    { RD_STATUS_MEMORY_ALLOC,            "memory allocation failed" },
    { RD_STATUS_INVALID_ROUTING,         "invalid routing" },
};

const char *rd_status_name(uint8_t status)
{
    for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
        if (status_names[i].code == status)
            return status_names[i].name;
    }
    return "unknown";
}
