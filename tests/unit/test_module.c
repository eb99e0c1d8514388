/* Command modules (src/rd_module.c, src/rd_modload.c, src/rd_crashrec.c):
 * the built-in table, descriptor checking (wrong ABI, bad names and flags,
 * duplicate groups and commands), a set's conflicts, dispatch of a real
 * frame through a generation's table, load_module and module settings
 * read from a configuration (with tests/libtestmod*.so, real shared
 * objects), and the crash record as the master reads it. */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <unistd.h>
#include <sys/stat.h>
#include <zlib.h>
#include <cmocka.h>

#include "rd_bytes.h"
#include "rd_commands.h"
#include "rd_config.h"
#include "rd_crashrec.h"
#include "rd_frame.h"
#include "rd_log.h"
#include "rd_modload.h"
#include "rd_module.h"
#include "rd_protocol.h"
#include "rd_stats.h"

#define NAME "test.conf"

static int h_answer(const raidad_request_t *req, raidad_response_t *resp)
{
    uint8_t *dst = req->services->append(resp, 2);

    if (dst == NULL)
        return RAIDAD_STATUS_MEMORY_ALLOC;
    dst[0] = req->group;
    dst[1] = (uint8_t)req->payload_len;
    return RAIDAD_STATUS_SUCCESS;
}

static const raidad_command_t good_cmds[] = {
    { 0, "zero", h_answer, RAIDAD_CMD_INLINE },
    { 9, "nine", h_answer, RAIDAD_CMD_WRITES },
};
static const raidad_group_t good_groups[] = { { 50, good_cmds, 2 } };
static const raidad_module_t good = {
    .abi = RAIDAD_MODULE_ABI, .name = "good", .groups = good_groups, .group_count = 1,
};

static void expect_refused(const raidad_module_t *d, const char *want)
{
    char why[256] = "";

    assert_int_equal(rd_module_check(d, why, sizeof(why)), -1);
    assert_string_equal(why, want);
}

static void test_builtin_table(void **state)
{
    const rd_module_set_t *set = rd_module_set_default();

    (void)state;
    assert_true(rd_module_set_group_known(set, 0));
    assert_true(rd_module_set_group_known(set, 1));
    assert_false(rd_module_set_group_known(set, 2));
    assert_string_equal(rd_module_set_lookup(set, 0, 0)->name, "echo");
    assert_string_equal(rd_module_set_lookup(set, 0, 1)->name, "version");
    assert_true(rd_module_set_lookup(set, 0, 2)->admin);
    assert_string_equal(rd_module_set_lookup(set, 0, 3)->name, "audit");
    assert_false(rd_module_set_lookup(set, 0, 3)->quick);
    assert_true(rd_module_set_lookup(set, 1, 20)->payload);
    assert_true(rd_module_set_lookup(set, 1, 20)->flags & RAIDAD_CMD_WRITES);
    assert_false(rd_module_set_lookup(set, 1, 10)->quick);
    assert_null(rd_module_set_lookup(set, 1, 0));
    assert_null(rd_module_set_lookup(set, 7, 0));
    assert_int_equal(rd_command_count(), 8);
    for (size_t i = 0; i < rd_command_count(); i++)
        assert_int_equal(rd_command_at(i)->metrics_index, i);
    assert_null(rd_command_at(8));
    for (size_t i = 0; i < rd_builtin_module_count; i++) {
        char why[256];
        assert_int_equal(rd_module_check(rd_builtin_modules[i], why, sizeof(why)), 0);
        /* Its settings group must not be read as one of the daemon's settings. */
        assert_false(rd_config_is_setting(rd_builtin_modules[i]->name));
    }
    assert_true(rd_config_is_setting("user"));
    assert_true(rd_config_is_setting("load_module"));
    assert_false(rd_config_is_setting("testmod"));
}

