/* Reading the configuration file: the table of every setting and its
 * checks (see include/rd_config.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <libconfig.h>

#include "rd_bytes.h"
#include "rd_config.h"
#include "rd_frame.h"
#include "rd_log.h"
#include "rd_sockaddr.h"

/* A configuration file larger than this is surely not one (/dev/zero...). */
#define RD_CONFIG_MAX_SIZE (16 * 1024 * 1024)

enum rd_opt_type {
    RD_OPT_INT,         /* unsigned field, min..max */
    RD_OPT_BOOL,        /* bool field */
    RD_OPT_STRING,      /* one string, given to parse */
    RD_OPT_STRINGS,     /* a string or a list of min..max strings, each given to parse */
    RD_OPT_TEXT,        /* a string copied into a char[size] field (parse may check it) */
};

/* Stores string number IDX of a setting into CF; on failure writes into WHY
 * a sentence that says what is wrong (the caller adds the file and line). */
typedef int rd_opt_parse_fn(rd_config_t *cf, size_t idx, const char *text,
                            char *why, size_t why_len);
/* Empties a list setting before its entries are stored (a list may be empty). */
typedef void rd_opt_clear_fn(rd_config_t *cf);
/* Remembers where string number IDX of a setting was written (FILE, LINE). */
typedef void rd_opt_source_fn(rd_config_t *cf, size_t idx, const char *file, int line);

typedef struct rd_opt {
    const char *name;
    enum rd_opt_type type;
    size_t offset;              /* of the field, for RD_OPT_INT, _BOOL and _TEXT */
    size_t size;                /* of the field, for RD_OPT_TEXT */
    bool auto_zero;             /* RD_OPT_INT: the string "auto" stands for 0 */
    long long def, min, max;
    const char *def_text;       /* default of a string setting (RD_OPT_STRINGS: entries
                                   separated by spaces); NULL: none */
    rd_opt_parse_fn *parse;
    rd_opt_clear_fn *clear;     /* RD_OPT_STRINGS that may be empty */
    rd_opt_source_fn *source;   /* settings whose place later errors name */
} rd_opt_t;

/* Where a file is read, so that errors can name it and integers be read again. */
typedef struct rd_load {
    const char *name;           /* the file as messages call it */
    const char *text;           /* its text */
    const char *incdir;         /* where @include looks; NULL: the current directory */
    char *err;
    size_t err_len;
} rd_load_t;

static rd_opt_parse_fn rd_opt_listen, rd_opt_admin_key, rd_opt_log_level;
static rd_opt_parse_fn rd_opt_user, rd_opt_group, rd_opt_admin_allow, rd_opt_cpu_affinity;
static rd_opt_parse_fn rd_opt_metrics_listen, rd_opt_metrics_allow, rd_opt_access_log_format;
static rd_opt_parse_fn rd_opt_load_module;
static rd_opt_clear_fn rd_clear_admin_allow, rd_clear_load_module;
static rd_opt_source_fn rd_source_load_module;

/* The table stores through an unsigned * or a bool *: the _Generic makes an
 * entry for a field of any other C type fail to compile. */
#define RD_FIELD(field, ctype) (offsetof(rd_config_t, field) + \
    0 * sizeof(char[_Generic(((rd_config_t *)0)->field, ctype: 1)]))
#define RD_INT(field, d, lo, hi) { .name = #field, .type = RD_OPT_INT, \
    .offset = RD_FIELD(field, unsigned), .def = d, .min = lo, .max = hi }
#define RD_TEXT(field, d, check) { .name = #field, .type = RD_OPT_TEXT, \
    .offset = offsetof(rd_config_t, field), .size = sizeof(((rd_config_t *)0)->field), \
    .def_text = d, .parse = check }
#define RD_BOOL(field, d) { .name = #field, .type = RD_OPT_BOOL, \
    .offset = RD_FIELD(field, bool), .def = d, .min = 0, .max = 1 }

