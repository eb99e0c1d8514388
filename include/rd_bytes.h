/* Big-endian integers of any width up to 8 bytes, as the RAIDA frames
 * write them; hex strings (keys, payloads) to bytes. */
#ifndef RD_BYTES_H
#define RD_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/crypto.h>

static inline uint64_t rd_get_be(const uint8_t *src, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = (v << 8) | src[i];
    return v;
}

static inline void rd_put_be(uint8_t *dst, uint64_t v, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        dst[i - 1] = (uint8_t)v;
        v >>= 8;
    }
}

/* Decodes HEX (digits only, no separators) into OUT, which holds CAP
 * bytes. Returns the bytes written, or -1 when HEX is malformed or too long. */
static inline long rd_hex_decode(const char *hex, uint8_t *out, size_t cap)
{
    size_t len = 0;

    if (hex[0] == '\0')
        return 0;
    if (OPENSSL_hexstr2buf_ex(out, cap, &len, hex, '\0') != 1)
        return -1;
    return (long)len;
}

#endif
