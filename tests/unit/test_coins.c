/* The coin store (src/rd_coins.c, src/rd_coins_disk.c) on real files in a
 * temporary folder: reads, transactions, group commit, visibility between
 * two handles (two workers), a process dying with the store held, the
 * journal's replay with a torn tail, checkpoints, the data folder check,
 * damaged pages, and transient errors never remembered. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <cmocka.h>

#include "coins_fixture.h"
#include "rd_coins_disk.h"
#include "rd_commit.h"

static int setup(void **state)
{
    fixture_t *f = malloc(sizeof(*f));
    fx_init(f, "test_coins");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_free(*state);
    free(*state);
    return 0;
}

static void expect_key(rd_coins_t *s, int8_t den, uint32_t sn, const uint8_t *want)
{
    uint8_t key[RD_COIN_AN_SIZE], def[RD_COIN_AN_SIZE];
    uint64_t dep;
    if (want == NULL) {
        fx_an(den, sn, def);
        want = def;
    }
    assert_int_equal(rd_coins_key(s, den, sn, key, &dep), RD_COIN_OK);
    assert_memory_equal(key, want, RD_COIN_AN_SIZE);
}

/* One change: AN := NEW_AN, MFS 45, as pown does; returns its position. */
static uint64_t change(rd_coins_t *s, int8_t den, uint32_t sn, const uint8_t *new_an)
{
    rd_coins_txn_t t;
    uint8_t rec[RD_COIN_RECORD_SIZE];
    rd_coins_begin(s, &t);
    assert_int_equal(rd_coins_get(&t, den, sn, rec), RD_COIN_OK);
    memcpy(rec, new_an, RD_COIN_AN_SIZE);
    rec[RD_COIN_AN_SIZE] = 45;
    assert_int_equal(rd_coins_put(&t, den, sn, rec), RD_COIN_OK);
    assert_int_equal(rd_coins_end(&t), RD_COIN_OK);
    assert_true(t.dep > 0);
    return t.dep;
}

static void test_month(void **state)
{
    (void)state;
    assert_int_equal(rd_mfs_now(1794182400), 45);      /* 2026-11-09 UTC */
    assert_int_equal(rd_mfs_now(1793491199), 44);      /* 2026-10-31 23:59:59 UTC */
    assert_int_equal(rd_mfs_now(1675209600), 1);      /* 2023-02-01: month 0, kept issued */
    assert_int_equal(rd_mfs_now(1680307200), 2);      /* 2023-04-01 */
}

static void test_valid_coins(void **state)
{
    (void)state;
    assert_true(rd_coinfile_valid(-8, 0));
    assert_true(rd_coinfile_valid(6, RD_COIN_MAX_SN));
    assert_false(rd_coinfile_valid(7, 0));
    assert_false(rd_coinfile_valid(-9, 0));
    assert_false(rd_coinfile_valid(0, 1024000));
    assert_false(rd_coinfile_valid(0, 0xFFFFFFFFu));
}

static void test_keys_and_missing(void **state)
{
    fixture_t *f = *state;
    uint8_t key[RD_COIN_AN_SIZE];
    uint64_t dep;
    fx_coin(f, 1, 2000, NULL, 3);
    fx_coin(f, 1, 2001, NULL, 0);                  /* on the page, not issued */
    fx_coin(f, -3, 939 * 1024 + 7, NULL, 3);       /* Data/fd/03/03ab.bin */
    fx_open(f);
    expect_key(f->store, 1, 2000, NULL);
    expect_key(f->store, -3, 939 * 1024 + 7, NULL);
    assert_int_equal(rd_coins_key(f->store, 1, 2001, key, &dep), RD_COIN_MISSING);
    assert_int_equal(rd_coins_key(f->store, 4, 4, key, &dep), RD_COIN_MISSING);
    assert_int_equal(rd_coins_key(f->store, 7, 4, key, &dep), RD_COIN_MISSING);
    /* A serial number whose page would be 1000 is no alias of another. */
    assert_int_equal(rd_coins_key(f->store, 1, 1024000 + 2000, key, &dep), RD_COIN_MISSING);
    assert_int_equal(dep, 0);
}

/* Lowercase is what RAIDA servers write; uppercase names are found too. */
static void test_uppercase_page_name(void **state)
{
    fixture_t *f = *state;
    char lower[PATH_MAX], upper[PATH_MAX];
    fx_coin(f, -3, 939 * 1024 + 7, NULL, 3);
    fx_page_path(f, -3, 939 * 1024 + 7, lower, sizeof(lower), false);
    snprintf(upper, sizeof(upper), "%s/Data/FD/03/03AB.bin", f->root);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/Data/FD", f->root);
    mkdir(dir, 0700);
    snprintf(dir, sizeof(dir), "%s/Data/FD/03", f->root);
    mkdir(dir, 0700);
    assert_int_equal(rename(lower, upper), 0);
    fx_open(f);
    expect_key(f->store, -3, 939 * 1024 + 7, NULL);
}

/* A folder on the way to a page swapped for a link after the start's
 * check (which refuses one): the open does not go through it. */
