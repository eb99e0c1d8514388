/* Unit tests of the coin tools' pieces: the page layout (rd_coinfile), the
 * payloads and verdicts of the authentication group (rd_client_auth), coin
 * list files (rd_coinlist) and whole-or-nothing writes (rd_atomicfile). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rd_atomicfile.h"
#include "rd_client_auth.h"
#include "rd_coinfile.h"
#include "rd_coinlist.h"
#include "rd_protocol.h"

/* ---- layout -------------------------------------------------------------- */

static void test_valid_coins(void **state)
{
    (void)state;
    assert_true(rd_coinfile_valid(-8, 0));
    assert_true(rd_coinfile_valid(6, 1023999));
    assert_true(rd_coinfile_valid(0, 512));
    assert_false(rd_coinfile_valid(-9, 0));
    assert_false(rd_coinfile_valid(7, 0));
    assert_false(rd_coinfile_valid(1, 1024000));
    assert_false(rd_coinfile_valid(1, UINT32_MAX));
}

static void test_page_path(void **state)
{
    char buf[64];
    (void)state;
    assert_int_equal(rd_coinfile_page_path(buf, sizeof(buf), "/d", 6, 0, false), 0);
    assert_string_equal(buf, "/d/Data/06/00/0000.bin");
    /* -8 is the byte f8; serial number 1,023,999 is on page 999 = 0x3e7. */
    assert_int_equal(rd_coinfile_page_path(buf, sizeof(buf), "/d", -8, rd_coin_page(1023999),
                                           false), 0);
    assert_string_equal(buf, "/d/Data/f8/03/03e7.bin");
    assert_int_equal(rd_coinfile_page_path(buf, sizeof(buf), "x", -1, 0xABCD, false), 0);
    assert_string_equal(buf, "x/Data/ff/ab/abcd.bin");
    assert_int_equal(rd_coinfile_page_path(buf, sizeof(buf), "x", -1, 0xABCD, true), 0);
    assert_string_equal(buf, "x/Data/FF/AB/ABCD.bin");
    assert_int_equal(strlen("/Data/ff/ab/abcd.bin") + 1, RD_COIN_PATH_TAIL);

    errno = 0;
    assert_int_equal(rd_coinfile_page_path(buf, 22, "/d", 6, 0, false), -1);     /* one byte short */
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(rd_coinfile_page_path(buf, 23, "/d", 6, 0, false), 0);
    errno = 0;
    assert_int_equal(rd_coinfile_page_path(buf, sizeof(buf), "/d", 6, 0x10000, false), -1);
    assert_int_equal(errno, EINVAL);
}

static void test_record_offset(void **state)
{
    (void)state;
    assert_int_equal(RD_COIN_PAGE_SIZE, 17408);
    assert_int_equal(rd_coin_record_offset(0), 0);
    assert_int_equal(rd_coin_record_offset(1), 17);
    assert_int_equal(rd_coin_record_offset(1023), 1023 * 17);
    assert_int_equal(rd_coin_record_offset(1024), 0);
    assert_int_equal(rd_coin_record_offset(1025), 17);
    assert_int_equal(rd_coin_page(1023), 0);
    assert_int_equal(rd_coin_page(1024), 1);
}

static time_t utc(int year, int month, int day, int hour)
{
    struct tm tm = { .tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = day,
                     .tm_hour = hour };
    return timegm(&tm);
}

static void test_mfs(void **state)
{
    (void)state;
    assert_int_equal(rd_mfs_now(utc(2026, 11, 29, 8)), 45);     /* protocol.md's example */
    assert_int_equal(rd_mfs_now(utc(2023, 3, 1, 0)), 1);
    assert_int_equal(rd_mfs_now(utc(2024, 1, 31, 23)), 11);
    assert_int_equal(rd_mfs_now(utc(2024, 2, 1, 0)), 12);
    /* The month turns at midnight UTC. */
    assert_int_equal(rd_mfs_now(utc(2026, 11, 30, 23) + 3599), 45);
    assert_int_equal(rd_mfs_now(utc(2026, 12, 1, 0)), 46);
    /* 0 means "not issued": February 2023 and before are 1; one byte holds it. */
    assert_int_equal(rd_mfs_now(utc(2023, 2, 10, 0)), 1);
    assert_int_equal(rd_mfs_now(utc(2020, 6, 1, 0)), 1);
    assert_int_equal(rd_mfs_now(utc(2044, 5, 1, 0)), 255);
    assert_int_equal(rd_mfs_now(utc(2050, 1, 1, 0)), 255);
}

