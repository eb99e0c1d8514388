/* SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012): a keyed hash for hash tables whose keys an attacker chooses.
 * Without the key, no one can pick inputs that collide: the per-address
 * limit table (src/rd_limit.c) hashes client addresses with it under a
 * key drawn at random when the master starts. OpenSSL 3 has SipHash as an
 * EVP_MAC, but one MAC context per lookup costs far more than the hash;
 * this is the reference algorithm in a few lines, checked against the
 * reference vectors by tests/unit/test_siphash.c. */
#ifndef RD_SIPHASH_H
#define RD_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define RD_SIPHASH_KEY_SIZE 16

/* The 64-bit SipHash-2-4 of DATA under KEY (the reference's 8 output bytes
 * read little-endian). */
uint64_t rd_siphash24(const uint8_t key[RD_SIPHASH_KEY_SIZE], const void *data, size_t len);

#endif