static void test_page_open_goes_through_no_link(void **state)
{
    fixture_t *f = *state;
    char page[PATH_MAX], folder[PATH_MAX], moved[PATH_MAX], path[PATH_MAX];
    fx_coin(f, 1, 5, NULL, 3);
    fx_page_path(f, 1, 5, page, sizeof(page), false);
    int fd = rd_coins_disk_page_open(f->root, rd_den_index(1), 0, O_RDONLY, path, sizeof(path));
    assert_true(fd >= 0);
    close(fd);
    snprintf(folder, sizeof(folder), "%s/Data/01", f->root);
    snprintf(moved, sizeof(moved), "%s/moved", f->root);
    assert_int_equal(rename(folder, moved), 0);
    assert_int_equal(symlink(moved, folder), 0);
    errno = 0;
    fd = rd_coins_disk_page_open(f->root, rd_den_index(1), 0, O_RDONLY, path, sizeof(path));
    assert_int_equal(fd, -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(unlink(folder), 0);
    assert_int_equal(rename(moved, folder), 0);
}

static void test_change_durable_in_page(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE], rec[RD_COIN_RECORD_SIZE], old[RD_COIN_AN_SIZE];
    memset(pan, 0xA5, sizeof(pan));
    fx_coin(f, 0, 5, NULL, 3);
    fx_an(0, 5, old);
    fx_open(f);
    uint64_t dep = change(f->store, 0, 5, pan);
    assert_false(rd_coins_synced(f->store, dep));
    /* Not durable yet: the page file still has the old AN (write-ahead). */
    fx_read(f, 0, 5, rec);
    assert_memory_equal(rec, old, RD_COIN_AN_SIZE);
    /* Whoever reads the new AN before the sync must wait for it. */
    uint8_t key[RD_COIN_AN_SIZE];
    uint64_t kdep;
    assert_int_equal(rd_coins_key(f->store, 0, 5, key, &kdep), RD_COIN_OK);
    assert_memory_equal(key, pan, RD_COIN_AN_SIZE);
    assert_int_equal(kdep, dep);
    assert_int_equal(rd_coins_sync(f->store, dep), 0);
    assert_true(rd_coins_synced(f->store, dep));
    fx_read(f, 0, 5, rec);
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
    assert_int_equal(rec[RD_COIN_AN_SIZE], 45);
    assert_int_equal(rd_coins_key(f->store, 0, 5, key, &kdep), RD_COIN_OK);
    assert_int_equal(kdep, 0);
}

/* Two handles on one shared store are two workers: a change through one
 * is seen by the next read through the other, synced or not. */
static void test_two_workers_see_each_other(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE];
    memset(pan, 0x3C, sizeof(pan));
    fx_coin(f, 2, 100, NULL, 3);
    fx_open(f);
    rd_coins_t *other = rd_coins_open(f->shared, &f->conf);
    assert_non_null(other);
    expect_key(other, 2, 100, NULL);
    uint64_t dep = change(f->store, 2, 100, pan);
    expect_key(other, 2, 100, pan);
    assert_int_equal(rd_coins_sync(other, dep), 0);     /* either may lead the sync */
    expect_key(other, 2, 100, pan);
    expect_key(f->store, 2, 100, pan);
    rd_coins_close(other);
}

/* A staged put is seen by the transaction's own later reads; end with an
 * error writes nothing. */
static void test_transaction_all_or_nothing(void **state)
{
    fixture_t *f = *state;
    uint8_t rec[RD_COIN_RECORD_SIZE];
    fx_coin(f, 0, 1, NULL, 3);
    fx_coin(f, 0, 2, NULL, 3);
    fx_open(f);
    rd_coins_txn_t t;
    rd_coins_begin(f->store, &t);
    assert_int_equal(rd_coins_get(&t, 0, 1, rec), RD_COIN_OK);
    memset(rec, 0x11, RD_COIN_AN_SIZE);
    assert_int_equal(rd_coins_put(&t, 0, 1, rec), RD_COIN_OK);
    memset(rec, 0, sizeof(rec));
    assert_int_equal(rd_coins_get(&t, 0, 1, rec), RD_COIN_OK);
    assert_int_equal(rec[0], 0x11);
    t.error = RD_COIN_ERROR;            /* as a failed get would set */
    assert_int_equal(rd_coins_end(&t), RD_COIN_ERROR);
    expect_key(f->store, 0, 1, NULL);
    assert_int_equal(t.dep, 0);
}

typedef struct racer {
    rd_coins_t *store;
    const uint8_t *an;
    uint8_t pan[RD_COIN_AN_SIZE];
    bool passed;
} racer_t;