static void test_descriptor_checks(void **state)
{
    static const raidad_command_t dup_cmd[] = { { 1, "a", h_answer, 0 }, { 1, "b", h_answer, 0 } };
    static const raidad_command_t bad_flag[] = { { 1, "a", h_answer, 0x10 } };
    static const raidad_command_t inline_writes[] = {
        { 1, "a", h_answer, RAIDAD_CMD_INLINE | RAIDAD_CMD_WRITES } };
    static const raidad_command_t no_handler[] = { { 1, "a", NULL, 0 } };
    static const raidad_command_t bad_name[] = { { 1, "Bad-Name", h_answer, 0 } };
    static const raidad_group_t two_same[] = { { 5, good_cmds, 2 }, { 5, good_cmds, 2 } };
    static const raidad_setting_t bad_range[] = {
        { .name = "n", .type = RAIDAD_SETTING_INT, .def = 10, .min = 0, .max = 5 } };
    static const raidad_setting_t dup_setting[] = {
        { .name = "n", .type = RAIDAD_SETTING_BOOL }, { .name = "n", .type = RAIDAD_SETTING_BOOL } };
    raidad_group_t g = { 5, NULL, 1 };
    raidad_module_t d;
    char why[256];

    (void)state;
    assert_int_equal(rd_module_check(&good, why, sizeof(why)), 0);
    d = good; d.abi = 999;
    expect_refused(&d, "module ABI 999, but this raidad has ABI 1");
    d = good; d.name = "9lives";
    expect_refused(&d, "the module name must be [a-z][a-z0-9_]*, up to 31 characters");
    d = good; d.group_count = 0;
    expect_refused(&d, "module good serves no command group");
    d = good; d.groups = two_same; d.group_count = 2;
    expect_refused(&d, "module good lists group 5 twice");
    d = good; d.groups = &g;
    g.commands = dup_cmd; g.count = 2;
    expect_refused(&d, "group 5 lists command 1 twice");
    g.commands = bad_flag; g.count = 1;
    expect_refused(&d, "command 5/1 (a) has unknown flags 0x10");
    g.commands = inline_writes;
    expect_refused(&d, "command 5/1 (a) writes data, so it cannot run inline");
    g.commands = no_handler;
    expect_refused(&d, "command 5/1 needs a handler and a name of [a-z0-9_], up to 31 characters");
    g.commands = bad_name;
    expect_refused(&d, "command 5/1 needs a handler and a name of [a-z0-9_], up to 31 characters");
    g.commands = good_cmds; g.count = 0;
    expect_refused(&d, "group 5 has 0 commands (1..256)");
    d = good; d.settings = bad_range; d.setting_count = 1;
    expect_refused(&d, "module good: setting n has a bad type or range");
    d = good; d.settings = dup_setting; d.setting_count = 2;
    expect_refused(&d, "module good lists setting n twice");
    d = good; d.setting_count = 1;
    expect_refused(&d, "module good counts 1 settings but lists none");
}

static void test_set_conflicts(void **state)
{
    static const raidad_group_t group0[] = { { 0, good_cmds, 2 } };
    rd_module_set_t *set = rd_command_set_create();
    raidad_module_t steal = good, twin = good;
    char why[256];

    (void)state;
    assert_non_null(set);
    steal.name = "thief";
    steal.groups = group0;
    assert_null(rd_module_set_add(set, &steal, NULL, why, sizeof(why)));
    assert_string_equal(why, "module thief serves group 0, which module status serves already");
    assert_non_null(rd_module_set_add(set, &good, NULL, why, sizeof(why)));
    assert_null(rd_module_set_add(set, &good, NULL, why, sizeof(why)));
    assert_string_equal(why, "a module named good is loaded already");
    twin.name = "twin";
    assert_null(rd_module_set_add(set, &twin, NULL, why, sizeof(why)));
    assert_string_equal(why, "module twin serves group 50, which module good serves already");
    /* The table: the new group's commands, its holes, the built-in ones. */
    assert_true(rd_module_set_group_known(set, 50));
    assert_string_equal(rd_module_set_lookup(set, 50, 9)->name, "nine");
    assert_null(rd_module_set_lookup(set, 50, 1));
    assert_string_equal(rd_module_set_lookup(set, 0, 0)->name, "echo");
    assert_int_equal(rd_module_set_lookup(set, 0, 2)->metrics_index, 2);
    assert_true(rd_module_set_lookup(set, 50, 0)->quick);
    assert_false(rd_module_set_lookup(set, 50, 9)->quick);
    /* The default set never sees another generation's modules. */
    assert_false(rd_module_set_group_known(rd_module_set_default(), 50));
    rd_module_set_free(set);
}

