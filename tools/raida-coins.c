/* raida-coins: makes a RAIDA data directory for tests, benchmarks and new
 * installations. For the chosen denominations and serial numbers it writes
 * the page files (layout: include/rd_coinfile.h) with a fresh random AN
 * (OpenSSL's CSPRNG) and this month's MFS for every chosen coin, the other
 * records of those pages left 0 (not issued), and a coin list
 * (tools/rd_coinlist.h) that names the coins and their ANs, for raida-cli
 * and raida-bench. Every file is written whole or not at all and synced
 * (tools/rd_atomicfile.h); nothing that exists is overwritten without -f,
 * and that is checked for every file before the first one is written. A
 * page where an older installation has only the uppercase name is that
 * file (raidad reads it). Nothing at all is written while raidad serves
 * the folder, or while its journal holds changes a start would replay. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>

#include "rd_atomicfile.h"
#include "rd_coinfile.h"
#include "rd_coins_disk.h"
#include "rd_coinlist.h"
#include "rd_crypto.h"

#define EXIT_OK     0
#define EXIT_FAIL   1       /* a file could not be written, or exists */
#define EXIT_USAGE  2

#define DEFAULT_COUNT  100
#define MAX_RANGES     64
#define LIST_NAME      "coins.txt"
#define PAGE_MODE      0600     /* the ANs: the workers' user, who must own them, alone */
#define DIR_MODE       0750

typedef struct range {
    uint32_t first, last;
} range_t;

typedef struct opts {
    bool den[RD_COIN_DENS];     /* index: den - RD_COIN_MIN_DEN */
    bool any_den;
    range_t range[MAX_RANGES];
    unsigned nranges;
    bool count_set;
    bool force;
    bool quiet;
    const char *list;
    const char *data_dir;
    char list_buf[PATH_MAX];
} opts_t;

#define SYNOPSIS \
    "usage: raida-coins [-f] [-q] [-d DEN|LO..HI]... [-n COUNT | -s FIRST[-LAST]...]\n" \
    "                   [-l LIST] DATA_DIR\n"

static void usage(FILE *out)
{
    fprintf(out, SYNOPSIS
        "\n"
        "Issues coins in a RAIDA data directory: writes DATA_DIR/Data/DD/MM/PPPP.bin for\n"
        "every page that holds a chosen coin (a random AN and this month's MFS for each\n"
        "chosen coin, the page's other records not issued) and the coin list LIST\n"
        "(one coin a line: DEN SN AN_HEX).\n"
        "\n"
        "options:\n"
        "  -d DEN       denomination -8..6, or a range LO..HI (-8..6: all); repeatable\n"
        "               (default 1)\n"
        "  -n COUNT     COUNT coins per denomination, serial numbers 0..COUNT-1\n"
        "               (default %d)\n"
        "  -s FIRST[-LAST]  serial numbers FIRST..LAST (0..1023999); repeatable\n"
        "  -l LIST      the coin list to write (default DATA_DIR/" LIST_NAME ")\n"
        "  -f           replace page files and the list if they exist (a replaced page\n"
        "               holds only the coins chosen now)\n"
        "  -q           say nothing on success\n"
        "  -h           this help\n"
        "\n"
        "exit status: 0 done, 1 a file exists (without -f) or cannot be written,\n"
        "2 usage error\n", DEFAULT_COUNT);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "raida-coins: %s: %s\n", what, arg);
    fputs(SYNOPSIS "(raida-coins -h for more)\n", stderr);
    return -1;
}

/* ---- options ------------------------------------------------------------- */

static bool parse_long(const char *s, long min, long max, long *out, const char **end)
{
    char *e;
    if ((*s < '0' || *s > '9') && *s != '-')
        return false;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (e == s || errno != 0 || v < min || v > max)
        return false;
    *out = v;
    *end = e;
    return true;
}