/* pown of coin 0/9 with its current AN, as rd_auth.c does it. */
static void *racer_main(void *arg)
{
    racer_t *r = arg;
    rd_coins_txn_t t;
    uint8_t rec[RD_COIN_RECORD_SIZE];
    rd_coins_begin(r->store, &t);
    if (rd_coins_get(&t, 0, 9, rec) == RD_COIN_OK && memcmp(rec, r->an, RD_COIN_AN_SIZE) == 0) {
        memcpy(rec, r->pan, RD_COIN_AN_SIZE);
        r->passed = rd_coins_put(&t, 0, 9, rec) == RD_COIN_OK;
    }
    if (rd_coins_end(&t) != RD_COIN_OK)
        r->passed = false;
    rd_coins_sync(r->store, t.dep);
    return NULL;
}

static void test_racing_powns_one_wins(void **state)
{
    fixture_t *f = *state;
    uint8_t an[RD_COIN_AN_SIZE];
    fx_coin(f, 0, 9, NULL, 3);
    fx_open(f);
    rd_coins_t *other = rd_coins_open(f->shared, &f->conf);
    for (int round = 0; round < 200; round++) {
        racer_t r[4];
        pthread_t th[4];
        uint8_t key[RD_COIN_AN_SIZE];
        uint64_t dep;
        assert_int_equal(rd_coins_key(f->store, 0, 9, an, &dep), RD_COIN_OK);
        for (int i = 0; i < 4; i++) {
            r[i] = (racer_t){ .store = i % 2 ? other : f->store, .an = an };
            memset(r[i].pan, round * 4 + i + 1, sizeof(r[i].pan));
            pthread_create(&th[i], NULL, racer_main, &r[i]);
        }
        int winners = 0, who = -1;
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            if (r[i].passed) {
                winners++;
                who = i;
            }
        }
        assert_int_equal(winners, 1);
        assert_int_equal(rd_coins_key(other, 0, 9, key, &dep), RD_COIN_OK);
        assert_memory_equal(key, r[who].pan, RD_COIN_AN_SIZE);
    }
    rd_coins_close(other);
}

typedef struct appender {
    rd_coins_t *store;
    uint32_t first;
    uint64_t dep;
    pthread_barrier_t *ready;
    int sync_rc;
} appender_t;

/* 25 changes, then, once every thread has made its own, one sync. */
static void *appender_main(void *arg)
{
    appender_t *a = arg;
    uint8_t pan[RD_COIN_AN_SIZE];
    for (uint32_t i = 0; i < 25; i++) {
        memset(pan, (int)(a->first + i), sizeof(pan));
        a->dep = change(a->store, 4, a->first + i, pan);
    }
    pthread_barrier_wait(a->ready);
    a->sync_rc = rd_coins_sync(a->store, a->dep);
    return NULL;
}

/* Group commit: four threads (two handles: two workers) wait for their
 * changes at once; one fdatasync makes all 100 durable. */
static void test_group_commit_one_sync_for_all(void **state)
{
    fixture_t *f = *state;
    for (uint32_t sn = 0; sn < 100; sn++)
        fx_coin(f, 4, sn, NULL, 3);
    fx_open(f);
    rd_coins_t *other = rd_coins_open(f->shared, &f->conf);
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, 4);
    appender_t a[4];
    pthread_t th[4];
    uint64_t before = rd_coins_syncs(f->store);
    for (int i = 0; i < 4; i++) {
        a[i] = (appender_t){ .store = i % 2 ? other : f->store, .first = (uint32_t)i * 25,
                             .ready = &ready };
        pthread_create(&th[i], NULL, appender_main, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].sync_rc, 0);
    }
    assert_int_equal(rd_coins_syncs(f->store) - before, 1);
    uint8_t rec[RD_COIN_RECORD_SIZE];
    for (uint32_t sn = 0; sn < 100; sn++) {
        fx_read(f, 4, sn, rec);                 /* all in the pages */
        assert_int_equal(rec[0], (uint8_t)sn);
    }
    pthread_barrier_destroy(&ready);
    rd_coins_close(other);
}

/* The commit threads (src/rd_commit.c) over the real store: producers
 * (pool threads of two workers) queue their changes' positions, and every
 * item comes back exactly once, marked durable, only once the journal is
 * synced past its position, though three threads per worker take turns
 * and their syncs overlap. */
#define COMMIT_PRODUCERS 4
#define COMMIT_EACH 150

typedef struct commit_item {
    uint64_t dep;
    rd_coins_t *store;
    _Atomic int done;
    _Atomic bool early;             /* handed back before its position was synced */
} commit_item_t;

typedef struct producer {
    rd_coins_t *store;
    rd_commit_t *commit;
    uint32_t first;
    commit_item_t *items;
} producer_t;

static void commit_done(void *arg, bool durable)
{
    commit_item_t *it = arg;
    if (!durable || !rd_coins_synced(it->store, it->dep))
        atomic_store(&it->early, true);
    atomic_fetch_add(&it->done, 1);
}

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    uint8_t pan[RD_COIN_AN_SIZE];
    for (uint32_t i = 0; i < COMMIT_EACH; i++) {
        memset(pan, (int)(p->first + i), sizeof(pan));
        p->items[i].store = p->store;
        p->items[i].dep = change(p->store, 4, p->first + i, pan);
        rd_commit_add(p->commit, p->items[i].dep, &p->items[i]);
    }
    return NULL;
}

