/* The protocol's cryptographic primitives over OpenSSL (see
 * include/rd_crypto.h). */
#include "config.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "rd_crypto.h"

/* EVP counts in int: longer inputs go through in pieces (CTR keeps its
 * position across EVP_EncryptUpdate calls, so the cut points do not matter). */
#define RD_EVP_CHUNK (1u << 30)

static int ctr_update(EVP_CIPHER_CTX *ctx, const uint8_t *in, uint8_t *out, size_t len)
{
    while (len > 0) {
        int n = (int)(len < RD_EVP_CHUNK ? len : RD_EVP_CHUNK);
        int outl;
        if (EVP_EncryptUpdate(ctx, out, &outl, in, n) != 1 || outl != n)
            return -1;
        in += n;
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

static int aes_ctr(const EVP_CIPHER *cipher, const uint8_t *key, const uint8_t *iv,
                   const uint8_t *in, uint8_t *out, size_t len)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return -1;
    int rc = -1;
    if (EVP_EncryptInit_ex(ctx, cipher, NULL, key, iv) == 1 && ctr_update(ctx, in, out, len) == 0)
        rc = 0;
    EVP_CIPHER_CTX_free(ctx);   /* also clears the key schedule */
    return rc;
}

int rd_crypto_aes128_ctr(const uint8_t key[RD_AES128_KEY_SIZE], const uint8_t iv[RD_AES_BLOCK_SIZE],
                  const uint8_t *in, uint8_t *out, size_t len)
{
    return aes_ctr(EVP_aes_128_ctr(), key, iv, in, out, len);
}

int rd_crypto_aes256_ctr(const uint8_t key[RD_AES256_KEY_SIZE], const uint8_t iv[RD_AES_BLOCK_SIZE],
                  const uint8_t *in, uint8_t *out, size_t len)
{
    return aes_ctr(EVP_aes_256_ctr(), key, iv, in, out, len);
}

int rd_crypto_sha256(const void *data, size_t len, uint8_t out[RD_SHA256_SIZE])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != RD_SHA256_SIZE)
        return -1;
    return 0;
}

int rd_crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[RD_SHA256_SIZE])
{
    unsigned int n = 0;
    if (key_len > INT_MAX)
        return -1;
    if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n) == NULL || n != RD_SHA256_SIZE)
        return -1;
    return 0;
}

bool rd_crypto_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

int rd_crypto_random_bytes(void *buf, size_t len)
{
    if (len > INT_MAX || RAND_bytes(buf, (int)len) != 1)
        return -1;
    return 0;
}

void rd_crypto_wipe(void *buf, size_t len)
{
    OPENSSL_cleanse(buf, len);
}