/* A type-0 frame, as the wire has it (see tests/unit/protocol_fixture.h),
 * for RAIDA 0 and coin 6, with a zero-filled payload. */
static size_t frame(uint8_t *out, uint8_t group, uint8_t command, size_t payload_len)
{
    size_t body_size = RD_CHALLENGE_SIZE + payload_len + RD_TRAILER_SIZE;
    uint8_t *body = out + RD_LEGACY_HEADER_SIZE;

    memset(out, 0, RD_LEGACY_HEADER_SIZE + body_size);
    out[RD_REQ_ROUTING] = RD_ROUTING_RAIDA;
    out[RD_REQ_GROUP] = group;
    out[RD_REQ_COMMAND] = command;
    rd_put_be(out + RD_REQ_COIN_ID, 6, RD_COIN_ID_SIZE);
    rd_put_be(out + RD_REQ32_BODY_SIZE, body_size, RD_BODY_SIZE_SIZE);
    memcpy(body, "0123456789ab", RD_CRC_INPUT_SIZE);
    rd_put_be(body + RD_CRC_INPUT_SIZE, crc32(0L, body, RD_CRC_INPUT_SIZE),
              RD_CHALLENGE_SIZE - RD_CRC_INPUT_SIZE);
    memset(body + body_size - RD_TRAILER_SIZE, RD_TRAILER_BYTE, RD_TRAILER_SIZE);
    return RD_LEGACY_HEADER_SIZE + body_size;
}

static void test_dispatch_frame(void **state)
{
    rd_module_set_t *set = rd_command_set_create();
    rd_protocol_t p = { .coin_id = 6, .max_body_size = 65536 };
    uint8_t buf[128];
    rd_request_t req;
    rd_response_t resp;
    char why[256];

    (void)state;
    assert_non_null(rd_module_set_add(set, &good, NULL, why, sizeof(why)));
    rd_response_init(&resp);
    /* Without the generation's set, group 50 is unknown (5). */
    assert_true(rd_protocol_handle_frame(&p, &req, buf, frame(buf, 50, 9, 3), &resp));
    assert_int_equal(resp.data[RD_RESP_STATUS], RD_STATUS_INVALID_GROUP);
    p.modules = set;
    assert_true(rd_protocol_handle_frame(&p, &req, buf, frame(buf, 50, 9, 3), &resp));
    assert_int_equal(resp.data[RD_RESP_STATUS], RD_STATUS_SUCCESS);
    assert_int_equal(resp.len, RD_LEGACY_HEADER_SIZE + 2 + RD_TRAILER_SIZE);
    assert_int_equal(resp.data[RD_LEGACY_HEADER_SIZE], 50);         /* h_answer: the group, */
    assert_int_equal(resp.data[RD_LEGACY_HEADER_SIZE + 1], 3);      /* the payload's length */
    assert_string_equal(rd_protocol_request_name(&req), "nine");
    assert_false(rd_protocol_is_quick(&req));
    assert_true(rd_protocol_handle_frame(&p, &req, buf, frame(buf, 50, 1, 0), &resp));
    assert_int_equal(resp.data[RD_RESP_STATUS], RD_STATUS_INVALID_COMMAND);
    assert_true(rd_protocol_handle_frame(&p, &req, buf, frame(buf, 0, 0, 0), &resp));
    assert_int_equal(resp.data[RD_RESP_STATUS], RD_STATUS_SUCCESS);
    assert_true(rd_protocol_is_quick(&req));
    rd_response_release(&resp);
    rd_module_set_free(set);
}

static int h_count(const raidad_request_t *req, raidad_response_t *resp)
{
    (void)resp;
    req->services->count(req, 5);
    return RAIDAD_STATUS_SUCCESS;
}

/* The services: count adds to the request's command in the shared
 * statistics; admin_key_ok compares with the configured key. */
