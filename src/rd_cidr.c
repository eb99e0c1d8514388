/* Client networks: parsing and matching. IPv4 is kept as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), so one comparison serves both families, and a v4
 * client reaching a dual-stack socket matches a v4 network. */
#include "config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "rd_cidr.h"

static void mapped_v4(const void *in4, uint8_t out[16])
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, in4, 4);
}

int rd_cidr_parse(const char *text, rd_cidr_t *out)
{
    char host[64];
    const char *slash = strchr(text, '/');
    size_t len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    struct in_addr v4;
    unsigned max, bits;
    char *end;

    if (len == 0 || len >= sizeof(host))
        return -1;
    memcpy(host, text, len);
    host[len] = '\0';
    if (inet_pton(AF_INET, host, &v4) == 1) {
        mapped_v4(&v4, out->addr);
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        max = 128;
    } else {
        return -1;
    }
    bits = max;
    if (slash != NULL) {
        if (slash[1] < '0' || slash[1] > '9')
            return -1;
        unsigned long v = strtoul(slash + 1, &end, 10);
        if (*end != '\0' || v > max)
            return -1;
        bits = (unsigned)v;
    }
    out->prefix = bits + (max == 32 ? 96 : 0);
    return 0;
}

bool rd_cidr_match(const rd_cidr_t *net, const struct sockaddr *sa)
{
    uint8_t a[16];
    unsigned full, rest;

    if (sa->sa_family == AF_INET)
        mapped_v4(&((const struct sockaddr_in *)(const void *)sa)->sin_addr, a);
    else if (sa->sa_family == AF_INET6)
        memcpy(a, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    else
        return false;
    full = net->prefix / 8;
    rest = net->prefix % 8;
    if (memcmp(a, net->addr, full) != 0)
        return false;
    return rest == 0 || ((a[full] ^ net->addr[full]) & (0xff << (8 - rest))) == 0;
}
