/* The coin store's files, for rd_coins.c only: page file names, the
 * journal's record format, recovery (replay) and the index of issued
 * counts. Everything here works on the files alone, never on the shared
 * memory, so that the master can run it before forking and after the last
 * worker is gone. docs/coins.md describes the formats. */
#ifndef RD_COINS_DISK_H
#define RD_COINS_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>

#include <sys/types.h>

#include "rd_coinfile.h"

#define RD_JOURNAL_NAME     "raidad.journal"
#define RD_INDEX_NAME       "raidad.index"
#define RD_LOCK_NAME        "raidad.lock"
#define RD_JOURNAL_START    4096        /* the header block; records follow */
#define RD_JREC_HEAD        28          /* magic, length, epoch, end offset, count */
#define RD_JREC_ENTRY       22          /* denomination, serial number, record */
#define RD_JREC_TAIL        4           /* CRC-32 of everything before it */
#define RD_JREC_MAX         (16u << 20) /* no record is larger: a longer length is garbage */
#define RD_PAGE_ABSENT      0xFFFF      /* issued count of a page with no file */
#define RD_COIN_PATH_MAX    (PATH_MAX + 64)  /* a folder name and one of its files */

/* One change: a staged put of a transaction is one too. */
typedef struct rd_coins_put {
    int8_t den;
    uint32_t sn;
    uint8_t rec[RD_COIN_RECORD_SIZE];
} rd_jentry_t;

/* Index 0..14 of a valid denomination. */
static inline unsigned rd_den_index(int8_t den)
{
    return (unsigned)(den - RD_COIN_MIN_DEN);
}

/* Opens PATH, a file below the data folder DIR ("DIR/..."), never through
 * a link below DIR and only if it is a regular file (a FIFO would block
 * the master): the folder belongs to the workers' user, and the master,
 * root, opens what is in it. -1 with errno on failure (ELOOP for a link,
 * EINVAL for a file of another kind). MODE counts with O_CREAT only. */
int rd_coins_disk_open(const char *dir, const char *path, int flags, mode_t mode);

/* Opens page PAGE of denomination index D (rd_coins_disk_open),
 * lowercase hex first, then uppercase; PATH gets the name tried last. -1
 * with errno on failure. */
int rd_coins_disk_page_open(const char *dir, unsigned d, unsigned page, int flags,
                            char *path, size_t len);

/* The size of a record of N entries. */
static inline size_t rd_jrec_size(size_t n)
{
    return RD_JREC_HEAD + n * RD_JREC_ENTRY + RD_JREC_TAIL;
}

/* Writes the record of N entries that ends at file offset END into BUF. */
void rd_coins_disk_jrec_encode(uint8_t *buf, uint64_t epoch, uint64_t end,
                               const rd_jentry_t *e, size_t n);

/* The length of the whole, valid record of EPOCH at file offset AT in BUF
 * (AVAIL bytes there), or 0 when there is none (torn, garbage, another
 * epoch); *COUNT gets its entries. With AVAIL < the length it says how
 * much to read (returns the length, *COUNT = 0). */
size_t rd_coins_disk_jrec_parse(const uint8_t *buf, size_t avail, uint64_t epoch, uint64_t at,
                     uint32_t *count);
void rd_coins_disk_jrec_entry(const uint8_t *rec, uint32_t i, rd_jentry_t *e);

/* The journal's header: its epoch. The write is not synced: the caller
 * syncs it with what else it changed (rd_coins.c syncs through the one
 * path a process syncs its journal by). */
int rd_coins_disk_read_epoch(int fd, uint64_t *epoch);
int rd_coins_disk_write_epoch(int fd, uint64_t epoch);

/* Issued coins (MFS not 0) in a page image. */
unsigned rd_coins_disk_page_count(const uint8_t *page);

/* The issued count of every page (RD_PAGE_ABSENT: no file), from the index
 * where it is current, else by reading the page. -1 with ERR on failure. */
int rd_coins_disk_count_all(const char *dir, uint16_t counts[RD_COIN_DENS][RD_COIN_PAGES],
                       char *err, size_t err_len);
/* Writes the index for COUNTS (atomically: a new file renamed). */
int rd_coins_disk_write_index(const char *dir, const uint16_t counts[RD_COIN_DENS][RD_COIN_PAGES]);

/* Replays the journal, resets it under a new epoch; *EPOCH gets it. */
long rd_coins_disk_replay(const char *dir, uint64_t *epoch, char *err, size_t err_len);

/* Checks DATA_DIR for a server whose workers run as UID (or (uid_t)-1 for
 * the current identity): the folder and Data/ exist and are usable, every
 * page file has the right size and owner. On failure writes "FILE: what"
 * into ERR and returns -1. */
int rd_coins_disk_check(const char *data_dir, uid_t uid, char *err, size_t err_len);

/* Replays DATA_DIR's journal into its pages and resets it; the store's own
 * recovery (also for tests). Returns the records replayed, or -1 with ERR. */
long rd_coins_disk_recover(const char *data_dir, char *err, size_t err_len);

#endif