static void test_commit_threads_answer_only_synced(void **state)
{
    fixture_t *f = *state;
    enum { N = COMMIT_PRODUCERS * COMMIT_EACH };
    for (uint32_t sn = 0; sn < N; sn++)
        fx_coin(f, 4, sn, NULL, 3);
    fx_open(f);
    rd_coins_t *other = rd_coins_open(f->shared, &f->conf);
    rd_protocol_t proto[2] = { { .coins = f->store }, { .coins = other } };
    rd_commit_t *commit[2] = { rd_commit_create(&proto[0], N, 3, commit_done, 1000),
                               rd_commit_create(&proto[1], N, 3, commit_done, 1000) };
    assert_non_null(commit[0]);
    assert_non_null(commit[1]);
    commit_item_t *items = calloc(N, sizeof(*items));
    producer_t p[COMMIT_PRODUCERS];
    pthread_t th[COMMIT_PRODUCERS];
    for (int i = 0; i < COMMIT_PRODUCERS; i++) {
        p[i] = (producer_t){ .store = i % 2 ? other : f->store, .commit = commit[i % 2],
                             .first = (uint32_t)i * COMMIT_EACH,
                             .items = items + i * COMMIT_EACH };
        pthread_create(&th[i], NULL, producer_main, &p[i]);
    }
    for (int i = 0; i < COMMIT_PRODUCERS; i++)
        pthread_join(th[i], NULL);
    rd_commit_destroy(commit[0]);       /* hands back whatever it still holds */
    rd_commit_destroy(commit[1]);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&items[i].done), 1);
        assert_false(atomic_load(&items[i].early));
    }
    uint8_t rec[RD_COIN_RECORD_SIZE];
    for (uint32_t sn = 0; sn < N; sn++) {
        fx_read(f, 4, sn, rec);                 /* the stop's checkpoint: all in the pages */
        assert_int_equal(rec[0], (uint8_t)sn);
    }
    free(items);
    rd_coins_close(other);
}

/* A worker killed while it holds the store leaves no lock held: the next
 * one gets it, repaired from the journal. */
static void test_dead_holder_releases_store(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE], rec[RD_COIN_RECORD_SIZE];
    memset(pan, 0x77, sizeof(pan));
    fx_coin(f, 3, 3, NULL, 3);
    fx_open(f);
    change(f->store, 3, 3, pan);            /* appended, not synced */
    pid_t pid = fork();
    if (pid == 0) {
        rd_coins_t *s = rd_coins_open(f->shared, &f->conf);
        rd_coins_txn_t t;
        rd_coins_begin(s, &t);
        _exit(0);                          /* dies holding the store */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    expect_key(f->store, 3, 3, pan);       /* would hang without robust locks */
    fx_read(f, 3, 3, rec);                 /* the repair made it durable and applied it */
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
}

static size_t file_size(const fixture_t *f, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", f->root, name);
    assert_int_equal(stat(path, &st), 0);
    return (size_t)st.st_size;
}

/* A child's handle on the store whose system call SYSCALL_NR, when its
 * arguments match WHEN, is answered by ACTION (a seccomp filter of the
 * child alone); exits 3 when that cannot be set up. */
static rd_coins_t *child_store(fixture_t *f, uint32_t action, int syscall_nr,
                               struct scmp_arg_cmp when)
{
    rd_coins_t *s = rd_coins_open(f->shared, &f->conf);
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (s == NULL || ctx == NULL || seccomp_rule_add(ctx, action, syscall_nr, 1, when) < 0
        || seccomp_load(ctx) < 0)
        _exit(3);
    return s;
}

static void expect_child_exit(pid_t pid, int code)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), code);
}

#ifdef __x86_64__
/* The trapped pwrite (x86-64's argument registers): done with pwritev,
 * which the filter lets through, then the process dies, as a kill -9
 * right after the write would leave things. */
static void write_then_die(int sig, siginfo_t *si, void *uc)
{
    greg_t *r = ((ucontext_t *)uc)->uc_mcontext.gregs;
    struct iovec iov = { (void *)r[REG_RSI], (size_t)r[REG_RDX] };
    (void)sig;
    (void)si;
    _exit(pwritev((int)r[REG_RDI], &iov, 1, (off_t)r[REG_R10]) == (ssize_t)iov.iov_len ? 0 : 2);
}
#endif

/* A process killed in the middle of a checkpoint, right after it wrote the
 * new epoch into the journal's header (the only write at offset 0): the
 * next to take the store finishes the checkpoint before anything is
 * appended, so a change synced after it carries the header's epoch and a
 * start's replay finds it. */