static void test_services(void **state)
{
    static const raidad_command_t cmds[] = { { 3, "batch", h_count, 0 } };
    static const raidad_group_t groups[] = { { 20, cmds, 1 } };
    static const raidad_module_t counting = {
        .abi = RAIDAD_MODULE_ABI, .name = "counting", .groups = groups, .group_count = 1 };
    rd_module_set_t *set = rd_command_set_create();
    rd_protocol_t p = { .coin_id = 6, .max_body_size = 65536, .admin_key_set = true,
                        .admin_key = "0123456789abcdef" };
    raidad_services_t svc = rd_module_services;
    raidad_request_t view = { .services = &svc };
    uint8_t buf[128];
    rd_request_t req;
    rd_response_t resp;
    char why[256];

    (void)state;
    assert_non_null(rd_module_set_add(set, &counting, NULL, why, sizeof(why)));
    p.modules = set;
    p.stats = rd_stats_create();
    assert_non_null(p.stats);
    rd_response_init(&resp);
    assert_true(rd_protocol_handle_frame(&p, &req, buf, frame(buf, 20, 3, 0), &resp));
    assert_int_equal(resp.data[RD_RESP_STATUS], RD_STATUS_SUCCESS);
    assert_int_equal(atomic_load(&p.stats->by_command[20][3]), 5 + 1);
    svc.protocol = &p;
    assert_true(svc.admin_key_ok(&view, (const uint8_t *)"0123456789abcdef", 16));
    assert_false(svc.admin_key_ok(&view, (const uint8_t *)"0123456789abcdeX", 16));
    assert_false(svc.admin_key_ok(&view, (const uint8_t *)"0123456789abcdef", 15));
    p.admin_key_set = false;
    assert_false(svc.admin_key_ok(&view, (const uint8_t *)"0123456789abcdef", 16));
    /* log: the request's context, and one line whatever the module wrote. */
    {
        static const uint8_t client[16] = { [10] = 0xFF, [11] = 0xFF, 192, 0, 2, 7 };
        char path[] = "/tmp/raidad-test-log-XXXXXX", text[512] = "";
        int fd = mkstemp(path);
        FILE *f;

        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(rd_log_open(path), 0);
        rd_log_set_level(RD_LOG_DEBUG);
        view.module = "counting";
        view.group = 20;
        view.command = 3;
        view.client = client;
        view.datagram = true;
        svc.log(&view, RAIDAD_LOG_NOTICE, "two\nlines %d", 2);
        rd_log_open(NULL);
        f = fopen(path, "r");
        assert_non_null(f);
        assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
        fclose(f);
        unlink(path);
        assert_non_null(strstr(text, "module counting: udp 20/3 from 192.0.2.7: two?lines 2\n"));
    }
    rd_response_release(&resp);
    rd_stats_destroy(p.stats);
    rd_module_set_free(set);
}

static int hook_calls;

static int start_ok(const raidad_services_t *services, void **state)
{
    assert_int_equal(services->abi, RAIDAD_MODULE_ABI);
    *state = &hook_calls;
    hook_calls++;
    return 0;
}

static int start_fails(const raidad_services_t *services, void **state)
{
    (void)services;
    (void)state;
    return -1;
}

static void stop_hook(void *state)
{
    assert_ptr_equal(state, &hook_calls);
    hook_calls += 10;
}

/* The worker's hooks: every module started in order, a failure stops the
 * start, and only the started ones are stopped. */
static void test_process_hooks(void **state)
{
    static const raidad_group_t g60[] = { { 60, good_cmds, 2 } };
    static const raidad_group_t g61[] = { { 61, good_cmds, 2 } };
    raidad_module_t a = good, b = good;
    rd_module_set_t *set = rd_command_set_create();
    char why[256];

    (void)state;
    a.name = "a";
    a.groups = g60;
    a.process_start = start_ok;
    a.process_stop = stop_hook;
    b.name = "b";
    b.groups = g61;
    b.process_start = start_fails;
    b.process_stop = stop_hook;
    assert_non_null(rd_module_set_add(set, &a, NULL, why, sizeof(why)));
    assert_non_null(rd_module_set_add(set, &b, NULL, why, sizeof(why)));
    hook_calls = 0;
    assert_int_equal(rd_module_set_start(set), -1);
    assert_int_equal(hook_calls, 1);
    assert_ptr_equal(rd_module_set_find(set, "a")->state, &hook_calls);
    rd_module_set_stop(set);
    assert_int_equal(hook_calls, 11);               /* a stopped, b never started */
    rd_module_set_free(set);
}

/* ---- load_module and the module's settings ---- */