static const rd_opt_t rd_opts[] = {
    { .name = "listen", .type = RD_OPT_STRINGS, .min = 1, .max = RD_CONFIG_MAX_LISTEN,
      .def_text = "0.0.0.0:18000", .parse = rd_opt_listen },
    RD_INT(raida_id, 0, 0, 24),
    RD_INT(coin_id, 6, 0, 65535),
    RD_INT(worker_threads, 2, 1, 256),
    RD_INT(epoll_timeout_ms, 10000, 1, 3600000),
    RD_INT(events_per_wait, 10000, 1, 1000000),
    RD_INT(wakeup_budget, 64, 1, 1000000),
    RD_INT(max_descriptors, 65535, 64, 1048576),
    RD_INT(max_body_size, 65536, 18, 1048576),
    RD_INT(socket_timeout_ms, 2000, 10, 3600000),
    RD_INT(mod_queue_size, 1024, 1, 1048576),
    RD_BOOL(tcp_keepalive, true),
    RD_INT(keepalive_idle, 60, 1, 32767),
    RD_INT(keepalive_interval, 10, 1, 32767),
    RD_INT(keepalive_count, 5, 1, 127),
    RD_INT(udp_payload_threshold, 65507, 32, 65507),
    RD_INT(udp_receive_buffer, 0, 0, 268435456),
    RD_BOOL(quick_commands_inline, true),
    { .name = "admin_key", .type = RD_OPT_STRING, .parse = rd_opt_admin_key },
    { .name = "admin_allow", .type = RD_OPT_STRINGS, .min = 0, .max = RD_CONFIG_MAX_ADMIN_ALLOW,
      .def_text = "127.0.0.0/8 ::1", .parse = rd_opt_admin_allow,
      .clear = rd_clear_admin_allow },
    { .name = "log_level", .type = RD_OPT_STRING, .def_text = "info",
      .parse = rd_opt_log_level },
    { .name = "worker_connections", .type = RD_OPT_INT, .auto_zero = true,
      .offset = RD_FIELD(worker_connections, unsigned), .def = 0, .min = 1, .max = 1048576 },
    RD_INT(write_timeout_ms, 5000, 10, 3600000),
    RD_BOOL(udp, true),
    RD_INT(max_connections_per_ip, 0, 0, 1048576),
    RD_INT(rate_limit, 0, 0, 10000000),
    RD_INT(rate_limit_burst, 0, 0, 10000000),
    RD_INT(limit_prefix_ipv4, 32, 1, 32),
    RD_INT(limit_prefix_ipv6, 64, 1, 128),
    { .name = "worker_processes", .type = RD_OPT_INT, .auto_zero = true,
      .offset = RD_FIELD(worker_processes, unsigned), .def = 0, .min = 1, .max = 64 },
    { .name = "worker_cpu_affinity", .type = RD_OPT_STRING, .def_text = "off",
      .parse = rd_opt_cpu_affinity },
    RD_BOOL(worker_sched_batch, true),
    RD_INT(shutdown_timeout_ms, 5000, 0, 3600000),
    RD_INT(max_old_generations, 4, 1, 64),
    RD_TEXT(pid_file, "/run/raidad/raidad.pid", NULL),
    RD_TEXT(error_log, "", NULL),
    RD_TEXT(user, RD_DEFAULT_USER, rd_opt_user),
    RD_TEXT(group, "", rd_opt_group),
    RD_BOOL(worker_seccomp, true),
    RD_TEXT(data_dir, "", NULL),
    RD_INT(key_cache_pages, 1024, 1, 1048576),
    RD_INT(journal_max_size, 67108864, 65536, 1073741824),
    RD_INT(checkpoint_interval_ms, 60000, 100, 86400000),
    RD_INT(commit_threads, 1, 1, 64),
    RD_INT(pending_changes, 65536, 4096, 16777216),
    RD_INT(page_recheck_ms, 1000, 0, 3600000),
    { .name = "metrics_listen", .type = RD_OPT_STRINGS, .min = 0, .max = RD_CONFIG_MAX_LISTEN,
      .parse = rd_opt_metrics_listen },
    { .name = "metrics_allow", .type = RD_OPT_STRINGS, .min = 0, .max = RD_CONFIG_MAX_ALLOW,
      .parse = rd_opt_metrics_allow },
    RD_INT(metrics_max_connections, 64, 1, 100000),
    RD_INT(metrics_connections_per_ip, 8, 0, 100000),
    RD_INT(metrics_timeout, 5, 1, 3600),
    RD_TEXT(access_log, "", NULL),
    RD_TEXT(access_log_format, "plain", rd_opt_access_log_format),
    RD_INT(access_log_buffer, 65536, 4096, 16777216),
    RD_INT(access_log_flush_ms, 1000, 10, 3600000),
    { .name = "load_module", .type = RD_OPT_STRINGS, .min = 0, .max = RD_CONFIG_MAX_MODULES,
      .parse = rd_opt_load_module, .clear = rd_clear_load_module,
      .source = rd_source_load_module },
};

/* ---- listen addresses ---------------------------------------------------- */

static int rd_parse_port(const char *s, in_port_t *port)
{
    unsigned long v = 0;

    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 65535)
            return -1;
    }
    if (v == 0)
        return -1;
    *port = (in_port_t)v;
    return 0;
}

static bool rd_all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static int rd_listen_fill(rd_listen_addr_t *out, const char *host, bool v6, in_port_t port)
{
    rd_listen_addr_t a;

    memset(&a, 0, sizeof(a));
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.addr;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        a.addr_len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a.addr;
        if (strcmp(host, "*") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -1;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        a.addr_len = sizeof(*sin);
    }
    rd_sockaddr_text((const struct sockaddr *)&a.addr, a.text, sizeof(a.text));
    *out = a;
    return 0;
}

/* An IPv6 address must be in brackets even without a port: in "::1:8000"
 * nobody can tell whether 8000 is a port or the last group. */
