/* The coin store at run time: shared state, page mappings, transactions,
 * group commit and checkpoints (see include/rd_coins.h for the contract and
 * docs/coins.md for the design and the crash argument).
 *
 * Positions: every byte ever appended to the journal has a log sequence
 * number (LSN) that only grows; the journal file holds the bytes from
 * base_lsn on, at file offset RD_JOURNAL_START + (lsn - base_lsn). A
 * checkpoint moves base_lsn to the end, so an LSN a waiter holds stays
 * meaningful across it.
 *
 * Locks, both robust and process-shared, always taken in this order:
 * write_lock (the journal file's writer: a group's copy and pwrite,
 * checkpoints), then lock (every read and write of a coin, the journal's
 * tail, the pending table). No lock is held during a group's fdatasync:
 * syncs overlap. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "rd_clock.h"
#include "rd_coins.h"
#include "rd_crypto.h"
#include "rd_coins_disk.h"
#include "rd_log.h"
#include "rd_metrics.h"

enum page_state { PAGE_UNKNOWN, PAGE_MAPPED, PAGE_MISSING, PAGE_DAMAGED };

/* A change not yet copied into its page: what every reader must see. */
typedef struct pending {
    uint32_t key;               /* coin_key(); 0: free */
    uint8_t rec[RD_COIN_RECORD_SIZE];
    uint64_t lsn;               /* end of the journal record that made it */
} pending_t;

/* The shared memory. Only workers read it after the fork: the master made
 * it and never looks at it again. */
typedef struct shm {
    pthread_mutex_t lock;
    pthread_mutex_t write_lock;
    uint64_t epoch;                 /* of the journal's records */
    _Atomic uint64_t base_lsn;      /* LSN at file offset RD_JOURNAL_START: moved under
                                       both locks, read without by checkpoint_due */
    _Atomic uint64_t append_lsn;    /* end of the last whole record (in the ring) */
    _Atomic uint64_t written_lsn;   /* in the journal file up to here */
    _Atomic uint64_t synced_lsn;    /* on stable storage up to here */
    _Atomic uint64_t applied_lsn;   /* copied into the pages up to here */
    _Atomic uint32_t sync_seq;      /* moves after every sync: waiters sleep on it (futex) */
    _Atomic uint32_t sync_sleepers; /* threads asleep on sync_seq, or about to be */
    _Atomic uint64_t checkpoint_ms; /* last checkpoint (CLOCK_MONOTONIC) */
    uint64_t zeroed;                /* the file is written (zeros at least) up to this
                                       offset: under the store lock */
    _Atomic int failed;             /* the journal could not be synced: no more changes */
    uint64_t checkpoint_to;         /* the epoch a checkpoint under way moves to (both
                                       locks held); 0: none */
    _Atomic uint64_t syncs;         /* fdatasyncs of the journal so far */
    _Atomic uint16_t page_count[RD_COIN_DENS][RD_COIN_PAGES];
    /* Pending changes per page, under the store lock: a coin of a page
     * with none is read from the page without a look into the table (a
     * cache miss in a table of megabytes, per coin). */
    uint16_t page_pending[RD_COIN_DENS][RD_COIN_PAGES];
    size_t ring_cap;                /* a power of two; the ring follows the table */
    size_t pending_cap;             /* a power of two */
    size_t pending_used;
    pending_t pending[];
} shm_t;

/* The master's handle; workers inherit a copy of it through fork. */
struct rd_coins_shared {
    shm_t *shm;
    size_t mapped;
    int lock_fd;                    /* flock on raidad.lock: one raidad per folder */
    char dir[PATH_MAX];
};

typedef struct page_slot {
    _Atomic(uint8_t *) data;
    _Atomic uint8_t state;
    _Atomic uint64_t retry_ms;
} page_slot_t;

typedef rd_jentry_t put_t;

struct rd_coins {
    shm_t *sh;
    const char *dir;
    rd_coins_conf_t conf;
    int jfd;
    int dirfd;
    pthread_mutex_t map_lock;       /* this process's mappings */
    pthread_mutex_t sync_lock;      /* this process's syncs, one at a time (store_sync) */
    size_t pages_mapped;            /* under map_lock */
    page_slot_t pages[RD_COIN_DENS][RD_COIN_PAGES];
    uint8_t *buf;                   /* record encoding and reading, under the store lock */
    size_t cap;
    uint8_t *wbuf;                  /* a leader's copy of the ring (write_lock held) */
    size_t wcap;
    uint64_t stalled_at;            /* 1 + the record apply_stalled last spoke of (store
                                       lock held); 0: none */
};

static uint32_t coin_key(int8_t den, uint32_t sn)
{
    return (rd_den_index(den) << 20 | sn) + 1;
}

/* ---- the pending table (under the store lock) ---------------------------- */

static uint16_t *page_pending(shm_t *sh, uint32_t key)
{
    uint32_t id = key - 1;
    return &sh->page_pending[id >> 20][(id & 0xFFFFF) / RD_COIN_PAGE_RECORDS];
}

static size_t slot_of(const shm_t *sh, uint32_t key)
{
    uint32_t h = key * 0x9E3779B1u;
    return (h ^ (h >> 16)) & (sh->pending_cap - 1);
}

static pending_t *pending_find(shm_t *sh, uint32_t key)
{
    for (size_t i = slot_of(sh, key);; i = (i + 1) & (sh->pending_cap - 1)) {
        pending_t *p = &sh->pending[i];
        if (p->key == key)
            return p;
        if (p->key == 0)
            return NULL;
    }
}

static void pending_set(shm_t *sh, uint32_t key, const uint8_t *rec, uint64_t lsn)
{
    size_t i = slot_of(sh, key);
    while (sh->pending[i].key != 0 && sh->pending[i].key != key)
        i = (i + 1) & (sh->pending_cap - 1);
    pending_t *p = &sh->pending[i];
    if (p->key == 0) {
        sh->pending_used++;
        (*page_pending(sh, key))++;
    }
    memcpy(p->rec, rec, RD_COIN_RECORD_SIZE);
    p->lsn = lsn;
    p->key = key;
}