static int parse_den(opts_t *o, const char *arg)
{
    long lo, hi;
    const char *end;
    if (!parse_long(arg, RD_COIN_MIN_DEN, RD_COIN_MAX_DEN, &lo, &end))
        return usage_error("-d: not a denomination (-8..6) or range (LO..HI)", arg);
    hi = lo;
    if (strncmp(end, "..", 2) == 0
        && (!parse_long(end + 2, lo, RD_COIN_MAX_DEN, &hi, &end)))
        return usage_error("-d: not a range LO..HI of denominations, LO <= HI", arg);
    if (*end != '\0')
        return usage_error("-d: not a denomination (-8..6) or range (LO..HI)", arg);
    for (long d = lo; d <= hi; d++)
        o->den[d - RD_COIN_MIN_DEN] = true;
    o->any_den = true;
    return 0;
}

static int add_range(opts_t *o, uint32_t first, uint32_t last, const char *arg)
{
    if (o->nranges == MAX_RANGES)
        return usage_error("-s: too many ranges (64 at most)", arg);
    o->range[o->nranges++] = (range_t){ first, last };
    return 0;
}

static int parse_serials(opts_t *o, const char *arg)
{
    long first, last;
    const char *end;
    if (*arg == '-' || !parse_long(arg, 0, RD_COIN_MAX_SN, &first, &end))
        return usage_error("-s: not a serial number (0..1023999)", arg);
    last = first;
    if (*end == '-' && (end[1] == '-' || !parse_long(end + 1, first, RD_COIN_MAX_SN, &last, &end)))
        return usage_error("-s: not a range FIRST-LAST, FIRST <= LAST <= 1023999", arg);
    if (*end != '\0')
        return usage_error("-s: not a serial number (0..1023999) or range", arg);
    return add_range(o, (uint32_t)first, (uint32_t)last, arg);
}

static int parse_count(opts_t *o, const char *arg)
{
    long n;
    const char *end;
    if (*arg == '-' || !parse_long(arg, 1, RD_COIN_MAX_SN + 1, &n, &end) || *end != '\0')
        return usage_error("-n: not a number of coins (1..1024000)", arg);
    o->count_set = true;
    return add_range(o, 0, (uint32_t)(n - 1), arg);
}

/* Returns 1 for -h, 0 when O is ready, -1 on a usage error. */
static int parse_args(opts_t *o, int argc, char **argv)
{
    int c;
    bool serials_set = false;
    while ((c = getopt(argc, argv, "d:n:s:l:fqh")) != -1) {
        int rc = 0;
        switch (c) {
        case 'd': rc = parse_den(o, optarg); break;
        case 'n':
            if (o->count_set || serials_set)
                return usage_error("-n comes once, and not with -s", optarg);
            rc = parse_count(o, optarg);
            break;
        case 's':
            if (o->count_set)
                return usage_error("-s does not go with -n", optarg);
            serials_set = true;
            rc = parse_serials(o, optarg);
            break;
        case 'l': o->list = optarg; break;
        case 'f': o->force = true; break;
        case 'q': o->quiet = true; break;
        case 'h': usage(stdout); return 1;
        default:
            fputs(SYNOPSIS "(raida-coins -h for more)\n", stderr);
            return -1;
        }
        if (rc < 0)
            return -1;
    }
    if (argc - optind != 1)
        return usage_error("expected one DATA_DIR",
                           optind < argc ? argv[optind + 1] : "none given");
    o->data_dir = argv[optind];
    if (o->data_dir[0] == '\0')
        return usage_error("DATA_DIR is empty", "\"\"");
    if (strlen(o->data_dir) >= PATH_MAX - RD_COIN_PATH_TAIL)
        return usage_error("DATA_DIR is too long", o->data_dir);
    if (!o->any_den)
        o->den[1 - RD_COIN_MIN_DEN] = true;
    if (o->nranges == 0)
        add_range(o, 0, DEFAULT_COUNT - 1, "");
    if (o->list == NULL) {
        if (snprintf(o->list_buf, sizeof(o->list_buf), "%s/" LIST_NAME, o->data_dir)
            >= (int)sizeof(o->list_buf))
            return usage_error("DATA_DIR is too long", o->data_dir);
        o->list = o->list_buf;
    }
    return 0;
}

/* ---- the pages ----------------------------------------------------------- */

/* The records of PAGE that a range chooses: CHOSEN[i] for serial number
 * PAGE * 1024 + i. Returns how many. */