static void test_checkpoint_finished_by_the_next(void **state)
{
#ifdef __x86_64__
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE], rec[RD_COIN_RECORD_SIZE];
    char err[PATH_MAX + 256];
    memset(pan, 0x4E, sizeof(pan));
    fx_coin(f, 1, 40, NULL, 3);
    fx_open(f);
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction sa = { .sa_sigaction = write_then_die, .sa_flags = SA_SIGINFO };
        sigaction(SIGSYS, &sa, NULL);
        rd_coins_t *s = child_store(f, SCMP_ACT_TRAP, SCMP_SYS(pwrite64),
                                    SCMP_A3(SCMP_CMP_EQ, 0, 0));
        rd_coins_checkpoint(s, true);
        _exit(4);                           /* the header was never written */
    }
    expect_child_exit(pid, 0);
    uint64_t dep = change(f->store, 1, 40, pan);
    assert_int_equal(rd_coins_sync(f->store, dep), 0);
    /* kill -9 of all, and the page's write lost: the replay has it. */
    fx_coin(f, 1, 40, NULL, 3);
    rd_coins_close(f->store);
    f->store = NULL;
    assert_true(rd_coins_disk_recover(f->root, err, sizeof(err)) >= 1);
    fx_read(f, 1, 40, rec);
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
#else
    (void)state;
    skip();
#endif
}

/* A checkpoint whose syncfs fails (a page's writeback failed) keeps the
 * journal, which a restart copies into the pages again, and the store
 * takes no more changes: the error is reported once, so a later
 * checkpoint would not see it and empty the journal over lost pages. */
static void test_checkpoint_syncfs_error_stops_changes(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE];
    rd_coins_txn_t t;
    uint8_t rec[RD_COIN_RECORD_SIZE];
    memset(pan, 0x1F, sizeof(pan));
    fx_coin(f, 6, 9, NULL, 3);
    fx_coin(f, 6, 10, NULL, 3);
    fx_open(f);
    uint64_t dep = change(f->store, 6, 9, pan);
    assert_int_equal(rd_coins_sync(f->store, dep), 0);
    pid_t pid = fork();
    if (pid == 0) {
        rd_coins_t *s = child_store(f, SCMP_ACT_ERRNO(EIO), SCMP_SYS(syncfs),
                                    SCMP_A0(SCMP_CMP_GE, 0, 0));
        _exit(rd_coins_checkpoint(s, true) < 0 ? 0 : 4);
    }
    expect_child_exit(pid, 0);
    rd_coins_begin(f->store, &t);
    assert_int_equal(rd_coins_get(&t, 6, 10, rec), RD_COIN_OK);
    assert_int_equal(rd_coins_put(&t, 6, 10, rec), RD_COIN_OK);
    assert_int_equal(rd_coins_end(&t), RD_COIN_ERROR);
    expect_key(f->store, 6, 9, pan);
    assert_true(file_size(f, RD_JOURNAL_NAME) > RD_JOURNAL_START);
}

static void test_checkpoint_empties_journal(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE], rec[RD_COIN_RECORD_SIZE];
    memset(pan, 0x42, sizeof(pan));
    fx_coin(f, 6, 1023999, NULL, 3);
    fx_open(f);
    uint64_t dep = change(f->store, 6, 1023999, pan);
    /* The record is in the shared ring until a sync's leader writes it. */
    assert_int_equal(file_size(f, RD_JOURNAL_NAME), RD_JOURNAL_START);
    assert_int_equal(rd_coins_sync(f->store, dep), 0);
    assert_true(file_size(f, RD_JOURNAL_NAME) > RD_JOURNAL_START);
    memset(pan, 0x41, sizeof(pan));
    dep = change(f->store, 6, 1023999, pan);
    assert_int_equal(rd_coins_checkpoint(f->store, true), 0);
    assert_true(rd_coins_synced(f->store, dep));   /* positions stay meaningful */
    assert_int_equal(file_size(f, RD_JOURNAL_NAME), RD_JOURNAL_START);
    fx_read(f, 6, 1023999, rec);
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
    /* And the next change goes on in the new epoch. */
    memset(pan, 0x43, sizeof(pan));
    dep = change(f->store, 6, 1023999, pan);
    assert_int_equal(rd_coins_sync(f->store, dep), 0);
    expect_key(f->store, 6, 1023999, pan);
}

/* A crash after the journal record, before its page was written: the
 * next start replays it. Then one torn record at the tail is ignored. */
