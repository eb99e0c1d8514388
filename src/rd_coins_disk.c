/* The coin store's files: page names, the data folder check, the journal's
 * record format and its replay, and the index that keeps the issued counts
 * so that a start need not read every page. All of it works on the files
 * alone (see include/rd_coins_disk.h and docs/coins.md). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <linux/openat2.h>

#include "rd_bytes.h"
#include "rd_coins_disk.h"
#include "rd_log.h"

#define JREC_MAGIC      0x52444a52u     /* "RDJR" */
#define JHEAD_MAGIC     "RDJOURN1"
#define INDEX_MAGIC     "RDINDEX1"
#define INDEX_ENTRY     21              /* den, page, count, mtime (ns), inode */
#define INDEX_TRUST_S   2               /* a page changed this close to the index is read */

/* ---- page files ---------------------------------------------------------- */

/* The uppercase name is only ever looked for, for older installations. */
static void page_name(const char *dir, unsigned d, unsigned page, bool upper, char *buf, size_t len)
{
    int8_t den = (int8_t)((int)d + RD_COIN_MIN_DEN);
    (void)rd_coinfile_page_path(buf, len, dir, den, page, upper);   /* too long: open fails */
}

/* Both spellings name the same file when no digit is a letter. */
static bool has_letter(unsigned d, unsigned page)
{
    unsigned den = (uint8_t)(int8_t)((int)d + RD_COIN_MIN_DEN);
    for (unsigned v = den << 16 | page; v != 0; v >>= 4)
        if ((v & 0xF) >= 0xA)
            return true;
    return false;
}

/* PATH below DIR, resolved under DIR with no link anywhere on the way
 * (openat2's RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so that a folder the
 * workers' user swapped for a link is not gone through either; DIR itself
 * is the operator's and may be one. A kernel without openat2 gets
 * O_NOFOLLOW on the last name only. */
static int open_beneath(const char *dir, const char *path, int flags, mode_t mode)
{
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0 || path[n] != '/') {
        errno = EINVAL;
        return -1;
    }
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    struct open_how how = { .flags = (uint64_t)flags, .mode = (flags & O_CREAT) ? mode : 0,
                            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS };
    int fd = (int)syscall(SYS_openat2, dfd, path + n + 1, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)
        fd = openat(dfd, path + n + 1, flags, mode);
    int err = errno;
    close(dfd);
    errno = err;
    return fd;
}

