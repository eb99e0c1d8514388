/* Client networks ("192.0.2.0/24", "2001:db8::/32", "127.0.0.1"), for the
 * metrics endpoint's access list (metrics_allow). */
#ifndef RD_CIDR_H
#define RD_CIDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct rd_cidr {
    uint8_t addr[16];           /* IPv4 as IPv4-mapped IPv6 */
    unsigned prefix;            /* bits of addr that must match, 0..128 */
} rd_cidr_t;

/* "ADDR" or "ADDR/BITS", numeric. Returns -1 if malformed. */
int rd_cidr_parse(const char *text, rd_cidr_t *out);

/* Whether the address of SA is inside NET. */
bool rd_cidr_match(const rd_cidr_t *net, const struct sockaddr *sa);

#endif
