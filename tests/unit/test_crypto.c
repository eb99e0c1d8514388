#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "rd_crypto.h"

/* ---- helpers ------------------------------------------------------------- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes HEX (lowercase, spaces ignored) into OUT; returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*hex != '\0') {
        if (*hex == ' ') {
            hex++;
            continue;
        }
        int hi = hex_digit(hex[0]), lo = hex_digit(hex[1]);
        assert_true(hi >= 0 && lo >= 0 && n < cap);
        out[n++] = (uint8_t)(hi << 4 | lo);
        hex += 2;
    }
    return n;
}

/* ---- AES-CTR: NIST SP 800-38A, F.5.1 and F.5.5 --------------------------- */

static const char counter_hex[] = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

static const char plain_hex[] =
    "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710";

static const char aes128_key_hex[] = "2b7e151628aed2a6abf7158809cf4f3c";
static const char aes128_cipher_hex[] =
    "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff"
    "5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee";

static const char aes256_key_hex[] =
    "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
static const char aes256_cipher_hex[] =
    "601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5"
    "2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6";

typedef int ctr_fn(const uint8_t *key, const uint8_t *iv, const uint8_t *in, uint8_t *out,
                   size_t len);

static int aes128(const uint8_t *key, const uint8_t *iv, const uint8_t *in, uint8_t *out,
                  size_t len)
{
    return rd_crypto_aes128_ctr(key, iv, in, out, len);
}

static int aes256(const uint8_t *key, const uint8_t *iv, const uint8_t *in, uint8_t *out,
                  size_t len)
{
    return rd_crypto_aes256_ctr(key, iv, in, out, len);
}

/* The four blocks (the counter crosses a byte boundary: ...feff, ...ff00),
 * both ways, in place, and a cut that is not a whole block. */
static void check_ctr(ctr_fn *fn, const char *key_hex, const char *cipher_hex)
{
    uint8_t key[32], iv[16], plain[64], cipher[64], out[64];
    unhex(key_hex, key, sizeof(key));
    assert_int_equal(unhex(counter_hex, iv, sizeof(iv)), 16);
    assert_int_equal(unhex(plain_hex, plain, sizeof(plain)), 64);
    assert_int_equal(unhex(cipher_hex, cipher, sizeof(cipher)), 64);

    assert_int_equal(fn(key, iv, plain, out, 64), 0);
    assert_memory_equal(out, cipher, 64);
    assert_int_equal(fn(key, iv, cipher, out, 64), 0);
    assert_memory_equal(out, plain, 64);

    memcpy(out, plain, 64);
    assert_int_equal(fn(key, iv, out, out, 64), 0);
    assert_memory_equal(out, cipher, 64);

    memset(out, 0, sizeof(out));
    assert_int_equal(fn(key, iv, plain, out, 21), 0);
    assert_memory_equal(out, cipher, 21);
    assert_int_equal(out[21], 0);
    assert_int_equal(fn(key, iv, plain, out, 0), 0);
}

static void test_aes128_ctr_nist(void **state)
{
    (void)state;
    check_ctr(aes128, aes128_key_hex, aes128_cipher_hex);
}

static void test_aes256_ctr_nist(void **state)
{
    (void)state;
    check_ctr(aes256, aes256_key_hex, aes256_cipher_hex);
}

/* ---- SHA-256 and HMAC-SHA256 (RFC 4231) ---------------------------------- */

static void test_sha256_abc(void **state)
{
    (void)state;
    uint8_t want[32], got[32];
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, 32);
    assert_int_equal(rd_crypto_sha256("abc", 3, got), 0);
    assert_memory_equal(got, want, 32);
    unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want, 32);
    assert_int_equal(rd_crypto_sha256("", 0, got), 0);
    assert_memory_equal(got, want, 32);
}

static void check_hmac(const uint8_t *key, size_t key_len, const char *data, const char *want_hex)
{
    uint8_t want[32], got[32];
    unhex(want_hex, want, sizeof(want));
    assert_int_equal(rd_crypto_hmac_sha256(key, key_len, data, strlen(data), got), 0);
    assert_memory_equal(got, want, 32);
}

static void test_hmac_rfc4231_case1(void **state)
{
    (void)state;
    uint8_t key[20];
    memset(key, 0x0b, sizeof(key));
    check_hmac(key, sizeof(key), "Hi There",
               "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

static void test_hmac_rfc4231_case2(void **state)
{
    (void)state;
    check_hmac((const uint8_t *)"Jefe", 4, "what do ya want for nothing?",
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* A key longer than the block: it is hashed first. */
static void test_hmac_rfc4231_case6(void **state)
{
    (void)state;
    uint8_t key[131];
    memset(key, 0xaa, sizeof(key));
    check_hmac(key, sizeof(key), "Test Using Larger Than Block-Size Key - Hash Key First",
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* ---- the rest ------------------------------------------------------------ */

static void test_equal_random_wipe(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    assert_int_equal(rd_crypto_random_bytes(a, sizeof(a)), 0);
    assert_int_equal(rd_crypto_random_bytes(b, sizeof(b)), 0);
    assert_false(rd_crypto_equal(a, b, sizeof(a)));     /* 2^-256 */
    memcpy(b, a, sizeof(a));
    assert_true(rd_crypto_equal(a, b, sizeof(a)));
    b[31] ^= 0x80;
    assert_false(rd_crypto_equal(a, b, sizeof(a)));
    assert_true(rd_crypto_equal(a, b, 31));
    assert_true(rd_crypto_equal(a, b, 0));
    rd_crypto_wipe(a, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_memory_equal(a, b, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aes128_ctr_nist),
        cmocka_unit_test(test_aes256_ctr_nist),
        cmocka_unit_test(test_sha256_abc),
        cmocka_unit_test(test_hmac_rfc4231_case1),
        cmocka_unit_test(test_hmac_rfc4231_case2),
        cmocka_unit_test(test_hmac_rfc4231_case6),
        cmocka_unit_test(test_equal_random_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