static const char *testmod(const char *var)
{
    const char *path = getenv(var);

    if (path == NULL)
        fail_msg("%s is not set (run under make check)", var);
    return path;
}

/* TEXT (with %s for the test module's path) must load, or be refused
 * with WANT (with %s for the path too, once or twice). */
static rd_module_set_t *load(const char *text, const char *module, const char *want)
{
    char conf[2048], err[1024] = "", expect[1024];
    rd_config_t *cf = malloc(sizeof(*cf));
    rd_module_set_t *set;

    assert_non_null(cf);
    snprintf(conf, sizeof(conf), text, module);
    /* A value no module could take is refused by the file's own reading. */
    set = rd_config_parse_string(cf, conf, NAME, err, sizeof(err)) == 0
        ? rd_modload_modules(cf, err, sizeof(err)) : NULL;
    free(cf);
    if (want == NULL) {
        if (set == NULL)
            fail_msg("refused: %s", err);
        return set;
    }
    snprintf(expect, sizeof(expect), want, module, module);
    assert_null(set);
    assert_string_equal(err, expect);
    return NULL;
}

static void test_load_module(void **state)
{
    const char *mod = testmod("RAIDAD_TESTMOD");
    rd_module_set_t *set;
    rd_module_t *m;

    (void)state;
    set = load("load_module = \"%s\";\ntestmod = { tag = 9; label = \"x\"; };\n", mod, NULL);
    m = rd_module_set_find(set, "testmod");
    assert_non_null(m);
    assert_true(m->values[0].set);
    assert_int_equal(m->values[0].integer, 9);
    assert_false(m->values[1].set);
    assert_string_equal(m->values[2].text, "x");
    assert_string_equal(rd_module_set_lookup(set, 201, 0)->name, "ping");
    assert_true(rd_module_set_lookup(set, 201, 0)->quick);
    assert_int_equal(rd_module_set_lookup(set, 201, 0)->metrics_index, UINT32_MAX);
    assert_string_equal(rd_module_set_lookup(set, 0, 0)->name, "echo");
    rd_module_set_free(set);
    /* Defaults when the file has no group for it. */
    set = load("load_module = [ \"%s\" ];\n", mod, NULL);
    assert_int_equal(rd_module_set_find(set, "testmod")->values[0].integer, 7);
    assert_string_equal(rd_module_set_find(set, "testmod")->values[2].text, "test");
    rd_module_set_free(set);
}

static void test_load_module_refused(void **state)
{
    const char *mod = testmod("RAIDAD_TESTMOD");

    (void)state;
    load("raida_id = 1;\nload_module = \"%s\";\n", testmod("RAIDAD_TESTMOD_ABI"),
         NAME ":2: load_module \"%s\": built for module ABI 999, this raidad has ABI 1");
    load("load_module = \"%s\";\n", "/nonexistent/mod.so",
         NAME ":1: load_module \"%s\": /nonexistent/mod.so: No such file or directory");
    load("raida = { id = 1; };\n%s", "",
         NAME ":1: unknown setting 'raida' (no module of that name is loaded)");
    load("load_module = \"%s\";\ntestmod = {\n  tag = 300;\n};\n", mod,
         NAME ":3: testmod.tag = 300 is out of range (0..255)");
    load("load_module = \"%s\";\ntestmod = {\n  tag = \"x\";\n};\n", mod,
         NAME ":3: testmod.tag must be an integer");
    load("load_module = \"%s\";\ntestmod = {\n  nope = 1;\n};\n", mod,
         NAME ":3: module testmod has no setting 'nope'");
    load("load_module = \"%s\";\n\ntestmod = { refuse = true; label = \"L\"; };\n", mod,
         NAME ":3: module testmod refused its settings: refuse = true (label L)");
    load("load_module = \"%s\";\ntestmod = {\n  tag = 4294967297;\n};\n", mod,
         NAME ":3: testmod.tag = 4294967297 is out of range (write a 64-bit integer with an L)");
    load("load_module = \"%s\";\ntestmod = {\n  tag = 4294967297L;\n};\n", mod,
         NAME ":3: testmod.tag = 4294967297 is out of range (0..255)");
    load("testmod = { list = ( 1 ); };\nload_module = \"%s\";\n", mod,
         NAME ":1: testmod.list must be an integer, a boolean or a string");
}

