#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_crypto.h"
#include "rd_keystore.h"
#include "rd_log.h"

enum page_state { PAGE_OK, PAGE_MISSING, PAGE_BAD };

typedef struct page {
    uint32_t id;                /* (uint8_t)denomination << 16 | page number */
    enum page_state state;
    bool upper;                 /* the file found has uppercase hex digits */
    int error;                  /* PAGE_BAD: errno, or 0 for a short file */
    size_t got;                 /* PAGE_BAD: bytes read from a short file */
    uint8_t *data;              /* PAGE_OK: RD_KEY_PAGE_SIZE bytes */
    struct page *hnext;         /* hash chain */
    struct page *prev, *next;   /* LRU list, most recently used first */
} page_t;

struct rd_keystore {
    pthread_mutex_t lock;       /* guards everything below dir */
    char *dir;
    size_t max_pages;
    size_t count;
    size_t mask;                /* buckets - 1, a power of two minus one */
    page_t **buckets;
    page_t *head, *tail;
};

/* ---- page files ---------------------------------------------------------- */

/* The layout's path, its hex digits in uppercase when UPPER: those are
 * the ten characters "DD/MM/PPPP" before ".bin". The store made sure at
 * creation that the directory leaves room for the name. */
static void page_path(const rd_keystore_t *ks, uint32_t id, bool upper, char *buf, size_t len)
{
    if (rd_coin_page_path(buf, len, ks->dir, (int8_t)(uint8_t)(id >> 16), id & 0xFFFF) < 0) {
        buf[0] = '\0';
        return;
    }
    for (char *p = buf + strlen(buf) - strlen("DD/MM/PPPP.bin"); upper && *p != '.'; p++)
        *p = (char)toupper((unsigned char)*p);
}

/* Both spellings name the same file when the numbers have no letter a-f. */
static bool has_letter(uint32_t id)
{
    for (; id != 0; id >>= 4)
        if ((id & 0xF) >= 0xA)
            return true;
    return false;
}

static int open_page(const rd_keystore_t *ks, page_t *pg)
{
    char path[PATH_MAX];
    page_path(ks, pg->id, false, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT || !has_letter(pg->id))
        return fd;
    pg->upper = true;
    page_path(ks, pg->id, true, path, sizeof(path));
    return open(path, O_RDONLY | O_CLOEXEC);
}

/* Reads up to LEN bytes; returns how many, or -1 on a read error. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t have = 0;
    while (have < len) {
        ssize_t n = read(fd, buf + have, len - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        have += (size_t)n;
    }
    return (ssize_t)have;
}

/* False only when out of memory: that says nothing of the file, so the
 * page must not be remembered as broken. */
static bool read_page(int fd, page_t *pg)
{
    pg->data = malloc(RD_KEY_PAGE_SIZE);
    if (pg->data == NULL)
        return false;
    ssize_t n = read_full(fd, pg->data, RD_KEY_PAGE_SIZE);
    if (n == RD_KEY_PAGE_SIZE) {
        pg->state = PAGE_OK;
        return true;
    }
    pg->state = PAGE_BAD;
    pg->error = n < 0 ? errno : 0;
    pg->got = n < 0 ? 0 : (size_t)n;
    free(pg->data);
    pg->data = NULL;
    return true;
}

/* Reads page ID from disk, without the lock: other threads go on meanwhile.
 * NULL only when out of memory. */
static page_t *load_page(const rd_keystore_t *ks, uint32_t id)
{
    page_t *pg = calloc(1, sizeof(*pg));
    if (pg == NULL)
        return NULL;
    pg->id = id;
    int fd = open_page(ks, pg);
    if (fd >= 0) {
        bool ok = read_page(fd, pg);
        close(fd);
        if (!ok) {
            free(pg);
            return NULL;
        }
    } else if (errno == ENOENT || errno == ENOTDIR) {
        pg->state = PAGE_MISSING;
    } else {
        pg->state = PAGE_BAD;
        pg->error = errno;
    }
    return pg;
}

static void free_page(page_t *pg)
{
    if (pg == NULL)
        return;
    if (pg->data != NULL) {
        rd_crypto_wipe(pg->data, RD_KEY_PAGE_SIZE);
        free(pg->data);
    }
    free(pg);
}

static void report_bad_page(const rd_keystore_t *ks, const page_t *pg)
{
    char path[PATH_MAX];
    page_path(ks, pg->id, pg->upper, path, sizeof(path));
    if (pg->error != 0)
        rd_log(RD_LOG_ERR, "key store: cannot read %s: %s", path, strerror(pg->error));
    else
        rd_log(RD_LOG_ERR, "key store: %s is %zu bytes long, not %d: its coins are unusable",
               path, pg->got, RD_KEY_PAGE_SIZE);
}

/* ---- the cache (callers hold the lock) ----------------------------------- */

static size_t bucket_of(const rd_keystore_t *ks, uint32_t id)
{
    uint32_t h = id * 0x9E3779B1u;
    return (h ^ (h >> 15)) & ks->mask;
}

static void lru_unlink(rd_keystore_t *ks, page_t *pg)
{
    if (pg->prev != NULL)
        pg->prev->next = pg->next;
    else
        ks->head = pg->next;
    if (pg->next != NULL)
        pg->next->prev = pg->prev;
    else
        ks->tail = pg->prev;
    pg->prev = pg->next = NULL;
}

static void lru_push_front(rd_keystore_t *ks, page_t *pg)
{
    pg->prev = NULL;
    pg->next = ks->head;
    if (ks->head != NULL)
        ks->head->prev = pg;
    else
        ks->tail = pg;
    ks->head = pg;
}