static void test_replay_with_torn_tail(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX], err[PATH_MAX + 256];
    uint8_t rec[RD_COIN_RECORD_SIZE], old[RD_COIN_AN_SIZE];
    fx_coin(f, 0, 10, NULL, 3);
    fx_coin(f, 0, 11, NULL, 3);
    fx_an(0, 11, old);
    /* A journal as a dead server left it: epoch 7, two records, then half
     * of a third. */
    snprintf(path, sizeof(path), "%s/" RD_JOURNAL_NAME, f->root);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(rd_coins_disk_write_epoch(fd, 7), 0);
    rd_jentry_t e[2] = { { .den = 0, .sn = 10 }, { .den = 0, .sn = 10 } };
    memset(e[0].rec, 0xE0, RD_COIN_RECORD_SIZE);
    memset(e[1].rec, 0xE1, RD_COIN_RECORD_SIZE);
    uint8_t buf[256];
    uint64_t at = RD_JOURNAL_START;
    for (int i = 0; i < 2; i++) {
        size_t len = rd_jrec_size(1);
        rd_coins_disk_jrec_encode(buf, 7, at + len, &e[i], 1);
        assert_int_equal(pwrite(fd, buf, len, (off_t)at), (ssize_t)len);
        at += len;
    }
    rd_jentry_t torn = { .den = 0, .sn = 11 };
    memset(torn.rec, 0xEE, RD_COIN_RECORD_SIZE);
    rd_coins_disk_jrec_encode(buf, 7, at + rd_jrec_size(1), &torn, 1);
    assert_int_equal(pwrite(fd, buf, rd_jrec_size(1) - 5, (off_t)at), (ssize_t)rd_jrec_size(1) - 5);
    /* And a record of an older epoch after it, which must not count. */
    rd_coins_disk_jrec_encode(buf, 6, at + rd_jrec_size(1), &torn, 1);
    close(fd);
    assert_int_equal(rd_coins_disk_recover(f->root, err, sizeof(err)), 2);
    fx_read(f, 0, 10, rec);
    assert_int_equal(rec[0], 0xE1);                /* in order: the last one wins */
    fx_read(f, 0, 11, rec);
    assert_memory_equal(rec, old, RD_COIN_AN_SIZE); /* the torn record is not applied */
    /* Replaying is done once: the journal is empty under a new epoch. */
    assert_int_equal(rd_coins_disk_recover(f->root, err, sizeof(err)), 0);
    assert_int_equal(file_size(f, RD_JOURNAL_NAME), RD_JOURNAL_START);
}

/* Records whose bytes were damaged (a flipped bit) are not applied, and
 * nothing after them is. */
static void test_replay_stops_at_bad_crc(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX], err[PATH_MAX + 256];
    uint8_t rec[RD_COIN_RECORD_SIZE], old[RD_COIN_AN_SIZE];
    fx_coin(f, 0, 12, NULL, 3);
    fx_an(0, 12, old);
    snprintf(path, sizeof(path), "%s/" RD_JOURNAL_NAME, f->root);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    assert_int_equal(rd_coins_disk_write_epoch(fd, 2), 0);
    rd_jentry_t e = { .den = 0, .sn = 12 };
    memset(e.rec, 0xAB, RD_COIN_RECORD_SIZE);
    uint8_t buf[64];
    rd_coins_disk_jrec_encode(buf, 2, RD_JOURNAL_START + rd_jrec_size(1), &e, 1);
    buf[30] ^= 1;
    assert_int_equal(pwrite(fd, buf, rd_jrec_size(1), RD_JOURNAL_START), (ssize_t)rd_jrec_size(1));
    close(fd);
    assert_int_equal(rd_coins_disk_recover(f->root, err, sizeof(err)), 0);
    fx_read(f, 0, 12, rec);
    assert_memory_equal(rec, old, RD_COIN_AN_SIZE);
}

/* The whole cycle: changes synced but never checkpointed (a kill -9) are
 * in the pages after the next start's replay. */
static void test_unclean_stop_then_start(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE], rec[RD_COIN_RECORD_SIZE];
    memset(pan, 0x99, sizeof(pan));
    fx_coin(f, -8, 0, NULL, 3);
    fx_open(f);
    uint64_t dep = change(f->store, -8, 0, pan);
    assert_int_equal(rd_coins_sync(f->store, dep), 0);
    /* Durable in the journal; the page is then put back to the old record,
     * as a leader killed between its fdatasync and its apply, or a power
     * cut that lost the page's writeback, would leave it. */
    fx_coin(f, -8, 0, NULL, 3);
    fx_read(f, -8, 0, rec);
    assert_memory_not_equal(rec, pan, RD_COIN_AN_SIZE);
    /* "kill -9": nothing more is done with the store; the next start's
     * replay (what rd_coins_prepare runs) works from the files alone. */
    rd_coins_close(f->store);
    f->store = NULL;
    char err[PATH_MAX + 256];
    assert_true(rd_coins_disk_recover(f->root, err, sizeof(err)) >= 1);
    fx_read(f, -8, 0, rec);
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
}

/* The journal's tail lives in a ring in shared memory (256 KiB with this
 * fixture's pending_changes): 12,000 changes of one coin (54-byte records)
 * wrap it twice, once with syncs between them (the leader's write and
 * apply from the ring), once with 6,000 changes and no sync (the ring
 * fills: the appender writes, syncs and applies all). The file crosses
 * several chunks of zeros written ahead of the records; a replay from the
 * files alone, with the page put back to its old value, finds the last. */
static void pattern(unsigned i, uint8_t an[RD_COIN_AN_SIZE])
{
    for (unsigned k = 0; k < RD_COIN_AN_SIZE; k++)
        an[k] = (uint8_t)(i * 31 + k * 7 + (i >> 8));
}

