/* Loading the command modules a configuration names
 * (include/rd_modload.h). Every refusal names the file and line that
 * caused it: the load_module line for a shared object that cannot be
 * used, the setting for a bad value, the module's group (else its
 * load_module line) for a configure hook that says no. */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_commands.h"
#include "rd_log.h"
#include "rd_modload.h"

__attribute__((format(printf, 4, 5)))
static rd_module_set_t *fail(const rd_config_source_t *at, char *err, size_t err_len,
                         const char *fmt, ...)
{
    va_list ap;
    int n = at->line > 0 ? snprintf(err, err_len, "%s:%d: ", at->file, at->line)
                         : snprintf(err, err_len, "%s: ", at->file);

    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < err_len)
        vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
    va_end(ap);
    return NULL;
}

/* The whole file as a place (cut to the room a place has). */
static rd_config_source_t whole_file(const rd_config_t *cf)
{
    rd_config_source_t at = { .line = 0 };
    size_t n = strnlen(cf->path, sizeof(at.file) - 1);

    memcpy(at.file, cf->path, n);
    at.file[n] = '\0';
    return at;
}

/* A relative path is from the folder of the file that wrote it. */
static void resolve(const rd_config_module_t *lm, char *out, size_t len)
{
    const char *slash = strrchr(lm->at.file, '/');

    if (lm->path[0] == '/' || slash == NULL)
        snprintf(out, len, "%s%s", lm->path[0] == '/' ? "" : "./", lm->path);
    else
        snprintf(out, len, "%.*s/%s", (int)(slash - lm->at.file), lm->at.file, lm->path);
}

/* Only root or the master's own user may change FILE (the module or a
 * folder above it), else anyone who can runs code as the master. A sticky
 * folder (/tmp) may be writable by others: only an entry's owner renames
 * or removes it there. */
static int check_owner(const rd_config_module_t *lm, const char *file, const struct stat *st,
                       char *err, size_t err_len)
{
    bool dir = S_ISDIR(st->st_mode);
    const char *what = dir ? "folder" : "file";

    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        fail(&lm->at, err, err_len, "load_module \"%s\": %s %s owned by uid %lu, not by root: "
             "refused", lm->path, what, file, (unsigned long)st->st_uid);
        return -1;
    }
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0 && !(dir && (st->st_mode & S_ISVTX) != 0)) {
        fail(&lm->at, err, err_len, "load_module \"%s\": %s %s writable by group or others "
             "(mode %03o): refused", lm->path, what, file, (unsigned)(st->st_mode & 0777));
        return -1;
    }
    return 0;
}

/* The master runs the module's code with its own privileges (root,
 * usually): the file and every folder above it must be changeable by no
 * one else (check_owner). REAL gets the file's path with every link
 * resolved, which is what dlopen then loads: no one else can replace it
 * in between. */
static int check_file(const rd_config_module_t *lm, const char *path, char *real,
                      char *err, size_t err_len)
{
    char at[PATH_MAX];
    struct stat st;

    if (realpath(path, real) == NULL) {
        fail(&lm->at, err, err_len, "load_module \"%s\": %s: %s", lm->path, path,
             strerror(errno));
        return -1;
    }
    snprintf(at, sizeof(at), "%s", real);
    for (;;) {
        if (stat(at[0] != '\0' ? at : "/", &st) < 0) {
            fail(&lm->at, err, err_len, "load_module \"%s\": %s: %s", lm->path, at,
                 strerror(errno));
            return -1;
        }
        if (check_owner(lm, at[0] != '\0' ? at : "/", &st, err, err_len) < 0)
            return -1;
        char *slash = strrchr(at, '/');
        if (slash == NULL || at[0] == '\0')
            return 0;
        *slash = '\0';
    }
}

/* The descriptor of the shared object DL, checked: its ABI first, since
 * nothing else of a descriptor of another ABI may be read; then the rest,
 * and that its name is not one of the daemon's settings (its settings
 * group would be read as that setting). */
static const raidad_module_t *descriptor(const rd_config_module_t *lm, void *dl, char *err,
                                         size_t err_len)
{
    const raidad_module_t *desc = dlsym(dl, RAIDAD_MODULE_SYMBOL);
    char why[256];

    if (desc == NULL)
        fail(&lm->at, err, err_len, "load_module \"%s\": no symbol %s: not a raidad module",
             lm->path, RAIDAD_MODULE_SYMBOL);
    else if (desc->abi != RAIDAD_MODULE_ABI)
        fail(&lm->at, err, err_len, "load_module \"%s\": built for module ABI %u, "
             "this raidad has ABI %u", lm->path, desc->abi, RAIDAD_MODULE_ABI);
    else if (rd_module_check(desc, why, sizeof(why)) < 0)
        fail(&lm->at, err, err_len, "load_module \"%s\": %s", lm->path, why);
    else if (rd_config_is_setting(desc->name))
        fail(&lm->at, err, err_len, "load_module \"%s\": module %s has the name of a setting",
             lm->path, desc->name);
    else
        return desc;
    return NULL;
}

