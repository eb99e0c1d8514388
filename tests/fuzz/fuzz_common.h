/* What the libFuzzer targets share: the server they play (made once, on the
 * first input), an invariant check that crashes loudly, and byte helpers.
 * The seed corpora (gen_corpus.py) are built for these very values. */
#ifndef RD_FUZZ_COMMON_H
#define RD_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_protocol.h"
#include "rd_stats.h"

#define FUZZ_RAIDA_ID  7
#define FUZZ_COIN_ID   0x0106       /* both bytes matter */
#define FUZZ_MAX_BODY  4096
#define FUZZ_ECHO      0xBEEF

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

static inline uint32_t fuzz_be(const uint8_t *b, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | b[i];
    return v;
}

static inline bool fuzz_all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* The server: RAIDA 7, coin 0x0106, bodies up to 4096 bytes, admin key
 * A0 A1 ... AF, a stats block (its counters grow for the whole run). */
static inline const rd_protocol_t *fuzz_protocol(void)
{
    static rd_protocol_t p;
    static bool ready;

    if (!ready) {
        memset(&p, 0, sizeof(p));
        p.raida_id = FUZZ_RAIDA_ID;
        p.coin_id = FUZZ_COIN_ID;
        p.max_body_size = FUZZ_MAX_BODY;
        p.admin_key_set = true;
        for (size_t i = 0; i < sizeof(p.admin_key); i++)
            p.admin_key[i] = (uint8_t)(0xA0 + i);
        p.stats = rd_stats_create();
        if (p.stats == NULL) {
            fprintf(stderr, "fuzz: rd_stats_create failed\n");
            abort();
        }
        ready = true;
    }
    return &p;
}

static inline uint64_t fuzz_requests(const rd_protocol_t *p)
{
    return atomic_load(&p->stats->requests);
}

#endif
