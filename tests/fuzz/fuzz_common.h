/* What the protocol fuzz targets share: the server they play (made once,
 * on the first input), an invariant check that crashes loudly, and the
 * checks every answer must pass. The seed corpora (gen_corpus.py) are built
 * for these very values. */
#ifndef RD_FUZZ_COMMON_H
#define RD_FUZZ_COMMON_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <zlib.h>

#include "rd_bytes.h"
#include "rd_cidr.h"
#include "rd_client.h"
#include "rd_coins.h"
#include "rd_protocol.h"
#include "rd_stats.h"

#define FUZZ_RAIDA_ID  7
#define FUZZ_COIN_ID   0x0106       /* both bytes matter */
#define FUZZ_MAX_BODY  4096
#define FUZZ_ECHO      0xBEEF
/* The key store holds, for denomination 1, coin 1 (key 10 11 ... 1F) and
 * coin 2 (key 20 21 ... 2F); denomination 2's first page is a short file
 * (a broken page: status 252). */
#define FUZZ_DEN       1
#define FUZZ_SN1       1
#define FUZZ_SN2       2

/* libFuzzer calls this; declared for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant that does not hold is a bug: abort() makes libFuzzer save
 * the input and print the stack. */
#define FUZZ_CHECK(cond) do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

/* What a body of N bytes that passed the length check must be answered:
 * the trailer, then, in clear (PLAIN), the challenge's CRC; the encrypted
 * families' CRC or HMAC needs the key. */
static inline int fuzz_body_status(bool plain, const uint8_t *b, size_t n)
{
    if (b[n - 2] != RD_TRAILER_BYTE || b[n - 1] != RD_TRAILER_BYTE)
        return RD_STATUS_INVALID_EOF;
    if (plain && crc32(0L, b, RD_CRC_INPUT_SIZE)
                 != rd_get_be(b + RD_CRC_INPUT_SIZE, RD_CHALLENGE_SIZE - RD_CRC_INPUT_SIZE))
        return RD_STATUS_INVALID_CRC;
    return RD_STATUS_NO_ERROR;
}

static inline bool fuzz_all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* ---- the key store ------------------------------------------------------- */

static char fuzz_data_dir[PATH_MAX];

static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fwrite(data, 1, len, f) == len);
    FUZZ_CHECK(fclose(f) == 0);
}

static inline void fuzz_path(char *buf, const char *rest)
{
    int n = snprintf(buf, PATH_MAX, "%s/%s", fuzz_data_dir, rest);
    FUZZ_CHECK(n > 0 && n < PATH_MAX);
}

/* At exit (a crash leaves it: run.sh points TMPDIR at its own temporary
 * folder, which it removes). */
static inline void fuzz_remove_data_dir(void)
{
    static const char *const files[] = {
        "Data/01/00/0000.bin", "Data/01/00", "Data/01",
        "Data/02/00/0000.bin", "Data/02/00", "Data/02", "Data",
        "raidad.journal", "raidad.index", "raidad.index.new", "raidad.lock", "",
    };
    char path[PATH_MAX];

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        fuzz_path(path, files[i]);
        remove(path);
    }
}

static inline rd_coins_t *fuzz_keystore(void)
{
    static const char *const dirs[] = { "Data", "Data/01", "Data/01/00", "Data/02", "Data/02/00" };
    static uint8_t page[RD_COIN_PAGE_SIZE];
    char path[PATH_MAX];
    const char *tmp = getenv("TMPDIR");

    snprintf(fuzz_data_dir, sizeof(fuzz_data_dir), "%s/raidad-fuzz-keys.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(fuzz_data_dir) != NULL);
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        fuzz_path(path, dirs[i]);
        FUZZ_CHECK(mkdir(path, 0700) == 0);
    }
    for (size_t i = 0; i < RD_COIN_AN_SIZE; i++) {
        page[FUZZ_SN1 * RD_COIN_RECORD_SIZE + i] = (uint8_t)(0x10 + i);
        page[FUZZ_SN2 * RD_COIN_RECORD_SIZE + i] = (uint8_t)(0x20 + i);
    }
    page[FUZZ_SN1 * RD_COIN_RECORD_SIZE + RD_COIN_AN_SIZE] = 1;
    page[FUZZ_SN2 * RD_COIN_RECORD_SIZE + RD_COIN_AN_SIZE] = 1;
    fuzz_path(path, "Data/01/00/0000.bin");
    fuzz_write_file(path, page, sizeof(page));
    atexit(fuzz_remove_data_dir);

    /* The master's part and a worker's handle in one; a pown of coin 1/1
     * or 1/2 changes its key for the requests that follow, as it would in
     * the daemon. Checkpoints keep the journal small. */
    static rd_coins_conf_t conf;
    char err[PATH_MAX + 256];
    conf = (rd_coins_conf_t){ .data_dir = fuzz_data_dir, .uid = (uid_t)-1, .gid = (gid_t)-1,
                              .pending_max = 4096, .journal_max = 1 << 20,
                              .checkpoint_interval_ms = 1000, .page_recheck_ms = 1000 };
    rd_coins_shared_t *sh = rd_coins_prepare(&conf, err, sizeof(err));
    FUZZ_CHECK(sh != NULL);
    rd_coins_t *store = rd_coins_open(sh, &conf);
    FUZZ_CHECK(store != NULL);
    /* Damaged once serving: its coins answer an error. */
    fuzz_path(path, "Data/02/00/0000.bin");
    fuzz_write_file(path, page, 100);
    return store;
}