/* Backward-shift deletion: no tombstones, so lookups stay short. */
static void pending_remove(shm_t *sh, pending_t *p)
{
    size_t mask = sh->pending_cap - 1, i = (size_t)(p - sh->pending), j = i;
    (*page_pending(sh, p->key))--;
    for (;;) {
        j = (j + 1) & mask;
        if (sh->pending[j].key == 0)
            break;
        size_t home = slot_of(sh, sh->pending[j].key);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            sh->pending[i] = sh->pending[j];
            i = j;
        }
    }
    sh->pending[i].key = 0;
    sh->pending_used--;
}

static void pending_clear(shm_t *sh)
{
    memset(sh->pending, 0, sh->pending_cap * sizeof(pending_t));
    memset(sh->page_pending, 0, sizeof(sh->page_pending));
    sh->pending_used = 0;
}

/* ---- page mappings ------------------------------------------------------- */

/* Errors that say nothing of the file: never remembered, tried again. */
static bool transient(int err)
{
    return err != EACCES && err != EPERM && err != EISDIR && err != ELOOP
        && err != ENAMETOOLONG && err != ENXIO && err != EROFS;
}

static int page_remember(rd_coins_t *s, page_slot_t *sl, enum page_state st, const char *path,
                         const char *why)
{
    if (st == PAGE_DAMAGED && atomic_load(&sl->state) != PAGE_DAMAGED)
        rd_log(RD_LOG_ERR, "coin store: %s: %s: its coins are unusable", path, why);
    atomic_store(&sl->retry_ms, rd_clock_ms() + s->conf.page_recheck_ms);
    atomic_store(&sl->state, (uint8_t)st);
    return st == PAGE_MISSING ? RD_COIN_MISSING : RD_COIN_DAMAGED;
}

/* A page that shows up while serving is counted when first mapped. */
static void page_count_new(rd_coins_t *s, unsigned d, unsigned page, const uint8_t *data)
{
    uint16_t absent = RD_PAGE_ABSENT;
    atomic_compare_exchange_strong(&s->sh->page_count[d][page], &absent,
                                   (uint16_t)rd_coins_disk_page_count(data));
}

static int page_load(rd_coins_t *s, unsigned d, unsigned page, page_slot_t *sl)
{
    char path[RD_COIN_PATH_MAX], why[64];
    struct stat st;
    int fd = rd_coins_disk_page_open(s->dir, d, page, O_RDWR, path, sizeof(path));
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR)
            return page_remember(s, sl, PAGE_MISSING, path, NULL);
        if (!transient(err))
            return page_remember(s, sl, PAGE_DAMAGED, path, strerror(err));
        rd_log(RD_LOG_WARN, "coin store: %s: %s (tried again on next use)", path, strerror(err));
        return RD_COIN_ERROR;
    }
    if (fstat(fd, &st) < 0) {
        rd_log(RD_LOG_WARN, "coin store: fstat %s: %s (tried again on next use)", path,
               strerror(errno));
        close(fd);
        return RD_COIN_ERROR;
    }
    if (st.st_size != RD_COIN_PAGE_SIZE) {
        close(fd);
        snprintf(why, sizeof(why), "%lld bytes long, not %d", (long long)st.st_size,
                 RD_COIN_PAGE_SIZE);
        return page_remember(s, sl, PAGE_DAMAGED, path, why);
    }
    uint8_t *data = mmap(NULL, RD_COIN_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int err = errno;
    close(fd);
    if (data == MAP_FAILED) {
        rd_log(RD_LOG_WARN, "coin store: mmap %s: %s (tried again on next use)", path,
               strerror(err));
        return RD_COIN_ERROR;
    }
    page_count_new(s, d, page, data);
    rd_metrics_store_pages(++s->pages_mapped);
    atomic_store(&sl->state, PAGE_MAPPED);
    atomic_store_explicit(&sl->data, data, memory_order_release);
    return RD_COIN_OK;
}

/* The mapping of a coin's page (a valid coin). Missing pages cost no
 * system call until page_recheck_ms has passed (RECHECK: looked for at
 * once), and take nothing from any other page: there is no bounded cache
 * to evict from. */
static int page_get(rd_coins_t *s, int8_t den, uint32_t sn, bool recheck, uint8_t **rec)
{
    unsigned d = rd_den_index(den), page = sn / RD_COIN_PAGE_RECORDS;
    page_slot_t *sl = &s->pages[d][page];
    uint8_t *data = atomic_load_explicit(&sl->data, memory_order_acquire);
    int rc = RD_COIN_OK;
    if (data == NULL) {
        uint8_t st = atomic_load(&sl->state);
        if (!recheck && st != PAGE_UNKNOWN && rd_clock_ms() < atomic_load(&sl->retry_ms))
            return st == PAGE_MISSING ? RD_COIN_MISSING : RD_COIN_DAMAGED;
        pthread_mutex_lock(&s->map_lock);
        data = atomic_load_explicit(&sl->data, memory_order_acquire);
        if (data == NULL)
            rc = page_load(s, d, page, sl);
        data = atomic_load_explicit(&sl->data, memory_order_acquire);
        pthread_mutex_unlock(&s->map_lock);
    }
    if (rc != RD_COIN_OK)
        return rc;
    *rec = data + (size_t)(sn % RD_COIN_PAGE_RECORDS) * RD_COIN_RECORD_SIZE;
    return RD_COIN_OK;
}

/* The read only faults the page in: a commit thread may be writing the
 * record at that moment, and the value is thrown away, so ThreadSanitizer
 * is told not to watch this one read. */
