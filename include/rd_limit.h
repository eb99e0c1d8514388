/* Per-client-address limits: concurrent TCP connections, and token
 * buckets for the request rate, one for TCP and one for UDP (a forged UDP
 * source must not spend the TCP budget of the address it claims). One
 * table for the whole server, in shared memory made by the master, so that
 * an address is limited across every worker. Bounded: when it is full,
 * idle addresses make room, and an address that finds no room is let
 * through rather than refused.
 *
 * Addresses are counted by prefix (an IPv6 client has a /64 to choose its
 * addresses from) and placed with SipHash-2-4 under a key drawn when the
 * table is made, so that no one can choose addresses that collide.
 *
 * The workers can write the shared memory, so the master, which runs as
 * root, never reads it nor takes its lock: the table's sizes and key live
 * in the rd_limit_t handle, the master's own memory (each worker has its
 * copy from fork()), and a reset is only asked for by the master and done
 * by the next worker that takes the lock. */
#ifndef RD_LIMIT_H
#define RD_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RD_LIMIT_KEY_SIZE 16

typedef struct rd_limit rd_limit_t;

typedef enum rd_limit_transport {
    RD_LIMIT_TCP,
    RD_LIMIT_UDP,
    RD_LIMIT_TRANSPORTS
} rd_limit_transport_t;

/* The limits themselves come from each worker's configuration, so that a
 * reload changes them without touching the table. */
typedef struct rd_limit_conf {
    unsigned max_connections;   /* per address; 0: no limit */
    unsigned rate;              /* requests per second per address; 0: none */
    unsigned burst;             /* 0: as many as rate */
    unsigned prefix_v4;         /* bits of an IPv4 address counted as one; 0: all 32 */
    unsigned prefix_v6;         /* bits of an IPv6 address counted as one; 0: all 128 */
} rd_limit_conf_t;

/* A table for CAPACITY addresses (rounded up to a power of two), shared
 * with the processes forked afterwards, under a fresh random hash key. */
rd_limit_t *rd_limit_create(size_t capacity);
void rd_limit_destroy(rd_limit_t *l);

/* Forgets every connection count: after a worker died without closing its
 * connections, counting from zero lets clients in rather than keeping them
 * out. Rate buckets are kept. Called by the master: it neither blocks nor
 * reads the shared memory; the next worker to use the table resets it. */
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

/* A request from KEY over TRANSPORT: false when the address is over its
 * rate on that transport. */
bool rd_limit_request(rd_limit_t *l, const rd_limit_conf_t *conf, rd_limit_transport_t transport,
                      const uint8_t key[RD_LIMIT_KEY_SIZE], uint64_t now_ms);

#endif
