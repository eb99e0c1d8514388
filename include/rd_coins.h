/* The coin store: the RAIDA data directory (page files Data/DD/MM/PPPP.bin
 * of 1024 records of 17 bytes: the coin's 16-byte authenticity number, then
 * its MFS byte) made durable, atomic and shared by every worker process.
 * It serves both the authentication commands and the keys of encrypted
 * requests. docs/coins.md tells the whole design; in short:
 *
 * - Pages are mapped MAP_SHARED on demand by each process (the page cache
 *   is the one copy every worker sees). They are written only once the
 *   journal record that holds the change is on stable storage.
 * - A change is first a record of the write-ahead journal, appended under
 *   the store lock to a ring in shared memory (no system call while the
 *   store is held), and an entry in the pending table in shared memory,
 *   where every worker sees it at once.
 * - A group-commit leader (rd_coins_sync) writes what was appended to the
 *   journal file (raidad.journal beside Data/) with one pwrite, fdatasyncs
 *   it for everyone waiting, then copies the synced records into the
 *   pages.
 * - An answer that read or wrote a pending change is sent only once that
 *   change is durable: the caller waits for rd_coins_sync(dep), where dep is
 *   the journal position the transaction returned.
 *
 * The master prepares the store before any worker exists (check, journal
 * replay, issued counts, shared memory) and never touches the shared
 * memory again; workers attach with rd_coins_open. */
#ifndef RD_COINS_H
#define RD_COINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rd_coinfile.h"          /* the page files' layout */

typedef struct rd_coins_shared rd_coins_shared_t;
typedef struct rd_coins rd_coins_t;

enum rd_coin_result {
    RD_COIN_OK = 0,
    RD_COIN_MISSING = 1,    /* invalid denomination or serial number, or no page file */
    RD_COIN_ERROR = -1,     /* a transient failure (EMFILE, ENOMEM, EIO...): try again */
    RD_COIN_DAMAGED = -2,   /* the page file is unusable (wrong size...): logged once */
};

typedef struct rd_coins_conf {
    const char *data_dir;           /* the folder that holds Data/ */
    uid_t uid;                      /* owner of the files raidad creates; (uid_t)-1: as is */
    gid_t gid;
    size_t pending_max;             /* changes waiting for their sync, all workers */
    uint64_t journal_max;           /* bytes of journal that trigger a checkpoint */
    unsigned checkpoint_interval_ms;
    unsigned page_recheck_ms;       /* a missing or damaged page is looked at again after */
} rd_coins_conf_t;

/* ---- the master, before forking ------------------------------------------ */


/* Checks, locks the folder against a second raidad, replays the journal
 * into the pages (logging what it replayed), resets it, counts the issued
 * coins (index file, or a scan) and makes the shared memory. NULL with
 * "FILE: what" in ERR on failure. */
rd_coins_shared_t *rd_coins_prepare(const rd_coins_conf_t *conf, char *err, size_t err_len);

/* At the master's exit, once no worker is left: replays and resets the
 * journal from the files (not from the shared memory), writes the index,
 * and frees SH. */
void rd_coins_finish(rd_coins_shared_t *sh);


/* The data folder SH was made for. */
const char *rd_coins_shared_dir(const rd_coins_shared_t *sh);

/* ---- a process using the store ------------------------------------------- */

rd_coins_t *rd_coins_open(rd_coins_shared_t *sh, const rd_coins_conf_t *conf);
void rd_coins_close(rd_coins_t *s);

/* Maps COIN's page and faults it in, outside any lock: a transaction that
 * follows then never waits for the disk while holding the store. */
void rd_coins_prefetch(rd_coins_t *s, int8_t den, uint32_t sn);

/* The 16-byte key of an issued coin (RD_COIN_OK), with *DEP the journal
 * position an answer using it must wait for (0: none). */
int rd_coins_key(rd_coins_t *s, int8_t den, uint32_t sn, uint8_t key[RD_COIN_AN_SIZE],
                 uint64_t *dep);

/* A transaction: begin takes the store lock; get sees the store as it is
 * (pending changes included, and this transaction's own puts); put stages
 * a new record; end journals the staged records (all or none) and releases
 * the lock. Between begin and end nothing else reads or writes any coin. */
typedef struct rd_coins_txn {
    rd_coins_t *s;
    uint64_t dep;                   /* after end: the position to wait for (0: none) */
    size_t n, cap;
    struct rd_coins_put *puts;
    int error;                      /* an RD_COIN_* error met by get or put */
    bool distinct;                  /* set by the caller after begin: it names each coin
                                       once, so its own puts need not be searched */
} rd_coins_txn_t;

void rd_coins_begin(rd_coins_t *s, rd_coins_txn_t *t);
int rd_coins_get(rd_coins_txn_t *t, int8_t den, uint32_t sn, uint8_t rec[RD_COIN_RECORD_SIZE]);
int rd_coins_put(rd_coins_txn_t *t, int8_t den, uint32_t sn,
                 const uint8_t rec[RD_COIN_RECORD_SIZE]);
/* Returns RD_COIN_OK, or an error (nothing written then). */
int rd_coins_end(rd_coins_txn_t *t);

/* Returns once the journal is on stable storage up to position DEP (group
 * commit: one fdatasync serves every change appended meanwhile, from any
 * worker). Every reader sees the synced changes, from the pages or, until
 * they are copied there, from the pending table. 0, or -1 when the
 * journal cannot be synced (the store then refuses every change). */
int rd_coins_sync(rd_coins_t *s, uint64_t dep);

/* True when position DEP is durable already (no wait needed). */
bool rd_coins_synced(rd_coins_t *s, uint64_t dep);

/* Writes the pages to stable storage and empties the journal, when it is
 * over journal_max or older than checkpoint_interval_ms (or FORCE). */
int rd_coins_checkpoint(rd_coins_t *s, bool force);

/* Issued coins (MFS not 0) per denomination, -8 first. */
void rd_coins_counts(rd_coins_t *s, uint32_t counts[RD_COIN_DENS]);

/* fdatasyncs of the journal so far, all workers (group commit: far fewer
 * than the changes they made durable). */
uint64_t rd_coins_syncs(rd_coins_t *s);

/* Pages this process has mapped (they stay mapped until rd_coins_close). */
size_t rd_coins_mapped_pages(rd_coins_t *s);

/* ---- without the store --------------------------------------------------- */

/* Reads one coin's key straight from its page file (raida-cli -d). */
int rd_coins_read_key(const char *data_dir, int8_t den, uint32_t sn,
                      uint8_t key[RD_COIN_AN_SIZE]);

#endif