/* ---- payloads ------------------------------------------------------------ */

static rd_client_coin_t coin(int8_t den, uint32_t sn, uint8_t fill)
{
    rd_client_coin_t c = { .den = den, .sn = sn };
    memset(c.key, fill, sizeof(c.key));
    return c;
}

static void test_payload_sizes(void **state)
{
    (void)state;
    assert_int_equal(rd_client_auth_payload_size(RD_AUTH_DETECT, 1), 21);
    assert_int_equal(rd_client_auth_payload_size(RD_AUTH_DETECT, 50), 1050);
    assert_int_equal(rd_client_auth_payload_size(RD_AUTH_DETECT_SUM, 3), 31);
    assert_int_equal(rd_client_auth_payload_size(RD_AUTH_POWN, 2), 74);
    assert_int_equal(rd_client_auth_payload_size(RD_AUTH_POWN_SUM, 2), 42);
    assert_int_equal(rd_client_auth_payload_size(RD_AUTH_DETECT, 0), 0);
    assert_int_equal(rd_client_auth_payload_size((enum rd_auth_cmd)12, 1), 0);
    /* The smallest bodies of protocol.md: payload + challenge + trailer. */
    assert_int_equal(rd_client_auth_payload_size(RD_AUTH_DETECT, 1) + RD_MIN_BODY_SIZE, 39);
    assert_int_equal(rd_client_auth_payload_size(RD_AUTH_POWN, 1) + RD_MIN_BODY_SIZE, 55);
}

static void test_build_detect(void **state)
{
    rd_client_coin_t c[2] = { coin(-8, 0x01020304, 0xAA), coin(6, 1023999, 0x55) };
    uint8_t out[64], want[42];
    (void)state;
    memset(want, 0, sizeof(want));
    want[0] = 0xF8;
    want[1] = 1; want[2] = 2; want[3] = 3; want[4] = 4;
    memset(want + 5, 0xAA, 16);
    want[21] = 6;
    want[22] = 0x00; want[23] = 0x0F; want[24] = 0x9F; want[25] = 0xFF;   /* 1,023,999 */
    memset(want + 26, 0x55, 16);
    assert_int_equal(rd_client_auth_build(RD_AUTH_DETECT, c, 2, NULL, out, sizeof(out)), 42);
    assert_memory_equal(out, want, 42);
    /* Too small a buffer, no coins. */
    assert_int_equal(rd_client_auth_build(RD_AUTH_DETECT, c, 2, NULL, out, 41), 0);
    assert_int_equal(rd_client_auth_build(RD_AUTH_DETECT, c, 0, NULL, out, sizeof(out)), 0);
}

static void test_build_pown(void **state)
{
    rd_client_coin_t c[2] = { coin(1, 7, 0x11), coin(2, 8, 0x22) };
    uint8_t pans[32], out[80];
    (void)state;
    memset(pans, 0x33, 16);
    memset(pans + 16, 0x44, 16);
    assert_int_equal(rd_client_auth_build(RD_AUTH_POWN, c, 2, pans, out, sizeof(out)), 74);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[4], 7);
    assert_int_equal(out[5], 0x11);
    assert_int_equal(out[20], 0x11);
    assert_int_equal(out[21], 0x33);
    assert_int_equal(out[36], 0x33);
    assert_int_equal(out[37], 2);
    assert_int_equal(out[41], 8);
    assert_int_equal(out[42], 0x22);
    assert_int_equal(out[58], 0x44);
    assert_int_equal(out[73], 0x44);
    /* A pown needs its PANs. */
    assert_int_equal(rd_client_auth_build(RD_AUTH_POWN, c, 2, NULL, out, sizeof(out)), 0);
}

