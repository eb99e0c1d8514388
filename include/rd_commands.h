/* The command handlers, found by (group, command). Adding a command is one
 * line in the table of rd_commands.c. */
#ifndef RD_COMMANDS_H
#define RD_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_protocol.h"

/* Appends the response payload to RESP (and may set req->commit_lsn); returns the status to answer
 * (RD_STATUS_SUCCESS, or an error status with no payload). */
typedef int (*rd_command_handler)(const rd_protocol_t *p, rd_request_t *req,
                                  rd_response_t *resp);

typedef struct rd_command {
    uint8_t group;
    uint8_t command;
    const char *name;
    rd_command_handler handler;
    bool admin;                 /* succeeds only with the admin key */
    bool quick;                 /* cheaper than a hand-off to the pool */
    bool payload;               /* needs one: a header-only request answers 36 */
} rd_command_t;

bool rd_command_group_known(uint8_t group);
const rd_command_t *rd_command_lookup(uint8_t group, uint8_t command);

/* The commands by position in the table (0 .. rd_command_count() - 1). */
size_t rd_command_count(void);
const rd_command_t *rd_command_at(size_t i);

#endif