static unsigned chosen_in_page(const opts_t *o, uint32_t page, bool *chosen)
{
    uint32_t base = page * RD_COIN_PAGE_RECORDS, n = 0;
    memset(chosen, 0, RD_COIN_PAGE_RECORDS * sizeof(*chosen));
    for (unsigned r = 0; r < o->nranges; r++) {
        const range_t *rg = &o->range[r];
        if (rg->last < base || rg->first >= base + RD_COIN_PAGE_RECORDS)
            continue;
        uint32_t from = rg->first > base ? rg->first - base : 0;
        uint32_t to = rg->last - base < RD_COIN_PAGE_RECORDS ? rg->last - base
                                                             : RD_COIN_PAGE_RECORDS - 1;
        for (uint32_t i = from; i <= to; i++)
            chosen[i] = true;
    }
    for (unsigned i = 0; i < RD_COIN_PAGE_RECORDS; i++)
        n += chosen[i];
    return n;
}

static bool page_used(const opts_t *o, uint32_t page)
{
    uint32_t base = page * RD_COIN_PAGE_RECORDS;
    for (unsigned r = 0; r < o->nranges; r++)
        if (o->range[r].last >= base && o->range[r].first < base + RD_COIN_PAGE_RECORDS)
            return true;
    return false;
}

/* Calls FN for every (den, page) that holds a chosen coin; stops at the
 * first that fails. */
typedef int (*page_fn)(const opts_t *o, int8_t den, uint32_t page, void *arg);

static int each_page(const opts_t *o, page_fn fn, void *arg)
{
    for (int d = 0; d < RD_COIN_DENS; d++) {
        if (!o->den[d])
            continue;
        for (uint32_t page = 0; page < RD_COIN_PAGES; page++)
            if (page_used(o, page) && fn(o, (int8_t)(d + RD_COIN_MIN_DEN), page, arg) < 0)
                return -1;
    }
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 || errno != ENOENT;
}

/* The page's file: the lowercase name, or the uppercase one of an older
 * installation where only that exists (raidad reads it then: a new
 * lowercase page beside it would hide its coins). */
static void page_file(const opts_t *o, int8_t den, uint32_t page, char *path, size_t len)
{
    for (int upper = 0; upper < 2; upper++) {
        rd_coinfile_page_path(path, len, o->data_dir, den, page, upper);
        if (exists(path))
            return;
    }
    rd_coinfile_page_path(path, len, o->data_dir, den, page, false);
}

static int refuse_existing(const opts_t *o, int8_t den, uint32_t page, void *arg)
{
    char path[PATH_MAX];
    (void)arg;
    page_file(o, den, page, path, sizeof(path));
    if (!exists(path))
        return 0;
    fprintf(stderr, "raida-coins: %s exists: nothing written (-f to replace it)\n", path);
    return -1;
}

typedef struct writer {
    rd_coinlist_t list;
    uint8_t mfs;
    unsigned pages;
    uint8_t data[RD_COIN_PAGE_SIZE];
    uint8_t keys[RD_COIN_PAGE_RECORDS * RD_COIN_AN_SIZE];
    bool chosen[RD_COIN_PAGE_RECORDS];
} writer_t;

static int make_parent(char *path)
{
    char *slash = strrchr(path, '/');
    *slash = '\0';
    int rc = rd_atomicfile_mkdirs(path, DIR_MODE);
    *slash = '/';
    return rc;
}

static int write_page(const opts_t *o, int8_t den, uint32_t page, void *arg)
{
    writer_t *w = arg;
    char path[PATH_MAX];
    page_file(o, den, page, path, sizeof(path));
    chosen_in_page(o, page, w->chosen);
    if (RAND_bytes(w->keys, sizeof(w->keys)) != 1) {
        fprintf(stderr, "raida-coins: the random number generator failed\n");
        return -1;
    }
    memset(w->data, 0, sizeof(w->data));
    for (uint32_t i = 0; i < RD_COIN_PAGE_RECORDS; i++) {
        if (!w->chosen[i])
            continue;
        uint32_t sn = page * RD_COIN_PAGE_RECORDS + i;
        uint8_t *rec = w->data + rd_coin_record_offset(sn);
        memcpy(rec, w->keys + i * RD_COIN_AN_SIZE, RD_COIN_AN_SIZE);
        rec[RD_COIN_MFS_AT] = w->mfs;
        if (rd_coinlist_add(&w->list, den, sn, rec) < 0) {
            fprintf(stderr, "raida-coins: out of memory\n");
            return -1;
        }
    }
    if (make_parent(path) < 0 || rd_atomicfile_write(path, w->data, sizeof(w->data), PAGE_MODE,
                                                 o->force) < 0) {
        fprintf(stderr, "raida-coins: %s: %s%s\n", path, strerror(errno),
                errno == EEXIST ? " (-f to replace it)" : "");
        return -1;
    }
    w->pages++;
    return 0;
}

