/* The configuration file (libconfig syntax): every setting, its default and
 * its bounds live in one table in rd_config.c. */
#ifndef RD_CONFIG_H
#define RD_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "rd_cidr.h"
#include "rd_coins.h"

#define RD_CONFIG_MAX_LISTEN 16
#define RD_CONFIG_MAX_ALLOW 32
#define RD_ADMIN_KEY_SIZE 16
#define RD_DEFAULT_PORT 18000
#define RD_CONFIG_MAX_ADMIN_ALLOW 16
/* The workers' account by default; make install creates it. When it is
 * missing, workers run as RD_FALLBACK_USER instead (docs/security.md). */
#define RD_DEFAULT_USER "raidad"
#define RD_FALLBACK_USER "nobody"

typedef struct rd_listen_addr {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char text[64];                 /* as written: "127.0.0.1:18000", "[::1]:18000" */
} rd_listen_addr_t;

/* Command modules (docs/modules.md): what the file says of them, checked
 * against the modules themselves when they are loaded (rd_modload.c). */
#define RD_CONFIG_MAX_MODULES 16
#define RD_CONFIG_MAX_MODULE_SETTINGS 64
#define RD_CONFIG_SOURCE_SIZE 256

typedef struct rd_config_source {
    char file[RD_CONFIG_SOURCE_SIZE];  /* as errors name it */
    int line;
} rd_config_source_t;

typedef struct rd_config_module {
    char path[PATH_MAX];
    rd_config_source_t at;
} rd_config_module_t;

/* A settings group named after a module, and the settings in it. */
typedef struct rd_config_modgroup {
    char module[32];
    rd_config_source_t at;
} rd_config_modgroup_t;

enum rd_modsetting_type { RD_MODSETTING_INT, RD_MODSETTING_BOOL, RD_MODSETTING_STRING };

typedef struct rd_config_modsetting {
    char module[32];
    char name[64];
    int type;                      /* enum rd_modsetting_type */
    long long integer;
    char text[256];
    rd_config_source_t at;
} rd_config_modsetting_t;