/* ---- the server ---------------------------------------------------------- */

/* RAIDA 7, coin 0x0106, bodies up to 4096 bytes, admin key A0 A1 ... AF, a
 * stats block (its counters grow for the whole run) and the key store. */
/* The admin key counts in clear from loopback only (the default admin_allow). */
static inline const rd_protocol_t *fuzz_protocol(void)
{
    static rd_protocol_t p;
    static rd_cidr_t loopback;
    static bool ready;

    if (!ready) {
        memset(&p, 0, sizeof(p));
        p.raida_id = FUZZ_RAIDA_ID;
        p.coin_id = FUZZ_COIN_ID;
        p.max_body_size = FUZZ_MAX_BODY;
        p.admin_key_set = true;
        for (size_t i = 0; i < sizeof(p.admin_key); i++)
            p.admin_key[i] = (uint8_t)(0xA0 + i);
        FUZZ_CHECK(rd_cidr_parse("127.0.0.0/8", &loopback) == 0);
        p.admin_allow = &loopback;
        p.admin_allow_count = 1;
        p.stats = rd_stats_create();
        FUZZ_CHECK(p.stats != NULL);
        p.coins = fuzz_keystore();
        ready = true;
    }
    return &p;
}

static inline uint64_t fuzz_requests(const rd_protocol_t *p)
{
    return atomic_load(&p->stats->requests);
}

/* ---- answers ------------------------------------------------------------- */

/* The header family of REQ's answer: 48 bytes once a whole 48-byte header
 * was read, 32 otherwise. */
static inline size_t fuzz_answer_header_size(const rd_request_t *req)
{
    return req->header_size == RD_MODERN_HEADER_SIZE && req->header_have >= RD_MODERN_HEADER_SIZE
        ? RD_MODERN_HEADER_SIZE : RD_LEGACY_HEADER_SIZE;
}

/* What every answer to REQ must be, whatever its status; returns the
 * status. An answer other than success has no body. */
static inline uint8_t fuzz_check_answer(const rd_protocol_t *p, const rd_request_t *req,
                                        const rd_response_t *resp)
{
    const uint8_t *r = resp->data;
    const uint8_t *h = req->header;
    size_t hs = fuzz_answer_header_size(req);

    FUZZ_CHECK(resp->len >= hs && resp->len <= resp->cap);
    uint32_t body_size = rd_get_be(r + RD_RESP_BODY_SIZE, RD_RESP_BODY_SIZE_SIZE);
    FUZZ_CHECK(resp->len == hs + body_size);
    FUZZ_CHECK(r[RD_RESP_RAIDA_ID] == p->raida_id && r[RD_RESP_SHARD] == 0);
    FUZZ_CHECK(r[RD_RESP_STATUS] != RD_STATUS_NO_ERROR);
    /* The request's group, once its byte was received. */
    FUZZ_CHECK(r[RD_RESP_GROUP] == (req->header_have > RD_REQ_GROUP ? h[RD_REQ_GROUP] : 0));
    if (body_size > 0) {
        FUZZ_CHECK(r[RD_RESP_STATUS] == RD_STATUS_SUCCESS);
        FUZZ_CHECK(r[resp->len - 2] == RD_TRAILER_BYTE && r[resp->len - 1] == RD_TRAILER_BYTE);
    }
    if (hs == RD_MODERN_HEADER_SIZE) {
        /* Byte 8, which no field claims, stays 0. */
        FUZZ_CHECK(r[8] == 0 && r[RD_RESP48_ENC_TYPE] == h[RD_REQ_ENC_TYPE]
                   && memcmp(r + RD_RESP48_COIN, h + RD_REQ48_COIN, RD_COIN_REF_SIZE) == 0);
        if (body_size > 0)      /* payload, HMAC, trailer */
            FUZZ_CHECK(body_size > RD_HMAC_SIZE + RD_TRAILER_SIZE);
        return r[RD_RESP_STATUS];
    }

    rd_client_response_t parsed;
    FUZZ_CHECK(rd_client_parse(r, resp->len, &parsed) == 0);
    FUZZ_CHECK(parsed.frames == 1 && r[8] == 0);
    if (req->header_have >= RD_LEGACY_HEADER_SIZE && req->header_size == RD_LEGACY_HEADER_SIZE)
        FUZZ_CHECK(parsed.echo == rd_get_be(h + RD_REQ32_ECHO, RD_ECHO_SIZE));
    else
        FUZZ_CHECK(parsed.echo == 0);
    /* Type 0 sends the challenge back once the body is there; type 1 only
     * once it was decrypted and its CRC matched. */
    if (req->enc_type == 0 && req->body_complete && req->body != NULL
        && req->body_size >= RD_CHALLENGE_SIZE)
        FUZZ_CHECK(memcmp(parsed.challenge_hash, req->body, RD_CHALLENGE_SIZE) == 0);
    else if (req->enc_type == 0 || !req->body_complete)
        FUZZ_CHECK(fuzz_all_zero(parsed.challenge_hash, RD_CHALLENGE_SIZE));
    return parsed.status;
}

#endif
