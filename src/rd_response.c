/* The response buffer every answer is built in (declared in
 * include/rd_frame.h beside the response record). A response starts in a
 * small inline buffer and moves to the heap only when its payload
 * outgrows it; room for the trailer is always kept, so that finishing an
 * answer never has to allocate. */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rd_frame.h"

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