static void test_ring_wraps_and_replays(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE], rec[RD_COIN_RECORD_SIZE];
    uint64_t dep = 0;
    fx_coin(f, 2, 7, NULL, 3);
    fx_open(f);
    uint64_t syncs = rd_coins_syncs(f->store);
    for (unsigned i = 0; i < 12000; i++) {
        pattern(i, pan);
        dep = change(f->store, 2, 7, pan);
        if (i < 6000 && i % 500 == 499)
            assert_int_equal(rd_coins_sync(f->store, dep), 0);
    }
    expect_key(f->store, 2, 7, pan);
    /* The stretch without a sync filled the ring: appenders synced. */
    assert_true(rd_coins_syncs(f->store) - syncs > 12);
    assert_int_equal(rd_coins_sync(f->store, dep), 0);
    fx_read(f, 2, 7, rec);
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
    assert_true(file_size(f, RD_JOURNAL_NAME) > 12000u * 54u);
    rd_coins_close(f->store);
    f->store = NULL;
    fx_coin(f, 2, 7, NULL, 3);
    char err[PATH_MAX + 256];
    assert_int_equal(rd_coins_disk_recover(f->root, err, sizeof(err)), 12000);
    fx_read(f, 2, 7, rec);
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
}

static void test_check_data_dir(void **state)
{
    fixture_t *f = *state;
    char err[PATH_MAX + 256], path[PATH_MAX];
    assert_int_equal(rd_coins_disk_check(f->root, (uid_t)-1, err, sizeof(err)), 0);
    /* Wrong owner for the workers' user. */
    assert_int_equal(rd_coins_disk_check(f->root, getuid() + 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not by the workers' user"));
    /* A page of the wrong size. */
    fx_coin(f, 1, 1, NULL, 3);
    fx_page_path(f, 1, 1, path, sizeof(path), false);
    assert_int_equal(truncate(path, 100), 0);
    assert_int_equal(rd_coins_disk_check(f->root, (uid_t)-1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "100 bytes long"));
    /* No folder at all. */
    snprintf(path, sizeof(path), "%s/nowhere", f->root);
    assert_int_equal(rd_coins_disk_check(path, (uid_t)-1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    rd_coins_conf_t c = f->conf;
    c.data_dir = path;
    assert_null(rd_coins_prepare(&c, err, sizeof(err)));
}

/* A page damaged while serving: its coins answer an error, the others are
 * served; the page is not read again and again. */
static void test_damaged_page_refused(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX];
    uint8_t key[RD_COIN_AN_SIZE];
    uint64_t dep;
    fx_coin(f, 1, 1, NULL, 3);
    fx_coin(f, 1, 5000, NULL, 3);
    fx_open(f);
    fx_page_path(f, 1, 1, path, sizeof(path), false);
    assert_int_equal(truncate(path, 100), 0);
    f->conf.page_recheck_ms = 60000;
    rd_coins_t *s = rd_coins_open(f->shared, &f->conf);
    assert_int_equal(rd_coins_key(s, 1, 1, key, &dep), RD_COIN_DAMAGED);
    assert_int_equal(rd_coins_key(s, 1, 2, key, &dep), RD_COIN_DAMAGED);
    expect_key(s, 1, 5000, NULL);
    rd_coins_close(s);
}

/* Lowers the descriptor limit to the lowest free descriptor, so that the
 * next open fails with EMFILE; WAS gets the limit to put back. */
static void no_free_descriptor(struct rlimit *was)
{
    struct rlimit low;
    int lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, was), 0);
    low = *was;
    low.rlim_cur = (rlim_t)lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
}

/* Security defect 6: a transient failure to open a page (here EMFILE) is
 * never remembered: once descriptors are free again, the coin is found. */
static void test_transient_error_not_cached(void **state)
{
    fixture_t *f = *state;
    uint8_t key[RD_COIN_AN_SIZE];
    uint64_t dep;
    struct rlimit old;
    fx_coin(f, 5, 77, NULL, 3);
    f->conf.page_recheck_ms = 3600000;      /* a cached failure would last an hour */
    fx_open(f);
    no_free_descriptor(&old);
    int rc = rd_coins_key(f->store, 5, 77, key, &dep);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(rc, RD_COIN_ERROR);
    expect_key(f->store, 5, 77, NULL);
}

/* Whoever leads a sync copies every worker's changes into the pages: a
 * worker that remembers a page missing from before it was made looks for
 * it again, and the change is neither lost to the pages nor to readers. */
static void test_apply_finds_a_page_made_since(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE], key[RD_COIN_AN_SIZE], rec[RD_COIN_RECORD_SIZE];
    uint64_t dep;
    memset(pan, 0x6B, sizeof(pan));
    fx_coin(f, 0, 5, NULL, 3);
    f->conf.page_recheck_ms = 3600000;      /* a remembered miss would last an hour */
    fx_open(f);
    rd_coins_t *other = rd_coins_open(f->shared, &f->conf);
    assert_non_null(other);
    assert_int_equal(rd_coins_key(other, 3, 2048, key, &dep), RD_COIN_MISSING);
    fx_coin(f, 3, 2048, NULL, 3);           /* the page is made while serving */
    dep = change(f->store, 3, 2048, pan);
    assert_int_equal(rd_coins_sync(other, dep), 0);     /* other leads, and copies */
    expect_key(f->store, 3, 2048, pan);
    expect_key(other, 3, 2048, pan);
    fx_read(f, 3, 2048, rec);
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
    assert_int_equal(rd_coins_checkpoint(other, true), 0);
    expect_key(f->store, 3, 2048, pan);
    rd_coins_close(other);
}