static int write_list(const opts_t *o, writer_t *w)
{
    char comment[PATH_MAX + 256], when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(comment, sizeof(comment),
             "coins issued by raida-coins in %s at %s (MFS %u)\nDEN SN AN", o->data_dir, when,
             w->mfs);
    if (rd_coinlist_write(o->list, &w->list, comment, o->force) == 0)
        return 0;
    fprintf(stderr, "raida-coins: %s: %s%s\n", o->list, strerror(errno),
            errno == EEXIST ? " (-f to replace it)" : "");
    return -1;
}

/* raidad.lock held as raidad holds it (src/rd_coins.c, take_folder):
 * nothing is written while raidad serves the folder. No lock file: no
 * raidad ever served it. */
static int take_lock(const opts_t *o, int *fd)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" RD_LOCK_NAME, o->data_dir);
    *fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0 && errno == ENOENT)
        return 0;
    if (*fd >= 0 && flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    fprintf(stderr, "raida-coins: %s: %s: nothing written\n", path,
            errno == EWOULDBLOCK ? "raidad serves this data folder (stop it first)"
                                 : strerror(errno));
    return -1;
}

/* A journal longer than its header holds changes that may not be in the
 * pages yet (an orderly stop leaves the header alone): raidad's next start
 * would copy them over what this run writes. */
static int refuse_unreplayed(const opts_t *o)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/" RD_JOURNAL_NAME, o->data_dir);
    if (lstat(path, &st) < 0 || st.st_size <= RD_JOURNAL_START)
        return 0;
    fprintf(stderr, "raida-coins: %s holds changes not yet replayed (raidad did not stop "
            "cleanly): start raidad once and stop it; nothing written\n", path);
    return -1;
}

/* The list is written last: its folder is made (as the data folder is)
 * and must take it before any page is written, or the pages would be
 * left with no list of their ANs. */
static int make_list_folder(const opts_t *o)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", o->list);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        slash[slash == dir] = '\0';
    if (rd_atomicfile_mkdirs(dir, DIR_MODE) == 0 && access(dir, W_OK | X_OK) == 0)
        return 0;
    fprintf(stderr, "raida-coins: %s: %s: nothing written\n", dir, strerror(errno));
    return -1;
}

/* Writes the pages, then the list; raidad.lock held. */
static int write_all(const opts_t *o)
{
    if (refuse_unreplayed(o) < 0 || (!o->force && each_page(o, refuse_existing, NULL) < 0)
        || make_list_folder(o) < 0)
        return EXIT_FAIL;
    writer_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        fprintf(stderr, "raida-coins: out of memory\n");
        return EXIT_FAIL;
    }
    w->mfs = rd_mfs_now(time(NULL));
    int rc = each_page(o, write_page, w) == 0 && write_list(o, w) == 0 ? EXIT_OK : EXIT_FAIL;
    if (rc == EXIT_OK && !o->quiet)
        printf("raida-coins: %zu coin(s) on %u page(s) under %s/Data, MFS %u; coin list %s\n",
               w->list.count, w->pages, o->data_dir, w->mfs, o->list);
    rd_coinlist_free(&w->list);
    rd_crypto_wipe(w, sizeof(*w));
    free(w);
    return rc;
}

static int run(const opts_t *o)
{
    if (!o->force && exists(o->list)) {
        fprintf(stderr, "raida-coins: %s exists: nothing written (-f to replace it)\n", o->list);
        return EXIT_FAIL;
    }
    int lock_fd = -1;
    int rc = take_lock(o, &lock_fd) < 0 ? EXIT_FAIL : write_all(o);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}

int main(int argc, char **argv)
{
    static opts_t o;
    int rc = parse_args(&o, argc, argv);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    return run(&o);
}
