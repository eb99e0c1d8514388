/* The command modules of one configuration generation (nginx's modules):
 * the built-in ones (rd_commands.c's table) and those loaded with
 * load_module, checked, and turned into a table from (group, command) to
 * a command, looked up in O(1). The network layer and the protocol never
 * name a command; they find it here. The public side of the interface is
 * include/raidad/module.h; docs/modules.md is the guide. This file knows
 * modules in general: which ones are built in, and running a command, is
 * rd_commands.h's. */
#ifndef RD_MODULE_H
#define RD_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raidad/module.h"

#define RD_MODULE_MAX 32            /* modules per generation, built-in ones included */
#define RD_MODULE_NAME_SIZE 32

typedef struct rd_module rd_module_t;

/* One command as the dispatcher sees it. */
typedef struct rd_command {
    uint8_t group;
    uint8_t command;
    const char *name;
    raidad_handler_fn handler;      /* NULL: no such command */
    unsigned flags;                 /* RAIDAD_CMD_* */
    bool admin;                     /* RAIDAD_CMD_ADMIN */
    bool quick;                     /* RAIDAD_CMD_INLINE */
    bool payload;                   /* RAIDAD_CMD_PAYLOAD */
    const rd_module_t *module;
    unsigned metrics_index;         /* built-in commands: their place (rd_command_at) */
} rd_command_t;

struct rd_module {
    const raidad_module_t *desc;
    void *dl;                       /* dlopen handle; NULL: built in */
    size_t config_index;            /* its load_module entry; SIZE_MAX: built in */
    raidad_value_t *values;         /* desc->setting_count values */
    void *state;                    /* configure's, then process_start's */
    bool configured;
    bool started;
};

typedef struct rd_module_set {
    rd_command_t *groups[256];      /* 256 commands each, or NULL: group not served */
    rd_module_t mods[RD_MODULE_MAX];
    size_t count;
} rd_module_set_t;

/* A set holding the COUNT modules of BUILTIN (compiled in: never closed);
 * NULL when memory is short or one of them is refused.
 * rd_command_set_create (rd_commands.h) passes the daemon's own. */
rd_module_set_t *rd_module_set_create(const raidad_module_t *const *builtin, size_t count);
/* Calls the configured modules' release hooks, closes the shared objects. */
void rd_module_set_free(rd_module_set_t *set);

/* Checks a descriptor on its own: ABI, name, groups, commands, flags,
 * settings. Returns 0, or -1 with a sentence in WHY. */
int rd_module_check(const raidad_module_t *desc, char *why, size_t why_len);

/* Checks DESC and adds it to SET (DL, its handle, is then the set's to
 * close): refused when it is malformed, when its name is taken or when one
 * of its groups is served already. Returns the module or NULL with WHY. */
rd_module_t *rd_module_set_add(rd_module_set_t *set, const raidad_module_t *desc, void *dl,
                           char *why, size_t why_len);

rd_module_t *rd_module_set_find(rd_module_set_t *set, const char *name);

/* The worker: process start and stop hooks of every module. */
int rd_module_set_start(rd_module_set_t *set);
void rd_module_set_stop(rd_module_set_t *set);

static inline const rd_command_t *rd_module_set_lookup(const rd_module_set_t *set, uint8_t group,
                                                   uint8_t command)
{
    const rd_command_t *g = set->groups[group];

    return g != NULL && g[command].handler != NULL ? &g[command] : NULL;
}

static inline bool rd_module_set_group_known(const rd_module_set_t *set, uint8_t group)
{
    return set->groups[group] != NULL;
}

/* The services handed to handlers and hooks (the protocol pointer aside). */
extern const raidad_services_t rd_module_services;

#endif
