/* Per-client-address limits: concurrent TCP connections, and a token
 * bucket for the request rate. One table for the whole server, in shared
 * memory made by the master, so that an address is limited across every
 * worker. Bounded: when it is full, idle addresses make room, and an
 * address that finds no room is let through rather than refused. */
#ifndef RD_LIMIT_H
#define RD_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RD_LIMIT_KEY_SIZE 16

typedef struct rd_limit rd_limit_t;

/* The limits themselves come from each worker's configuration, so that a
 * reload changes them without touching the table. */
typedef struct rd_limit_conf {
    unsigned max_connections;   /* per address; 0: no limit */
    unsigned rate;              /* requests per second per address; 0: none */
    unsigned burst;             /* 0: as many as rate */
} rd_limit_conf_t;

/* A table for CAPACITY addresses (rounded up to a power of two), shared
 * with the processes forked afterwards. */
rd_limit_t *rd_limit_create(size_t capacity);
void rd_limit_destroy(rd_limit_t *l);

/* Forgets every connection count: after a worker died without closing its
 * connections, counting from zero lets clients in rather than keeping them
 * out. Rate buckets are kept. */
void rd_limit_reset_connections(rd_limit_t *l);

/* The address of SS as a fixed-size key (IPv4 as IPv4-mapped IPv6). */
void rd_limit_key(const struct sockaddr_storage *ss, uint8_t key[RD_LIMIT_KEY_SIZE]);

/* KEY as text ("192.0.2.1", "2001:db8::1"), for log lines. */
void rd_limit_key_text(const uint8_t key[RD_LIMIT_KEY_SIZE], char *out, size_t len);

/* A connection from KEY opens: -1 when the address holds the maximum
 * already, 1 when it was counted (close it with rd_limit_conn_close), 0 when
 * it was let through uncounted (no limit, or no room in the table). */
int rd_limit_conn_open(rd_limit_t *l, const rd_limit_conf_t *conf,
                       const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms);
void rd_limit_conn_close(rd_limit_t *l, const rd_limit_conf_t *conf,
                         const uint8_t key[RD_LIMIT_KEY_SIZE]);

/* A request from KEY: false when the address is over its rate. */
bool rd_limit_request(rd_limit_t *l, const rd_limit_conf_t *conf,
                      const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms);

#endif