int rd_config_parse_listen(const char *text, rd_listen_addr_t *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *port = NULL, *end;
    size_t len;
    in_port_t portnum = RD_DEFAULT_PORT;
    bool v6 = text != NULL && text[0] == '[';

    if (text == NULL)
        return -1;
    if (v6) {
        end = strchr(text, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return -1;
        len = (size_t)(end - text - 1);
        text++;
        port = end[1] == ':' ? end + 2 : NULL;
    } else if (rd_all_digits(text)) {
        port = text;
        text = "*";
        len = 1;
    } else {
        end = strchr(text, ':');
        if (end != NULL && strchr(end + 1, ':') != NULL)
            return -1;
        len = end != NULL ? (size_t)(end - text) : strlen(text);
        port = end != NULL ? end + 1 : NULL;
    }
    if (len == 0 || len >= sizeof(host))
        return -1;
    memcpy(host, text, len);
    host[len] = '\0';
    if (port != NULL && rd_parse_port(port, &portnum) < 0)
        return -1;
    return rd_listen_fill(out, host, v6, portnum);
}

/* ---- the string settings ------------------------------------------------- */

/* True (with WHY said for SETTING) when A is among the N addresses of LIST. */
static bool listen_taken(const rd_listen_addr_t *list, size_t n, const rd_listen_addr_t *a,
                         const char *setting, const char *what, char *why, size_t why_len)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].text, a->text) == 0) {
            snprintf(why, why_len, "%s '%s' is %s", setting, a->text, what);
            return true;
        }
    return false;
}

static int rd_opt_listen(rd_config_t *cf, size_t idx, const char *text,
                         char *why, size_t why_len)
{
    rd_listen_addr_t a;

    if (rd_config_parse_listen(text, &a) < 0) {
        snprintf(why, why_len, "listen '%s' is not a valid address: write ADDR:PORT, "
                 "[IPV6]:PORT, ADDR or PORT, with a numeric address and a port 1..65535",
                 text);
        return -1;
    }
    /* The second bind() would fail with EADDRINUSE; better said here. */
    if (listen_taken(cf->listen, idx, &a, "listen", "given twice", why, why_len))
        return -1;
    cf->listen[idx] = a;
    cf->listen_count = idx + 1;
    return 0;
}

/* The messages never quote the key: it would end up in the logs. */
static int rd_opt_admin_key(rd_config_t *cf, size_t idx, const char *text,
                            char *why, size_t why_len)
{
    size_t len = strlen(text);

    (void)idx;
    if (len != 2 * RD_ADMIN_KEY_SIZE) {
        snprintf(why, why_len, "admin_key must be exactly %d hex digits (%d bytes), not %zu",
                 2 * RD_ADMIN_KEY_SIZE, RD_ADMIN_KEY_SIZE, len);
        return -1;
    }
    if (rd_hex_decode(text, cf->admin_key, RD_ADMIN_KEY_SIZE) != RD_ADMIN_KEY_SIZE) {
        snprintf(why, why_len, "admin_key must contain only hex digits (0-9, a-f)");
        return -1;
    }
    cf->admin_key_set = true;
    return 0;
}

/* One network of the list SETTING (admin_allow, metrics_allow). */
static int rd_network_item(const char *setting, const char *text, rd_cidr_t *out,
                           char *why, size_t why_len)
{
    if (rd_cidr_parse(text, out) == 0)
        return 0;
    snprintf(why, why_len, "%s '%s' is not an address or range: write ADDR or ADDR/LEN, "
             "numeric (127.0.0.0/8, ::1, 2001:db8::/32)", setting, text);
    return -1;
}

static int rd_opt_admin_allow(rd_config_t *cf, size_t idx, const char *text,
                              char *why, size_t why_len)
{
    if (rd_network_item("admin_allow", text, &cf->admin_allow[idx], why, why_len) < 0)
        return -1;
    cf->admin_allow_count = idx + 1;
    return 0;
}

static void rd_clear_admin_allow(rd_config_t *cf)
{
    cf->admin_allow_count = 0;
}

static int rd_opt_log_level(rd_config_t *cf, size_t idx, const char *text,
                            char *why, size_t why_len)
{
    int level = rd_log_level_parse(text);

    (void)idx;
    if (level < 0) {
        snprintf(why, why_len, "log_level '%s' is not a level (emerg, alert, crit, "
                 "error, warn, notice, info, debug)", text);
        return -1;
    }
    cf->log_level = level;
    return 0;
}

static int rd_opt_cpu_affinity(rd_config_t *cf, size_t idx, const char *text,
                               char *why, size_t why_len)
{
    (void)idx;
    if (strcmp(text, "auto") != 0 && strcmp(text, "off") != 0) {
        snprintf(why, why_len, "worker_cpu_affinity '%s' is neither \"auto\" nor \"off\"", text);
        return -1;
    }
    cf->worker_cpu_affinity = strcmp(text, "auto") == 0;
    return 0;
}

/* Unknown accounts are configuration errors, caught by -t and by a reload,
 * not a surprise for the first worker that tries to become them. The
 * default account is the exception: where it was never created (a build
 * tree, not "make install"), workers fall back to RD_FALLBACK_USER. */
static int rd_opt_user(rd_config_t *cf, size_t idx, const char *text, char *why, size_t why_len)
{
    (void)cf;
    (void)idx;
    if (text[0] != '\0' && strcmp(text, RD_DEFAULT_USER) != 0 && getpwnam(text) == NULL) {
        snprintf(why, why_len, "user '%s' does not exist", text);
        return -1;
    }
    return 0;
}

static int rd_opt_group(rd_config_t *cf, size_t idx, const char *text, char *why, size_t why_len)
{
    (void)cf;
    (void)idx;
    if (text[0] != '\0' && getgrnam(text) == NULL) {
        snprintf(why, why_len, "group '%s' does not exist", text);
        return -1;
    }
    return 0;
}

