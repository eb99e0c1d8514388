#include "config.h"

#include <stddef.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

#include "rd_auth.h"
#include "rd_bytes.h"
#include "rd_commands.h"

#define RD_VERSION_SIZE (sizeof(RAIDAD_BUILD_VERSION) - 1)
_Static_assert(RD_VERSION_SIZE == 8, "the version command answers exactly 8 bytes");

/* Appends V as an N-byte big-endian integer; false when memory is short. */
static bool append_be(rd_response_t *resp, uint64_t v, size_t n)
{
    uint8_t *dst = rd_response_append(resp, n);
    if (dst == NULL)
        return false;
    rd_put_be(dst, v, n);
    return true;
}

static int cmd_echo(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    (void)p;
    (void)req;
    (void)resp;
    return RD_STATUS_SUCCESS;
}

static int cmd_version(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    (void)p;
    (void)req;
    uint8_t *dst = rd_response_append(resp, RD_VERSION_SIZE);
    if (dst == NULL)
        return RD_STATUS_MEMORY_ALLOC;
    memcpy(dst, RAIDAD_BUILD_VERSION, RD_VERSION_SIZE);
    return RD_STATUS_SUCCESS;
}

/* Constant time, so that the answer's timing tells nothing about how much
 * of a guessed key was right. */
static bool admin_key_ok(const rd_protocol_t *p, const rd_request_t *req)
{
    return p->admin_key_set
        && req->payload_len == sizeof(p->admin_key)
        && CRYPTO_memcmp(req->payload, p->admin_key, sizeof(p->admin_key)) == 0;
}

static uint32_t uptime_seconds(const rd_stats_t *st)
{
    time_t now = time(NULL);
    if (now < 0 || (uint64_t)now <= st->started)
        return 0;
    uint64_t up = (uint64_t)now - st->started;
    return up > UINT32_MAX ? UINT32_MAX : (uint32_t)up;
}

static uint64_t load(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* Other threads keep counting while we read, so the entries are appended as
 * they are found and their number is written into its slot afterwards:
 * counting first and writing later could disagree. */
static bool append_status_counts(rd_response_t *resp, const rd_stats_t *st)
{
    size_t count_at = resp->len;
    uint16_t n = 0;
    if (!append_be(resp, 0, 2))
        return false;
    for (unsigned s = 0; s < 256; s++) {
        uint64_t v = load(&st->by_status[s]);
        if (v == 0)
            continue;
        if (!append_be(resp, s, 1) || !append_be(resp, v, 8))
            return false;
        n++;
    }
    rd_put_be(resp->data + count_at, n, 2);
    return true;
}

static bool append_command_counts(rd_response_t *resp, const rd_stats_t *st)
{
    size_t count_at = resp->len;
    uint16_t n = 0;
    if (!append_be(resp, 0, 2))
        return false;
    for (unsigned g = 0; g < RD_STATS_GROUPS; g++) {
        for (unsigned c = 0; c < 256; c++) {
            uint64_t v = load(&st->by_command[g][c]);
            if (v == 0)
                continue;
            if (!append_be(resp, g, 1) || !append_be(resp, c, 1) || !append_be(resp, v, 8))
                return false;
            n++;
        }
    }
    rd_put_be(resp->data + count_at, n, 2);
    return true;
}

static int cmd_stats(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    if (!admin_key_ok(p, req))
        return RD_STATUS_ADMIN_AUTH;
    const rd_stats_t *st = p->stats;
    if (st == NULL)
        return RD_STATUS_INTERNAL_ERROR;
    if (!append_be(resp, uptime_seconds(st), 4)
        || !append_be(resp, load(&st->requests), 8)
        || !append_status_counts(resp, st)
        || !append_command_counts(resp, st))
        return RD_STATUS_MEMORY_ALLOC;
    return RD_STATUS_SUCCESS;
}

/* The coin commands touch the store and may wait for the journal: never
 * quick. The authentication group's handlers live in rd_auth.c. */
static const rd_command_t commands[] = {
    /* group cmd name          handler             admin  quick  payload */
    { 0, 0,  "echo",        cmd_echo,           false, true,  false },
    { 0, 1,  "version",     cmd_version,        false, true,  false },
    { 0, 2,  "stats",       cmd_stats,          true,  true,  false },
    { 0, 3,  "audit",       rd_auth_audit,      false, false, false },
    { 1, 10, "detect",      rd_auth_detect,     false, false, true },
    { 1, 11, "detect sum",  rd_auth_detect_sum, false, false, true },
    { 1, 20, "pown",        rd_auth_pown,       false, false, true },
    { 1, 21, "pown sum",    rd_auth_pown_sum,   false, false, true },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

bool rd_command_group_known(uint8_t group)
{
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (commands[i].group == group)
            return true;
    }
    return false;
}

const rd_command_t *rd_command_lookup(uint8_t group, uint8_t command)
{
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (commands[i].group == group && commands[i].command == command)
            return &commands[i];
    }
    return NULL;
}

/* The table by position, for the metrics: a command's index is its place
 * here, so counters can be kept in a plain array. */
size_t rd_command_count(void)
{
    return N_COMMANDS;
}

const rd_command_t *rd_command_at(size_t i)
{
    return i < N_COMMANDS ? &commands[i] : NULL;
}
