/* Read-only access to the coins' 16-byte keys, kept by the RAIDA servers in
 * page files (their layout: include/rd_coinfile.h). A record whose status
 * (MFS) byte is 0 holds no coin. The hex digits of the file's name are
 * tried in lowercase (what the RAIDA servers write), then in uppercase;
 * mixed case is not looked for.
 *
 * Pages are read on first use and kept in a bounded LRU cache, missing or
 * unreadable ones too (so that asking again costs no system call); a page
 * is read again only once the cache has dropped it. A process that must
 * see changed files makes a new store (raidad's workers do, on a reload).
 * Safe to share between threads. */
#ifndef RD_KEYSTORE_H
#define RD_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "rd_coinfile.h"

/* The layout is include/rd_coinfile.h's; these names are the store's. */
#define RD_KEY_SIZE           RD_COIN_AN_SIZE
#define RD_KEY_PAGE_RECORDS   RD_COIN_PAGE_RECORDS
#define RD_KEY_RECORD_SIZE    RD_COIN_RECORD_SIZE
#define RD_KEY_PAGE_SIZE      RD_COIN_PAGE_SIZE
#define RD_KEY_MAX_PAGE       0xFFFF    /* four hex digits: higher serial numbers have no page */

typedef struct rd_keystore rd_keystore_t;

enum rd_key_result {
    RD_KEY_FOUND = 0,
    RD_KEY_MISSING = 1,     /* no page file, or its record says there is no such coin */
    RD_KEY_ERROR = -1,      /* a page file that cannot be read whole (logged once) */
};

/* A store over DATA_DIR (the folder that holds Data/) caching at most
 * CACHE_PAGES pages (at least 1). NULL with errno set when out of memory or
 * when DATA_DIR is too long to name a page file (ENAMETOOLONG). */
rd_keystore_t *rd_keystore_create(const char *data_dir, size_t cache_pages);
void rd_keystore_destroy(rd_keystore_t *ks);

/* Copies the key of coin (DEN, SN) into KEY on RD_KEY_FOUND; KEY is left
 * alone otherwise. Returns an enum rd_key_result. */
int rd_keystore_get(rd_keystore_t *ks, int8_t den, uint32_t sn, uint8_t key[RD_KEY_SIZE]);

/* Pages in the cache now (never more than CACHE_PAGES). */
size_t rd_keystore_cached_pages(rd_keystore_t *ks);

#endif