/* The metrics endpoint needs its port spelled out: the default port is
 * the RAIDA one, which listen already holds. "" (or an empty list) is off. */
static int rd_opt_metrics_listen(rd_config_t *cf, size_t idx, const char *text,
                                 char *why, size_t why_len)
{
    const char *bracket = strchr(text, ']');
    const char *port = bracket != NULL ? strchr(bracket, ':') : strchr(text, ':');
    rd_listen_addr_t a;

    if (text[0] == '\0' && idx == 0)
        return 0;
    if (port == NULL || rd_config_parse_listen(text, &a) < 0) {
        snprintf(why, why_len, "metrics_listen '%s' is not a valid address: write ADDR:PORT "
                 "or [IPV6]:PORT, with a numeric address and a port 1..65535", text);
        return -1;
    }
    /* Against listen once the whole file is read (rd_check_metrics_listen). */
    if (listen_taken(cf->metrics_listen, idx, &a, "metrics_listen", "given twice", why, why_len))
        return -1;
    cf->metrics_listen[idx] = a;
    cf->metrics_listen_count = idx + 1;
    return 0;
}

static int rd_opt_metrics_allow(rd_config_t *cf, size_t idx, const char *text,
                                char *why, size_t why_len)
{
    if (rd_network_item("metrics_allow", text, &cf->metrics_allow[idx], why, why_len) < 0)
        return -1;
    cf->metrics_allow_count = idx + 1;
    return 0;
}

static int rd_opt_access_log_format(rd_config_t *cf, size_t idx, const char *text,
                                    char *why, size_t why_len)
{
    (void)cf;
    (void)idx;
    if (strcmp(text, "plain") != 0 && strcmp(text, "json") != 0) {
        snprintf(why, why_len, "access_log_format '%s' is not a format (plain, json)", text);
        return -1;
    }
    return 0;
}

/* The shared object is opened by rd_modload.c, which names this place
 * when it cannot be: a relative path is from the file's folder. */
static int rd_opt_load_module(rd_config_t *cf, size_t idx, const char *text,
                              char *why, size_t why_len)
{
    if (text[0] == '\0' || strlen(text) >= sizeof(cf->load_module[idx].path)) {
        snprintf(why, why_len, "load_module needs the path of a shared object");
        return -1;
    }
    snprintf(cf->load_module[idx].path, sizeof(cf->load_module[idx].path), "%s", text);
    cf->load_module_count = idx + 1;
    return 0;
}

static void rd_clear_load_module(rd_config_t *cf)
{
    cf->load_module_count = 0;
}

/* A file name for messages, cut to AT's room when it is longer. */
static void rd_source_set(rd_config_source_t *at, const char *file, int line)
{
    size_t n = strnlen(file, sizeof(at->file) - 1);

    memcpy(at->file, file, n);
    at->file[n] = '\0';
    at->line = line;
}

static void rd_source_load_module(rd_config_t *cf, size_t idx, const char *file, int line)
{
    rd_source_set(&cf->load_module[idx].at, file, line);
}

static int rd_store_text(rd_config_t *cf, const rd_opt_t *opt, const char *text,
                         char *why, size_t why_len)
{
    if (strlen(text) >= opt->size) {
        snprintf(why, why_len, "%s is longer than %zu characters", opt->name, opt->size - 1);
        return -1;
    }
    if (opt->parse != NULL && opt->parse(cf, 0, text, why, why_len) < 0)
        return -1;
    memcpy((char *)cf + opt->offset, text, strlen(text) + 1);
    return 0;
}

/* ---- defaults ------------------------------------------------------------ */

static void rd_store_int(rd_config_t *cf, const rd_opt_t *opt, long long v)
{
    if (opt->type == RD_OPT_BOOL)
        *(bool *)((char *)cf + opt->offset) = v != 0;
    else
        *(unsigned *)((char *)cf + opt->offset) = (unsigned)v;
}

/* Each space-separated entry of a string setting's default, in order. */
static void rd_store_defaults(rd_config_t *cf, const rd_opt_t *opt, char *why, size_t why_len)
{
    char buf[256];
    size_t idx = 0;

    snprintf(buf, sizeof(buf), "%s", opt->def_text);
    for (char *save = NULL, *e = strtok_r(buf, " ", &save); e != NULL;
         e = strtok_r(NULL, " ", &save))
        opt->parse(cf, idx++, e, why, why_len);
}

void rd_config_defaults(rd_config_t *cf)
{
    char why[256];

    memset(cf, 0, sizeof(*cf));
    for (size_t i = 0; i < sizeof(rd_opts) / sizeof(rd_opts[0]); i++) {
        const rd_opt_t *opt = &rd_opts[i];
        if (opt->type == RD_OPT_INT || opt->type == RD_OPT_BOOL)
            rd_store_int(cf, opt, opt->def);
        else if (opt->type == RD_OPT_TEXT)
            rd_store_text(cf, opt, opt->def_text, why, sizeof(why));
        else if (opt->def_text != NULL)
            rd_store_defaults(cf, opt, why, sizeof(why));
    }
}

/* ---- errors -------------------------------------------------------------- */

/* libconfig names an included file as the @include line wrote it, relative
 * to the include directory: the message names it from where the user is. */