int rd_coins_disk_open(const char *dir, const char *path, int flags, mode_t mode)
{
    /* O_NONBLOCK keeps the open of a FIFO from waiting; a regular file
     * ignores it in every later call. */
    int fd = open_beneath(dir, path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
    struct stat st;
    if (fd < 0)
        return -1;
    int err = fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
    if (err != 0) {
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int rd_coins_disk_page_open(const char *dir, unsigned d, unsigned page, int flags,
                            char *path, size_t len)
{
    page_name(dir, d, page, false, path, len);
    int fd = rd_coins_disk_open(dir, path, flags, 0);
    if (fd >= 0 || errno != ENOENT || !has_letter(d, page))
        return fd;
    page_name(dir, d, page, true, path, len);
    return rd_coins_disk_open(dir, path, flags, 0);
}

/* lstat: a link in the page's place is "not a regular file" (check_page). */
static int page_stat(const char *dir, unsigned d, unsigned page, struct stat *st, char *path,
                     size_t len)
{
    page_name(dir, d, page, false, path, len);
    if (lstat(path, st) == 0)
        return 0;
    if (errno != ENOENT || !has_letter(d, page))
        return -1;
    page_name(dir, d, page, true, path, len);
    return lstat(path, st);
}

unsigned rd_coins_disk_page_count(const uint8_t *page)
{
    unsigned n = 0;
    for (size_t i = 0; i < RD_COIN_PAGE_RECORDS; i++)
        n += page[i * RD_COIN_RECORD_SIZE + RD_COIN_AN_SIZE] != 0;
    return n;
}

/* ---- the check ----------------------------------------------------------- */

static int fail(char *err, size_t len, const char *file, const char *what)
{
    snprintf(err, len, "%s: %s", file, what);
    return -1;
}

/* Usable by the workers: owned by UID when raidad creates them as another
 * user, else readable and writable by who we are. */
static int check_usable(const char *path, const struct stat *st, uid_t uid, char *err, size_t len)
{
    char why[96];
    if (uid != (uid_t)-1 && st->st_uid != uid) {
        snprintf(why, sizeof(why), "owned by uid %lu, not by the workers' user (uid %lu)",
                 (unsigned long)st->st_uid, (unsigned long)uid);
        return fail(err, len, path, why);
    }
    int mode = R_OK | W_OK | (S_ISDIR(st->st_mode) ? X_OK : 0);
    if (uid == (uid_t)-1 && faccessat(AT_FDCWD, path, mode, AT_EACCESS) < 0)
        return fail(err, len, path, "cannot be read and written (permissions)");
    return 0;
}

static int check_dir(const char *path, uid_t uid, char *err, size_t len)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return fail(err, len, path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail(err, len, path, "not a folder");
    return check_usable(path, &st, uid, err, len);
}

static int check_page(const char *dir, unsigned d, unsigned page, uid_t uid, char *err, size_t len)
{
    char path[RD_COIN_PATH_MAX], why[96];
    struct stat st;
    errno = 0;
    if (page_stat(dir, d, page, &st, path, sizeof(path)) < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : fail(err, len, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(err, len, path, "not a regular file");
    if (st.st_size != RD_COIN_PAGE_SIZE) {
        snprintf(why, sizeof(why), "%lld bytes long, not %d: not a page file",
                 (long long)st.st_size, RD_COIN_PAGE_SIZE);
        return fail(err, len, path, why);
    }
    return check_usable(path, &st, uid, err, len);
}

/* A file raidad keeps beside Data/, if there: a regular file, not a link
 * the workers' user put there for the master to open (rd_coins_disk_open
 * refuses it too, but this says it at raidad -t). */
static int check_own_file(const char *dir, const char *name, char *err, size_t len)
{
    char path[RD_COIN_PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : fail(err, len, path, strerror(errno));
    return S_ISREG(st.st_mode) ? 0 : fail(err, len, path, "not a regular file");
}

/* PATH, if there, is a folder: not a link the workers' user put there (the
 * opens refuse one too, rd_coins_disk_open; this names it). */
static int check_folder(const char *path, char *err, size_t len)
{
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        return fail(err, len, path, "not a folder (a link, or a file)");
    return 0;
}

/* Data/, and in both spellings each denomination's folder and each folder
 * of 256 pages in it. */
static int check_folders(const char *dir, char *err, size_t len)
{
    char path[RD_COIN_PATH_MAX];
    snprintf(path, sizeof(path), "%s/Data", dir);
    if (check_folder(path, err, len) < 0)
        return -1;
    for (unsigned d = 0; d < RD_COIN_DENS; d++)
        for (int upper = 0; upper < 2; upper++)
            for (unsigned group = 0; group <= (RD_COIN_PAGES - 1) >> 8; group++) {
                page_name(dir, d, group << 8, upper, path, sizeof(path));
                *strrchr(path, '/') = '\0';             /* Data/DD/MM */
                if (check_folder(path, err, len) < 0)
                    return -1;
                *strrchr(path, '/') = '\0';             /* Data/DD */
                if (group == 0 && check_folder(path, err, len) < 0)
                    return -1;
            }
    return 0;
}

int rd_coins_disk_check(const char *dir, uid_t uid, char *err, size_t len)
{
    char path[RD_COIN_PATH_MAX];
    if (strlen(dir) >= PATH_MAX - 64)
        return fail(err, len, dir, "name too long");
    if (check_dir(dir, uid, err, len) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/Data", dir);
    if (check_dir(path, uid, err, len) < 0)
        return -1;
    if (check_own_file(dir, RD_LOCK_NAME, err, len) < 0
        || check_own_file(dir, RD_JOURNAL_NAME, err, len) < 0
        || check_folders(dir, err, len) < 0)
        return -1;
    for (unsigned d = 0; d < RD_COIN_DENS; d++)
        for (unsigned page = 0; page < RD_COIN_PAGES; page++)
            if (check_page(dir, d, page, uid, err, len) < 0)
                return -1;
    return 0;
}

/* ---- journal records ----------------------------------------------------- */

void rd_coins_disk_jrec_encode(uint8_t *buf, uint64_t epoch, uint64_t end,
                               const rd_jentry_t *e, size_t n)
{
    size_t len = rd_jrec_size(n);
    rd_put_be(buf, JREC_MAGIC, 4);
    rd_put_be(buf + 4, len, 4);
    rd_put_be(buf + 8, epoch, 8);
    rd_put_be(buf + 16, end, 8);
    rd_put_be(buf + 24, n, 4);
    uint8_t *p = buf + RD_JREC_HEAD;
    for (size_t i = 0; i < n; i++, p += RD_JREC_ENTRY) {
        p[0] = (uint8_t)e[i].den;
        rd_put_be(p + 1, e[i].sn, 4);
        memcpy(p + 5, e[i].rec, RD_COIN_RECORD_SIZE);
    }
    rd_put_be(p, crc32(0L, buf, (uInt)(len - RD_JREC_TAIL)), 4);
}

size_t rd_coins_disk_jrec_parse(const uint8_t *buf, size_t avail, uint64_t epoch, uint64_t at,
                     uint32_t *count)
{
    *count = 0;
    if (avail < RD_JREC_HEAD || rd_get_be(buf, 4) != JREC_MAGIC)
        return 0;
    size_t len = (size_t)rd_get_be(buf + 4, 4);
    uint32_t n = (uint32_t)rd_get_be(buf + 24, 4);
    if (len > RD_JREC_MAX || len != rd_jrec_size(n) || n == 0
        || rd_get_be(buf + 8, 8) != epoch || rd_get_be(buf + 16, 8) != at + len)
        return 0;
    if (avail < len)
        return len;
    if (rd_get_be(buf + len - RD_JREC_TAIL, 4) != crc32(0L, buf, (uInt)(len - RD_JREC_TAIL)))
        return 0;
    *count = n;
    return len;
}

void rd_coins_disk_jrec_entry(const uint8_t *rec, uint32_t i, rd_jentry_t *e)
{
    const uint8_t *p = rec + RD_JREC_HEAD + (size_t)i * RD_JREC_ENTRY;
    e->den = (int8_t)p[0];
    e->sn = (uint32_t)rd_get_be(p + 1, 4);
    memcpy(e->rec, p + 5, RD_COIN_RECORD_SIZE);
}

/* The header's first 20 bytes lie in one sector: written whole or not. */
int rd_coins_disk_read_epoch(int fd, uint64_t *epoch)
{
    uint8_t h[20];
    if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, JHEAD_MAGIC, 8) != 0
        || rd_get_be(h + 16, 4) != crc32(0L, h, 16))
        return -1;
    *epoch = rd_get_be(h + 8, 8);
    return 0;
}

int rd_coins_disk_write_epoch(int fd, uint64_t epoch)
{
    uint8_t h[RD_JOURNAL_START];
    memset(h, 0, sizeof(h));
    memcpy(h, JHEAD_MAGIC, 8);
    rd_put_be(h + 8, epoch, 8);
    rd_put_be(h + 16, crc32(0L, h, 16), 4);
    ssize_t n = pwrite(fd, h, sizeof(h), 0);
    if (n == (ssize_t)sizeof(h))
        return 0;
    if (n >= 0)
        errno = EIO;
    return -1;
}

/* ---- replay -------------------------------------------------------------- */

typedef struct replay {
    const char *dir;
    int fd;                     /* the journal */
    uint64_t epoch;
    uint64_t at;                /* file offset of the next record */
    long records, changes, skipped;
    uint8_t *buf;
    size_t cap;
} replay_t;

static int replay_entry(replay_t *r, const rd_jentry_t *e)
{
    char path[RD_COIN_PATH_MAX];
    if (!rd_coinfile_valid(e->den, e->sn)) {
        r->skipped++;
        return 0;
    }
    unsigned d = rd_den_index(e->den), page = e->sn / RD_COIN_PAGE_RECORDS;
    int fd = rd_coins_disk_page_open(r->dir, d, page, O_RDWR, path, sizeof(path));
    if (fd < 0) {
        rd_log(RD_LOG_ERR, "journal: cannot replay a change of coin %d/%u into %s: %s",
               e->den, e->sn, path, strerror(errno));
        r->skipped++;
        return errno == ENOENT ? 0 : -1;
    }
    off_t at = (off_t)(e->sn % RD_COIN_PAGE_RECORDS) * RD_COIN_RECORD_SIZE;
    ssize_t n = pwrite(fd, e->rec, RD_COIN_RECORD_SIZE, at);
    int saved = errno;
    close(fd);
    if (n != RD_COIN_RECORD_SIZE) {
        errno = n < 0 ? saved : EIO;
        return -1;
    }
    r->changes++;
    return 0;
}

/* Reads the record at r->at; its length, or 0 at the end of the journal. */
static size_t replay_read(replay_t *r, uint32_t *count)
{
    uint8_t head[RD_JREC_HEAD];
    if (pread(r->fd, head, sizeof(head), (off_t)r->at) != (ssize_t)sizeof(head))
        return 0;
    size_t len = rd_coins_disk_jrec_parse(head, sizeof(head), r->epoch, r->at, count);
    if (len == 0)
        return 0;
    if (len > r->cap) {
        uint8_t *b = realloc(r->buf, len);
        if (b == NULL)
            return 0;
        r->buf = b;
        r->cap = len;
    }
    if (pread(r->fd, r->buf, len, (off_t)r->at) != (ssize_t)len)
        return 0;
    return rd_coins_disk_jrec_parse(r->buf, len, r->epoch, r->at, count) == len ? len : 0;
}

static int replay_all(replay_t *r)
{
    uint32_t count;
    size_t len;
    while ((len = replay_read(r, &count)) > 0 && count > 0) {
        for (uint32_t i = 0; i < count; i++) {
            rd_jentry_t e;
            rd_coins_disk_jrec_entry(r->buf, i, &e);
            if (replay_entry(r, &e) < 0)
                return -1;
        }
        r->records++;
        r->at += len;
    }
    return 0;
}

static int open_journal(const char *dir, char *path, size_t len, bool *fresh)
{
    snprintf(path, len, "%s/" RD_JOURNAL_NAME, dir);
    int fd = rd_coins_disk_open(dir, path, O_RDWR, 0);
    *fresh = fd < 0 && errno == ENOENT;
    if (*fresh)
        fd = rd_coins_disk_open(dir, path, O_RDWR | O_CREAT | O_EXCL, 0600);
    return fd;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* syncfs: every page written by the replay, in one call. */
    int rc = syncfs(fd) < 0 || fsync(fd) < 0 ? -1 : 0;
    close(fd);
    return rc;
}

/* The bytes from FROM to the last one that is not zero: the zeros raidad
 * writes ahead of its records (rd_coins.c, zero_ahead) are not damage. */
static uint64_t tail_bytes(int fd, uint64_t from, uint64_t size)
{
    uint8_t buf[4096];
    uint64_t end = from;
    for (uint64_t at = from; at < size;) {
        ssize_t n = pread(fd, buf, sizeof(buf), (off_t)at);
        if (n <= 0)
            return size - from;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != 0)
                end = at + (uint64_t)i + 1;
        at += (uint64_t)n;
    }
    return end - from;
}

static void log_replay(const replay_t *r, const char *path, off_t size)
{
    uint64_t left = (uint64_t)size > r->at ? tail_bytes(r->fd, r->at, (uint64_t)size) : 0;
    if (r->records == 0 && left == 0)
        return;
    rd_log(RD_LOG_NOTICE, "journal %s: replayed %ld records (%ld coin changes, %ld skipped); "
           "%llu bytes after the last whole record ignored", path, r->records, r->changes,
           r->skipped, (unsigned long long)left);
}

long rd_coins_disk_replay(const char *dir, uint64_t *epoch, char *err, size_t err_len)
{
    char path[RD_COIN_PATH_MAX];
    bool fresh;
    struct stat st;
    replay_t r = { .dir = dir, .at = RD_JOURNAL_START };
    r.fd = open_journal(dir, path, sizeof(path), &fresh);
    if (r.fd < 0 || fstat(r.fd, &st) < 0)
        return fail(err, err_len, path, strerror(errno));
    int rc = 0;
    if (rd_coins_disk_read_epoch(r.fd, &r.epoch) < 0) {
        /* A header is written before any record of its epoch: with none,
         * a longer file holds only what a checkpoint made durable already
         * (unless the disk damaged it, which the operator must judge). */
        if (st.st_size > RD_JOURNAL_START)
            rc = fail(err, err_len, path, "damaged journal header (move the file away to start "
                      "without replaying it)");
        r.epoch = 0;
    } else if (replay_all(&r) < 0 || sync_dir(dir) < 0) {
        rc = fail(err, err_len, path, strerror(errno));
    }
    free(r.buf);
    if (rc == 0) {
        log_replay(&r, path, st.st_size);
        if (rd_coins_disk_write_epoch(r.fd, r.epoch + 1) < 0
            || ftruncate(r.fd, RD_JOURNAL_START) < 0
            || fsync(r.fd) < 0 || (fresh && sync_dir(dir) < 0))
            rc = fail(err, err_len, path, strerror(errno));
    }
    close(r.fd);
    *epoch = r.epoch + 1;
    return rc < 0 ? -1 : r.records;
}

long rd_coins_disk_recover(const char *dir, char *err, size_t err_len)
{
    uint64_t epoch;
    return rd_coins_disk_replay(dir, &epoch, err, err_len);
}

/* ---- issued counts and the index ----------------------------------------- */

typedef struct index_entry {
    uint16_t count;
    uint64_t mtime_ns;
    uint64_t ino;
    bool set;
} index_entry_t;

static uint64_t mtime_ns(const struct stat *st)
{
    return (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
}

/* Fills IDX from the index file; false when there is none worth reading. */
static bool index_load(const char *dir, index_entry_t (*idx)[RD_COIN_PAGES], uint64_t *written)
{
    char path[RD_COIN_PATH_MAX];
    snprintf(path, sizeof(path), "%s/" RD_INDEX_NAME, dir);
    int fd = rd_coins_disk_open(dir, path, O_RDONLY, 0);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    uint8_t head[20];
    bool ok = fread(head, 1, sizeof(head), f) == sizeof(head) && memcmp(head, INDEX_MAGIC, 8) == 0;
    uint32_t n = ok ? (uint32_t)rd_get_be(head + 16, 4) : 0;
    size_t len = (size_t)n * INDEX_ENTRY + 4;
    uint8_t *body = ok && n <= RD_COIN_DENS * RD_COIN_PAGES ? malloc(len) : NULL;
    ok = body != NULL && fread(body, 1, len, f) == len
        && crc32(crc32(0L, head, sizeof(head)), body, (uInt)(len - 4))
               == rd_get_be(body + len - 4, 4);
    fclose(f);
    for (uint32_t i = 0; ok && i < n; i++) {
        const uint8_t *e = body + (size_t)i * INDEX_ENTRY;
        unsigned d = e[0], page = (unsigned)rd_get_be(e + 1, 2);
        if (d >= RD_COIN_DENS || page >= RD_COIN_PAGES)
            continue;
        idx[d][page] = (index_entry_t){ .count = (uint16_t)rd_get_be(e + 3, 2),
                                        .mtime_ns = rd_get_be(e + 5, 8),
                                        .ino = rd_get_be(e + 13, 8), .set = true };
    }
    *written = ok ? rd_get_be(head + 8, 8) : 0;
    free(body);
    return ok;
}

static int count_page(const char *dir, unsigned d, unsigned page, uint16_t *count,
                      const index_entry_t *ie, uint64_t written, char *err, size_t err_len)
{
    char path[RD_COIN_PATH_MAX];
    struct stat st;
    errno = 0;
    if (page_stat(dir, d, page, &st, path, sizeof(path)) < 0) {
        *count = RD_PAGE_ABSENT;
        return errno == ENOENT || errno == ENOTDIR ? 0 : fail(err, err_len, path, strerror(errno));
    }
    /* The index is trusted for a page unchanged since, and not changed in
     * the index's last seconds (a file's time is coarse). */
    if (ie->set && ie->ino == (uint64_t)st.st_ino && ie->mtime_ns == mtime_ns(&st)
        && (uint64_t)st.st_mtim.tv_sec + INDEX_TRUST_S < written) {
        *count = ie->count;
        return 0;
    }
    uint8_t buf[RD_COIN_PAGE_SIZE];
    int fd = rd_coins_disk_open(dir, path, O_RDONLY, 0);
    ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof(buf), 0);
    int saved = errno;
    if (fd >= 0)
        close(fd);
    if (n != RD_COIN_PAGE_SIZE)
        return fail(err, err_len, path, n < 0 ? strerror(saved) : "short page file");
    *count = (uint16_t)rd_coins_disk_page_count(buf);
    return 0;
}

int rd_coins_disk_count_all(const char *dir, uint16_t counts[RD_COIN_DENS][RD_COIN_PAGES],
                       char *err, size_t err_len)
{
    index_entry_t (*idx)[RD_COIN_PAGES] = calloc(RD_COIN_DENS, sizeof(*idx));
    uint64_t written = 0;
    if (idx == NULL)
        return fail(err, err_len, dir, "out of memory");
    index_load(dir, idx, &written);
    int rc = 0;
    for (unsigned d = 0; d < RD_COIN_DENS && rc == 0; d++)
        for (unsigned page = 0; page < RD_COIN_PAGES && rc == 0; page++)
            rc = count_page(dir, d, page, &counts[d][page], &idx[d][page], written, err, err_len);
    free(idx);
    return rc;
}

int rd_coins_disk_write_index(const char *dir, const uint16_t counts[RD_COIN_DENS][RD_COIN_PAGES])
{
    char path[RD_COIN_PATH_MAX], tmp[RD_COIN_PATH_MAX], name[RD_COIN_PATH_MAX];
    size_t cap = 20 + (size_t)RD_COIN_DENS * RD_COIN_PAGES * INDEX_ENTRY + 4, len = 20;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return -1;
    uint32_t n = 0;
    for (unsigned d = 0; d < RD_COIN_DENS; d++) {
        for (unsigned page = 0; page < RD_COIN_PAGES; page++) {
            struct stat st;
            if (counts[d][page] == RD_PAGE_ABSENT
                || page_stat(dir, d, page, &st, name, sizeof(name)) < 0)
                continue;
            uint8_t *e = buf + len;
            e[0] = (uint8_t)d;
            rd_put_be(e + 1, page, 2);
            rd_put_be(e + 3, counts[d][page], 2);
            rd_put_be(e + 5, mtime_ns(&st), 8);
            rd_put_be(e + 13, (uint64_t)st.st_ino, 8);
            len += INDEX_ENTRY;
            n++;
        }
    }
    memcpy(buf, INDEX_MAGIC, 8);
    rd_put_be(buf + 8, (uint64_t)time(NULL), 8);
    rd_put_be(buf + 16, n, 4);
    rd_put_be(buf + len, crc32(0L, buf, (uInt)len), 4);
    len += 4;
    snprintf(path, sizeof(path), "%s/" RD_INDEX_NAME, dir);
    snprintf(tmp, sizeof(tmp), "%s/" RD_INDEX_NAME ".new", dir);
    /* A new file, never one found there (a link would be written through). */
    unlink(tmp);
    int fd = rd_coins_disk_open(dir, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    int rc = fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0 ? -1 : 0;
    if (fd >= 0)
        close(fd);
    free(buf);
    if (rc == 0)
        rc = rename(tmp, path);
    return rc;
}
