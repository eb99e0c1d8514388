#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_keystore.h"
#include "rd_log.h"

#define EMPTY_RECORD 1000       /* every page written here has no coin there */

typedef struct fixture {
    char root[512];             /* the data dir: holds Data/ (short: paths are built on it) */
} fixture_t;

/* ---- building page files ------------------------------------------------- */

/* Every coin's key, computable from its name alone. */
static void key_of(int8_t den, uint32_t sn, uint8_t *key)
{
    for (unsigned i = 0; i < RD_KEY_SIZE; i++)
        key[i] = (uint8_t)(sn * 131u + (sn >> 10) * 7u + (uint8_t)den * 17u + i * 29u + 1u);
}

static void make_dirs(char *path)
{
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
        *p = '/';
    }
}

static void page_path(const fixture_t *f, int8_t den, uint32_t no, bool upper, char *buf,
                      size_t len)
{
    unsigned d = (uint8_t)den;
    if (upper)
        snprintf(buf, len, "%s/Data/%02X/%02X/%04X.bin", f->root, d, no >> 8, no);
    else
        snprintf(buf, len, "%s/Data/%02x/%02x/%04x.bin", f->root, d, no >> 8, no);
}

static void write_bytes(char *path, const uint8_t *data, size_t len)
{
    make_dirs(path);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* Page NO of DEN, the first LEN bytes of it (a whole page: RD_KEY_PAGE_SIZE). */
static void write_page_len(const fixture_t *f, int8_t den, uint32_t no, bool upper, size_t len)
{
    static uint8_t page[RD_KEY_PAGE_SIZE];
    char path[PATH_MAX];
    for (uint32_t r = 0; r < RD_KEY_PAGE_RECORDS; r++) {
        uint8_t *rec = page + r * RD_KEY_RECORD_SIZE;
        key_of(den, no * RD_KEY_PAGE_RECORDS + r, rec);
        rec[RD_KEY_SIZE] = r == EMPTY_RECORD ? 0 : 1 + (uint8_t)(r % 200);
    }
    page_path(f, den, no, upper, path, sizeof(path));
    write_bytes(path, page, len);
}

static void write_page(const fixture_t *f, int8_t den, uint32_t no)
{
    write_page_len(f, den, no, false, RD_KEY_PAGE_SIZE);
}

static void expect_key(rd_keystore_t *ks, int8_t den, uint32_t sn)
{
    uint8_t want[RD_KEY_SIZE], got[RD_KEY_SIZE];
    key_of(den, sn, want);
    memset(got, 0, sizeof(got));
    assert_int_equal(rd_keystore_get(ks, den, sn, got), RD_KEY_FOUND);
    assert_memory_equal(got, want, RD_KEY_SIZE);
}

/* RESULT, and KEY left alone. */
static void expect_no_key(rd_keystore_t *ks, int8_t den, uint32_t sn, int result)
{
    uint8_t key[RD_KEY_SIZE], untouched[RD_KEY_SIZE];
    memset(key, 0x5A, sizeof(key));
    memset(untouched, 0x5A, sizeof(untouched));
    assert_int_equal(rd_keystore_get(ks, den, sn, key), result);
    assert_memory_equal(key, untouched, RD_KEY_SIZE);
}

/* ---- fixture ------------------------------------------------------------- */

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    if (f == NULL)
        return -1;
    int n = snprintf(f->root, sizeof(f->root), "%s/test_keystore.XXXXXX",
                     tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof(f->root) || mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* ---- lookups ------------------------------------------------------------- */

static void test_finds_keys(void **state)
{
    fixture_t *f = *state;
    write_page(f, 1, 0);
    write_page(f, 1, 1);
    rd_keystore_t *ks = rd_keystore_create(f->root, 16);
    assert_non_null(ks);
    const uint32_t sns[] = { 0, 1, 5, 511, 1023, 1024, 1025, 2047, 5, 0 };
    for (size_t i = 0; i < sizeof(sns) / sizeof(sns[0]); i++)
        expect_key(ks, 1, sns[i]);
    assert_int_equal(rd_keystore_cached_pages(ks), 2);
    rd_keystore_destroy(ks);
    rd_keystore_destroy(NULL);
}

/* Negative denominations are the signed byte: -1 is ff, -8 is f8. */
static void test_path_negative_denomination(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX];
    write_page(f, -8, 0);
    write_page(f, -1, 3);
    snprintf(path, sizeof(path), "%s/Data/f8/00/0000.bin", f->root);
    assert_int_equal(access(path, R_OK), 0);
    rd_keystore_t *ks = rd_keystore_create(f->root, 16);
    assert_non_null(ks);
    expect_key(ks, -8, 7);
    expect_key(ks, -1, 3 * 1024 + 9);
    expect_no_key(ks, 8, 7, RD_KEY_MISSING);        /* 08 is another folder */
    expect_no_key(ks, -1, 7, RD_KEY_MISSING);
    rd_keystore_destroy(ks);
}

/* MM is the page number's high byte; page 0xffff is the last one. */
static void test_path_high_pages(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX];
    write_page(f, 2, 0x01ab);
    write_page(f, 2, 0xffff);
    snprintf(path, sizeof(path), "%s/Data/02/01/01ab.bin", f->root);
    assert_int_equal(access(path, R_OK), 0);
    rd_keystore_t *ks = rd_keystore_create(f->root, 16);
    assert_non_null(ks);
    expect_key(ks, 2, 0x01ab * 1024 + 17);
    expect_key(ks, 2, 0xffffu * 1024 + 1023);
    expect_no_key(ks, 2, 0x10000u * 1024, RD_KEY_MISSING);   /* no four-digit page */
    expect_no_key(ks, 2, UINT32_MAX, RD_KEY_MISSING);
    rd_keystore_destroy(ks);
}