static const char *rd_file_name(const rd_load_t *ld, const char *file, char *buf, size_t len)
{
    if (file == NULL)
        return ld->name;
    if (ld->incdir == NULL || file[0] == '/')
        return file;
    snprintf(buf, len, "%s/%s", ld->incdir, file);
    return buf;
}

static int rd_failv(const rd_load_t *ld, const char *file, int line, const char *fmt, va_list ap)
{
    char name[PATH_MAX + 64];
    int n;

    if (ld->err == NULL || ld->err_len == 0)
        return -1;
    file = rd_file_name(ld, file, name, sizeof(name));
    if (line > 0)
        n = snprintf(ld->err, ld->err_len, "%s:%d: ", file, line);
    else
        n = snprintf(ld->err, ld->err_len, "%s: ", file);
    if (n >= 0 && (size_t)n < ld->err_len)
        vsnprintf(ld->err + n, ld->err_len - (size_t)n, fmt, ap);
    return -1;
}

__attribute__((format(printf, 4, 5)))
static int rd_fail(const rd_load_t *ld, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rd_failv(ld, file, line, fmt, ap);
    va_end(ap);
    return -1;
}

__attribute__((format(printf, 3, 4)))
static int rd_fail_at(const rd_load_t *ld, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rd_failv(ld, config_setting_source_file(s), config_setting_source_line(s), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- reading files ------------------------------------------------------- */

/* libconfig 1.5 takes a comment on the last line, without its newline, for a
 * syntax error: every text gets a final newline. BUF has room for two more. */
static char *rd_terminate(char *buf, size_t len)
{
    if (len == 0 || buf[len - 1] != '\n')
        buf[len++] = '\n';
    buf[len] = '\0';
    return buf;
}

/* The whole of PATH, or NULL with errno set. */
static char *rd_slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    int saved;

    if (f == NULL || buf == NULL)
        goto fail;
    for (;;) {
        len += fread(buf + len, 1, cap - len - 2, f);
        if (ferror(f) || feof(f))
            break;
        char *bigger = cap < RD_CONFIG_MAX_SIZE ? realloc(buf, cap * 2) : NULL;
        if (bigger == NULL) {
            errno = cap < RD_CONFIG_MAX_SIZE ? ENOMEM : EFBIG;
            goto fail;
        }
        buf = bigger;
        cap *= 2;
    }
    if (ferror(f))
        goto fail;
    fclose(f);
    return rd_terminate(buf, len);
fail:
    saved = errno;
    if (f != NULL)
        fclose(f);
    free(buf);
    errno = saved;
    return NULL;
}

/* ---- integers ------------------------------------------------------------ */

static bool rd_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '*';
}

/* The value of setting NAME that starts on line LINE of TEXT, or NULL. */
static const char *rd_find_value(const char *text, const char *name, unsigned line)
{
    size_t len = strlen(name);

    for (; line > 1 && text != NULL; line--) {
        text = strchr(text, '\n');
        text = text != NULL ? text + 1 : NULL;
    }
    for (const char *p = text; p != NULL && *p != '\0' && *p != '\n'; p++) {
        if (strncmp(p, name, len) != 0 || (p > text && rd_name_char(p[-1])))
            continue;
        const char *q = p + len + strspn(p + len, " \t\r\n");
        if (*q == '=' || *q == ':')
            return q + 1 + strspn(q + 1, " \t\r\n");
    }
    return NULL;
}

/* True if the literal at P is one that libconfig 1.5 cut to 32 bits into V
 * (atoi() of a decimal, strtoul() cast to int of a hex); copies it into LIT.
 * Requiring that the cut value is V keeps another literal found by mistake
 * from being taken for it. */
static bool rd_literal_wrapped(const char *p, long long v, char *lit, size_t lit_len)
{
    size_t n = 0;
    char *end;

    while (n + 1 < lit_len && (rd_name_char(p[n]) || p[n] == '+'))
        n++;
    memcpy(lit, p, n);
    lit[n] = '\0';
    if (n == 0 || lit[n - 1] == 'L' || lit[n - 1] == 'l')
        return false;           /* a 64-bit literal, read whole */
    errno = 0;
    if (lit[0] == '0' && (lit[1] == 'x' || lit[1] == 'X')) {
        unsigned long long u = strtoull(lit, &end, 16);
        if (*end != '\0')
            return false;
        return errno == ERANGE ? v == -1 : u > INT_MAX && (int)(unsigned)u == v;
    }
    long long x = strtoll(lit, &end, 10);
    if (end == lit || *end != '\0')
        return false;
    if (errno == ERANGE)
        return v == (x > 0 ? -1 : 0);   /* (int)LONG_MAX, (int)LONG_MIN */
    return (x > INT_MAX || x < INT_MIN) && (int)x == v;
}

/* libconfig 1.5 reads a plain integer with atoi(): 4294967297 arrives as 1
 * and would pass the range check. So the literal is read again from the
 * source, into LIT. A layout this cannot follow (a comment between name and
 * value) is left to libconfig. */
