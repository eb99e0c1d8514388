/* The authentication commands and audit over the coin store (see
 * include/rd_auth.h). Each request is one store transaction: its coins are
 * read and changed under one hold of the store, so requests on any worker
 * are serializable; the answer waits for what it depends on to be durable
 * (req->commit_lsn, which the network layer honours). */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rd_auth.h"
#include "rd_bytes.h"
#include "rd_coins.h"
#include "rd_crypto.h"

#define COIN_ID_SIZE    RD_COIN_REF_SIZE
#define SUM_SIZE        RD_COIN_AN_SIZE

/* ---- parsing ------------------------------------------------------------- */

typedef struct layout {
    size_t stride;              /* bytes per coin */
    size_t tail;                /* bytes after the coins: sum, delta */
} layout_t;

static bool layout_of(uint8_t command, layout_t *l)
{
    switch (command) {
    case RD_CMD_DETECT:     *l = (layout_t){ COIN_ID_SIZE + RD_COIN_AN_SIZE, 0 }; return true;
    case RD_CMD_DETECT_SUM: *l = (layout_t){ COIN_ID_SIZE, SUM_SIZE }; return true;
    case RD_CMD_POWN:       *l = (layout_t){ COIN_ID_SIZE + 2 * RD_COIN_AN_SIZE, 0 }; return true;
    case RD_CMD_POWN_SUM:   *l = (layout_t){ COIN_ID_SIZE, 2 * SUM_SIZE }; return true;
    default: return false;
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Whether the payload's valid coins are each named once; -1 when memory
 * is short. (Coins that cannot exist never reach the store.) */
static int coins_distinct(const rd_auth_payload_t *pl, bool *all_valid)
{
    uint32_t *ids = malloc(pl->n * sizeof(*ids));
    if (ids == NULL)
        return -1;
    size_t k = 0;
    *all_valid = true;
    for (size_t i = 0; i < pl->n; i++) {
        rd_auth_coin_t c;
        rd_auth_coin(pl, i, &c);
        if (rd_coinfile_valid(c.den, c.sn))
            ids[k++] = (uint32_t)(c.den - RD_COIN_MIN_DEN) << 20 | c.sn;
        else
            *all_valid = false;
    }
    qsort(ids, k, sizeof(*ids), cmp_u32);
    int distinct = 1;
    for (size_t i = 1; i < k && distinct; i++)
        distinct = ids[i] != ids[i - 1];
    free(ids);
    return distinct;
}

/* A sum must name real coins, each once: XOR would cancel a coin named
 * twice, so that it would pass without its AN. */
static int check_sum_coins(const rd_auth_payload_t *pl)
{
    bool all_valid;
    int distinct = coins_distinct(pl, &all_valid);
    if (distinct < 0)
        return RD_STATUS_MEMORY_ALLOC;
    return all_valid && distinct ? RD_STATUS_NO_ERROR : RD_STATUS_INVALID_COIN;
}

int rd_auth_parse(uint8_t command, const uint8_t *payload, size_t len, rd_auth_payload_t *out)
{
    layout_t l;
    memset(out, 0, sizeof(*out));
    if (!layout_of(command, &l))
        return RD_STATUS_INVALID_COMMAND;
    if (len < l.stride + l.tail)
        return RD_STATUS_INVALID_PACKET_LENGTH;
    if ((len - l.tail) % l.stride != 0)
        return RD_STATUS_NOT_WHOLE_COINS;
    out->command = command;
    out->stride = l.stride;
    out->n = (len - l.tail) / l.stride;
    out->coins = payload;
    if (l.tail == 0)
        return RD_STATUS_NO_ERROR;
    out->sum = payload + out->n * l.stride;
    if (l.tail > SUM_SIZE)
        out->delta = out->sum + SUM_SIZE;
    return check_sum_coins(out);
}

void rd_auth_coin(const rd_auth_payload_t *pl, size_t i, rd_auth_coin_t *coin)
{
    const uint8_t *c = pl->coins + i * pl->stride;
    coin->den = (int8_t)c[0];
    coin->sn = (uint32_t)rd_get_be(c + RD_COIN_REF_SN, RD_COIN_REF_SIZE - RD_COIN_REF_SN);
    coin->an = pl->stride > COIN_ID_SIZE ? c + COIN_ID_SIZE : NULL;
    coin->pan = pl->stride > COIN_ID_SIZE + RD_COIN_AN_SIZE ? c + COIN_ID_SIZE + RD_COIN_AN_SIZE
                                                            : NULL;
}

void rd_auth_bitfield(const bool *passed, size_t n, uint8_t *out)
{
    memset(out, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        if (passed[i])
            out[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* ---- running ------------------------------------------------------------- */

static int parse_request(const rd_request_t *req, rd_auth_payload_t *pl)
{
    return rd_auth_parse(req->command, req->payload, req->payload_len, pl);
}

/* Pages are mapped and read in before the store is held. */
static void prefetch(const rd_protocol_t *p, const rd_auth_payload_t *pl)
{
    for (size_t i = 0; i < pl->n; i++) {
        rd_auth_coin_t c;
        rd_auth_coin(pl, i, &c);
        rd_coins_prefetch(p->coins, c.den, c.sn);
    }
}

static int store_error(int rc)
{
    return rc == RD_COIN_OK || rc == RD_COIN_MISSING ? RD_STATUS_NO_ERROR
                                                     : RD_STATUS_INTERNAL_ERROR;
}

/* Whether coin C passes: it exists, is issued and its AN is the one sent.
 * For pown, a coin that passes gets AN := PAN and this month. */
static int check_coin(rd_coins_txn_t *t, const rd_auth_coin_t *c, uint8_t month, bool *passed)
{
    uint8_t rec[RD_COIN_RECORD_SIZE];
    *passed = false;
    int rc = rd_coins_get(t, c->den, c->sn, rec);
    int status = rc != RD_COIN_OK ? store_error(rc) : RD_STATUS_NO_ERROR;
    if (rc == RD_COIN_OK)
        *passed = rec[RD_COIN_AN_SIZE] != 0 && rd_crypto_equal(rec, c->an, RD_COIN_AN_SIZE);
    if (*passed && c->pan != NULL) {
        memcpy(rec, c->pan, RD_COIN_AN_SIZE);
        rec[RD_COIN_AN_SIZE] = month;
        if (rd_coins_put(t, c->den, c->sn, rec) != RD_COIN_OK)
            status = RD_STATUS_INTERNAL_ERROR;
    }
    /* The coin's AN, or its new one: wiped like every key (docs/protocol.md). */
    rd_crypto_wipe(rec, sizeof(rec));
    return status;
}

static int answer_bits(const bool *passed, size_t n, rd_response_t *resp)
{
    size_t good = 0;
    for (size_t i = 0; i < n; i++)
        good += passed[i];
    if (good == n)
        return RD_STATUS_ALL_PASS;
    if (good == 0)
        return RD_STATUS_ALL_FAIL;
    uint8_t *dst = rd_response_append(resp, (n + 7) / 8);
    if (dst == NULL)
        return RD_STATUS_MEMORY_ALLOC;
    rd_auth_bitfield(passed, n, dst);
    return RD_STATUS_MIXED;
}

/* detect and pown: each coin on its own, all in one transaction. */
static int run_each(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    rd_auth_payload_t pl;
    int status = parse_request(req, &pl);
    if (status != RD_STATUS_NO_ERROR)
        return status;
    bool *passed = calloc(pl.n, sizeof(*passed));
    if (passed == NULL)
        return RD_STATUS_MEMORY_ALLOC;
    /* detect changes nothing, so only pown asks whether its coins are
     * distinct (a sort: no cost for the other commands). */
    bool all_valid;
    int distinct = pl.command == RD_CMD_POWN ? coins_distinct(&pl, &all_valid) : 1;
    if (distinct < 0)
        status = RD_STATUS_MEMORY_ALLOC;
    if (p->coins != NULL && status == RD_STATUS_NO_ERROR) {
        uint8_t month = rd_mfs_now(time(NULL));
        rd_coins_txn_t t;
        prefetch(p, &pl);
        rd_coins_begin(p->coins, &t);
        /* Coins named once (the usual case): no search of the request's own
         * changes while the store is held. */
        t.distinct = distinct == 1;
        for (size_t i = 0; i < pl.n && status == RD_STATUS_NO_ERROR; i++) {
            rd_auth_coin_t c;
            rd_auth_coin(&pl, i, &c);
            status = check_coin(&t, &c, month, &passed[i]);
        }
        if (status != RD_STATUS_NO_ERROR)
            t.n = 0;                    /* nothing is written for a request that failed */
        if (rd_coins_end(&t) != RD_COIN_OK && status == RD_STATUS_NO_ERROR)
            status = RD_STATUS_INTERNAL_ERROR;
        rd_request_wait_for(req, t.dep);
    }
    if (status == RD_STATUS_NO_ERROR)
        status = answer_bits(passed, pl.n, resp);
    free(passed);
    return status;
}

/* The sums: every coin must exist and be issued (else 40); the XOR of
 * their ANs decides, and pown sum changes all of them or none. */
static int sum_coins(rd_coins_txn_t *t, const rd_auth_payload_t *pl, uint8_t *xor,
                     uint8_t (*recs)[RD_COIN_RECORD_SIZE])
{
    memset(xor, 0, SUM_SIZE);
    for (size_t i = 0; i < pl->n; i++) {
        rd_auth_coin_t c;
        rd_auth_coin(pl, i, &c);
        int rc = rd_coins_get(t, c.den, c.sn, recs[i]);
        if (rc == RD_COIN_MISSING || (rc == RD_COIN_OK && recs[i][RD_COIN_AN_SIZE] == 0))
            return RD_STATUS_INVALID_COIN;
        if (rc != RD_COIN_OK)
            return RD_STATUS_INTERNAL_ERROR;
        for (size_t k = 0; k < SUM_SIZE; k++)
            xor[k] ^= recs[i][k];
    }
    return RD_STATUS_NO_ERROR;
}

static int pown_all(rd_coins_txn_t *t, const rd_auth_payload_t *pl,
                    uint8_t (*recs)[RD_COIN_RECORD_SIZE])
{
    uint8_t month = rd_mfs_now(time(NULL));
    for (size_t i = 0; i < pl->n; i++) {
        rd_auth_coin_t c;
        rd_auth_coin(pl, i, &c);
        for (size_t k = 0; k < RD_COIN_AN_SIZE; k++)
            recs[i][k] ^= pl->delta[k];
        recs[i][RD_COIN_AN_SIZE] = month;
        if (rd_coins_put(t, c.den, c.sn, recs[i]) != RD_COIN_OK)
            return RD_STATUS_INTERNAL_ERROR;
    }
    return RD_STATUS_NO_ERROR;
}

static int run_sum(const rd_protocol_t *p, rd_request_t *req)
{
    rd_auth_payload_t pl;
    uint8_t xor[SUM_SIZE];
    int status = parse_request(req, &pl);
    if (status != RD_STATUS_NO_ERROR)
        return status;
    if (p->coins == NULL)
        return RD_STATUS_INVALID_COIN;
    uint8_t (*recs)[RD_COIN_RECORD_SIZE] = calloc(pl.n, sizeof(*recs));
    if (recs == NULL)
        return RD_STATUS_MEMORY_ALLOC;
    rd_coins_txn_t t;
    prefetch(p, &pl);
    rd_coins_begin(p->coins, &t);
    t.distinct = true;                  /* checked by the parser */
    status = sum_coins(&t, &pl, xor, recs);
    if (status == RD_STATUS_NO_ERROR) {
        bool match = rd_crypto_equal(xor, pl.sum, SUM_SIZE);
        status = match ? RD_STATUS_ALL_PASS : RD_STATUS_ALL_FAIL;
        if (match && pl.delta != NULL && pown_all(&t, &pl, recs) != RD_STATUS_NO_ERROR)
            status = RD_STATUS_INTERNAL_ERROR;
    }
    if (status != RD_STATUS_ALL_PASS)
        t.n = 0;
    if (rd_coins_end(&t) != RD_COIN_OK && status == RD_STATUS_ALL_PASS)
        status = RD_STATUS_INTERNAL_ERROR;
    rd_request_wait_for(req, t.dep);
    rd_crypto_wipe(recs, pl.n * sizeof(*recs));
    free(recs);
    return status;
}

int rd_auth_detect(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    return run_each(p, req, resp);
}

int rd_auth_pown(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    return run_each(p, req, resp);
}

int rd_auth_detect_sum(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    (void)resp;
    return run_sum(p, req);
}

int rd_auth_pown_sum(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    (void)resp;
    return run_sum(p, req);
}

/* Counts kept current by the store: no disk is read here. */
int rd_auth_audit(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp)
{
    uint32_t counts[RD_COIN_DENS] = { 0 };
    (void)req;
    if (p->coins != NULL)
        rd_coins_counts(p->coins, counts);
    uint8_t *dst = rd_response_append(resp, RD_COIN_DENS * 5);
    if (dst == NULL)
        return RD_STATUS_MEMORY_ALLOC;
    for (unsigned d = 0; d < RD_COIN_DENS; d++, dst += 5) {
        dst[0] = (uint8_t)(int8_t)((int)d + RD_COIN_MIN_DEN);
        rd_put_be(dst + 1, counts[d], 4);
    }
    return RD_STATUS_SUCCESS;
}