static int load_one(rd_module_set_t *set, const rd_config_t *cf, const rd_config_module_t *lm,
                    char *err, size_t err_len)
{
    char path[PATH_MAX + RD_CONFIG_SOURCE_SIZE], real[PATH_MAX], why[256];
    const raidad_module_t *desc;
    rd_module_t *m;
    void *dl;

    resolve(lm, path, sizeof(path));
    if (check_file(lm, path, real, err, err_len) < 0)
        return -1;
    dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fail(&lm->at, err, err_len, "load_module \"%s\": %s", lm->path, dlerror());
        return -1;
    }
    if ((desc = descriptor(lm, dl, err, err_len)) == NULL
        || (m = rd_module_set_add(set, desc, dl, why, sizeof(why))) == NULL) {
        if (desc != NULL)
            fail(&lm->at, err, err_len, "load_module \"%s\": %s", lm->path, why);
        dlclose(dl);
        return -1;
    }
    m->config_index = (size_t)(lm - cf->load_module);
    return 0;
}

static const raidad_setting_t *setting_find(const raidad_module_t *d, const char *name,
                                            size_t *idx)
{
    for (size_t i = 0; i < d->setting_count; i++)
        if (strcmp(d->settings[i].name, name) == 0) {
            *idx = i;
            return &d->settings[i];
        }
    return NULL;
}

static const char *const type_names[] = { "", "an integer", "a boolean", "a string" };

static int apply_setting(rd_module_set_t *set, const rd_config_modsetting_t *ms, char *err,
                         size_t err_len)
{
    static const int want[] = { RAIDAD_SETTING_INT, RAIDAD_SETTING_BOOL, RAIDAD_SETTING_STRING };
    rd_module_t *m = rd_module_set_find(set, ms->module);
    const raidad_setting_t *s;
    raidad_value_t *v;
    size_t idx = 0;

    if (m == NULL || (s = setting_find(m->desc, ms->name, &idx)) == NULL) {
        fail(&ms->at, err, err_len, "module %s has no setting '%s'", ms->module, ms->name);
        return -1;
    }
    if (want[ms->type] != s->type) {
        fail(&ms->at, err, err_len, "%s.%s must be %s", ms->module, ms->name,
             type_names[s->type]);
        return -1;
    }
    if (s->type == RAIDAD_SETTING_INT && (ms->integer < s->min || ms->integer > s->max)) {
        fail(&ms->at, err, err_len, "%s.%s = %lld is out of range (%lld..%lld)", ms->module,
             ms->name, ms->integer, s->min, s->max);
        return -1;
    }
    v = &m->values[idx];
    if (v->set) {
        fail(&ms->at, err, err_len, "%s.%s is given twice", ms->module, ms->name);
        return -1;
    }
    v->integer = ms->integer;
    if (s->type == RAIDAD_SETTING_STRING && (v->text = strdup(ms->text)) == NULL) {
        fail(&ms->at, err, err_len, "out of memory");
        return -1;
    }
    v->set = true;
    return 0;
}

/* Where a module's configure hook is said to have refused: its group,
 * else its load_module line, else the file. */
static rd_config_source_t module_place(const rd_config_t *cf, const rd_module_t *m)
{
    for (size_t i = 0; i < cf->modgroup_count; i++)
        if (strcmp(cf->modgroup[i].module, m->desc->name) == 0)
            return cf->modgroup[i].at;
    if (m->config_index < cf->load_module_count)
        return cf->load_module[m->config_index].at;
    return whole_file(cf);
}

static int configure_all(const rd_config_t *cf, rd_module_set_t *set, char *err, size_t err_len)
{
    for (size_t i = 0; i < set->count; i++) {
        rd_module_t *m = &set->mods[i];
        char why[256] = "";

        if (m->desc->configure == NULL)
            continue;
        if (m->desc->configure(m->values, &m->state, why, sizeof(why)) < 0) {
            rd_config_source_t at = module_place(cf, m);

            fail(&at, err, err_len, "module %s refused its settings: %s", m->desc->name,
                 why[0] != '\0' ? why : "(no reason given)");
            return -1;
        }
        m->configured = true;
    }
    return 0;
}

rd_module_set_t *rd_modload_modules(const rd_config_t *cf, char *err, size_t err_len)
{
    rd_module_set_t *set = rd_command_set_create();
    rd_config_source_t at = whole_file(cf);

    if (set == NULL)
        return fail(&at, err, err_len, "out of memory");
    for (size_t i = 0; i < cf->load_module_count; i++)
        if (load_one(set, cf, &cf->load_module[i], err, err_len) < 0)
            goto refused;
    for (size_t i = 0; i < cf->modgroup_count; i++)
        if (rd_module_set_find(set, cf->modgroup[i].module) == NULL) {
            fail(&cf->modgroup[i].at, err, err_len, "unknown setting '%s' (no module of "
                 "that name is loaded)", cf->modgroup[i].module);
            goto refused;
        }
    for (size_t i = 0; i < cf->modsetting_count; i++)
        if (apply_setting(set, &cf->modsetting[i], err, err_len) < 0)
            goto refused;
    if (configure_all(cf, set, err, err_len) < 0)
        goto refused;
    return set;
refused:
    rd_module_set_free(set);
    return NULL;
}