static bool rd_int_wrapped(const rd_load_t *ld, const config_setting_t *s, long long v,
                           char *lit, size_t lit_len)
{
    char name[PATH_MAX + 64];
    const char *file = config_setting_source_file(s);
    char *own = file != NULL ? rd_slurp(rd_file_name(ld, file, name, sizeof(name))) : NULL;
    const char *text = file != NULL ? own : ld->text;
    const char *p = text != NULL ?
        rd_find_value(text, config_setting_name(s), config_setting_source_line(s)) : NULL;
    bool wrapped = p != NULL && rd_literal_wrapped(p, v, lit, lit_len);

    free(own);
    return wrapped;
}

/* ---- applying settings --------------------------------------------------- */

static int rd_apply_int(rd_config_t *cf, const rd_opt_t *opt, const config_setting_t *s,
                        const rd_load_t *ld)
{
    int type = config_setting_type(s);
    char lit[48];

    if (opt->type == RD_OPT_BOOL) {
        if (type != CONFIG_TYPE_BOOL)
            return rd_fail_at(ld, s, "%s must be a boolean", opt->name);
        rd_store_int(cf, opt, config_setting_get_bool(s));
        return 0;
    }
    if (opt->auto_zero && type == CONFIG_TYPE_STRING) {
        if (strcmp(config_setting_get_string(s), "auto") != 0)
            return rd_fail_at(ld, s, "%s must be an integer or \"auto\"", opt->name);
        rd_store_int(cf, opt, 0);
        return 0;
    }
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
        return rd_fail_at(ld, s, "%s must be an integer%s", opt->name,
                          opt->auto_zero ? " or \"auto\"" : "");
    long long v = config_setting_get_int64(s);
    if (rd_int_wrapped(ld, s, v, lit, sizeof(lit)))
        return rd_fail_at(ld, s, "%s = %s is out of range (%lld..%lld)",
                          opt->name, lit, opt->min, opt->max);
    if (v < opt->min || v > opt->max)
        return rd_fail_at(ld, s, "%s = %lld is out of range (%lld..%lld)",
                          opt->name, v, opt->min, opt->max);
    rd_store_int(cf, opt, v);
    return 0;
}

static int rd_apply_text(rd_config_t *cf, const rd_opt_t *opt, const config_setting_t *s,
                         size_t idx, const rd_load_t *ld)
{
    char why[512];
    const char *text = config_setting_get_string(s);
    int rc = opt->type == RD_OPT_TEXT ? rd_store_text(cf, opt, text, why, sizeof(why))
                                      : opt->parse(cf, idx, text, why, sizeof(why));
    char name[PATH_MAX + 64];

    if (rc < 0)
        return rd_fail_at(ld, s, "%s", why);
    if (opt->source != NULL)
        opt->source(cf, idx, rd_file_name(ld, config_setting_source_file(s), name, sizeof(name)),
                    config_setting_source_line(s));
    return 0;
}

/* ---- a command module's settings ---------------------------------------- */

static void rd_source(rd_config_source_t *at, const rd_load_t *ld, const config_setting_t *s)
{
    char name[PATH_MAX + 64];

    rd_source_set(at, rd_file_name(ld, config_setting_source_file(s), name, sizeof(name)),
                  config_setting_source_line(s));
}

static int rd_apply_modsetting(rd_config_t *cf, const char *module, const config_setting_t *e,
                               const rd_load_t *ld)
{
    rd_config_modsetting_t *ms = &cf->modsetting[cf->modsetting_count];
    int type = config_setting_type(e);

    if (cf->modsetting_count >= RD_CONFIG_MAX_MODULE_SETTINGS)
        return rd_fail_at(ld, e, "more than %d module settings", RD_CONFIG_MAX_MODULE_SETTINGS);
    memset(ms, 0, sizeof(*ms));
    snprintf(ms->module, sizeof(ms->module), "%s", module);
    if (strlen(config_setting_name(e)) >= sizeof(ms->name))
        return rd_fail_at(ld, e, "%s: setting name too long", module);
    snprintf(ms->name, sizeof(ms->name), "%s", config_setting_name(e));
    if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
        char lit[48];

        ms->type = RD_MODSETTING_INT;
        ms->integer = config_setting_get_int64(e);
        if (rd_int_wrapped(ld, e, ms->integer, lit, sizeof(lit)))
            return rd_fail_at(ld, e, "%s.%s = %s is out of range (write a 64-bit integer "
                              "with an L)", module, ms->name, lit);
    } else if (type == CONFIG_TYPE_BOOL) {
        ms->type = RD_MODSETTING_BOOL;
        ms->integer = config_setting_get_bool(e);
    } else if (type == CONFIG_TYPE_STRING) {
        ms->type = RD_MODSETTING_STRING;
        if (strlen(config_setting_get_string(e)) >= sizeof(ms->text))
            return rd_fail_at(ld, e, "%s.%s is longer than %zu characters", module, ms->name,
                              sizeof(ms->text) - 1);
        snprintf(ms->text, sizeof(ms->text), "%s", config_setting_get_string(e));
    } else {
        return rd_fail_at(ld, e, "%s.%s must be an integer, a boolean or a string", module,
                          ms->name);
    }
    rd_source(&ms->at, ld, e);
    cf->modsetting_count++;
    return 0;
}

/* `NAME { ... }`: the settings of module NAME, checked against its own
 * table once it is loaded (a module not loaded then is an error too). */