/* A sync's leader that cannot map a page (no descriptor free) answers the
 * sync all the same, keeps the change pending for every reader, and a
 * checkpoint neither drops it nor empties the journal until it is copied. */
static void test_apply_keeps_what_cannot_reach_its_page(void **state)
{
    fixture_t *f = *state;
    uint8_t pan[RD_COIN_AN_SIZE], rec[RD_COIN_RECORD_SIZE], old[RD_COIN_AN_SIZE];
    struct rlimit was;
    memset(pan, 0x2D, sizeof(pan));
    fx_coin(f, 4, 300, NULL, 3);
    fx_an(4, 300, old);
    fx_open(f);
    rd_coins_t *other = rd_coins_open(f->shared, &f->conf);
    assert_non_null(other);
    uint64_t dep = change(f->store, 4, 300, pan);
    no_free_descriptor(&was);               /* other's open of the page fails */
    int synced = rd_coins_sync(other, dep);
    int checkpointed = rd_coins_checkpoint(other, true);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);
    assert_int_equal(synced, 0);
    assert_int_not_equal(checkpointed, 0);
    expect_key(f->store, 4, 300, pan);
    expect_key(other, 4, 300, pan);
    fx_read(f, 4, 300, rec);
    assert_memory_equal(rec, old, RD_COIN_AN_SIZE);
    /* Descriptors free again: the next checkpoint copies it, then empties
     * the journal. */
    assert_int_equal(rd_coins_checkpoint(other, true), 0);
    fx_read(f, 4, 300, rec);
    assert_memory_equal(rec, pan, RD_COIN_AN_SIZE);
    expect_key(f->store, 4, 300, pan);
    rd_coins_close(other);
}

/* Security defect 7b: looking up missing pages takes nothing from the
 * pages in use (there is no bounded cache to evict them from). */
static void test_missing_pages_evict_nothing(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX];
    uint8_t key[RD_COIN_AN_SIZE];
    uint64_t dep;
    fx_coin(f, 0, 0, NULL, 3);
    fx_open(f);
    expect_key(f->store, 0, 0, NULL);
    for (uint32_t page = 1; page < RD_COIN_PAGES; page++)
        for (int8_t den = -8; den <= 6; den++)
            assert_int_equal(rd_coins_key(f->store, den, page * 1024, key, &dep), RD_COIN_MISSING);
    assert_int_equal(rd_coins_mapped_pages(f->store), 1);
    /* Still mapped, not read again: served even once the file is gone. */
    fx_page_path(f, 0, 0, path, sizeof(path), false);
    assert_int_equal(unlink(path), 0);
    expect_key(f->store, 0, 0, NULL);
}

/* Issued counts come from the pages at start (index or scan) and stay
 * right across a restart that uses the index. */
static void test_counts_and_index(void **state)
{
    fixture_t *f = *state;
    uint32_t counts[RD_COIN_DENS];
    for (uint32_t sn = 0; sn < 10; sn++)
        fx_coin(f, -8, sn, NULL, sn < 7 ? 3 : 0);
    fx_coin(f, 6, 500000, NULL, 1);
    fx_open(f);
    rd_coins_counts(f->store, counts);
    assert_int_equal(counts[0], 7);
    assert_int_equal(counts[14], 1);
    for (int d = 1; d < 14; d++)
        assert_int_equal(counts[d], 0);
    fx_close(f);
    assert_true(file_size(f, RD_INDEX_NAME) > 0);
    fx_open(f);
    rd_coins_counts(f->store, counts);
    assert_int_equal(counts[0], 7);
    assert_int_equal(counts[14], 1);
}

/* Only one raidad serves a folder. */
static void test_folder_locked(void **state)
{
    fixture_t *f = *state;
    char err[PATH_MAX + 256];
    fx_open(f);
    pid_t pid = fork();
    if (pid == 0) {
        /* A new open file description: flock conflicts even in a child. */
        rd_coins_shared_t *sh = rd_coins_prepare(&f->conf, err, sizeof(err));
        _exit(sh == NULL && strstr(err, "another raidad") != NULL ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_month),
        cmocka_unit_test(test_valid_coins),
        cmocka_unit_test_setup_teardown(test_keys_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uppercase_page_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_open_goes_through_no_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_durable_in_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_workers_see_each_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racing_powns_one_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_one_sync_for_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_threads_answer_only_synced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_holder_releases_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_empties_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_finished_by_the_next, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_syncfs_error_stops_changes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replay_with_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_stops_at_bad_crc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unclean_stop_then_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_wraps_and_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_data_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_page_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transient_error_not_cached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_finds_a_page_made_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_keeps_what_cannot_reach_its_page, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_missing_pages_evict_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_and_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_locked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
