/* The status record's writer (src/rd_status.c): what it writes, and that
 * it never writes through a link found where its files go. The master
 * runs as root and the pid file's folder may be writable by others: a
 * link planted at the temporary name or at the record itself must be
 * replaced, its target left as it was. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_status.h"

typedef struct folder {
    char dir[64];
    char pid_file[PATH_MAX];
    char record[PATH_MAX];
    char tmp[PATH_MAX];
    char victim[PATH_MAX];
} folder_t;

static int folder_setup(void **state)
{
    folder_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/rd-status-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->pid_file, sizeof(f->pid_file), "%s/raidad.pid", f->dir);
    snprintf(f->record, sizeof(f->record), "%s/raidad.status", f->dir);
    snprintf(f->tmp, sizeof(f->tmp), "%s/raidad.status.tmp", f->dir);
    snprintf(f->victim, sizeof(f->victim), "%s/victim", f->dir);
    *state = f;
    return 0;
}

static int folder_teardown(void **state)
{
    folder_t *f = *state;

    unlink(f->record);
    unlink(f->tmp);
    unlink(f->victim);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void read_file(const char *path, char *buf, size_t len)
{
    FILE *fp = fopen(path, "r");
    size_t n;

    assert_non_null(fp);
    n = fread(buf, 1, len - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

static void write_victim(const folder_t *f)
{
    FILE *fp = fopen(f->victim, "w");

    assert_non_null(fp);
    fputs("keep me\n", fp);
    fclose(fp);
}

static void publish_two_workers(const folder_t *f)
{
    static rd_status_t st;

    memset(&st, 0, sizeof(st));
    st.master_pid = 4242;
    st.generation = 3;
    st.expected = 2;
    st.healthy = true;
    st.count = 2;
    st.workers[0] = (rd_status_worker_t){ 4243, 3, "serving", 7, 1000 };
    st.workers[1] = (rd_status_worker_t){ 4244, 3, "starting", 0, 0 };
    rd_status_publish(f->pid_file, &st);
}

/* The record is a regular file holding what was published, and the
 * victim is untouched. */
static void assert_record_only(const folder_t *f)
{
    char buf[4096];
    struct stat sb;

    assert_int_equal(lstat(f->record, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    read_file(f->record, buf, sizeof(buf));
    assert_non_null(strstr(buf, "raidad-status 1\n"));
    assert_non_null(strstr(buf, "master_pid 4242\n"));
    assert_non_null(strstr(buf, "generation 3\n"));
    assert_non_null(strstr(buf, "healthy 1\n"));
    assert_non_null(strstr(buf, "worker 4243 3 serving 7 1000\n"));
    assert_non_null(strstr(buf, "worker 4244 3 starting 0 0\n"));
    assert_int_equal(lstat(f->tmp, &sb), -1);
    read_file(f->victim, buf, sizeof(buf));
    assert_string_equal(buf, "keep me\n");
}

static void test_publish_writes_the_record(void **state)
{
    folder_t *f = *state;

    write_victim(f);
    publish_two_workers(f);
    assert_record_only(f);
    rd_status_remove(f->pid_file);
    assert_int_equal(access(f->record, F_OK), -1);
}

/* A link to the victim planted at LINK, then a publish. */
static void publish_over_a_link(const folder_t *f, const char *link)
{
    write_victim(f);
    assert_int_equal(symlink(f->victim, link), 0);
    publish_two_workers(f);
    assert_record_only(f);
}

static void test_publish_replaces_a_link_at_the_temporary_name(void **state)
{
    folder_t *f = *state;

    publish_over_a_link(f, f->tmp);
}

static void test_publish_replaces_a_link_at_the_record(void **state)
{
    folder_t *f = *state;

    publish_over_a_link(f, f->record);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_writes_the_record,
                                        folder_setup, folder_teardown),
        cmocka_unit_test_setup_teardown(test_publish_replaces_a_link_at_the_temporary_name,
                                        folder_setup, folder_teardown),
        cmocka_unit_test_setup_teardown(test_publish_replaces_a_link_at_the_record,
                                        folder_setup, folder_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
