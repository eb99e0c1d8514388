/* The command module of the tests (tests/integration/test_modules.py,
 * tests/unit/test_module.c), built by Makefile.am as check-only shared
 * objects: libtestmod.so, and libtestmod_abi.so, the same built for
 * another ABI (TESTMOD_ABI). It uses only <raidad/module.h>, as a module
 * built out of tree would. Group 201:
 *
 *   0 "ping"    its tag byte (setting `tag`), then the request's payload
 *   1 "crash"   writes through a null pointer: its worker dies
 *   2 "started" 1 when this worker's process_start hook ran, else 0
 *   3 "client"  the request's client address (16 bytes), on the pool
 *   4 "client_inline" the same, answered on the I/O thread
 *
 * Setting `refuse = true;` makes its configure hook refuse. */
#include <stdio.h>
#include <string.h>

#include "raidad/module.h"

#ifndef TESTMOD_ABI
#define TESTMOD_ABI RAIDAD_MODULE_ABI
#endif

static const raidad_setting_t testmod_settings[] = {
    { .name = "tag", .type = RAIDAD_SETTING_INT, .def = 7, .min = 0, .max = 255 },
    { .name = "refuse", .type = RAIDAD_SETTING_BOOL, .def = 0 },
    { .name = "label", .type = RAIDAD_SETTING_STRING, .def_text = "test" },
};

static int started_marker;

static int testmod_configure(const raidad_value_t *settings, void **state, char *why,
                             size_t why_len)
{
    (void)state;
    if (settings[1].integer) {
        snprintf(why, why_len, "refuse = true (label %s)", settings[2].text);
        return -1;
    }
    return 0;
}

static int testmod_start(const raidad_services_t *services, void **state)
{
    (void)services;
    *state = &started_marker;
    return 0;
}

static int testmod_ping(const raidad_request_t *req, raidad_response_t *resp)
{
    uint8_t *dst = req->services->append(resp, 1 + req->payload_len);

    if (dst == NULL)
        return RAIDAD_STATUS_MEMORY_ALLOC;
    dst[0] = (uint8_t)req->settings[0].integer;
    if (req->payload_len > 0)
        memcpy(dst + 1, req->payload, req->payload_len);
    return RAIDAD_STATUS_SUCCESS;
}

static int testmod_crash(const raidad_request_t *req, raidad_response_t *resp)
{
    volatile int *nowhere = NULL;

    (void)resp;
    req->services->log(req, RAIDAD_LOG_NOTICE, "about to crash");
    /* cppcheck-suppress nullPointer ; the crash is the command */
    *nowhere = 1;
    return RAIDAD_STATUS_SUCCESS;
}

static int testmod_started(const raidad_request_t *req, raidad_response_t *resp)
{
    uint8_t *dst = req->services->append(resp, 1);

    if (dst == NULL)
        return RAIDAD_STATUS_MEMORY_ALLOC;
    dst[0] = req->state == &started_marker;
    return RAIDAD_STATUS_SUCCESS;
}

static int testmod_client(const raidad_request_t *req, raidad_response_t *resp)
{
    uint8_t *dst = req->services->append(resp, 16);

    if (dst == NULL)
        return RAIDAD_STATUS_MEMORY_ALLOC;
    memcpy(dst, req->client, 16);
    return RAIDAD_STATUS_SUCCESS;
}

static const raidad_command_t testmod_commands[] = {
    { .command = 0, .name = "ping", .handler = testmod_ping, .flags = RAIDAD_CMD_INLINE },
    { .command = 1, .name = "crash", .handler = testmod_crash },
    { .command = 2, .name = "started", .handler = testmod_started },
    { .command = 3, .name = "client", .handler = testmod_client },
    { .command = 4, .name = "client_inline", .handler = testmod_client,
      .flags = RAIDAD_CMD_INLINE },
};

static const raidad_group_t testmod_groups[] = {
    { .group = 201, .commands = testmod_commands, .count = 5 },
};

const raidad_module_t raidad_module = {
    .abi = TESTMOD_ABI,
    .name = "testmod",
    .groups = testmod_groups,
    .group_count = 1,
    .settings = testmod_settings,
    .setting_count = 3,
    .configure = testmod_configure,
    .process_start = testmod_start,
};