__attribute__((no_sanitize("thread")))
void rd_coins_prefetch(rd_coins_t *s, int8_t den, uint32_t sn)
{
    uint8_t *rec;
    if (rd_coinfile_valid(den, sn) && page_get(s, den, sn, false, &rec) == RD_COIN_OK)
        (void)*(volatile uint8_t *)rec;
}

/* ---- applying synced records to the pages -------------------------------- */

static off_t file_offset(const shm_t *sh, uint64_t lsn)
{
    return (off_t)(RD_JOURNAL_START + (lsn - atomic_load(&sh->base_lsn)));
}

/* ---- the ring: the journal's tail in shared memory ----------------------- */

/* The journal is written with zeros ahead of its records, a chunk at a
 * time: a record then lands in blocks the file has already, its size does
 * not change, and fdatasync writes the data alone (a growing file also
 * makes it write the inode, or commit the file system's journal: a second
 * wait for the disk at every sync). Zeros end the replay like any record
 * that is not whole. */
#define ZERO_CHUNK (256u * 1024u)
#define ZERO_BLOCK (64u * 1024u)

static const uint8_t zeros[ZERO_BLOCK];

/* Records are appended to the ring under the store lock (a copy in memory,
 * no system call while the store is held); the group-commit leader writes
 * what was appended since the last write with one pwrite, then fdatasyncs.
 * The ring holds the bytes from applied_lsn to append_lsn: a byte is
 * overwritten only once its record is in the pages. */
static uint8_t *ring_of(shm_t *sh)
{
    return (uint8_t *)&sh->pending[sh->pending_cap];
}

static void ring_read(shm_t *sh, uint64_t lsn, uint8_t *dst, size_t len)
{
    size_t at = (size_t)(lsn & (sh->ring_cap - 1)), first = sh->ring_cap - at;
    if (first > len)
        first = len;
    memcpy(dst, ring_of(sh) + at, first);
    memcpy(dst + first, ring_of(sh), len - first);
}

static void ring_write(shm_t *sh, uint64_t lsn, const uint8_t *src, size_t len)
{
    size_t at = (size_t)(lsn & (sh->ring_cap - 1)), first = sh->ring_cap - at;
    if (first > len)
        first = len;
    memcpy(ring_of(sh) + at, src, first);
    memcpy(ring_of(sh), src + first, len - first);
}

