/* raidad command modules: the one interface through which every RAIDA
 * command group reaches the daemon, whether compiled into raidad (the
 * status group) or loaded at run time with `load_module "PATH";`.
 *
 * This header is installed under $(includedir)/raidad/ and is all a module
 * needs: it uses no other raidad header and no library. A module sees the
 * request it serves (group, command, payload, who sent it and how) and
 * builds its answer (a status and a payload appended to the daemon's own
 * bounded buffer); it never sees a socket, the event loop or a connection.
 * docs/modules.md is the guide, examples/hello/ a module built out of tree.
 *
 * A shared object exports one symbol, RAIDAD_MODULE_SYMBOL, of type
 * raidad_module_t; the daemon reads its abi field first and refuses the
 * configuration (FILE:LINE of the load_module line) when it is not
 * RAIDAD_MODULE_ABI. */
#ifndef RAIDAD_MODULE_H
#define RAIDAD_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Raised whenever a structure below changes in a way an old module would
 * misread; a module built against another ABI is refused at load. */
#define RAIDAD_MODULE_ABI 1u
#define RAIDAD_MODULE_SYMBOL "raidad_module"

/* Status codes a handler may return (the RAIDA protocol's; raidad's
 * docs/protocol.md lists them all, and its own names are checked equal to
 * these when raidad is built): a handler returns RAIDAD_STATUS_SUCCESS, a group's
 * own verdict, or an error with no payload. */
#define RAIDAD_STATUS_INVALID_COMMAND 6
#define RAIDAD_STATUS_INVALID_PACKET_LENGTH 16
#define RAIDAD_STATUS_ADMIN_AUTH 38
#define RAIDAD_STATUS_SUCCESS 250
#define RAIDAD_STATUS_INTERNAL_ERROR 252
#define RAIDAD_STATUS_MEMORY_ALLOC 254

/* Log levels of raidad_services_t.log (syslog's numbers). */
#define RAIDAD_LOG_ERR 3
#define RAIDAD_LOG_WARN 4
#define RAIDAD_LOG_NOTICE 5
#define RAIDAD_LOG_INFO 6
#define RAIDAD_LOG_DEBUG 7

/* Per command flags. */
#define RAIDAD_CMD_ADMIN   0x1u  /* succeeds only for a request that carries the admin key
                                    (the daemon checks the channel; the handler the key) */
#define RAIDAD_CMD_INLINE  0x2u  /* never blocks: may run on the I/O thread when plain */
#define RAIDAD_CMD_WRITES  0x4u  /* changes stored data */
#define RAIDAD_CMD_PAYLOAD 0x8u  /* needs a payload: a header-only request answers 36 */
#define RAIDAD_CMD_FLAGS   0xFu  /* every flag this ABI knows */

/* The daemon's response buffer; opaque, grown only through
 * raidad_services_t.append. */
typedef struct rd_response raidad_response_t;

struct rd_protocol;
struct rd_request;

typedef struct raidad_request raidad_request_t;

