/* Per-client-address limits: concurrent TCP connections, and a token
 * bucket for the request rate. One table per worker, touched only by its
 * I/O thread; bounded: when it is full, idle addresses make room, and an
 * address that finds no room is let through rather than refused. */
#ifndef RD_LIMIT_H
#define RD_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RD_LIMIT_KEY_SIZE 16

typedef struct rd_limit rd_limit_t;

typedef struct rd_limit_conf {
    unsigned max_connections;   /* per address; 0: no limit */
    unsigned rate;              /* requests per second per address; 0: none */
    unsigned burst;             /* 0: as many as rate */
} rd_limit_conf_t;

/* CAPACITY addresses at most (rounded up to a power of two). */
rd_limit_t *rd_limit_create(const rd_limit_conf_t *conf, size_t capacity);
void rd_limit_destroy(rd_limit_t *l);

/* The address of SS as a fixed-size key (IPv4 as IPv4-mapped IPv6). */
void rd_limit_key(const struct sockaddr_storage *ss, uint8_t key[RD_LIMIT_KEY_SIZE]);

/* A connection from KEY opens: -1 when the address holds the maximum
 * already, 1 when it was counted (close it with rd_limit_conn_close), 0 when
 * it was let through uncounted (no limit, or no room in the table). */
int rd_limit_conn_open(rd_limit_t *l, const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms);
void rd_limit_conn_close(rd_limit_t *l, const uint8_t key[RD_LIMIT_KEY_SIZE]);

/* A request from KEY: false when the address is over its rate. */
bool rd_limit_request(rd_limit_t *l, const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms);

#endif
