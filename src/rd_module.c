/* A generation's command modules (include/rd_module.h): checking a
 * module's descriptor, building the (group, command) table from the
 * modules, and the services a handler is given. Loading modules from the
 * configuration is rd_modload.c's; running a handler, rd_commands.c's. */
#include "config.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_crypto.h"
#include "rd_frame.h"
#include "rd_limit.h"
#include "rd_log.h"
#include "rd_module.h"
#include "rd_stats.h"

/* The public header keeps its own names for the statuses a handler
 * returns (it includes nothing of raidad's); they are the protocol's. */
_Static_assert(RAIDAD_STATUS_INVALID_COMMAND == RD_STATUS_INVALID_COMMAND, "status 6");
_Static_assert(RAIDAD_STATUS_INVALID_PACKET_LENGTH == RD_STATUS_INVALID_PACKET_LENGTH,
               "status 16");
_Static_assert(RAIDAD_STATUS_ADMIN_AUTH == RD_STATUS_ADMIN_AUTH, "status 38");
_Static_assert(RAIDAD_STATUS_SUCCESS == RD_STATUS_SUCCESS, "status 250");
_Static_assert(RAIDAD_STATUS_INTERNAL_ERROR == RD_STATUS_INTERNAL_ERROR, "status 252");
_Static_assert(RAIDAD_STATUS_MEMORY_ALLOC == RD_STATUS_MEMORY_ALLOC, "status 254");

/* ---- services -------------------------------------------------------- */

static uint8_t *svc_append(raidad_response_t *resp, size_t n)
{
    return rd_response_append(resp, n);
}