typedef struct rd_config {
    char path[PATH_MAX];
    rd_listen_addr_t listen[RD_CONFIG_MAX_LISTEN];
    size_t listen_count;
    unsigned raida_id;             /* 0..24 */
    unsigned coin_id;              /* u16 */
    unsigned worker_threads;
    unsigned epoll_timeout_ms;
    unsigned events_per_wait;
    unsigned wakeup_budget;        /* accepts, datagrams or discarded reads per turn */
    unsigned max_descriptors;
    unsigned max_body_size;
    unsigned socket_timeout_ms;
    unsigned mod_queue_size;
    bool tcp_keepalive;
    unsigned keepalive_idle;       /* seconds */
    unsigned keepalive_interval;   /* seconds */
    unsigned keepalive_count;
    unsigned udp_payload_threshold;
    unsigned udp_receive_buffer;   /* bytes; 0: the system's default */
    bool quick_commands_inline;    /* status commands on the I/O thread */
    bool admin_key_set;
    uint8_t admin_key[RD_ADMIN_KEY_SIZE];
    /* Clients that may send the admin key in clear (type 0, TCP only). */
    rd_cidr_t admin_allow[RD_CONFIG_MAX_ADMIN_ALLOW];
    size_t admin_allow_count;
    int log_level;
    /* Abuse: caps and limits. */
    unsigned worker_connections;   /* per worker; 0: from the descriptor limit */
    unsigned write_timeout_ms;     /* a client that does not read its answer */
    bool udp;                      /* answer on UDP at all */
    unsigned max_connections_per_ip;  /* 0: no limit */
    unsigned rate_limit;           /* requests per second per address; 0: none */
    unsigned rate_limit_burst;     /* 0: as many as rate_limit */
    unsigned limit_prefix_ipv4;    /* leading bits counted as one client, IPv4 */
    unsigned limit_prefix_ipv6;    /* the same for IPv6 */
    /* The process model (master and workers). */
    unsigned worker_processes;     /* 0: one per CPU ("auto") */
    bool worker_cpu_affinity;      /* "auto": worker N runs on CPU N only */
    bool worker_sched_batch;       /* workers run SCHED_BATCH */
    unsigned shutdown_timeout_ms;  /* graceful stop and reload drain bound */
    unsigned max_old_generations;  /* draining generations kept at most */
    char pid_file[PATH_MAX];       /* "" for none */
    char error_log[PATH_MAX];      /* "" for stderr */
    char user[64];                 /* "" keeps the master's identity */
    char group[64];
    bool worker_seccomp;           /* the workers' system call filter */
    /* Coin keys of the encrypted requests (types 1, 4, 5). */
    char data_dir[PATH_MAX - 32];  /* the folder holding Data/ ("" for none); room is
                                      left for "/Data/DD/MM/PPPP.bin" */
    unsigned key_cache_pages;      /* ignored: the coin store maps pages on demand */
    /* The coin store (docs/coins.md). */
    unsigned journal_max_size;     /* bytes of journal that start a checkpoint */
    unsigned checkpoint_interval_ms;
    unsigned commit_threads;       /* per worker: journal syncs it can have under way */
    unsigned pending_changes;      /* changes waiting for their sync, all workers */
    unsigned page_recheck_ms;      /* a missing or damaged page is looked at again after */
    /* Observability: the metrics endpoint and the access log. */
    rd_listen_addr_t metrics_listen[RD_CONFIG_MAX_LISTEN];
    size_t metrics_listen_count;   /* 0: no endpoint */
    rd_cidr_t metrics_allow[RD_CONFIG_MAX_ALLOW];
    size_t metrics_allow_count;    /* 0: every client that reaches the address */
    unsigned metrics_max_connections;
    unsigned metrics_connections_per_ip;  /* 0: no limit */
    unsigned metrics_timeout;      /* seconds */
    char access_log[PATH_MAX];     /* "" for none */
    char access_log_format[8];     /* "plain" or "json" */
    unsigned access_log_buffer;    /* bytes per worker */
    unsigned access_log_flush_ms;
    /* Command modules. */
    rd_config_module_t load_module[RD_CONFIG_MAX_MODULES];
    size_t load_module_count;
    rd_config_modgroup_t modgroup[RD_CONFIG_MAX_MODULES];
    size_t modgroup_count;
    rd_config_modsetting_t modsetting[RD_CONFIG_MAX_MODULE_SETTINGS];
    size_t modsetting_count;
} rd_config_t;

/* The coin store's settings in CF (the workers' identity included). */
void rd_config_coins(const rd_config_t *cf, rd_coins_conf_t *out);

struct passwd;

/* The account CF's workers become when started as root: the user setting's,
 * or RD_FALLBACK_USER's when that is the default account and it does not
 * exist. NULL when there is none (else getpwnam's static record). */
struct passwd *rd_config_worker_passwd(const rd_config_t *cf);

/* Fills CF with the default of every setting. */
void rd_config_defaults(rd_config_t *cf);

/* Reads PATH into CF; absent settings keep their defaults. On failure returns
 * -1, leaves CF untouched and writes "PATH:LINE: what is wrong" into ERR. */
int rd_config_load(rd_config_t *cf, const char *path, char *err, size_t err_len);

/* The same into a new configuration (free() it), or NULL with ERR. */
rd_config_t *rd_config_read(const char *path, char *err, size_t err_len);

/* The defaults with only pid_file taken from PATH, for "raidad -s" when
 * PATH has an error elsewhere (an edit not yet reloaded): NULL when it
 * cannot be parsed at all. */
rd_config_t *rd_config_read_pid_file(const char *path);

/* The same for configuration text in memory; NAME stands for the file in messages. */
int rd_config_parse_string(rd_config_t *cf, const char *text, const char *name,
                           char *err, size_t err_len);

/* True when NAME is one of the daemon's own settings (a module may not
 * take it for its settings group). */
bool rd_config_is_setting(const char *name);

/* Parses "ADDR:PORT", "[V6ADDR]:PORT", "ADDR" or "PORT" (the missing part
 * defaults to 0.0.0.0 and RD_DEFAULT_PORT). Returns -1 if malformed. */
int rd_config_parse_listen(const char *text, rd_listen_addr_t *out);

#endif