/* A shared object that is no module: zlib, found where this process has it. */
static void test_load_module_without_symbol(void **state)
{
    Dl_info info;
    char want[PATH_MAX + 128];

    (void)state;
    assert_true(dladdr((void *)crc32, &info) != 0 && info.dli_fname != NULL);
    assert_true(info.dli_fname[0] == '/');
    snprintf(want, sizeof(want), NAME ":1: load_module \"%%s\": no symbol raidad_module: "
             "not a raidad module");
    load("load_module = \"%s\";\n", info.dli_fname, want);
}

/* The master would run the code of whoever may write the file. */
static void test_load_module_writable_by_others(void **state)
{
    char path[] = "/tmp/raidad-test-module-XXXXXX";
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0666), 0);
    load("load_module = \"%s\";\n", path,
         NAME ":1: load_module \"%s\": file %s writable by group or others (mode 666): refused");
    close(fd);
    unlink(path);
}

/* Nor the code of the workers' user, or of anyone but root. */
static void test_load_module_owned_by_another_user(void **state)
{
    char path[] = "/tmp/raidad-test-module-XXXXXX";
    int fd = mkstemp(path);

    (void)state;
    if (geteuid() != 0)
        skip();
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0644), 0);
    assert_int_equal(fchown(fd, 65534, 65534), 0);
    load("load_module = \"%s\";\n", path,
         NAME ":1: load_module \"%s\": file %s owned by uid 65534, not by root: refused");
    close(fd);
    unlink(path);
}

/* Whoever may write a folder above the module may put another file in its
 * place; a sticky one (/tmp, above the others here) is no such folder. */
static void test_load_module_in_a_folder_others_may_write(void **state)
{
    char dir[] = "/tmp/raidad-test-moddir-XXXXXX", path[128], want[512];
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chmod(dir, 0777), 0);
    snprintf(path, sizeof(path), "%s/mod.so", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    snprintf(want, sizeof(want), NAME ":1: load_module \"%%s\": folder %s writable by group "
             "or others (mode 777): refused", dir);
    load("load_module = \"%s\";\n", path, want);
    close(fd);
    unlink(path);
    rmdir(dir);
}

/* calloc, linked with -Wl,--wrap=calloc (Makefile.am): the COUNTDOWN-th
 * group table a module set makes (calloc(256, ...)) fails, as when memory
 * runs out. */
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
static unsigned group_table_countdown;