__attribute__((format(printf, 3, 4)))
static void svc_log(const raidad_request_t *req, int level, const char *fmt, ...)
{
    char msg[512], client[INET6_ADDRSTRLEN];
    va_list ap;

    if (level < RD_LOG_EMERG || level > RD_LOG_DEBUG || !rd_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One line per message: a module's text cannot forge another. */
    for (char *c = msg; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7F)
            *c = '?';
    if (req == NULL) {
        rd_log(level, "%s", msg);
        return;
    }
    rd_limit_key_text(req->client, client, sizeof(client));
    rd_log(level, "module %s: %s %u/%u from %s: %s", req->module,
           req->datagram ? "udp" : "tcp", req->group, req->command, client, msg);
}

static void svc_count(const raidad_request_t *req, uint64_t n)
{
    const rd_protocol_t *p = req != NULL ? req->services->protocol : NULL;

    if (p != NULL && p->stats != NULL && req->group < RD_STATS_GROUPS)
        rd_stats_add(&p->stats->by_command[req->group][req->command], n);
}

/* Constant time, so that the answer's timing tells nothing about how much
 * of a guessed key was right. */
static bool svc_admin_key_ok(const raidad_request_t *req, const uint8_t *key, size_t len)
{
    const rd_protocol_t *p = req != NULL ? req->services->protocol : NULL;

    return p != NULL && p->admin_key_set && key != NULL && len == sizeof(p->admin_key)
        && rd_crypto_equal(key, p->admin_key, sizeof(p->admin_key));
}

const raidad_services_t rd_module_services = {
    .abi = RAIDAD_MODULE_ABI,
    .append = svc_append,
    .log = svc_log,
    .count = svc_count,
    .admin_key_ok = svc_admin_key_ok,
};

/* ---- checking a descriptor ---------------------------------------------- */

static bool name_ok(const char *name, size_t max, bool lead_alpha)
{
    size_t n = 0;

    if (name == NULL || name[0] == '\0' || (lead_alpha && (name[0] < 'a' || name[0] > 'z')))
        return false;
    for (; name[n] != '\0'; n++) {
        char ch = name[n];
        if (n >= max || !((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

static int check_group(const raidad_group_t *g, char *why, size_t why_len)
{
    bool seen[256] = { false };

    if (g->commands == NULL || g->count == 0 || g->count > 256) {
        snprintf(why, why_len, "group %u has %zu commands (1..256)", g->group, g->count);
        return -1;
    }
    for (size_t i = 0; i < g->count; i++) {
        const raidad_command_t *c = &g->commands[i];

        if (seen[c->command]) {
            snprintf(why, why_len, "group %u lists command %u twice", g->group, c->command);
            return -1;
        }
        seen[c->command] = true;
        if (c->handler == NULL || !name_ok(c->name, 31, false)) {
            snprintf(why, why_len, "command %u/%u needs a handler and a name of [a-z0-9_], "
                     "up to 31 characters", g->group, c->command);
            return -1;
        }
        if ((c->flags & ~RAIDAD_CMD_FLAGS) != 0) {
            snprintf(why, why_len, "command %u/%u (%s) has unknown flags 0x%x", g->group,
                     c->command, c->name, c->flags & ~RAIDAD_CMD_FLAGS);
            return -1;
        }
        /* Writing means waiting for the disk: never on the I/O thread. */
        if ((c->flags & RAIDAD_CMD_INLINE) && (c->flags & RAIDAD_CMD_WRITES)) {
            snprintf(why, why_len, "command %u/%u (%s) writes data, so it cannot run inline",
                     g->group, c->command, c->name);
            return -1;
        }
    }
    return 0;
}

static int check_settings(const raidad_module_t *d, char *why, size_t why_len)
{
    if (d->setting_count > 0 && d->settings == NULL) {
        snprintf(why, why_len, "module %s counts %zu settings but lists none", d->name,
                 d->setting_count);
        return -1;
    }
    for (size_t i = 0; i < d->setting_count; i++) {
        const raidad_setting_t *s = &d->settings[i];

        if (!name_ok(s->name, 63, true)) {
            snprintf(why, why_len, "module %s: setting %zu needs a name of [a-z0-9_]", d->name, i);
            return -1;
        }
        if (s->type < RAIDAD_SETTING_INT || s->type > RAIDAD_SETTING_STRING
            || (s->type == RAIDAD_SETTING_INT && (s->min > s->max || s->def < s->min
                                                  || s->def > s->max))) {
            snprintf(why, why_len, "module %s: setting %s has a bad type or range", d->name,
                     s->name);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->settings[j].name, s->name) == 0) {
                snprintf(why, why_len, "module %s lists setting %s twice", d->name, s->name);
                return -1;
            }
    }
    return 0;
}

int rd_module_check(const raidad_module_t *d, char *why, size_t why_len)
{
    bool seen[256] = { false };

    if (d->abi != RAIDAD_MODULE_ABI) {
        snprintf(why, why_len, "module ABI %u, but this raidad has ABI %u", d->abi,
                 RAIDAD_MODULE_ABI);
        return -1;
    }
    if (!name_ok(d->name, RD_MODULE_NAME_SIZE - 1, true)) {
        snprintf(why, why_len, "the module name must be [a-z][a-z0-9_]*, up to %d characters",
                 RD_MODULE_NAME_SIZE - 1);
        return -1;
    }
    if (d->group_count == 0 || d->groups == NULL) {
        snprintf(why, why_len, "module %s serves no command group", d->name);
        return -1;
    }
    for (size_t i = 0; i < d->group_count; i++) {
        if (seen[d->groups[i].group]) {
            snprintf(why, why_len, "module %s lists group %u twice", d->name, d->groups[i].group);
            return -1;
        }
        seen[d->groups[i].group] = true;
        if (check_group(&d->groups[i], why, why_len) < 0)
            return -1;
    }
    return check_settings(d, why, why_len);
}

/* ---- the set ------------------------------------------------------------ */

rd_module_t *rd_module_set_find(rd_module_set_t *set, const char *name)
{
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->mods[i].desc->name, name) == 0)
            return &set->mods[i];
    return NULL;
}

static const rd_module_t *group_owner(const rd_module_set_t *set, uint8_t group)
{
    const rd_command_t *t = set->groups[group];

    for (unsigned c = 0; t != NULL && c < 256; c++)
        if (t[c].module != NULL)
            return t[c].module;
    return NULL;
}

static int check_free(const rd_module_set_t *set, const raidad_module_t *d, char *why,
                      size_t why_len)
{
    if (set->count >= RD_MODULE_MAX) {
        snprintf(why, why_len, "more than %d modules", RD_MODULE_MAX);
        return -1;
    }
    if (rd_module_set_find((rd_module_set_t *)set, d->name) != NULL) {
        snprintf(why, why_len, "a module named %s is loaded already", d->name);
        return -1;
    }
    for (size_t i = 0; i < d->group_count; i++) {
        const rd_module_t *owner = group_owner(set, d->groups[i].group);

        if (owner != NULL) {
            snprintf(why, why_len, "module %s serves group %u, which module %s serves already",
                     d->name, d->groups[i].group, owner->desc->name);
            return -1;
        }
    }
    return 0;
}

/* Default values, before the configuration's own. */
static raidad_value_t *default_values(const raidad_module_t *d)
{
    raidad_value_t *v = calloc(d->setting_count + 1, sizeof(*v));

    for (size_t i = 0; v != NULL && i < d->setting_count; i++) {
        const raidad_setting_t *s = &d->settings[i];

        v[i].integer = s->def;
        v[i].text = s->type == RAIDAD_SETTING_STRING && s->def_text != NULL ? s->def_text : "";
    }
    return v;
}

/* Built-in commands are numbered in the order they are added, which is
 * rd_builtin_modules' order in every set: the metrics' index. */
static unsigned builtin_index(const rd_module_set_t *set)
{
    unsigned n = 0;

    for (size_t i = 0; i < set->count; i++)
        for (size_t g = 0; set->mods[i].dl == NULL && g < set->mods[i].desc->group_count; g++)
            n += (unsigned)set->mods[i].desc->groups[g].count;
    return n;
}

static int fill_groups(rd_module_set_t *set, rd_module_t *m, bool builtin, unsigned index)
{
    const raidad_module_t *d = m->desc;

    for (size_t i = 0; i < d->group_count; i++) {
        const raidad_group_t *g = &d->groups[i];
        rd_command_t *t = calloc(256, sizeof(*t));

        if (t == NULL)
            return -1;
        set->groups[g->group] = t;
        for (size_t j = 0; j < g->count; j++) {
            const raidad_command_t *c = &g->commands[j];

            t[c->command] = (rd_command_t){
                .group = g->group, .command = c->command, .name = c->name,
                .handler = c->handler, .flags = c->flags,
                .admin = (c->flags & RAIDAD_CMD_ADMIN) != 0,
                .quick = (c->flags & RAIDAD_CMD_INLINE) != 0,
                .payload = (c->flags & RAIDAD_CMD_PAYLOAD) != 0,
                .module = m, .metrics_index = builtin ? index++ : UINT32_MAX };
        }
        /* A group's unserved commands still name the module: the group is its. */
        for (unsigned c = 0; c < 256; c++)
            t[c].module = m;
    }
    return 0;
}

rd_module_t *rd_module_set_add(rd_module_set_t *set, const raidad_module_t *d, void *dl,
                           char *why, size_t why_len)
{
    rd_module_t *m;
    unsigned index;

    if (rd_module_check(d, why, why_len) < 0 || check_free(set, d, why, why_len) < 0)
        return NULL;
    index = builtin_index(set);
    m = &set->mods[set->count];
    *m = (rd_module_t){ .desc = d, .dl = dl, .config_index = SIZE_MAX,
                        .values = default_values(d) };
    if (m->values == NULL) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    if (fill_groups(set, m, dl == NULL, index) < 0) {
        /* Not in the set, which would read its descriptor after the
         * caller closed it: its groups were free (check_free). */
        for (size_t i = 0; i < d->group_count; i++) {
            free(set->groups[d->groups[i].group]);
            set->groups[d->groups[i].group] = NULL;
        }
        free(m->values);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    set->count++;
    return m;
}

rd_module_set_t *rd_module_set_create(const raidad_module_t *const *builtin, size_t count)
{
    rd_module_set_t *set = calloc(1, sizeof(*set));
    char why[256];

    for (size_t i = 0; set != NULL && i < count; i++)
        if (rd_module_set_add(set, builtin[i], NULL, why, sizeof(why)) == NULL) {
            rd_log(RD_LOG_CRIT, "built-in module %s: %s", builtin[i]->name, why);
            rd_module_set_free(set);
            return NULL;
        }
    return set;
}

void rd_module_set_free(rd_module_set_t *set)
{
    if (set == NULL)
        return;
    for (unsigned g = 0; g < 256; g++)
        free(set->groups[g]);
    for (size_t i = set->count; i-- > 0;) {
        rd_module_t *m = &set->mods[i];

        if (m->configured && m->desc->release != NULL)
            m->desc->release(m->state);
        /* A setting's text is the configuration's own copy (rd_modload.c). */
        for (size_t s = 0; s < m->desc->setting_count; s++)
            if (m->values[s].set && m->desc->settings[s].type == RAIDAD_SETTING_STRING)
                free((char *)m->values[s].text);
        free(m->values);
        if (m->dl != NULL)
            dlclose(m->dl);
    }
    free(set);
}

/* ---- in the worker ------------------------------------------------------ */

int rd_module_set_start(rd_module_set_t *set)
{
    for (size_t i = 0; i < set->count; i++) {
        rd_module_t *m = &set->mods[i];

        if (m->desc->process_start != NULL
            && m->desc->process_start(&rd_module_services, &m->state) < 0) {
            rd_log(RD_LOG_CRIT, "module %s: its process start failed", m->desc->name);
            return -1;
        }
        m->started = true;
    }
    return 0;
}

void rd_module_set_stop(rd_module_set_t *set)
{
    for (size_t i = set->count; i-- > 0;) {
        rd_module_t *m = &set->mods[i];

        if (m->started && m->desc->process_stop != NULL)
            m->desc->process_stop(m->state);
        m->started = false;
    }
}
