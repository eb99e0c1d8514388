/* Coin list files: the coins a client owns, with their keys (ANs). One coin
 * a line, "DEN SN AN": the denomination (-8..6) and serial number in
 * decimal, the AN in 32 hex digits; blank lines and lines starting with "#"
 * are comments. raida-coins (tools/raida-coins.c) writes them for the coins
 * it issues; raida-cli and raida-bench read them, and write them back after
 * a pown so that the ANs stay current. Written whole or not at all
 * (tools/rd_atomicfile.h); comments are not kept by a rewrite. */
#ifndef RD_COINLIST_H
#define RD_COINLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_client.h"

typedef struct rd_coinlist {
    rd_client_coin_t *coin;     /* key: the coin's AN */
    size_t count;
    size_t cap;
} rd_coinlist_t;

/* Reads PATH into LIST (which starts empty: {0}). A malformed line, a coin
 * that is not valid (include/rd_coinfile.h) or listed twice fails the whole
 * file: ERR gets "PATH:LINE: what" (or "PATH: what"). Returns 0, or -1 with
 * LIST left empty. */
int rd_coinlist_read(const char *path, rd_coinlist_t *list, char *err, size_t err_len);

/* Appends a coin. Returns 0, or -1 when out of memory. */
int rd_coinlist_add(rd_coinlist_t *list, int8_t den, uint32_t sn, const uint8_t *an);

/* Index of coin (DEN, SN), or -1. A linear search. */
long rd_coinlist_find(const rd_coinlist_t *list, int8_t den, uint32_t sn);

/* Writes LIST as PATH (mode 0600: the ANs are the coins), COMMENT first as
 * "# " lines when not NULL (may hold newlines). REPLACE as for
 * rd_atomicfile_write. Returns 0, or -1 with errno. */
int rd_coinlist_write(const char *path, const rd_coinlist_t *list, const char *comment,
                      bool replace);

/* Empties LIST and frees its memory; the keys are wiped. */
void rd_coinlist_free(rd_coinlist_t *list);

#endif