static int write_all(int fd, const uint8_t *p, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* A record that cannot be written cannot be made durable: like a failed
 * fdatasync, the store stops taking changes (answers 252) until a restart. */
static int write_failed(rd_coins_t *s)
{
    rd_log(RD_LOG_CRIT, "coin store: cannot write the journal: %s: no more changes until a "
           "restart", strerror(errno));
    atomic_store(&s->sh->failed, 1);
    return -1;
}

/* The ring's bytes [FROM, TO) into the journal file, straight from the
 * ring: the store lock is held, so they cannot be overwritten meanwhile. */
static int ring_to_file(rd_coins_t *s, uint64_t from, uint64_t to)
{
    shm_t *sh = s->sh;
    while (from < to) {
        size_t at = (size_t)(from & (sh->ring_cap - 1)), n = sh->ring_cap - at;
        if (n > to - from)
            n = (size_t)(to - from);
        if (write_all(s->jfd, ring_of(sh) + at, n, file_offset(sh, from)) < 0)
            return write_failed(s);
        from += n;
    }
    return 0;
}

static bool buf_reserve(rd_coins_t *s, size_t len)
{
    if (len <= s->cap)
        return true;
    uint8_t *b = realloc(s->buf, len);
    if (b == NULL)
        return false;
    s->buf = b;
    s->cap = len;
    return true;
}

/* Copies one change into its page. Every change has a page (the process
 * that made it read the coin there), but the process copying it may
 * remember the page missing from before it was made, or fail to map it
 * (no descriptor or memory free): the page is looked for again, and if it
 * still cannot be had, false, and the change stays pending (every reader
 * sees it). Dropped, it would be lost at the next checkpoint. */
static bool apply_entry(rd_coins_t *s, const rd_jentry_t *e, uint64_t lsn)
{
    shm_t *sh = s->sh;
    uint8_t *rec;
    if (page_get(s, e->den, e->sn, true, &rec) != RD_COIN_OK)
        return false;
    unsigned d = rd_den_index(e->den), page = e->sn / RD_COIN_PAGE_RECORDS;
    bool was = rec[RD_COIN_AN_SIZE] != 0, is = e->rec[RD_COIN_AN_SIZE] != 0;
    memcpy(rec, e->rec, RD_COIN_RECORD_SIZE);
    if (was != is)
        atomic_fetch_add(&sh->page_count[d][page], is ? 1 : (uint16_t)-1);
    pending_t *p = pending_find(sh, coin_key(e->den, e->sn));
    if (p != NULL && p->lsn <= lsn)
        pending_remove(sh, p);
    return true;
}

/* The copying stops at a record with a change that cannot reach its page
 * yet: records are copied in order, and a later one may change the same
 * coin. The next sync, or checkpoint, of any process tries again; until
 * then the ring and the journal keep the record. Said once a record. */
static int apply_stalled(rd_coins_t *s, const rd_jentry_t *e, uint64_t at)
{
    if (s->stalled_at != at + 1)
        rd_log(RD_LOG_ERR, "coin store: the change of coin %d/%u cannot reach its page yet: "
               "kept pending and tried again at the next sync", e->den, e->sn);
    s->stalled_at = at + 1;
    return -1;
}

/* Copies the records from applied_lsn up to TO into the pages (store lock
 * held, TO synced). Records below applied_lsn were copied by another
 * process already: copying an old value again would undo a newer one. */
static int apply_locked(rd_coins_t *s, uint64_t to)
{
    shm_t *sh = s->sh;
    uint64_t at = atomic_load(&sh->applied_lsn);
    while (at < to) {
        uint32_t count;
        off_t off = file_offset(sh, at);
        /* No memory now: the record waits for the next sync, like one
         * whose page cannot be had (apply_stalled); the store goes on. */
        if (!buf_reserve(s, RD_JREC_HEAD))
            return -1;
        ring_read(sh, at, s->buf, RD_JREC_HEAD);
        size_t len = rd_coins_disk_jrec_parse(s->buf, RD_JREC_HEAD, sh->epoch, (uint64_t)off,
                                              &count);
        bool ok = len != 0 && len <= to - at;
        if (ok && !buf_reserve(s, len))
            return -1;
        if (ok) {
            ring_read(sh, at, s->buf, len);
            ok = rd_coins_disk_jrec_parse(s->buf, len, sh->epoch, (uint64_t)off, &count) == len;
        }
        if (!ok) {
            rd_log(RD_LOG_CRIT, "coin store: the journal's record at %llu is not whole in "
                   "memory: no more changes until a restart", (unsigned long long)at);
            atomic_store(&sh->failed, 1);
            return -1;
        }
        for (uint32_t i = 0; i < count; i++) {
            rd_jentry_t e;
            rd_coins_disk_jrec_entry(s->buf, i, &e);
            if (!apply_entry(s, &e, at + len))
                return apply_stalled(s, &e, at);
        }
        at += len;
        atomic_store(&sh->applied_lsn, at);
    }
    return 0;
}

static void atomic_max(_Atomic uint64_t *v, uint64_t x)
{
    uint64_t cur = atomic_load(v);
    while (cur < x && !atomic_compare_exchange_weak(v, &cur, x))
        ;
}

/* ---- waiting for a sync ---------------------------------------------------- */

/* Threads whose position another leader is syncing sleep on sync_seq:
 * woken the moment synced_lsn moves, they see their position synced and
 * go. A plain futex on the shared word: it holds no state, so a process
 * that dies while sleeping or waking leaves nothing behind. */
#define SYNC_WAIT_NS 20000000L      /* looked at again after 20 ms at most */

/* Most syncs have no one asleep: the wake is a system call only when a
 * sleeper counted itself. Either the waker sees the count, or the
 * sleeper's futex sees sync_seq moved and does not sleep (both orders
 * are sequentially consistent). A process killed between the two counts
 * leaves the count high: wakes for no one, as before the count. */
static void sync_wake(shm_t *sh)
{
    atomic_fetch_add(&sh->sync_seq, 1);
    if (atomic_load(&sh->sync_sleepers) > 0)
        syscall(SYS_futex, &sh->sync_seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void sync_sleep(shm_t *sh, uint32_t seen)
{
    struct timespec ts = { 0, SYNC_WAIT_NS };
    atomic_fetch_add(&sh->sync_sleepers, 1);
    atomic_thread_fence(memory_order_seq_cst);   /* before the kernel reads sync_seq */
    syscall(SYS_futex, &sh->sync_seq, FUTEX_WAIT, seen, &ts, NULL, 0);
    atomic_fetch_sub(&sh->sync_sleepers, 1);
}

/* Linux reports a writeback error to one sync of an open file only: of
 * two syncs at once on this process's descriptors, one could return 0
 * over bytes the other was told were lost. So a process syncs one at a
 * time, and a sync after a failure fails too (the workers' syncs, each on
 * its own descriptors, still overlap). FN is fdatasync or syncfs. */
static int store_sync(rd_coins_t *s, int (*fn)(int), int fd, const char *what)
{
    pthread_mutex_lock(&s->sync_lock);
    int rc = atomic_load(&s->sh->failed) ? -1 : fn(fd);
    if (rc < 0 && !atomic_load(&s->sh->failed)) {
        rd_log(RD_LOG_CRIT, "coin store: %s: %s: no more changes until a restart", what,
               strerror(errno));
        atomic_store(&s->sh->failed, 1);
    }
    pthread_mutex_unlock(&s->sync_lock);
    return rc < 0 ? -1 : 0;
}

/* After a failed fdatasync the kernel may have dropped the pages it could
 * not write: nothing appended can be called durable any more. */
static int journal_sync(rd_coins_t *s)
{
    uint64_t start = rd_clock_ns();
    atomic_fetch_add(&s->sh->syncs, 1);
    if (store_sync(s, fdatasync, s->jfd, "fdatasync of the journal") < 0)
        return -1;
    rd_metrics_store_sync(rd_clock_ns() - start);
    return 0;
}

/* Syncs and applies everything appended, store lock held: for a repair,
 * a full pending table or a checkpoint. The pending table empties. */
static int flush_locked(rd_coins_t *s)
{
    shm_t *sh = s->sh;
    uint64_t end = atomic_load(&sh->append_lsn);
    if (ring_to_file(s, atomic_load(&sh->written_lsn), end) < 0)
        return -1;
    atomic_max(&sh->written_lsn, end);
    if (journal_sync(s) < 0)
        return -1;
    atomic_max(&sh->synced_lsn, end);
    sync_wake(sh);
    if (apply_locked(s, end) < 0)
        return -1;
    pending_clear(sh);
    return 0;
}

/* A checkpoint that cannot make the pages durable must never empty the
 * journal, which a restart copies into the pages again; a writeback error
 * is reported once, so a later checkpoint could not tell: the store takes
 * no more changes (store_sync). */
static int pages_sync(rd_coins_t *s)
{
    return store_sync(s, syncfs, s->dirfd, "checkpoint: syncfs");
}

/* Pages to stable storage, then a new epoch in the journal's header: the
 * records of the old one are ignored from then on. Both locks held, or
 * the store lock by whoever finishes the checkpoint of a process killed
 * half-way (store_lock): the epoch it moves to is set before anything is
 * written, so that no record is appended under the old epoch to a journal
 * whose header may say the new one (a replay would stop at it). Every step
 * may be done twice. */
static int checkpoint_locked(rd_coins_t *s)
{
    shm_t *sh = s->sh;
    if (sh->checkpoint_to == 0)
        sh->checkpoint_to = sh->epoch + 1;
    int rc = flush_locked(s) < 0 || pages_sync(s) < 0 ? -1 : 0;
    /* A header that may say the new epoch is harmless once the pages are
     * durable: no record is appended after a failure. */
    if (rc == 0 && rd_coins_disk_write_epoch(s->jfd, sh->checkpoint_to) < 0)
        rc = write_failed(s);
    if (rc == 0)
        rc = journal_sync(s);
    if (rc < 0) {
        sh->checkpoint_to = 0;
        return -1;
    }
    sh->epoch = sh->checkpoint_to;
    atomic_store(&sh->base_lsn, atomic_load(&sh->append_lsn));
    sh->zeroed = RD_JOURNAL_START;
    sh->checkpoint_to = 0;
    rd_log_debug("coin store: checkpoint: journal emptied, epoch %llu",
                 (unsigned long long)sh->epoch);
    if (ftruncate(s->jfd, RD_JOURNAL_START) < 0)
        rd_log(RD_LOG_WARN, "coin store: cannot shorten the journal: %s", strerror(errno));
    return 0;
}

/* A process died holding the lock: whatever it left half done (a pending
 * entry, a page record being copied) is made right from the journal, which
 * it wrote first. Its record is whole in the journal or not counted in
 * append_lsn. A checkpoint it left half done is finished first: it held
 * write_lock too, so no leader is between its copy of the ring and its
 * write (the copy takes the store lock, which comes here first). */
static void store_lock(rd_coins_t *s)
{
    shm_t *sh = s->sh;
    if (pthread_mutex_lock(&sh->lock) != EOWNERDEAD)
        return;
    rd_log(RD_LOG_WARN, "coin store: a process died holding the store: repairing from the journal");
    if (sh->checkpoint_to != 0 && !atomic_load(&sh->failed))
        checkpoint_locked(s);
    else
        flush_locked(s);
    pthread_mutex_consistent(&sh->lock);
}

static void store_unlock(rd_coins_t *s)
{
    pthread_mutex_unlock(&s->sh->lock);
}

/* Offsets only grow and every step is redone safely: a dead leader's
 * work is simply done again by the next. */
static void write_lock(rd_coins_t *s)
{
    if (pthread_mutex_lock(&s->sh->write_lock) == EOWNERDEAD)
        pthread_mutex_consistent(&s->sh->write_lock);
}

static void write_unlock(rd_coins_t *s)
{
    pthread_mutex_unlock(&s->sh->write_lock);
}

/* ---- transactions -------------------------------------------------------- */

void rd_coins_begin(rd_coins_t *s, rd_coins_txn_t *t)
{
    *t = (rd_coins_txn_t){ .s = s };
    store_lock(s);
}

static put_t *txn_find(rd_coins_txn_t *t, int8_t den, uint32_t sn)
{
    if (t->distinct)
        return NULL;
    for (size_t i = t->n; i-- > 0;)
        if (t->puts[i].den == den && t->puts[i].sn == sn)
            return &t->puts[i];
    return NULL;
}

int rd_coins_get(rd_coins_txn_t *t, int8_t den, uint32_t sn, uint8_t rec[RD_COIN_RECORD_SIZE])
{
    rd_coins_t *s = t->s;
    if (!rd_coinfile_valid(den, sn))
        return RD_COIN_MISSING;
    put_t *own = txn_find(t, den, sn);
    if (own != NULL) {
        memcpy(rec, own->rec, RD_COIN_RECORD_SIZE);
        return RD_COIN_OK;
    }
    uint8_t *at;
    int rc = page_get(s, den, sn, false, &at);
    if (rc != RD_COIN_OK) {
        if (rc != RD_COIN_MISSING)
            t->error = rc;
        return rc;
    }
    uint32_t key = coin_key(den, sn);
    pending_t *p = *page_pending(s->sh, key) != 0 ? pending_find(s->sh, key) : NULL;
    if (p == NULL) {
        memcpy(rec, at, RD_COIN_RECORD_SIZE);
        return RD_COIN_OK;
    }
    memcpy(rec, p->rec, RD_COIN_RECORD_SIZE);
    if (p->lsn > t->dep && p->lsn > atomic_load(&s->sh->synced_lsn))
        t->dep = p->lsn;
    return RD_COIN_OK;
}

int rd_coins_put(rd_coins_txn_t *t, int8_t den, uint32_t sn, const uint8_t rec[RD_COIN_RECORD_SIZE])
{
    put_t *p = txn_find(t, den, sn);
    if (p == NULL) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 8;
            put_t *n = realloc(t->puts, cap * sizeof(*n));
            if (n == NULL)
                return t->error = RD_COIN_ERROR;
            t->puts = n;
            t->cap = cap;
        }
        p = &t->puts[t->n++];
        p->den = den;
        p->sn = sn;
    }
    memcpy(p->rec, rec, RD_COIN_RECORD_SIZE);
    return RD_COIN_OK;
}

/* Appends the record to the ring: copied whole before append_lsn counts
 * it, so that a death half-way leaves bytes that the next append
 * overwrites. The file gets it from the next sync's leader. */
static int txn_append(rd_coins_txn_t *t)
{
    rd_coins_t *s = t->s;
    shm_t *sh = s->sh;
    size_t len = rd_jrec_size(t->n);
    if (t->n > sh->pending_cap / 2 || len > sh->ring_cap / 2) {
        /* Cannot happen: the table holds what the largest body names
         * (rd_config_coins). */
        rd_log(RD_LOG_ERR, "coin store: %zu changes in one request: more than the pending "
               "table holds", t->n);
        return RD_COIN_ERROR;
    }
    if (!buf_reserve(s, len))
        return RD_COIN_ERROR;
    uint64_t at = atomic_load(&sh->append_lsn);
    if ((sh->pending_used + t->n > sh->pending_cap / 2
         || at + len - atomic_load(&sh->applied_lsn) > sh->ring_cap)
        && flush_locked(s) < 0)
        return RD_COIN_ERROR;
    uint64_t file_end = (uint64_t)file_offset(sh, at) + len;
    rd_coins_disk_jrec_encode(s->buf, sh->epoch, file_end, t->puts, t->n);
    ring_write(sh, at, s->buf, len);
    atomic_store(&sh->append_lsn, at + len);
    for (size_t i = 0; i < t->n; i++)
        pending_set(sh, coin_key(t->puts[i].den, t->puts[i].sn), t->puts[i].rec, at + len);
    t->dep = at + len;
    return RD_COIN_OK;
}

int rd_coins_end(rd_coins_txn_t *t)
{
    rd_coins_t *s = t->s;
    int rc = t->error;
    if (rc == RD_COIN_OK && t->n > 0)
        rc = atomic_load(&s->sh->failed) ? RD_COIN_ERROR : txn_append(t);
    store_unlock(s);
    free(t->puts);
    t->puts = NULL;
    t->n = t->cap = 0;
    return rc;
}

int rd_coins_key(rd_coins_t *s, int8_t den, uint32_t sn, uint8_t key[RD_COIN_AN_SIZE],
                 uint64_t *dep)
{
    rd_coins_txn_t t;
    uint8_t rec[RD_COIN_RECORD_SIZE];
    *dep = 0;
    if (!rd_coinfile_valid(den, sn))
        return RD_COIN_MISSING;
    rd_coins_prefetch(s, den, sn);
    rd_coins_begin(s, &t);
    int rc = rd_coins_get(&t, den, sn, rec);
    *dep = t.dep;
    rd_coins_end(&t);
    if (rc == RD_COIN_OK && rec[RD_COIN_AN_SIZE] == 0)
        rc = RD_COIN_MISSING;
    if (rc == RD_COIN_OK)
        memcpy(key, rec, RD_COIN_AN_SIZE);
    rd_crypto_wipe(rec, sizeof(rec));   /* a memset the compiler would drop */
    return rc;
}

/* ---- group commit -------------------------------------------------------- */

bool rd_coins_synced(rd_coins_t *s, uint64_t dep)
{
    return dep == 0 || atomic_load(&s->sh->synced_lsn) >= dep;
}

/* Called by the leader under the store lock, so that no record byte lies
 * beyond file_offset(append_lsn) while the zeros are written: they never
 * cover a record. A failure costs speed only (the records extend the file
 * themselves), so it is logged and the chunk skipped. */
static void zero_ahead(rd_coins_t *s)
{
    shm_t *sh = s->sh;
    uint64_t at = (uint64_t)file_offset(sh, atomic_load(&sh->append_lsn));
    if (sh->zeroed > at + ZERO_CHUNK / 2)
        return;
    if (sh->zeroed > at)
        at = sh->zeroed;
    for (uint64_t end = at + ZERO_CHUNK; at < end; at += ZERO_BLOCK)
        if (write_all(s->jfd, zeros, ZERO_BLOCK, (off_t)at) < 0) {
            rd_log(RD_LOG_WARN, "coin store: cannot write ahead in the journal: %s",
                   strerror(errno));
            at = end;
            break;
        }
    sh->zeroed = at;
}

/* The leader's copy of what is to be written: the ring's bytes from
 * written_lsn to append_lsn. Copied under the store lock, because a full
 * ring makes an appender flush (write, sync, apply) and reuse the bytes
 * while the leader writes; writing the copy then rewrites the same bytes
 * at the same offsets, which is harmless. */
static int leader_copy(rd_coins_t *s, uint64_t *from, uint64_t *end)
{
    shm_t *sh = s->sh;
    int rc = 0;
    store_lock(s);
    *end = atomic_load(&sh->append_lsn);
    *from = atomic_load(&sh->written_lsn);
    size_t len = (size_t)(*end - *from);
    if (len > s->wcap) {
        uint8_t *b = realloc(s->wbuf, len);
        if (b == NULL) {
            rc = -1;
        } else {
            s->wbuf = b;
            s->wcap = len;
        }
    }
    if (rc == 0 && len > 0)
        ring_read(sh, *from, s->wbuf, len);
    if (rc == 0)
        zero_ahead(s);
    store_unlock(s);
    return rc;
}

/* One group (write_lock held on entry, released here): everything
 * appended so far is written with one pwrite, the lock is let go, then the
 * group is synced and copied into the pages. An fdatasync makes durable
 * every byte written before it began, whoever wrote it, so the next
 * leader may write and sync its own group while this sync is under way:
 * the position synced only grows, to the end each sync was called for. */
static int lead_sync(rd_coins_t *s)
{
    shm_t *sh = s->sh;
    uint64_t end = 0, from = 0;
    int rc = atomic_load(&sh->failed) ? -1 : leader_copy(s, &from, &end);
    /* The write runs with the store free: requests go on appending. */
    if (rc == 0 && from < end && write_all(s->jfd, s->wbuf, (size_t)(end - from),
                                           file_offset(sh, from)) < 0)
        rc = write_failed(s);
    if (rc == 0)
        atomic_max(&sh->written_lsn, end);
    write_unlock(s);
    if (rc == 0)
        rc = journal_sync(s);
    if (rc == 0)
        atomic_max(&sh->synced_lsn, end);
    sync_wake(sh);
    /* The group is durable whether or not its changes reach the pages
     * now: one that cannot stays pending (apply_entry). */
    if (rc == 0) {
        store_lock(s);
        (void)apply_locked(s, atomic_load(&sh->synced_lsn));
        store_unlock(s);
    }
    return rc;
}

/* A position written by a leader whose sync never ends (it was killed
 * mid-sync, or the disk is that slow) is synced again by a waiter after
 * this long: one more fdatasync costs less than an answer that never
 * comes. */
#define SYNC_TAKEOVER_MS 100

/* DEP is in the file and a sync under way covers it. */
static bool sync_under_way(rd_coins_t *s, uint64_t dep, uint64_t since_ms)
{
    return atomic_load(&s->sh->written_lsn) >= dep
        && rd_clock_ms() - since_ms < SYNC_TAKEOVER_MS;
}

/* Group commit: whoever takes write_lock writes everything appended so
 * far and syncs it; a position already written waits for the sync under
 * way, asleep until a sync ends. write_lock is held only for a copy and a
 * pwrite, so the next group's leader waits for it briefly, and its sync
 * overlaps the last one. */
int rd_coins_sync(rd_coins_t *s, uint64_t dep)
{
    shm_t *sh = s->sh;
    uint64_t since = rd_clock_ms();
    for (;;) {
        uint32_t seen = atomic_load(&sh->sync_seq);
        if (rd_coins_synced(s, dep))
            return 0;
        if (atomic_load(&sh->failed))
            return -1;
        if (sync_under_way(s, dep, since)) {
            sync_sleep(sh, seen);
            continue;
        }
        write_lock(s);
        if (rd_coins_synced(s, dep) || sync_under_way(s, dep, since)) {
            write_unlock(s);
            continue;
        }
        if (lead_sync(s) < 0)
            return -1;
    }
}

static bool checkpoint_due(rd_coins_t *s)
{
    shm_t *sh = s->sh;
    uint64_t used = atomic_load(&sh->append_lsn) - atomic_load(&sh->base_lsn);
    if (used == 0)
        return false;
    return used >= s->conf.journal_max
        || rd_clock_ms() - atomic_load(&sh->checkpoint_ms) >= s->conf.checkpoint_interval_ms;
}

int rd_coins_checkpoint(rd_coins_t *s, bool force)
{
    shm_t *sh = s->sh;
    if (!force && !checkpoint_due(s))
        return 0;
    /* Most dirty pages are written now, with no lock held; the syncfs
     * under the locks then has little left to do, and requests wait for
     * it only briefly. Its error is this one's to see (once). */
    if (pages_sync(s) < 0)
        return -1;
    write_lock(s);
    store_lock(s);
    int rc = 0;
    if ((force || checkpoint_due(s)) && !atomic_load(&sh->failed)) {
        rc = checkpoint_locked(s);
        atomic_store(&sh->checkpoint_ms, rd_clock_ms());
    }
    store_unlock(s);
    write_unlock(s);
    sync_wake(sh);
    return rc;
}

void rd_coins_counts(rd_coins_t *s, uint32_t counts[RD_COIN_DENS])
{
    for (unsigned d = 0; d < RD_COIN_DENS; d++) {
        uint32_t n = 0;
        for (unsigned page = 0; page < RD_COIN_PAGES; page++) {
            uint16_t c = atomic_load_explicit(&s->sh->page_count[d][page], memory_order_relaxed);
            n += c == RD_PAGE_ABSENT ? 0 : c;
        }
        counts[d] = n;
    }
}

/* ---- the master ---------------------------------------------------------- */

static int init_lock(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    int rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc;
}

static size_t pending_capacity(size_t want)
{
    size_t cap = 4096;
    while (cap < want * 2 && cap < ((size_t)1 << 28))
        cap *= 2;
    return cap;
}

static int take_folder(rd_coins_shared_t *h, const rd_coins_conf_t *conf, char *err, size_t len)
{
    char path[RD_COIN_PATH_MAX];
    snprintf(path, sizeof(path), "%s/" RD_LOCK_NAME, conf->data_dir);
    h->lock_fd = rd_coins_disk_open(conf->data_dir, path, O_RDWR | O_CREAT, 0600);
    if (h->lock_fd < 0) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(h->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, len, "%s: %s", path, errno == EWOULDBLOCK
                 ? "another raidad serves this data folder" : strerror(errno));
        return -1;
    }
    return 0;
}