static int rd_apply_modgroup(rd_config_t *cf, const config_setting_t *s, const rd_load_t *ld)
{
    const char *name = config_setting_name(s);
    rd_config_modgroup_t *g = &cf->modgroup[cf->modgroup_count];

    if (cf->modgroup_count >= RD_CONFIG_MAX_MODULES || strlen(name) >= sizeof(g->module))
        return rd_fail_at(ld, s, "too many module groups, or the name '%s' is too long", name);
    snprintf(g->module, sizeof(g->module), "%s", name);
    rd_source(&g->at, ld, s);
    cf->modgroup_count++;
    for (int i = 0; i < config_setting_length(s); i++)
        if (rd_apply_modsetting(cf, name, config_setting_get_elem(s, (unsigned)i), ld) < 0)
            return -1;
    return 0;
}

static int rd_apply_strings(rd_config_t *cf, const rd_opt_t *opt, const config_setting_t *s,
                            const rd_load_t *ld)
{
    const char *want = opt->type == RD_OPT_STRINGS ? "a string or a list of strings" : "a string";

    if (opt->clear != NULL)
        opt->clear(cf);
    if (config_setting_type(s) == CONFIG_TYPE_STRING)
        return rd_apply_text(cf, opt, s, 0, ld);
    if (opt->type != RD_OPT_STRINGS || !(config_setting_is_list(s) || config_setting_is_array(s)))
        return rd_fail_at(ld, s, "%s must be %s", opt->name, want);
    int n = config_setting_length(s);
    if (n < opt->min || n > opt->max)
        return rd_fail_at(ld, s, "%s has %d entries (%lld..%lld allowed)",
                          opt->name, n, opt->min, opt->max);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return rd_fail_at(ld, e, "%s must be %s", opt->name, want);
        if (rd_apply_text(cf, opt, e, (size_t)i, ld) < 0)
            return -1;
    }
    return 0;
}

static const rd_opt_t *rd_opt_find(const char *name)
{
    for (size_t i = 0; i < sizeof(rd_opts) / sizeof(rd_opts[0]); i++)
        if (strcmp(rd_opts[i].name, name) == 0)
            return &rd_opts[i];
    return NULL;
}

bool rd_config_is_setting(const char *name)
{
    return rd_opt_find(name) != NULL;
}

/* Both bound to one port, one of them the wildcard of the other's family
 * or the same address ("[::]" is IPv6 only: rd_listener.c). */
static bool listen_overlap(const rd_listen_addr_t *a, const rd_listen_addr_t *b)
{
    if (a->addr.ss_family != b->addr.ss_family)
        return false;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
        return x->sin_port == y->sin_port
            && (x->sin_addr.s_addr == htonl(INADDR_ANY) || y->sin_addr.s_addr == htonl(INADDR_ANY)
                || x->sin_addr.s_addr == y->sin_addr.s_addr);
    }
    const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
    return x->sin6_port == y->sin6_port
        && (IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr)
            || IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr));
}

/* Once the whole file is read, whatever the order of the settings (or the
 * default listen): a metrics address may not overlap a RAIDA one, whose
 * sockets both take SO_REUSEPORT, so the kernel would bind them together
 * and hand RAIDA requests to the web server, or scrapes to the workers. */
static int rd_check_metrics_listen(const rd_config_t *cf, const config_t *lc,
                                   const rd_load_t *ld)
{
    for (size_t i = 0; i < cf->metrics_listen_count; i++)
        for (size_t j = 0; j < cf->listen_count; j++)
            if (listen_overlap(&cf->metrics_listen[i], &cf->listen[j]))
                return rd_fail_at(ld, config_lookup(lc, "metrics_listen"),
                                  "metrics_listen '%s' overlaps listen '%s' (the same port)",
                                  cf->metrics_listen[i].text, cf->listen[j].text);
    return 0;
}

static int rd_apply_all(rd_config_t *cf, const config_t *lc, const rd_load_t *ld)
{
    const config_setting_t *root = config_root_setting(lc);

    rd_config_defaults(cf);
    snprintf(cf->path, sizeof(cf->path), "%s", ld->name);
    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const rd_opt_t *opt = rd_opt_find(config_setting_name(s));
        int rc;

        if (opt == NULL && config_setting_is_group(s))
            rc = rd_apply_modgroup(cf, s, ld);
        else if (opt == NULL)
            return rd_fail_at(ld, s, "unknown setting '%s'", config_setting_name(s));
        else if (opt->type == RD_OPT_INT || opt->type == RD_OPT_BOOL)
            rc = rd_apply_int(cf, opt, s, ld);
        else
            rc = rd_apply_strings(cf, opt, s, ld);
        if (rc < 0)
            return -1;
    }
    return rd_check_metrics_listen(cf, lc, ld);
}

/* LC made and read from TEXT, its @include files from INCDIR (NULL: the
 * current folder). */
static bool rd_read_text(config_t *lc, const char *text, const char *incdir)
{
    config_init(lc);
    if (incdir != NULL)
        config_set_include_dir(lc, incdir);
    return config_read_string(lc, text) == CONFIG_TRUE;
}