void *__wrap_calloc(size_t n, size_t size)
{
    if (n == 256 && size == sizeof(rd_command_t) && group_table_countdown > 0
        && --group_table_countdown == 0) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

/* A module whose group table cannot be made is not in the set: freeing
 * the set must not read its descriptor, gone with dlclose (the master
 * crashed there at start, -t or reload). Its group is free again. */
static void test_module_add_out_of_memory(void **state)
{
    const char *mod = testmod("RAIDAD_TESTMOD");
    rd_module_set_t *set = rd_module_set_create(NULL, 0);
    char why[256];
    void *dl;

    (void)state;
    assert_non_null(set);
    dl = dlopen(mod, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(dl);
    const raidad_module_t *desc = dlsym(dl, RAIDAD_MODULE_SYMBOL);
    assert_non_null(desc);
    group_table_countdown = 1;
    assert_null(rd_module_set_add(set, desc, dl, why, sizeof(why)));
    assert_string_equal(why, "out of memory");
    assert_null(rd_module_set_find(set, desc->name));
    assert_int_equal(group_table_countdown, 0);
    assert_non_null(rd_module_set_add(set, desc, dl, why, sizeof(why)));
    assert_non_null(rd_module_set_find(set, "testmod"));
    rd_module_set_free(set);        /* dlcloses DL */
    set = rd_module_set_create(NULL, 0);
    dl = dlopen(mod, RTLD_NOW | RTLD_LOCAL);
    desc = dlsym(dl, RAIDAD_MODULE_SYMBOL);
    group_table_countdown = 1;
    assert_null(rd_module_set_add(set, desc, dl, why, sizeof(why)));
    dlclose(dl);
    rd_module_set_free(set);
}

static void test_load_module_twice(void **state)
{
    char conf[2048], err[512];
    const char *mod = testmod("RAIDAD_TESTMOD");
    rd_config_t *cf = malloc(sizeof(*cf));

    (void)state;
    assert_non_null(cf);
    snprintf(conf, sizeof(conf), "load_module = [ \"%s\",\n \"%s\" ];\n", mod, mod);
    assert_int_equal(rd_config_parse_string(cf, conf, NAME, err, sizeof(err)), 0);
    assert_null(rd_modload_modules(cf, err, sizeof(err)));
    assert_non_null(strstr(err, NAME ":2: load_module"));
    assert_non_null(strstr(err, "a module named testmod is loaded already"));
    free(cf);
}

/* ---- the crash record ---- */

static void test_crash_record(void **state)
{
    char what[256];

    (void)state;
    assert_int_equal(rd_crashrec_init(4), 0);
    assert_false(rd_crashrec_read(2, NULL, what, sizeof(what)));     /* never attached */
    rd_crashrec_attach(2);
    rd_crashrec_enter("testmod", 201, 1);
    assert_true(rd_crashrec_read(2, NULL, what, sizeof(what)));
    assert_string_equal(what, "module testmod group 201 command 1");
    assert_false(rd_crashrec_read(2, NULL, what, sizeof(what)));     /* read once */
    rd_crashrec_attach(2);
    rd_crashrec_enter("testmod", 201, 1);
    rd_crashrec_leave();
    assert_false(rd_crashrec_read(2, NULL, what, sizeof(what)));     /* finished */
    rd_crashrec_attach(3);
    assert_false(rd_crashrec_read(3, NULL, what, sizeof(what)));
    /* With the master's table: the name of a command of that module only. */
    rd_crashrec_attach(3);
    rd_crashrec_enter("status", 0, 2);
    assert_true(rd_crashrec_read(3, rd_module_set_default(), what, sizeof(what)));
    assert_string_equal(what, "module status group 0 command 2 (stats)");
    rd_crashrec_attach(3);
    rd_crashrec_enter("impostor", 0, 2);
    assert_true(rd_crashrec_read(3, rd_module_set_default(), what, sizeof(what)));
    assert_string_equal(what, "module impostor group 0 command 2");
    rd_crashrec_fini();
}

/* The master reads bytes a crashed worker may have scribbled on. */
static void test_crash_record_untrusted(void **state)
{
    char what[256];
    uint8_t *slot;
    size_t slot_size;

    (void)state;
    assert_int_equal(rd_crashrec_init(2), 0);
    rd_crashrec_attach(0);
    rd_crashrec_enter("testmod", 201, 1);
    slot = rd_crashrec_slot(0, &slot_size);
    assert_non_null(slot);
    uint8_t *name = memmem(slot, slot_size, "testmod", 7);
    assert_non_null(name);
    memset(name, 'A', 32);                         /* no NUL, not a module name */
    assert_false(rd_crashrec_read(0, NULL, what, sizeof(what)));
    rd_crashrec_attach(0);
    rd_crashrec_enter("testmod", 201, 1);
    name = memmem(slot, slot_size, "testmod", 7);
    name[2] = '\n';                                /* a line break into the log */
    assert_false(rd_crashrec_read(0, NULL, what, sizeof(what)));
    rd_crashrec_attach(0);
    rd_crashrec_enter("testmod", 201, 1);
    memset(slot, 0xFF, 4);                         /* the magic */
    assert_false(rd_crashrec_read(0, NULL, what, sizeof(what)));
    rd_crashrec_fini();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_table),
        cmocka_unit_test(test_descriptor_checks),
        cmocka_unit_test(test_set_conflicts),
        cmocka_unit_test(test_dispatch_frame),
        cmocka_unit_test(test_services),
        cmocka_unit_test(test_process_hooks),
        cmocka_unit_test(test_load_module),
        cmocka_unit_test(test_load_module_refused),
        cmocka_unit_test(test_load_module_without_symbol),
        cmocka_unit_test(test_load_module_writable_by_others),
        cmocka_unit_test(test_load_module_owned_by_another_user),
        cmocka_unit_test(test_load_module_in_a_folder_others_may_write),
        cmocka_unit_test(test_module_add_out_of_memory),
        cmocka_unit_test(test_load_module_twice),
        cmocka_unit_test(test_crash_record),
        cmocka_unit_test(test_crash_record_untrusted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