/* What the daemon offers a module: the same for every request of a worker. */
typedef struct raidad_services {
    uint32_t abi;
    /* Room for N more payload bytes at the end of RESP, or NULL when the
     * buffer cannot grow (answer RAIDAD_STATUS_MEMORY_ALLOC then). */
    uint8_t *(*append)(raidad_response_t *resp, size_t n);
    /* A log line prefixed with the module, the command and the client of
     * REQ (REQ may be NULL outside a request). */
    void (*log)(const raidad_request_t *req, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* Adds N to the shared per-command counter of REQ's group and command
     * (the one the stats command reports): for a command that stands for
     * several operations, e.g. one per coin of a batch. */
    void (*count)(const raidad_request_t *req, uint64_t n);
    /* True when KEY (LEN bytes, from REQ's payload) is the configured admin
     * key; compared in constant time. An admin command's handler checks
     * its key with it (the daemon has checked the channel already). */
    bool (*admin_key_ok)(const raidad_request_t *req, const uint8_t *key, size_t len);
    /* The coin store (src/rd_coins.h; opaque out of tree); NULL: none. */
    void *coins;
    /* Built-in modules only (the daemon's own rd_protocol_t, opaque to
     * modules built out of tree). */
    const struct rd_protocol *protocol;
} raidad_services_t;

/* One value of a module's settings (see raidad_setting_t), after the
 * daemon checked its type and range. */
typedef struct raidad_value {
    bool set;                   /* written in the file; false: the default */
    long long integer;          /* RAIDAD_SETTING_INT and _BOOL */
    const char *text;           /* RAIDAD_SETTING_STRING; never NULL */
} raidad_value_t;

/* The request a handler serves. Valid during the call only. */
struct raidad_request {
    uint8_t group;
    uint8_t command;
    uint8_t enc_type;           /* 0 plain, 1 AES-128-CTR with a coin key, 4, 5 */
    const uint8_t *payload;     /* decrypted, without challenge and trailer */
    size_t payload_len;
    const uint8_t *client;      /* 16 bytes: IPv6, or IPv4 mapped (::ffff:a.b.c.d) */
    bool datagram;              /* came over UDP; false: TCP */
    bool authenticated;         /* the sender proved a key (an encrypted request opened) */
    const raidad_services_t *services;
    const raidad_value_t *settings; /* in the order of the module's settings table */
    void *state;                /* what process_start (else configure) left */
    const char *module;         /* the module's name */
    /* Built-in modules only: the daemon's own request, whose fields a
     * built-in handler may set for the network layer (e.g. a journal
     * commit its answer must wait for). Opaque to modules out of tree. */
    struct rd_request *daemon_request;
};

/* Builds the answer to REQ: appends its payload through
 * req->services->append(resp, n) and returns a status. A handler may run on
 * any thread of a worker, concurrently with itself. */
typedef int (*raidad_handler_fn)(const raidad_request_t *req, raidad_response_t *resp);

typedef struct raidad_command {
    uint8_t command;
    const char *name;           /* for logs and metrics: [a-z0-9_]+ */
    raidad_handler_fn handler;
    unsigned flags;             /* RAIDAD_CMD_* */
} raidad_command_t;

typedef struct raidad_group {
    uint8_t group;
    const raidad_command_t *commands;
    size_t count;
} raidad_group_t;

enum raidad_setting_type {
    RAIDAD_SETTING_INT = 1,
    RAIDAD_SETTING_BOOL,
    RAIDAD_SETTING_STRING,
};

/* One setting of the module's group in the configuration file
 * (`NAME { setting = value; }`, NAME the module's name). */
typedef struct raidad_setting {
    const char *name;
    int type;                   /* enum raidad_setting_type */
    long long def, min, max;    /* INT: default and bounds; BOOL: default */
    const char *def_text;       /* STRING: default (NULL: "") */
} raidad_setting_t;

/* The descriptor a module exports as RAIDAD_MODULE_SYMBOL. */
typedef struct raidad_module {
    uint32_t abi;               /* RAIDAD_MODULE_ABI */
    const char *name;           /* [a-z][a-z0-9_]*, at most 31 characters */
    const raidad_group_t *groups;
    size_t group_count;
    const raidad_setting_t *settings;
    size_t setting_count;
    /* In the master, at start, at -t and at each reload, with this
     * generation's settings: returns 0, or -1 with a sentence in WHY to
     * refuse the configuration. *STATE (NULL before) is handed to the
     * workers of the generation. Optional. */
    int (*configure)(const raidad_value_t *settings, void **state, char *why, size_t why_len);
    /* In the master, when the generation configured is dropped. Optional. */
    void (*release)(void *state);
    /* In each worker, after privileges were dropped and before its system
     * call filter is loaded (open files here): may replace *STATE for this
     * process; -1 stops the worker. Optional. */
    int (*process_start)(const raidad_services_t *services, void **state);
    /* In each worker as it exits. Optional. */
    void (*process_stop)(void *state);
} raidad_module_t;

#ifdef __cplusplus
}
#endif

#endif
