/* Address ranges ("127.0.0.0/8", "::1", "2001:db8::/32") over the 16-byte
 * form of a client address that rd_limit_key() makes: IPv6 as it is, IPv4
 * as IPv4-mapped IPv6 (::ffff:a.b.c.d), so that one list serves both
 * families and an IPv4 client reaching an IPv6 socket matches its IPv4
 * range. The admin_allow setting is a list of these. */
#ifndef RD_CIDR_H
#define RD_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RD_ADDR_SIZE 16
#define RD_CIDR_TEXT_SIZE 50        /* "ffff:...:ffff/128" and its NUL */

typedef struct rd_cidr {
    uint8_t addr[RD_ADDR_SIZE];     /* host bits cleared */
    unsigned prefix;                /* 0..128, over the 16-byte form */
} rd_cidr_t;

/* Parses "ADDR" (one address) or "ADDR/LEN" (LEN 0..32 for IPv4, 0..128
 * for IPv6); host bits below LEN are ignored. Numeric addresses only.
 * Returns -1 if malformed. */
int rd_cidr_parse(const char *text, rd_cidr_t *out);

/* True when ADDR (16-byte form) lies in one of the N ranges of LIST. */
bool rd_cidr_match(const rd_cidr_t *list, size_t n, const uint8_t addr[RD_ADDR_SIZE]);

#endif
