/* Address ranges for allow lists: parsing "ADDR[/LEN]" and matching a
 * client's 16-byte address against a list (see include/rd_cidr.h). */
#include "config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "rd_cidr.h"

#define RD_V4_MAPPED_BITS 96        /* ::ffff:0:0/96 */

/* Keeps the first PREFIX bits of ADDR, zeroes the rest. */
static void cidr_mask(uint8_t addr[RD_ADDR_SIZE], unsigned prefix)
{
    for (unsigned i = 0; i < RD_ADDR_SIZE; i++) {
        unsigned bits = prefix > i * 8 ? prefix - i * 8 : 0;

        if (bits < 8)
            addr[i] &= (uint8_t)(0xff00u >> bits);
    }
}

static int cidr_parse_len(const char *s, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v;

    if (*s < '0' || *s > '9')
        return -1;
    v = strtoul(s, &end, 10);
    if (*end != '\0' || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int rd_cidr_parse(const char *text, rd_cidr_t *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *slash = text != NULL ? strchr(text, '/') : NULL;
    size_t len = text == NULL ? 0 : slash != NULL ? (size_t)(slash - text) : strlen(text);
    struct in_addr v4;
    rd_cidr_t c = { .prefix = 128 };
    unsigned bits;

    if (len == 0 || len >= sizeof(host))
        return -1;
    memcpy(host, text, len);
    host[len] = '\0';
    if (inet_pton(AF_INET, host, &v4) == 1) {
        c.addr[10] = c.addr[11] = 0xff;
        memcpy(c.addr + 12, &v4, 4);
        if (slash != NULL && cidr_parse_len(slash + 1, 32, &bits) < 0)
            return -1;
        c.prefix = RD_V4_MAPPED_BITS + (slash != NULL ? bits : 32);
    } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
        if (slash != NULL && cidr_parse_len(slash + 1, 128, &c.prefix) < 0)
            return -1;
    } else {
        return -1;
    }
    cidr_mask(c.addr, c.prefix);
    *out = c;
    return 0;
}

bool rd_cidr_match(const rd_cidr_t *list, size_t n, const uint8_t addr[RD_ADDR_SIZE])
{
    for (size_t i = 0; i < n; i++) {
        uint8_t a[RD_ADDR_SIZE];

        memcpy(a, addr, RD_ADDR_SIZE);
        cidr_mask(a, list[i].prefix);
        if (memcmp(a, list[i].addr, RD_ADDR_SIZE) == 0)
            return true;
    }
    return false;
}