/* Files the master creates belong to the workers' user. */
static void give_files(const rd_coins_conf_t *conf)
{
    static const char *const names[] = { RD_JOURNAL_NAME, RD_INDEX_NAME, RD_LOCK_NAME };
    char path[RD_COIN_PATH_MAX];
    if (conf->uid == (uid_t)-1 || geteuid() != 0)
        return;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", conf->data_dir, names[i]);
        /* lchown: a link put there by the workers' user gets its own
         * owner, never its target (the opens refuse it). */
        if (lchown(path, conf->uid, conf->gid) < 0 && errno != ENOENT)
            rd_log(RD_LOG_WARN, "coin store: chown %s: %s", path, strerror(errno));
    }
}

/* Room for two records of the most changes a transaction may make. */
static size_t ring_capacity(size_t pending_cap)
{
    size_t cap = 64 * 1024;
    while (cap < 2 * rd_jrec_size(pending_cap / 2))
        cap *= 2;
    return cap;
}

static shm_t *shm_make(size_t pending_max, size_t *mapped)
{
    size_t cap = pending_capacity(pending_max), ring = ring_capacity(cap);
    *mapped = sizeof(shm_t) + cap * sizeof(pending_t) + ring;
    shm_t *sh = mmap(NULL, *mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return NULL;
    sh->pending_cap = cap;
    sh->ring_cap = ring;
    if (init_lock(&sh->lock) != 0 || init_lock(&sh->write_lock) != 0) {
        munmap(sh, *mapped);
        return NULL;
    }
    return sh;
}

static void shared_free(rd_coins_shared_t *h)
{
    if (h->shm != NULL)
        munmap(h->shm, h->mapped);
    if (h->lock_fd >= 0)
        close(h->lock_fd);
    free(h);
}

rd_coins_shared_t *rd_coins_prepare(const rd_coins_conf_t *conf, char *err, size_t len)
{
    uint16_t (*counts)[RD_COIN_PAGES] = NULL;
    uint64_t epoch = 0;
    rd_coins_shared_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, len, "%s: out of memory", conf->data_dir);
        return NULL;
    }
    h->lock_fd = -1;
    snprintf(h->dir, sizeof(h->dir), "%s", conf->data_dir);
    int rc = rd_coins_disk_check(conf->data_dir, conf->uid, err, len);
    if (rc == 0)
        rc = take_folder(h, conf, err, len);
    if (rc == 0)
        rc = rd_coins_disk_replay(conf->data_dir, &epoch, err, len) < 0 ? -1 : 0;
    if (rc == 0 && (counts = calloc(RD_COIN_DENS, sizeof(*counts))) == NULL)
        rc = -1;
    if (rc == 0)
        rc = rd_coins_disk_count_all(conf->data_dir, counts, err, len);
    if (rc == 0
        && rd_coins_disk_write_index(conf->data_dir, (const uint16_t (*)[RD_COIN_PAGES])counts) < 0)
        rd_log(RD_LOG_WARN, "coin store: cannot write the index in %s: %s", conf->data_dir,
               strerror(errno));
    if (rc == 0 && (h->shm = shm_make(conf->pending_max, &h->mapped)) == NULL) {
        snprintf(err, len, "%s: shared memory: %s", conf->data_dir, strerror(errno));
        rc = -1;
    }
    if (rc == 0) {
        h->shm->epoch = epoch;
        for (unsigned d = 0; d < RD_COIN_DENS; d++)
            for (unsigned page = 0; page < RD_COIN_PAGES; page++)
                atomic_init(&h->shm->page_count[d][page], counts[d][page]);
        atomic_init(&h->shm->checkpoint_ms, rd_clock_ms());
        give_files(conf);
    }
    free(counts);
    if (rc < 0) {
        shared_free(h);
        return NULL;
    }
    return h;
}

