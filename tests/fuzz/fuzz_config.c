/* Fuzz target: configuration text through rd_config_parse_string.
 *
 * On failure the message must name the file ("fuzz.conf:LINE: ..." or
 * "fuzz.conf: ...") and the configuration must be left as it was; on
 * success every setting must be within the bounds of the table in
 * rd_config.c. Inputs with @include are skipped: they read files named by
 * the input (/dev/zero, /dev/stdin...), which is the operator's business,
 * not a parser bug.
 *
 * libconfig 1.5 leaks on some malformed input (a stray string): that leak
 * is suppressed, in lsan.supp for run.sh and below for a crash input run by
 * hand. */
#include "config.h"

#include <ctype.h>

#include "fuzz_common.h"
#include "rd_config.h"
#include "rd_log.h"

#define NAME "fuzz.conf"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

/* "NAME:LINE: what" with LINE > 0, or "NAME: what". */
static bool message_ok(const char *err)
{
    size_t n = strlen(NAME);

    if (strncmp(err, NAME, n) != 0)
        return false;
    const char *s = err + n;
    if (s[0] == ':' && s[1] == ' ')
        return s[2] != '\0';
    if (s[0] != ':' || !isdigit((unsigned char)s[1]) || s[1] == '0')
        return false;
    s++;
    while (isdigit((unsigned char)*s))
        s++;
    return s[0] == ':' && s[1] == ' ' && s[2] != '\0';
}

static void check_config(const rd_config_t *cf)
{
    FUZZ_CHECK(strcmp(cf->path, NAME) == 0);
    FUZZ_CHECK(cf->listen_count >= 1 && cf->listen_count <= RD_CONFIG_MAX_LISTEN);
    for (size_t i = 0; i < cf->listen_count; i++) {
        const rd_listen_addr_t *a = &cf->listen[i];
        FUZZ_CHECK(memchr(a->text, '\0', sizeof(a->text)) != NULL && a->text[0] != '\0');
        FUZZ_CHECK(a->addr.ss_family == AF_INET || a->addr.ss_family == AF_INET6);
        FUZZ_CHECK(a->addr_len == (a->addr.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                               : sizeof(struct sockaddr_in6)));
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(cf->listen[j].text, a->text) != 0);
    }
    FUZZ_CHECK(cf->raida_id <= 24 && cf->coin_id <= 65535);
    FUZZ_CHECK(cf->worker_threads >= 1 && cf->worker_threads <= 256);
    FUZZ_CHECK(cf->epoll_timeout_ms >= 1 && cf->epoll_timeout_ms <= 3600000);
    FUZZ_CHECK(cf->events_per_wait >= 1 && cf->events_per_wait <= 1000000);
    FUZZ_CHECK(cf->max_descriptors >= 64 && cf->max_descriptors <= 1048576);
    FUZZ_CHECK(cf->max_body_size >= 18 && cf->max_body_size <= 1048576);
    FUZZ_CHECK(cf->socket_timeout_ms >= 10 && cf->socket_timeout_ms <= 3600000);
    FUZZ_CHECK(cf->mod_queue_size >= 1 && cf->mod_queue_size <= 1048576);
    FUZZ_CHECK(cf->keepalive_idle >= 1 && cf->keepalive_idle <= 32767);
    FUZZ_CHECK(cf->keepalive_interval >= 1 && cf->keepalive_interval <= 32767);
    FUZZ_CHECK(cf->keepalive_count >= 1 && cf->keepalive_count <= 127);
    FUZZ_CHECK(cf->udp_payload_threshold >= 32 && cf->udp_payload_threshold <= 65507);
    FUZZ_CHECK(cf->log_level >= RD_LOG_EMERG && cf->log_level <= RD_LOG_DEBUG);
    FUZZ_CHECK(cf->worker_processes <= 64);
    FUZZ_CHECK(cf->shutdown_timeout_ms <= 3600000);
    FUZZ_CHECK(cf->max_old_generations >= 1 && cf->max_old_generations <= 64);
    FUZZ_CHECK(memchr(cf->pid_file, '\0', sizeof(cf->pid_file)) != NULL);
    FUZZ_CHECK(memchr(cf->error_log, '\0', sizeof(cf->error_log)) != NULL);
    FUZZ_CHECK(memchr(cf->user, '\0', sizeof(cf->user)) != NULL);
    FUZZ_CHECK(memchr(cf->group, '\0', sizeof(cf->group)) != NULL);
    FUZZ_CHECK(cf->admin_allow_count <= RD_CONFIG_MAX_ADMIN_ALLOW);
    for (size_t i = 0; i < cf->admin_allow_count; i++)
        FUZZ_CHECK(cf->admin_allow[i].prefix <= 128);
    /* What module loading reads later (rd_modload.c): bounded strings. */
    FUZZ_CHECK(cf->load_module_count <= RD_CONFIG_MAX_MODULES);
    for (size_t i = 0; i < cf->load_module_count; i++)
        FUZZ_CHECK(memchr(cf->load_module[i].path, '\0', sizeof(cf->load_module[i].path)) != NULL
                   && cf->load_module[i].path[0] != '\0');
    FUZZ_CHECK(cf->modgroup_count <= RD_CONFIG_MAX_MODULES);
    FUZZ_CHECK(cf->modsetting_count <= RD_CONFIG_MAX_MODULE_SETTINGS);
    for (size_t i = 0; i < cf->modsetting_count; i++) {
        const rd_config_modsetting_t *ms = &cf->modsetting[i];
        FUZZ_CHECK(ms->type >= RD_MODSETTING_INT && ms->type <= RD_MODSETTING_STRING);
        FUZZ_CHECK(memchr(ms->module, '\0', sizeof(ms->module)) != NULL
                   && memchr(ms->name, '\0', sizeof(ms->name)) != NULL
                   && memchr(ms->text, '\0', sizeof(ms->text)) != NULL
                   && memchr(ms->at.file, '\0', sizeof(ms->at.file)) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rd_config_t cf, before;
    char err[512];

    if (size > 64 * 1024)
        return -1;
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    if (strstr(text, "@include") != NULL) {
        free(text);
        return -1;
    }

    /* Whatever was there must survive a failure: a pattern, then compare. */
    memset(&cf, 0x5A, sizeof(cf));
    before = cf;
    memset(err, 0, sizeof(err));
    int rc = rd_config_parse_string(&cf, text, NAME, err, sizeof(err));
    if (rc == 0) {
        check_config(&cf);
    } else {
        FUZZ_CHECK(rc == -1);
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        if (!message_ok(err)) {
            fprintf(stderr, "bad error message: \"%s\"\n", err);
            abort();
        }
        FUZZ_CHECK(memcmp(&cf, &before, sizeof(cf)) == 0);
    }
    free(text);
    return 0;
}