/* Lowercase first (what RAIDA servers write), uppercase accepted too. */
static void test_path_hex_case(void **state)
{
    fixture_t *f = *state;
    write_page_len(f, -6, 0x1ab3, true, RD_KEY_PAGE_SIZE);     /* Data/FA/1A/1AB3.bin */
    write_page(f, 3, 0x00c0);
    write_page_len(f, 3, 0x00c0, true, 100);                   /* shadowed: never read */
    rd_keystore_t *ks = rd_keystore_create(f->root, 16);
    assert_non_null(ks);
    expect_key(ks, -6, 0x1ab3 * 1024 + 2);
    expect_key(ks, 3, 0x00c0 * 1024 + 2);
    rd_keystore_destroy(ks);
}

static int count_lines_with(const char *path, const char *what)
{
    char line[PATH_MAX + 256];
    int n = 0;
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp) != NULL)
        n += strstr(line, what) != NULL;
    fclose(fp);
    return n;
}

static void test_missing_page(void **state)
{
    fixture_t *f = *state;
    write_page(f, 1, 0);
    rd_keystore_t *ks = rd_keystore_create(f->root, 16);
    assert_non_null(ks);
    expect_no_key(ks, 1, 1024, RD_KEY_MISSING);         /* no page 1 */
    expect_no_key(ks, 4, 0, RD_KEY_MISSING);            /* no denomination folder */
    expect_no_key(ks, 1, 1024, RD_KEY_MISSING);         /* asked again: cached */
    expect_key(ks, 1, 3);
    rd_keystore_destroy(ks);

    /* A data dir without Data/ at all: a warning, then nothing is found. */
    char nowhere[PATH_MAX], log[PATH_MAX];
    snprintf(nowhere, sizeof(nowhere), "%s/nowhere", f->root);
    snprintf(log, sizeof(log), "%s/log", f->root);
    assert_int_equal(rd_log_open(log), 0);
    ks = rd_keystore_create(nowhere, 1);
    assert_int_equal(rd_log_open(NULL), 0);
    assert_non_null(ks);
    expect_no_key(ks, 1, 3, RD_KEY_MISSING);
    rd_keystore_destroy(ks);
    assert_int_equal(count_lines_with(log, "nowhere/Data is not a readable folder"), 1);
}

static void test_missing_record_status(void **state)
{
    fixture_t *f = *state;
    write_page(f, 0, 2);
    rd_keystore_t *ks = rd_keystore_create(f->root, 16);
    assert_non_null(ks);
    expect_no_key(ks, 0, 2 * 1024 + EMPTY_RECORD, RD_KEY_MISSING);
    expect_key(ks, 0, 2 * 1024 + EMPTY_RECORD - 1);
    expect_key(ks, 0, 2 * 1024 + EMPTY_RECORD + 1);
    rd_keystore_destroy(ks);
}

/* A short page, and a folder where a page should be: errors, one log line
 * each however often they are asked for, and no harm to other pages. */