static page_t *cache_find(rd_keystore_t *ks, uint32_t id)
{
    page_t *pg = ks->buckets[bucket_of(ks, id)];
    while (pg != NULL && pg->id != id)
        pg = pg->hnext;
    if (pg != NULL && pg != ks->head) {
        lru_unlink(ks, pg);
        lru_push_front(ks, pg);
    }
    return pg;
}

static void cache_evict_oldest(rd_keystore_t *ks)
{
    page_t *old = ks->tail;
    page_t **link = &ks->buckets[bucket_of(ks, old->id)];
    while (*link != old)
        link = &(*link)->hnext;
    *link = old->hnext;
    lru_unlink(ks, old);
    ks->count--;
    free_page(old);
}

static void cache_insert(rd_keystore_t *ks, page_t *pg)
{
    if (ks->count >= ks->max_pages)
        cache_evict_oldest(ks);
    size_t b = bucket_of(ks, pg->id);
    pg->hnext = ks->buckets[b];
    ks->buckets[b] = pg;
    lru_push_front(ks, pg);
    ks->count++;
}

/* ---- the store ----------------------------------------------------------- */

static size_t bucket_count(size_t pages)
{
    size_t n = 16;
    while (n < pages && n <= SIZE_MAX / 2)
        n *= 2;
    return n;
}

static void warn_if_no_data(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/Data", dir);
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        rd_log(RD_LOG_WARN, "key store: %s is not a readable folder: no coin key will be found",
               path);
}

rd_keystore_t *rd_keystore_create(const char *data_dir, size_t cache_pages)
{
    if (strlen(data_dir) >= PATH_MAX - RD_COIN_PATH_TAIL) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    rd_keystore_t *ks = calloc(1, sizeof(*ks));
    if (ks == NULL)
        return NULL;
    ks->max_pages = cache_pages > 0 ? cache_pages : 1;
    ks->mask = bucket_count(ks->max_pages) - 1;
    ks->buckets = calloc(ks->mask + 1, sizeof(*ks->buckets));
    ks->dir = strdup(data_dir);
    int err = ks->buckets == NULL || ks->dir == NULL ? ENOMEM : pthread_mutex_init(&ks->lock, NULL);
    if (err != 0) {
        free(ks->buckets);
        free(ks->dir);
        free(ks);
        errno = err;
        return NULL;
    }
    warn_if_no_data(data_dir);
    return ks;
}

void rd_keystore_destroy(rd_keystore_t *ks)
{
    if (ks == NULL)
        return;
    while (ks->tail != NULL)
        cache_evict_oldest(ks);
    pthread_mutex_destroy(&ks->lock);
    free(ks->buckets);
    free(ks->dir);
    free(ks);
}

static int page_key(const page_t *pg, uint32_t sn, uint8_t *key)
{
    if (pg->state == PAGE_MISSING)
        return RD_KEY_MISSING;
    if (pg->state == PAGE_BAD)
        return RD_KEY_ERROR;
    const uint8_t *rec = pg->data + rd_coin_record_offset(sn);
    if (rec[RD_COIN_MFS_AT] == 0)
        return RD_KEY_MISSING;
    memcpy(key, rec, RD_KEY_SIZE);
    return RD_KEY_FOUND;
}

/* Looks the key up in the cache, FRESH (just read) entering it unless
 * another thread was quicker. When FRESH enters broken, *BAD gets what is
 * needed to say so (outside the lock), and *REPORT is set: only the thread
 * whose copy the cache keeps reports, hence one line per broken page. */
static int key_from_fresh(rd_keystore_t *ks, page_t **fresh, uint32_t sn, uint8_t *key,
                          page_t *bad, bool *report)
{
    pthread_mutex_lock(&ks->lock);
    page_t *pg = cache_find(ks, (*fresh)->id);
    if (pg == NULL) {
        pg = *fresh;
        *fresh = NULL;
        cache_insert(ks, pg);
        *report = pg->state == PAGE_BAD;
        if (*report)
            *bad = *pg;
    }
    int rc = page_key(pg, sn, key);
    pthread_mutex_unlock(&ks->lock);
    return rc;
}

int rd_keystore_get(rd_keystore_t *ks, int8_t den, uint32_t sn, uint8_t key[RD_KEY_SIZE])
{
    uint32_t no = rd_coin_page(sn);
    if (no > RD_KEY_MAX_PAGE)
        return RD_KEY_MISSING;
    uint32_t id = (uint32_t)(uint8_t)den << 16 | no;

    pthread_mutex_lock(&ks->lock);
    page_t *pg = cache_find(ks, id);
    int rc = pg != NULL ? page_key(pg, sn, key) : RD_KEY_ERROR;
    pthread_mutex_unlock(&ks->lock);
    if (pg != NULL)
        return rc;

    page_t *fresh = load_page(ks, id);
    if (fresh == NULL) {
        rd_log(RD_LOG_ERR, "key store: out of memory");
        return RD_KEY_ERROR;
    }
    page_t bad;
    bool report = false;
    rc = key_from_fresh(ks, &fresh, sn, key, &bad, &report);
    free_page(fresh);
    if (report)
        report_bad_page(ks, &bad);
    return rc;
}

size_t rd_keystore_cached_pages(rd_keystore_t *ks)
{
    pthread_mutex_lock(&ks->lock);
    size_t n = ks->count;
    pthread_mutex_unlock(&ks->lock);
    return n;
}