static void test_build_sums(void **state)
{
    rd_client_coin_t c[3] = { coin(1, 1, 0x0F), coin(1, 2, 0xF0), coin(1, 3, 0x01) };
    uint8_t delta[16], out[64], xor[16];
    (void)state;
    memset(delta, 0x77, sizeof(delta));
    memset(xor, 0xFE, sizeof(xor));         /* 0x0F ^ 0xF0 ^ 0x01 */
    assert_int_equal(rd_client_auth_build(RD_AUTH_DETECT_SUM, c, 3, NULL, out, sizeof(out)), 31);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[4], 1);
    assert_int_equal(out[9], 2);
    assert_int_equal(out[14], 3);
    assert_memory_equal(out + 15, xor, 16);
    assert_int_equal(rd_client_auth_build(RD_AUTH_POWN_SUM, c, 3, delta, out, sizeof(out)), 47);
    assert_memory_equal(out + 15, xor, 16);
    assert_memory_equal(out + 31, delta, 16);
    assert_int_equal(rd_client_auth_build(RD_AUTH_POWN_SUM, c, 3, NULL, out, sizeof(out)), 0);
}

/* ---- verdicts ------------------------------------------------------------ */

/* protocol.md: 10 coins of which 0, 3 and 9 fail give the body f6 01 3e 3e. */
static void test_bitfield_example(void **state)
{
    const uint8_t body[] = { 0xF6, 0x01 };
    uint8_t passed[2];
    (void)state;
    assert_int_equal(rd_auth_bitfield_size(10), 2);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 243, body, 2, 10, passed), 7);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(rd_auth_passed(passed, i), i != 0 && i != 3 && i != 9);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_POWN, 243, body, 2, 10, passed), 7);
}

static void test_all_pass_all_fail(void **state)
{
    uint8_t passed[2];
    (void)state;
    memset(passed, 0xEE, sizeof(passed));
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 241, NULL, 0, 10, passed), 10);
    assert_int_equal(passed[0], 0xFF);
    assert_int_equal(passed[1], 0x03);      /* no bit past the tenth coin */
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_POWN_SUM, 242, NULL, 0, 10, passed), 0);
    assert_int_equal(passed[0], 0);
    assert_int_equal(passed[1], 0);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT_SUM, 241, NULL, 0, 3, passed), 3);
    assert_int_equal(passed[0], 0x07);
}

static void test_malformed_verdicts(void **state)
{
    const uint8_t body[] = { 0xF6, 0x01 }, high[] = { 0xF6, 0x05 }, all[] = { 0xFF, 0x03 };
    const uint8_t none[] = { 0x00, 0x00 };
    uint8_t passed[2];
    (void)state;
    /* 243: a bitfield of the wrong size, a bit past the last coin, all or none passed. */
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 243, body, 1, 10, passed), RD_AUTH_MALFORMED);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 243, body, 2, 17, passed), RD_AUTH_MALFORMED);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 243, high, 2, 10, passed), RD_AUTH_MALFORMED);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 243, all, 2, 10, passed), RD_AUTH_MALFORMED);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 243, none, 2, 10, passed), RD_AUTH_MALFORMED);
    /* Sums are all or nothing; 241 and 242 have no body. */
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT_SUM, 243, body, 2, 10, passed), RD_AUTH_MALFORMED);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 241, body, 2, 10, passed), RD_AUTH_MALFORMED);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 242, body, 1, 10, passed), RD_AUTH_MALFORMED);
    /* Refusals are no verdict. */
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 16, NULL, 0, 10, passed), RD_AUTH_NO_RESULT);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 39, NULL, 0, 10, passed), RD_AUTH_NO_RESULT);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT_SUM, 40, NULL, 0, 2, passed), RD_AUTH_NO_RESULT);
    assert_int_equal(rd_client_auth_parse_result(RD_AUTH_DETECT, 250, NULL, 0, 10, passed), RD_AUTH_NO_RESULT);
}

