/* The few cryptographic primitives the protocol needs, as thin wrappers over
 * OpenSSL's libcrypto (EVP): nothing here is hand-written cryptography.
 * Every function is safe to call from any thread. */
#ifndef RD_CRYPTO_H
#define RD_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RD_AES_BLOCK_SIZE   16
#define RD_AES128_KEY_SIZE  16
#define RD_AES256_KEY_SIZE  32
#define RD_SHA256_SIZE      32

/* AES-CTR as in NIST SP 800-38A: IV is the initial 16-byte counter block,
 * incremented as one big-endian 128-bit number per block. Encryption and
 * decryption are the same operation. IN and OUT may be the same buffer.
 * Returns 0, or -1 when libcrypto failed. */
int rd_crypto_aes128_ctr(const uint8_t key[RD_AES128_KEY_SIZE], const uint8_t iv[RD_AES_BLOCK_SIZE],
                  const uint8_t *in, uint8_t *out, size_t len);
int rd_crypto_aes256_ctr(const uint8_t key[RD_AES256_KEY_SIZE], const uint8_t iv[RD_AES_BLOCK_SIZE],
                  const uint8_t *in, uint8_t *out, size_t len);

/* SHA-256 of LEN bytes. Returns 0, or -1. */
int rd_crypto_sha256(const void *data, size_t len, uint8_t out[RD_SHA256_SIZE]);

/* HMAC-SHA256 of LEN bytes under a KEY_LEN-byte key. Returns 0, or -1. */
int rd_crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[RD_SHA256_SIZE]);

/* Constant time: how long it takes says nothing about where A and B differ. */
bool rd_crypto_equal(const void *a, const void *b, size_t len);

/* LEN bytes from the CSPRNG. Returns 0, or -1. */
int rd_crypto_random_bytes(void *buf, size_t len);

/* Clears key material in a way the compiler may not optimise away. */
void rd_crypto_wipe(void *buf, size_t len);

#endif
