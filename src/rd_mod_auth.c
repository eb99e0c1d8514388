/* The authentication group (group 1: detect, detect sum, pown, pown sum)
 * as a built-in module. The commands themselves live in src/rd_auth.c,
 * over the coin store; this file only declares them to the dispatcher:
 * none runs inline (they take the store's locks and may wait for a page),
 * each needs a payload, and the powns write. */
#include "config.h"

#include "rd_auth.h"
#include "rd_commands.h"

typedef int auth_fn(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp);

static int run(auth_fn *fn, const raidad_request_t *req, rd_response_t *resp)
{
    return fn(req->services->protocol, req->daemon_request, resp);
}

static int cmd_detect(const raidad_request_t *req, rd_response_t *resp)
{
    return run(rd_auth_detect, req, resp);
}

static int cmd_detect_sum(const raidad_request_t *req, rd_response_t *resp)
{
    return run(rd_auth_detect_sum, req, resp);
}

static int cmd_pown(const raidad_request_t *req, rd_response_t *resp)
{
    return run(rd_auth_pown, req, resp);
}

static int cmd_pown_sum(const raidad_request_t *req, rd_response_t *resp)
{
    return run(rd_auth_pown_sum, req, resp);
}

static const raidad_command_t auth_commands[] = {
    { RD_CMD_DETECT,     "detect",     cmd_detect,     RAIDAD_CMD_PAYLOAD },
    { RD_CMD_DETECT_SUM, "detect_sum", cmd_detect_sum, RAIDAD_CMD_PAYLOAD },
    { RD_CMD_POWN,       "pown",       cmd_pown,       RAIDAD_CMD_PAYLOAD | RAIDAD_CMD_WRITES },
    { RD_CMD_POWN_SUM,   "pown_sum",   cmd_pown_sum,   RAIDAD_CMD_PAYLOAD | RAIDAD_CMD_WRITES },
};

static const raidad_group_t auth_groups[] = {
    { RD_GROUP_AUTH, auth_commands, sizeof(auth_commands) / sizeof(auth_commands[0]) },
};

const raidad_module_t rd_mod_auth = {
    .abi = RAIDAD_MODULE_ABI,
    .name = "auth",
    .groups = auth_groups,
    .group_count = 1,
};
