/* The built-in command modules, listed in one table: adding a group is
 * one file with its raidad_module_t (like rd_mod_status.c) and one line
 * here (docs/modules.md, "A built-in group"). The default set built from
 * them serves whoever has no generation of its own: the tools, the unit
 * tests and fuzz targets, and a protocol set up without one. Running a
 * command's handler, with the worker's crash record naming it, is here
 * too: the protocol calls down into this file, never the reverse. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>

#include "rd_commands.h"
#include "rd_crashrec.h"

const raidad_module_t *const rd_builtin_modules[] = {
    &rd_mod_status,
    &rd_mod_auth,
};

const size_t rd_builtin_module_count = sizeof(rd_builtin_modules) / sizeof(rd_builtin_modules[0]);

static struct {
    pthread_once_t once;
    rd_module_set_t *set;
    const rd_command_t *by_index[256];
    size_t count;
} builtin = { .once = PTHREAD_ONCE_INIT };

/* Built-in descriptors are checked by the unit tests, so a failure here
 * is memory only; the process cannot serve without its commands. */
static void builtin_build(void)
{
    builtin.set = rd_command_set_create();
    if (builtin.set == NULL)
        abort();
    for (unsigned g = 0; g < 256; g++) {
        const rd_command_t *t = builtin.set->groups[g];

        for (unsigned c = 0; t != NULL && c < 256; c++)
            if (t[c].handler != NULL && t[c].module->dl == NULL
                && t[c].metrics_index < sizeof(builtin.by_index) / sizeof(builtin.by_index[0])) {
                builtin.by_index[t[c].metrics_index] = &t[c];
                builtin.count++;
            }
    }
}

rd_module_set_t *rd_command_set_create(void)
{
    return rd_module_set_create(rd_builtin_modules, rd_builtin_module_count);
}

const rd_module_set_t *rd_module_set_default(void)
{
    pthread_once(&builtin.once, builtin_build);
    return builtin.set;
}

bool rd_command_group_known(uint8_t group)
{
    return rd_module_set_group_known(rd_module_set_default(), group);
}

const rd_command_t *rd_command_lookup(uint8_t group, uint8_t command)
{
    return rd_module_set_lookup(rd_module_set_default(), group, command);
}

size_t rd_command_count(void)
{
    rd_module_set_default();
    return builtin.count;
}

const rd_command_t *rd_command_at(size_t i)
{
    rd_module_set_default();
    return i < builtin.count ? builtin.by_index[i] : NULL;
}

int rd_command_run(const rd_command_t *cmd, const rd_protocol_t *p, rd_request_t *req,
                   rd_response_t *resp)
{
    raidad_services_t svc = rd_module_services;
    const rd_module_t *m = cmd->module;
    raidad_request_t view = {
        .group = req->group, .command = req->command, .enc_type = req->enc_type,
        .payload = req->payload, .payload_len = req->payload_len,
        .client = req->client, .datagram = req->datagram, .authenticated = req->authenticated,
        .services = &svc, .settings = m->values, .state = m->state, .module = m->desc->name,
        .daemon_request = req,
    };
    int status;

    svc.protocol = p;
    svc.coins = p->coins;
    rd_crashrec_enter(m->desc->name, req->group, req->command);
    status = cmd->handler(&view, resp);
    rd_crashrec_leave();
    return status;
}
