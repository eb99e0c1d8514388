/* The status group (group 0): echo, version and stats, a built-in
 * command module (include/raidad/module.h) like any loaded one. Its
 * handlers reach the daemon's own request and protocol settings (the admin
 * key, the statistics) through the services' built-in-only protocol. */
#include "config.h"

#include <stddef.h>
#include <string.h>
#include <time.h>

#include "rd_auth.h"
#include "rd_bytes.h"
#include "rd_commands.h"
#include "rd_stats.h"

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

static int cmd_echo(const raidad_request_t *req, rd_response_t *resp)
{
    (void)req;
    (void)resp;
    return RD_STATUS_SUCCESS;
}

static int cmd_version(const raidad_request_t *req, rd_response_t *resp)
{
    (void)req;
    uint8_t *dst = rd_response_append(resp, RD_VERSION_SIZE);
    if (dst == NULL)
        return RD_STATUS_MEMORY_ALLOC;
    memcpy(dst, RAIDAD_BUILD_VERSION, RD_VERSION_SIZE);
    return RD_STATUS_SUCCESS;
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

static int cmd_stats(const raidad_request_t *req, rd_response_t *resp)
{
    const rd_protocol_t *p = req->services->protocol;

    if (!req->services->admin_key_ok(req, req->payload, req->payload_len))
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

/* Audit counts the coin store's issued coins (src/rd_auth.c): not inline,
 * since the store's counts sit behind its lock. */
static int cmd_audit(const raidad_request_t *req, rd_response_t *resp)
{
    return rd_auth_audit(req->services->protocol, req->daemon_request, resp);
}

static const raidad_command_t status_commands[] = {
    { RD_CMD_ECHO,    "echo",    cmd_echo,    RAIDAD_CMD_INLINE },
    { RD_CMD_VERSION, "version", cmd_version, RAIDAD_CMD_INLINE },
    { RD_CMD_STATS,   "stats",   cmd_stats,   RAIDAD_CMD_ADMIN | RAIDAD_CMD_INLINE },
    { RD_CMD_AUDIT,   "audit",   cmd_audit,   0 },
};

static const raidad_group_t status_groups[] = {
    { RD_GROUP_STATUS, status_commands, sizeof(status_commands) / sizeof(status_commands[0]) },
};

const raidad_module_t rd_mod_status = {
    .abi = RAIDAD_MODULE_ABI,
    .name = "status",
    .groups = status_groups,
    .group_count = 1,
};