const char *rd_coins_shared_dir(const rd_coins_shared_t *sh)
{
    return sh->dir;
}

void rd_coins_finish(rd_coins_shared_t *h)
{
    char err[PATH_MAX + 128];
    uint64_t epoch;
    if (h == NULL)
        return;
    /* From the files only: a worker may have left the shared memory in
     * any state. */
    if (rd_coins_disk_replay(h->dir, &epoch, err, sizeof(err)) < 0) {
        rd_log(RD_LOG_ERR, "coin store: %s", err);
    } else {
        uint16_t (*counts)[RD_COIN_PAGES] = calloc(RD_COIN_DENS, sizeof(*counts));
        if (counts != NULL && rd_coins_disk_count_all(h->dir, counts, err, sizeof(err)) == 0)
            rd_coins_disk_write_index(h->dir, (const uint16_t (*)[RD_COIN_PAGES])counts);
        free(counts);
    }
    shared_free(h);
}

/* ---- a process's handle -------------------------------------------------- */

rd_coins_t *rd_coins_open(rd_coins_shared_t *h, const rd_coins_conf_t *conf)
{
    char path[RD_COIN_PATH_MAX];
    rd_coins_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->sh = h->shm;
    s->dir = h->dir;
    s->conf = *conf;
    snprintf(path, sizeof(path), "%s/" RD_JOURNAL_NAME, h->dir);
    s->jfd = rd_coins_disk_open(h->dir, path, O_RDWR, 0);
    s->dirfd = open(h->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->jfd < 0 || s->dirfd < 0 || pthread_mutex_init(&s->map_lock, NULL) != 0
        || pthread_mutex_init(&s->sync_lock, NULL) != 0) {
        int err = errno;
        if (s->jfd >= 0)
            close(s->jfd);
        if (s->dirfd >= 0)
            close(s->dirfd);
        free(s);
        errno = err;
        return NULL;
    }
    return s;
}

