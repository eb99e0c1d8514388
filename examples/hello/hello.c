/* hello: a raidad command module built out of tree, against the installed
 * <raidad/module.h> only (see docs/modules.md). It serves group 100:
 *
 *   command 0 "greet": answers its greeting followed by the request's
 *                      payload (plain or encrypted, TCP or UDP);
 *
 * and takes one setting from the configuration file:
 *
 *   load_module "/usr/local/lib/raidad/modules/hello.so";
 *   hello = { greeting = "hi"; };   # 1..16 characters, default "hello"
 */
#include <stdio.h>
#include <string.h>

#include <raidad/module.h>

#define HELLO_GROUP 100
#define GREETING_MAX 16     /* shorter than a request's challenge: a UDP answer
                               is never larger than the datagram that asked */

static const raidad_setting_t hello_settings[] = {
    { .name = "greeting", .type = RAIDAD_SETTING_STRING, .def_text = "hello" },
};

/* In the master: refuses a greeting the answer cannot carry. */
static int hello_configure(const raidad_value_t *settings, void **state, char *why,
                           size_t why_len)
{
    size_t n = strlen(settings[0].text);

    (void)state;
    if (n == 0 || n > GREETING_MAX) {
        snprintf(why, why_len, "greeting must be 1..%d characters, not %zu", GREETING_MAX, n);
        return -1;
    }
    return 0;
}

static int hello_greet(const raidad_request_t *req, raidad_response_t *resp)
{
    const char *greeting = req->settings[0].text;
    size_t n = strlen(greeting);
    uint8_t *dst = req->services->append(resp, n + req->payload_len);

    if (dst == NULL)
        return RAIDAD_STATUS_MEMORY_ALLOC;
    memcpy(dst, greeting, n);
    if (req->payload_len > 0)
        memcpy(dst + n, req->payload, req->payload_len);
    req->services->log(req, RAIDAD_LOG_DEBUG, "greeted %zu bytes", req->payload_len);
    return RAIDAD_STATUS_SUCCESS;
}

static const raidad_command_t hello_commands[] = {
    { .command = 0, .name = "greet", .handler = hello_greet, .flags = RAIDAD_CMD_INLINE },
};

static const raidad_group_t hello_groups[] = {
    { .group = HELLO_GROUP, .commands = hello_commands, .count = 1 },
};

const raidad_module_t raidad_module = {
    .abi = RAIDAD_MODULE_ABI,
    .name = "hello",
    .groups = hello_groups,
    .group_count = 1,
    .settings = hello_settings,
    .setting_count = 1,
    .configure = hello_configure,
};