static void test_audit(void **state)
{
    uint8_t p[RD_AUDIT_SIZE];
    uint32_t count[RD_COIN_DENS];
    (void)state;
    assert_int_equal(RD_AUDIT_SIZE, 75);
    for (int i = 0; i < RD_COIN_DENS; i++) {
        p[i * 5] = (uint8_t)(int8_t)(i - 8);
        p[i * 5 + 1] = 0;
        p[i * 5 + 2] = 0x01;
        p[i * 5 + 3] = 0x02;
        p[i * 5 + 4] = (uint8_t)i;
    }
    assert_int_equal(rd_client_auth_parse_audit(p, sizeof(p), count), 0);
    assert_int_equal(count[0], 0x010200);
    assert_int_equal(count[14], 0x01020E);
    assert_int_equal(rd_client_auth_parse_audit(p, sizeof(p) - 1, count), -1);
    p[5] = 0;       /* the second record must be -7 */
    assert_int_equal(rd_client_auth_parse_audit(p, sizeof(p), count), -1);
}

/* ---- files --------------------------------------------------------------- */

typedef struct fixture {
    char dir[256];
    char path[300];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/test_coins.XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/coins.txt", f->dir);
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
    int rc = nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_list_read(void **state)
{
    fixture_t *f = *state;
    rd_coinlist_t l;
    char err[512];
    write_text(f->path, "# a comment\n\n-8 0 000102030405060708090a0b0c0d0e0f\r\n"
                        "  6\t1023999   FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF  \n"
                        "1 5 00000000000000000000000000000001");   /* no final newline */
    assert_int_equal(rd_coinlist_read(f->path, &l, err, sizeof(err)), 0);
    assert_int_equal(l.count, 3);
    assert_int_equal(l.coin[0].den, -8);
    assert_int_equal(l.coin[0].sn, 0);
    assert_int_equal(l.coin[0].key[15], 0x0F);
    assert_int_equal(l.coin[1].den, 6);
    assert_int_equal(l.coin[1].sn, 1023999);
    assert_int_equal(l.coin[1].key[0], 0xFF);
    assert_int_equal(l.coin[2].key[15], 1);
    assert_int_equal(rd_coinlist_find(&l, 6, 1023999), 1);
    assert_int_equal(rd_coinlist_find(&l, 6, 1), -1);
    rd_coinlist_free(&l);
}

static void expect_list_error(fixture_t *f, const char *text, const char *err_want)
{
    rd_coinlist_t l;
    char err[512], want[600];
    write_text(f->path, text);
    assert_int_equal(rd_coinlist_read(f->path, &l, err, sizeof(err)), -1);
    assert_int_equal(l.count, 0);
    assert_null(l.coin);
    snprintf(want, sizeof(want), "%s:%s", f->path, err_want);
    assert_string_equal(err, want);
}

static void test_list_errors(void **state)
{
    fixture_t *f = *state;
    const char *an = "000102030405060708090a0b0c0d0e0f";
    char text[256];
    snprintf(text, sizeof(text), "# x\n7 1 %s\n", an);
    expect_list_error(f, text, "2: not a valid coin (denomination -8..6, serial number 0..1023999)");
    snprintf(text, sizeof(text), "1 1024000 %s\n", an);
    expect_list_error(f, text, "1: not a valid coin (denomination -8..6, serial number 0..1023999)");
    expect_list_error(f, "1 5 0011\n", "1: the AN must be 32 hex digits");
    expect_list_error(f, "1 5 zz0102030405060708090a0b0c0d0e0f\n", "1: the AN must be 32 hex digits");
    snprintf(text, sizeof(text), "1 5 %s extra\n", an);
    expect_list_error(f, text, "1: unexpected text after the AN");
    expect_list_error(f, "x 5\n", "1: expected \"DEN SN AN\": the denomination is not a number");
    expect_list_error(f, "1 -5 00\n", "1: expected \"DEN SN AN\": the serial number is not a number");
    snprintf(text, sizeof(text), "1 5 %s\n\n2 5 %s\n1 5 %s\n", an, an, an);
    expect_list_error(f, text, "4: coin 1 5 is listed twice (line 1 too)");

    rd_coinlist_t l;
    char err[512];
    assert_int_equal(rd_coinlist_read("/nonexistent/coins.txt", &l, err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/coins.txt: No such file or directory");
}

static void test_list_write(void **state)
{
    fixture_t *f = *state;
    rd_coinlist_t l = { 0 }, back;
    uint8_t an[16];
    char err[512];
    for (uint32_t i = 0; i < 300; i++) {
        memset(an, (int)i, sizeof(an));
        assert_int_equal(rd_coinlist_add(&l, (int8_t)(i % 15) - 8, i, an), 0);
    }
    assert_int_equal(rd_coinlist_write(f->path, &l, "first line\nsecond", false), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(rd_coinlist_read(f->path, &back, err, sizeof(err)), 0);
    assert_int_equal(back.count, 300);
    for (size_t i = 0; i < 300; i++) {     /* field by field: the struct has padding */
        assert_int_equal(back.coin[i].den, l.coin[i].den);
        assert_int_equal(back.coin[i].sn, l.coin[i].sn);
        assert_memory_equal(back.coin[i].key, l.coin[i].key, 16);
    }
    rd_coinlist_free(&back);

    /* The text: comment lines, then "DEN SN AN". */
    FILE *fp = fopen(f->path, "r");
    char line[128];
    assert_non_null(fp);
    assert_non_null(fgets(line, sizeof(line), fp));
    assert_string_equal(line, "# first line\n");
    assert_non_null(fgets(line, sizeof(line), fp));
    assert_string_equal(line, "# second\n");
    assert_non_null(fgets(line, sizeof(line), fp));
    assert_string_equal(line, "-8 0 00000000000000000000000000000000\n");
    fclose(fp);

    /* No replace: refused, and no temporary file is left. */
    errno = 0;
    assert_int_equal(rd_coinlist_write(f->path, &l, NULL, false), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(entries(f->dir), 1);
    l.count = 1;
    assert_int_equal(rd_coinlist_write(f->path, &l, NULL, true), 0);
    assert_int_equal(rd_coinlist_read(f->path, &back, err, sizeof(err)), 0);
    assert_int_equal(back.count, 1);
    rd_coinlist_free(&back);
    rd_coinlist_free(&l);
    assert_int_equal(entries(f->dir), 1);
}

static void test_atomic_write(void **state)
{
    fixture_t *f = *state;
    char path[400], buf[8];
    struct stat st;
    snprintf(path, sizeof(path), "%s/a/b/c", f->dir);
    assert_int_equal(rd_atomicfile_mkdirs(path, 0750), 0);
    assert_int_equal(rd_atomicfile_mkdirs(path, 0750), 0);     /* there already */
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    snprintf(path, sizeof(path), "%s/a/b/c/page.bin", f->dir);
    assert_int_equal(rd_atomicfile_write(path, "12345", 5, 0640, false), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_equal(rd_atomicfile_write(path, "xy", 2, 0640, false), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(rd_atomicfile_write(path, "xy", 2, 0640, true), 0);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_int_equal(fread(buf, 1, sizeof(buf), fp), 2);
    fclose(fp);
    assert_memory_equal(buf, "xy", 2);
    snprintf(path, sizeof(path), "%s/a/b/c", f->dir);
    assert_int_equal(entries(path), 1);
    /* A file where a folder must go. */
    snprintf(path, sizeof(path), "%s/a/b/c/page.bin/d", f->dir);
    assert_int_equal(rd_atomicfile_mkdirs(path, 0750), -1);
    assert_int_equal(errno, ENOTDIR);
    /* A folder that does not exist. */
    snprintf(path, sizeof(path), "%s/none/x", f->dir);
    assert_int_equal(rd_atomicfile_write(path, "1", 1, 0600, true), -1);
    assert_int_equal(errno, ENOENT);
}

#define T(name) cmocka_unit_test(name)
#define TF(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_valid_coins),
        T(test_page_path),
        T(test_record_offset),
        T(test_mfs),
        T(test_payload_sizes),
        T(test_build_detect),
        T(test_build_pown),
        T(test_build_sums),
        T(test_bitfield_example),
        T(test_all_pass_all_fail),
        T(test_malformed_verdicts),
        T(test_audit),
        TF(test_list_read),
        TF(test_list_errors),
        TF(test_list_write),
        TF(test_atomic_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
