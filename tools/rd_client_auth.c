/* Payloads and answers of the authentication group and audit, client side
 * (see tools/rd_client_auth.h). */
#include "config.h"

#include <string.h>

#include "rd_bytes.h"
#include "rd_client_auth.h"
#include "rd_frame.h"

#define AN RD_CLIENT_KEY_SIZE

/* Per coin, and once per request (the sums). */
static bool record_sizes(enum rd_auth_cmd cmd, size_t *per_coin, size_t *fixed)
{
    switch (cmd) {
    case RD_AUTH_DETECT:     *per_coin = RD_COIN_REF_SIZE + AN;      *fixed = 0;      return true;
    case RD_AUTH_POWN:       *per_coin = RD_COIN_REF_SIZE + 2 * AN;  *fixed = 0;      return true;
    case RD_AUTH_DETECT_SUM: *per_coin = RD_COIN_REF_SIZE;           *fixed = AN;     return true;
    case RD_AUTH_POWN_SUM:   *per_coin = RD_COIN_REF_SIZE;           *fixed = 2 * AN; return true;
    }
    return false;
}

size_t rd_client_auth_payload_size(enum rd_auth_cmd cmd, size_t n)
{
    size_t per_coin, fixed;
    if (n == 0 || !record_sizes(cmd, &per_coin, &fixed) || n > (SIZE_MAX - fixed) / per_coin)
        return 0;
    return n * per_coin + fixed;
}

void rd_client_auth_xor(const rd_client_coin_t *coins, size_t n, uint8_t sum[RD_CLIENT_KEY_SIZE])
{
    memset(sum, 0, AN);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < AN; k++)
            sum[k] ^= coins[i].key[k];
}

static uint8_t *put_coin_id(uint8_t *p, const rd_client_coin_t *c)
{
    p[0] = (uint8_t)c->den;
    rd_put_be(p + 1, c->sn, 4);
    return p + RD_COIN_REF_SIZE;
}

size_t rd_client_auth_build(enum rd_auth_cmd cmd, const rd_client_coin_t *coins, size_t n,
                     const uint8_t *new_an, uint8_t *out, size_t cap)
{
    size_t size = rd_client_auth_payload_size(cmd, n);
    bool needs_new = cmd == RD_AUTH_POWN || cmd == RD_AUTH_POWN_SUM;
    if (size == 0 || size > cap || (needs_new && new_an == NULL))
        return 0;
    uint8_t *p = out;
    for (size_t i = 0; i < n; i++) {
        p = put_coin_id(p, &coins[i]);
        if (cmd == RD_AUTH_DETECT || cmd == RD_AUTH_POWN) {
            memcpy(p, coins[i].key, AN);
            p += AN;
        }
        if (cmd == RD_AUTH_POWN) {
            memcpy(p, new_an + i * AN, AN);
            p += AN;
        }
    }
    if (cmd == RD_AUTH_DETECT_SUM || cmd == RD_AUTH_POWN_SUM) {
        rd_client_auth_xor(coins, n, p);
        p += AN;
    }
    if (cmd == RD_AUTH_POWN_SUM) {
        memcpy(p, new_an, AN);
        p += AN;
    }
    return (size_t)(p - out);
}

/* 243: one bit per coin, nothing past N, and truly mixed. */
static long parse_bitfield(const uint8_t *payload, size_t len, size_t n, uint8_t *passed)
{
    size_t size = rd_auth_bitfield_size(n);
    if (len != size || (n % 8 != 0 && (payload[size - 1] >> (n % 8)) != 0))
        return RD_AUTH_MALFORMED;
    long count = 0;
    for (size_t i = 0; i < n; i++)
        count += rd_auth_passed(payload, i);
    if (count == 0 || (size_t)count == n)
        return RD_AUTH_MALFORMED;
    memcpy(passed, payload, size);
    return count;
}

long rd_client_auth_parse_result(enum rd_auth_cmd cmd, uint8_t status, const uint8_t *payload,
                          size_t len, size_t n, uint8_t *passed)
{
    size_t size = rd_auth_bitfield_size(n);
    bool sum = cmd == RD_AUTH_DETECT_SUM || cmd == RD_AUTH_POWN_SUM;
    switch (status) {
    case RD_STATUS_ALL_PASS:
    case RD_STATUS_ALL_FAIL:
        if (len != 0 || n == 0)
            return RD_AUTH_MALFORMED;
        memset(passed, status == RD_STATUS_ALL_PASS ? 0xFF : 0, size);
        if (status == RD_STATUS_ALL_PASS && n % 8 != 0)
            passed[size - 1] = (uint8_t)((1u << (n % 8)) - 1);
        return status == RD_STATUS_ALL_PASS ? (long)n : 0;
    case RD_STATUS_MIXED:
        if (sum || n == 0)
            return RD_AUTH_MALFORMED;
        return parse_bitfield(payload, len, n, passed);
    default:
        return RD_AUTH_NO_RESULT;
    }
}

int rd_client_auth_parse_audit(const uint8_t *payload, size_t len, uint32_t count[RD_COIN_DENS])
{
    if (len != RD_AUDIT_SIZE)
        return -1;
    for (size_t i = 0; i < RD_COIN_DENS; i++) {
        const uint8_t *rec = payload + i * RD_AUDIT_RECORD_SIZE;
        if ((int8_t)rec[0] != (int8_t)(RD_COIN_MIN_DEN + (int)i))
            return -1;
        count[i] = (uint32_t)rd_get_be(rec + 1, 4);
    }
    return 0;
}
