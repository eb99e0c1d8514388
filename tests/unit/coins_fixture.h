/* A data folder for the coin store's unit tests: page files written the
 * way a RAIDA server keeps them, in a temporary folder removed afterwards. */
#ifndef COINS_FIXTURE_H
#define COINS_FIXTURE_H

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_coins.h"

typedef struct fixture {
    char root[PATH_MAX - 128];
    rd_coins_conf_t conf;
    rd_coins_shared_t *shared;
    rd_coins_t *store;
} fixture_t;

static inline void fx_page_path(const fixture_t *f, int8_t den, uint32_t sn, char *buf, size_t len,
                                bool make_dirs)
{
    unsigned page = sn / RD_COIN_PAGE_RECORDS;
    char dir[PATH_MAX - 32];
    snprintf(dir, sizeof(dir), "%s/Data/%02x", f->root, (uint8_t)den);
    if (make_dirs)
        mkdir(dir, 0700);
    snprintf(dir, sizeof(dir), "%s/Data/%02x/%02x", f->root, (uint8_t)den, page >> 8);
    if (make_dirs)
        mkdir(dir, 0700);
    snprintf(buf, len, "%s/%04x.bin", dir, page);
}

/* The AN the fixture gives coin (DEN, SN): easy to recompute. */
static inline void fx_an(int8_t den, uint32_t sn, uint8_t an[RD_COIN_AN_SIZE])
{
    for (int i = 0; i < RD_COIN_AN_SIZE; i++)
        an[i] = (uint8_t)(sn * 7 + (unsigned)i * 13 + (uint8_t)den);
}

/* Writes coin (DEN, SN) with MFS (0: not issued) into its page, creating a
 * zero-filled page first when there is none. */
static inline void fx_coin(const fixture_t *f, int8_t den, uint32_t sn, const uint8_t *an,
                           uint8_t mfs)
{
    char path[PATH_MAX];
    uint8_t rec[RD_COIN_RECORD_SIZE], def[RD_COIN_AN_SIZE];
    fx_page_path(f, den, sn, path, sizeof(path), true);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        abort();
    if (st.st_size == 0 && ftruncate(fd, RD_COIN_PAGE_SIZE) < 0)
        abort();
    if (an == NULL) {
        fx_an(den, sn, def);
        an = def;
    }
    memcpy(rec, an, RD_COIN_AN_SIZE);
    rec[RD_COIN_AN_SIZE] = mfs;
    if (pwrite(fd, rec, sizeof(rec), (off_t)(sn % RD_COIN_PAGE_RECORDS) * RD_COIN_RECORD_SIZE)
        != (ssize_t)sizeof(rec))
        abort();
    close(fd);
}

/* The record of (DEN, SN) as the page file holds it now. */
static inline void fx_read(const fixture_t *f, int8_t den, uint32_t sn,
                           uint8_t rec[RD_COIN_RECORD_SIZE])
{
    char path[PATH_MAX];
    fx_page_path(f, den, sn, path, sizeof(path), false);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, rec, RD_COIN_RECORD_SIZE,
                        (off_t)(sn % RD_COIN_PAGE_RECORDS) * RD_COIN_RECORD_SIZE)
                  != RD_COIN_RECORD_SIZE)
        abort();
    close(fd);
}

static inline void fx_init(fixture_t *f, const char *name)
{
    char path[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    memset(f, 0, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "%s/%s.XXXXXX", tmp != NULL ? tmp : "/tmp", name);
    if (mkdtemp(f->root) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/Data", f->root);
    mkdir(path, 0700);
    f->conf = (rd_coins_conf_t){ .data_dir = f->root, .uid = (uid_t)-1, .gid = (gid_t)-1,
                                 .pending_max = 4096, .journal_max = 1 << 20,
                                 .checkpoint_interval_ms = 3600000, .page_recheck_ms = 0 };
}

/* The master's part, then one process's handle. */
static inline void fx_open(fixture_t *f)
{
    char err[PATH_MAX + 256];
    f->shared = rd_coins_prepare(&f->conf, err, sizeof(err));
    if (f->shared == NULL) {
        fprintf(stderr, "prepare: %s\n", err);
        abort();
    }
    f->store = rd_coins_open(f->shared, &f->conf);
    if (f->store == NULL)
        abort();
}

static inline void fx_close(fixture_t *f)
{
    rd_coins_close(f->store);
    f->store = NULL;
    if (f->shared != NULL)
        rd_coins_finish(f->shared);
    f->shared = NULL;
}

static inline void fx_free(fixture_t *f)
{
    char cmd[PATH_MAX + 16];
    fx_close(f);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        abort();
}

#endif