void rd_coins_close(rd_coins_t *s)
{
    if (s == NULL)
        return;
    for (unsigned d = 0; d < RD_COIN_DENS; d++)
        for (unsigned page = 0; page < RD_COIN_PAGES; page++)
            if (s->pages[d][page].data != NULL)
                munmap(s->pages[d][page].data, RD_COIN_PAGE_SIZE);
    pthread_mutex_destroy(&s->map_lock);
    pthread_mutex_destroy(&s->sync_lock);
    close(s->jfd);
    close(s->dirfd);
    free(s->buf);
    free(s->wbuf);
    free(s);
}

uint64_t rd_coins_syncs(rd_coins_t *s)
{
    return atomic_load(&s->sh->syncs);
}

size_t rd_coins_mapped_pages(rd_coins_t *s)
{
    size_t n = 0;
    for (unsigned d = 0; d < RD_COIN_DENS; d++)
        for (unsigned page = 0; page < RD_COIN_PAGES; page++)
            n += atomic_load(&s->pages[d][page].data) != NULL;
    return n;
}

/* ---- without the store --------------------------------------------------- */

int rd_coins_read_key(const char *dir, int8_t den, uint32_t sn, uint8_t key[RD_COIN_AN_SIZE])
{
    char path[RD_COIN_PATH_MAX];
    uint8_t rec[RD_COIN_RECORD_SIZE];
    if (!rd_coinfile_valid(den, sn))
        return RD_COIN_MISSING;
    int fd = rd_coins_disk_page_open(dir, rd_den_index(den), sn / RD_COIN_PAGE_RECORDS, O_RDONLY,
                          path, sizeof(path));
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? RD_COIN_MISSING : RD_COIN_ERROR;
    off_t at = (off_t)(sn % RD_COIN_PAGE_RECORDS) * RD_COIN_RECORD_SIZE;
    ssize_t n = pread(fd, rec, sizeof(rec), at);
    close(fd);
    if (n != (ssize_t)sizeof(rec))
        return RD_COIN_DAMAGED;
    if (rec[RD_COIN_AN_SIZE] == 0)
        return RD_COIN_MISSING;
    memcpy(key, rec, RD_COIN_AN_SIZE);
    return RD_COIN_OK;
}
