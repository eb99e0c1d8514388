/* The built-in command modules, in one table (rd_commands.c), and the
 * commands of the default set (the built-in ones only) for those that
 * have no generation: tools, tests, the metrics' names. A generation's
 * own table is rd_module.h's rd_module_set_t. */
#ifndef RD_COMMANDS_H
#define RD_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_frame.h"
#include "rd_module.h"

/* The modules compiled in, in the order their commands are numbered. */
extern const raidad_module_t *const rd_builtin_modules[];
extern const size_t rd_builtin_module_count;

/* The built-in modules themselves (one file each). */
extern const raidad_module_t rd_mod_status;
extern const raidad_module_t rd_mod_auth;

/* A new set holding the built-in modules, which a generation then adds
 * its loaded ones to; NULL when memory is short. */
rd_module_set_t *rd_command_set_create(void);

/* The built-in modules only, built once (tools, tests, and a protocol
 * without a generation's set). */
const rd_module_set_t *rd_module_set_default(void);

bool rd_command_group_known(uint8_t group);
const rd_command_t *rd_command_lookup(uint8_t group, uint8_t command);

/* The built-in commands by position (0 .. rd_command_count() - 1): the
 * metrics keep their counters in a plain array by this index. */
size_t rd_command_count(void);
const rd_command_t *rd_command_at(size_t i);

/* Runs CMD's handler for REQ (validated, decrypted) into RESP, with the
 * worker's crash record naming it meanwhile. Returns the status. */
int rd_command_run(const rd_command_t *cmd, const rd_protocol_t *p, rd_request_t *req,
                   rd_response_t *resp);

#endif