/* Parses into a copy, so that CF only changes when all of it is right. */
static int rd_parse(rd_config_t *cf, const rd_load_t *ld)
{
    config_t lc;
    rd_config_t tmp;
    int rc = -1;

    if (strlen(ld->name) >= sizeof(cf->path))
        return rd_fail(ld, NULL, 0, "the path is too long");
    if (!rd_read_text(&lc, ld->text, ld->incdir))
        rd_fail(ld, config_error_file(&lc), config_error_line(&lc), "%s",
                config_error_text(&lc));
    else
        rc = rd_apply_all(&tmp, &lc, ld);
    config_destroy(&lc);
    if (rc == 0)
        *cf = tmp;
    return rc;
}

/* ---- entry points -------------------------------------------------------- */

/* The folder of PATH into BUF, NULL when PATH has none (the current one). */
static const char *rd_dirname(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return NULL;
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= len)
        return NULL;
    memcpy(buf, path, n);
    buf[n] = '\0';
    return buf;
}

int rd_config_load(rd_config_t *cf, const char *path, char *err, size_t err_len)
{
    char dir[PATH_MAX];
    rd_load_t ld = { .name = path, .err = err, .err_len = err_len };

    if (path == NULL || path[0] == '\0') {
        ld.name = "(none)";
        return rd_fail(&ld, NULL, 0, "no configuration file given");
    }
    /* Read here rather than by config_read_file(), which says "file I/O
     * error" without errno; the text is also needed by rd_int_wrapped(). */
    char *text = rd_slurp(path);
    if (text == NULL)
        return rd_fail(&ld, NULL, 0, "cannot read: %s", strerror(errno));
    ld.text = text;
    ld.incdir = rd_dirname(path, dir, sizeof(dir));
    int rc = rd_parse(cf, &ld);
    free(text);
    return rc;
}

rd_config_t *rd_config_read(const char *path, char *err, size_t err_len)
{
    rd_config_t *cf = malloc(sizeof(*cf));

    if (cf == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    rd_config_defaults(cf);
    if (rd_config_load(cf, path, err, err_len) < 0) {
        free(cf);
        return NULL;
    }
    return cf;
}

rd_config_t *rd_config_read_pid_file(const char *path)
{
    char dir[PATH_MAX];
    char *text = rd_slurp(path);
    rd_config_t *cf = text != NULL ? malloc(sizeof(*cf)) : NULL;
    const char *pid_file = NULL;
    config_t lc;

    if (cf == NULL) {
        free(text);
        return NULL;
    }
    rd_config_defaults(cf);
    bool ok = rd_read_text(&lc, text, rd_dirname(path, dir, sizeof(dir)));
    char why[256];
    /* The default only where the file names none: a pid_file written
     * wrong must not send the signal to the master of another file. */
    if (ok && config_lookup(&lc, "pid_file") != NULL)
        ok = config_lookup_string(&lc, "pid_file", &pid_file) == CONFIG_TRUE
            && rd_store_text(cf, rd_opt_find("pid_file"), pid_file, why, sizeof(why)) == 0;
    config_destroy(&lc);
    free(text);
    if (!ok) {
        free(cf);
        return NULL;
    }
    return cf;
}

int rd_config_parse_string(rd_config_t *cf, const char *text, const char *name,
                           char *err, size_t err_len)
{
    rd_load_t ld = { .name = name != NULL ? name : "(string)", .err = err, .err_len = err_len };
    size_t len = text != NULL ? strlen(text) : 0;
    char *copy = malloc(len + 2);

    if (copy == NULL)
        return rd_fail(&ld, NULL, 0, "out of memory");
    if (len > 0)
        memcpy(copy, text, len);
    ld.text = rd_terminate(copy, len);
    int rc = rd_parse(cf, &ld);
    free(copy);
    return rc;
}

/* ---- the coin store ------------------------------------------------------ */

/* The workers' identity, when the master (root) will become another. */
struct passwd *rd_config_worker_passwd(const rd_config_t *cf)
{
    struct passwd *pw = getpwnam(cf->user);

    if (pw == NULL && strcmp(cf->user, RD_DEFAULT_USER) == 0)
        pw = getpwnam(RD_FALLBACK_USER);
    return pw;
}

static void rd_config_worker_ids(const rd_config_t *cf, uid_t *uid, gid_t *gid)
{
    struct passwd *pw;

    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (cf->user[0] == '\0' || geteuid() != 0 || (pw = rd_config_worker_passwd(cf)) == NULL)
        return;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (cf->group[0] != '\0') {
        struct group *gr = getgrnam(cf->group);

        if (gr != NULL)
            *gid = gr->gr_gid;
    }
}

void rd_config_coins(const rd_config_t *cf, rd_coins_conf_t *out)
{
    /* One request's changes go into the pending table whole (rd_coins.c,
     * txn_append): at least as many as any body can name, 5 bytes a coin
     * in a pown sum, whatever max_body_size a reload brings (the store
     * is sized once, at start). */
    size_t most = ((size_t)1 << (8 * RD_BODY_SIZE_SIZE)) / RD_COIN_REF_SIZE;

    *out = (rd_coins_conf_t){
        .data_dir = cf->data_dir,
        .pending_max = cf->pending_changes > most ? cf->pending_changes : most,
        .journal_max = cf->journal_max_size,
        .checkpoint_interval_ms = cf->checkpoint_interval_ms,
        .page_recheck_ms = cf->page_recheck_ms,
    };
    rd_config_worker_ids(cf, &out->uid, &out->gid);
}