static void test_bad_pages(void **state)
{
    fixture_t *f = *state;
    char log[PATH_MAX], dir_page[PATH_MAX];
    write_page_len(f, 1, 0, false, RD_KEY_PAGE_SIZE - 1);
    write_page(f, 1, 1);
    snprintf(dir_page, sizeof(dir_page), "%s/Data/01/00/0002.bin/", f->root);
    make_dirs(dir_page);
    snprintf(log, sizeof(log), "%s/log", f->root);
    assert_int_equal(rd_log_open(log), 0);

    rd_keystore_t *ks = rd_keystore_create(f->root, 16);
    assert_non_null(ks);
    for (int round = 0; round < 3; round++) {
        expect_no_key(ks, 1, 0, RD_KEY_ERROR);
        expect_no_key(ks, 1, 1000, RD_KEY_ERROR);
        expect_no_key(ks, 1, 2048 + 5, RD_KEY_ERROR);
        expect_key(ks, 1, 1024 + 5);
    }
    rd_keystore_destroy(ks);
    assert_int_equal(rd_log_open(NULL), 0);
    assert_int_equal(count_lines_with(log, "0000.bin is 17407 bytes long"), 1);
    assert_int_equal(count_lines_with(log, "0002.bin: Is a directory"), 1);
    assert_int_equal(count_lines_with(log, "0001.bin"), 0);
}

/* Ten pages through a cache of three, in an order that keeps evicting:
 * every answer right, never more than three pages held. */
static void test_cache_bound(void **state)
{
    fixture_t *f = *state;
    for (uint32_t no = 0; no < 10; no++)
        write_page(f, 5, no);
    rd_keystore_t *ks = rd_keystore_create(f->root, 3);
    assert_non_null(ks);
    for (int round = 0; round < 4; round++) {
        for (uint32_t i = 0; i < 10; i++) {
            uint32_t no = (i * 7 + (uint32_t)round) % 10;
            expect_key(ks, 5, no * 1024 + i * 100);
            expect_no_key(ks, 5, 20 * 1024 + no, RD_KEY_MISSING);   /* cached too */
            assert_true(rd_keystore_cached_pages(ks) <= 3);
        }
    }
    assert_int_equal(rd_keystore_cached_pages(ks), 3);
    rd_keystore_destroy(ks);

    ks = rd_keystore_create(f->root, 0);        /* taken as 1 */
    assert_non_null(ks);
    expect_key(ks, 5, 1);
    expect_key(ks, 5, 9 * 1024 + 1);
    expect_key(ks, 5, 2);
    assert_int_equal(rd_keystore_cached_pages(ks), 1);
    rd_keystore_destroy(ks);
}

static void test_create_errors(void **state)
{
    (void)state;
    char long_dir[PATH_MAX];
    memset(long_dir, 'a', sizeof(long_dir) - 1);
    long_dir[sizeof(long_dir) - 1] = '\0';
    errno = 0;
    assert_null(rd_keystore_create(long_dir, 16));
    assert_int_equal(errno, ENAMETOOLONG);
}

/* ---- threads ------------------------------------------------------------- */

#define THREADS 8
#define LOOKUPS 3000
#define PAGES   6

typedef struct worker {
    rd_keystore_t *ks;
    unsigned seed;
    int wrong;
} worker_t;

static void *lookups(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < LOOKUPS; i++) {
        w->seed = w->seed * 1103515245u + 12345u;
        uint32_t no = (w->seed >> 16) % (PAGES + 1);     /* page PAGES is missing */
        uint32_t sn = no * 1024 + (w->seed >> 4) % 1024;
        uint8_t want[RD_KEY_SIZE], got[RD_KEY_SIZE];
        int rc = rd_keystore_get(w->ks, -3, sn, got);
        key_of(-3, sn, want);
        bool ok = no == PAGES || sn % 1024 == EMPTY_RECORD
            ? rc == RD_KEY_MISSING
            : rc == RD_KEY_FOUND && memcmp(got, want, RD_KEY_SIZE) == 0;
        w->wrong += !ok;
    }
    return NULL;
}

static void test_concurrent_lookups(void **state)
{
    fixture_t *f = *state;
    for (uint32_t no = 0; no < PAGES; no++)
        write_page(f, -3, no);
    rd_keystore_t *ks = rd_keystore_create(f->root, 4);
    assert_non_null(ks);
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){ .ks = ks, .seed = (unsigned)i * 7919u + 1u };
        assert_int_equal(pthread_create(&th[i], NULL, lookups, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].wrong, 0);
    }
    assert_true(rd_keystore_cached_pages(ks) <= 4);
    rd_keystore_destroy(ks);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_finds_keys),
        T(test_path_negative_denomination),
        T(test_path_high_pages),
        T(test_path_hex_case),
        T(test_missing_page),
        T(test_missing_record_status),
        T(test_bad_pages),
        T(test_cache_bound),
        T(test_create_errors),
        T(test_concurrent_lookups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
