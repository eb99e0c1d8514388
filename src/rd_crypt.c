/* The encryption types (include/rd_crypt.h), one row each in a
 * table: where a type keeps its body size and its coins, how its body is
 * opened and its answer sealed. docs/protocol.md, "Encryption", has the
 * rules; the offsets are include/rd_frame.h's. */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include "rd_bytes.h"
#include "rd_coins.h"
#include "rd_crypto.h"
#include "rd_crypt.h"

#define MAX_COINS            2

typedef struct crypt_type crypt_type_t;

struct crypt_type {
    uint8_t type;
    uint8_t header_size;        /* of the request and of its answer */
    uint8_t body_size_at;       /* where the header keeps the body size (u16) */
    uint8_t coins;              /* how many coin keys make the key */
    uint8_t coin_at[MAX_COINS]; /* each coin: denomination (i8), then serial number (u32) */
    uint16_t min_body;
    int missing;                /* the status when a coin is not in the store */
    int (*open)(const crypt_type_t *t, rd_request_t *req, const uint8_t *coin_keys);
    int (*seal)(const rd_request_t *req, rd_response_t *resp);
};

static int open_aes128(const crypt_type_t *t, rd_request_t *req, const uint8_t *coin_keys);
static int open_aes256(const crypt_type_t *t, rd_request_t *req, const uint8_t *coin_keys);
static int seal_aes128(const rd_request_t *req, rd_response_t *resp);
static int seal_aes256(const rd_request_t *req, rd_response_t *resp);

/* Type 2 (the locker key) needs the locker index, which does not exist
 * yet: it is absent, so it answers 27 like any unknown type. */
static const crypt_type_t types[] = {
    { RD_ENC_NONE, RD_LEGACY_HEADER_SIZE, RD_REQ32_BODY_SIZE, 0, { 0 }, RD_MIN_BODY_SIZE, 0,
      NULL, NULL },
    { RD_ENC_AES128, RD_LEGACY_HEADER_SIZE, RD_REQ32_BODY_SIZE, 1, { RD_REQ32_COIN },
      RD_MIN_BODY_SIZE, RD_STATUS_INVALID_ENCRYPTION, open_aes128, seal_aes128 },
    { RD_ENC_AES256, RD_MODERN_HEADER_SIZE, RD_REQ48_BODY_SIZE, 1, { RD_REQ48_COIN },
      RD_MODERN_MIN_BODY_SIZE, RD_STATUS_COIN_NOT_FOUND, open_aes256, seal_aes256 },
    { RD_ENC_AES256_TWO, RD_MODERN_HEADER_SIZE, RD_REQ48_BODY_SIZE, 2,
      { RD_REQ48_COIN, RD_REQ48_COIN2 }, RD_MODERN_MIN_BODY_SIZE, RD_STATUS_COIN_NOT_FOUND,
      open_aes256, seal_aes256 },
};

static const crypt_type_t *find_type(uint8_t type)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (types[i].type == type)
            return &types[i];
    }
    return NULL;
}

/* ---- header -------------------------------------------------------------- */

int rd_crypt_parse_header(rd_request_t *req)
{
    const crypt_type_t *t = find_type(req->enc_type);
    if (t == NULL)
        return RD_STATUS_INVALID_ENCRYPTION_CODE;
    if (req->header_size != t->header_size || req->header_have < t->header_size)
        return RD_STATUS_INVALID_PACKET_LENGTH;
    req->body_size = (uint32_t)rd_get_be(req->header + t->body_size_at, RD_BODY_SIZE_SIZE);
    return RD_STATUS_NO_ERROR;
}

uint32_t rd_crypt_min_body(uint8_t enc_type)
{
    const crypt_type_t *t = find_type(enc_type);
    return t != NULL ? t->min_body : 0;
}

bool rd_crypt_challenge_ok(const uint8_t *challenge)
{
    uint32_t sent = (uint32_t)rd_get_be(challenge + RD_CRC_INPUT_SIZE,
                                        RD_CHALLENGE_SIZE - RD_CRC_INPUT_SIZE);

    return crc32(0L, challenge, RD_CRC_INPUT_SIZE) == sent;
}

/* ---- opening a request --------------------------------------------------- */

/* A key read from a change not yet durable makes the answer wait for it:
 * a request keyed with a PAN is not answered before the pown that set it
 * is on stable storage. */
static int coin_keys(const rd_protocol_t *p, const crypt_type_t *t, rd_request_t *req,
                     uint8_t *keys)
{
    for (unsigned i = 0; i < t->coins; i++) {
        const uint8_t *coin = req->header + t->coin_at[i];
        int rc = RD_COIN_MISSING;
        uint64_t dep = 0;
        if (p->coins != NULL)
            rc = rd_coins_key(p->coins, (int8_t)coin[0],
                              (uint32_t)rd_get_be(coin + RD_COIN_REF_SN,
                                                  RD_COIN_REF_SIZE - RD_COIN_REF_SN),
                              keys + i * RD_COIN_AN_SIZE, &dep);
        rd_request_wait_for(req, dep);
        if (rc == RD_COIN_MISSING)
            return t->missing;
        if (rc != RD_COIN_OK)
            return RD_STATUS_INTERNAL_ERROR;
    }
    return RD_STATUS_NO_ERROR;
}

static void legacy_iv(const uint8_t *h, uint8_t *iv)
{
    memcpy(iv, h + RD_REQ32_NONCE, RD_REQ32_NONCE_SIZE);
    memset(iv + RD_REQ32_NONCE_SIZE, 0, RD_AES_BLOCK_SIZE - RD_REQ32_NONCE_SIZE);
}

/* The answer's challenge hash mixes in the key, so that only a holder of
 * the key can have written it. */
static int open_aes128(const crypt_type_t *t, rd_request_t *req, const uint8_t *coin_keys)
{
    (void)t;
    uint8_t iv[RD_AES_BLOCK_SIZE];
    uint8_t *b = req->body;
    size_t len = req->body_size - RD_TRAILER_SIZE;
    memcpy(req->key, coin_keys, RD_AES128_KEY_SIZE);
    legacy_iv(req->header, iv);
    if (rd_crypto_aes128_ctr(req->key, iv, b, b, len) < 0)
        return RD_STATUS_INTERNAL_ERROR;
    if (!rd_crypt_challenge_ok(b))
        return RD_STATUS_INVALID_CRC;
    for (size_t i = 0; i < RD_CHALLENGE_SIZE; i++)
        req->challenge_hash[i] = b[i] ^ req->key[i];
    req->challenge_set = true;
    req->payload = b + RD_CHALLENGE_SIZE;
    req->payload_len = len - RD_CHALLENGE_SIZE;
    return RD_STATUS_NO_ERROR;
}

/* The HMAC is checked first: nothing is decrypted that was not written by
 * a holder of the key. */
static int open_aes256(const crypt_type_t *t, rd_request_t *req, const uint8_t *coin_keys)
{
    uint8_t mac[RD_HMAC_SIZE];
    uint8_t *b = req->body;
    size_t len = req->body_size - RD_MODERN_MIN_BODY_SIZE;
    if (rd_crypto_sha256(coin_keys, (size_t)t->coins * RD_COIN_AN_SIZE, req->key) < 0
        || rd_crypto_hmac_sha256(req->key, RD_AES256_KEY_SIZE, b, len, mac) < 0)
        return RD_STATUS_INTERNAL_ERROR;
    if (!rd_crypto_equal(mac, b + len, RD_HMAC_SIZE))
        return RD_STATUS_INVALID_HMAC;
    if (rd_crypto_aes256_ctr(req->key, req->header + RD_REQ48_NONCE, b, b, len) < 0)
        return RD_STATUS_INTERNAL_ERROR;
    req->payload = b;
    req->payload_len = len;
    return RD_STATUS_NO_ERROR;
}

int rd_crypt_open(const rd_protocol_t *p, rd_request_t *req)
{
    const crypt_type_t *t = find_type(req->enc_type);
    if (t == NULL)
        return RD_STATUS_INVALID_ENCRYPTION_CODE;
    if (t->open == NULL)
        return RD_STATUS_NO_ERROR;
    if (req->body == NULL || req->body_size < t->min_body)
        return RD_STATUS_INVALID_PACKET_LENGTH;     /* validate_body was skipped */
    uint8_t keys[MAX_COINS * RD_COIN_AN_SIZE];
    int status = coin_keys(p, t, req, keys);
    if (status == RD_STATUS_NO_ERROR)
        status = t->open(t, req, keys);
    rd_crypto_wipe(keys, sizeof(keys));
    return status;
}

/* ---- sealing the answer -------------------------------------------------- */

/* The same key and counter block as the request, as the protocol says. */
static int seal_aes128(const rd_request_t *req, rd_response_t *resp)
{
    uint8_t iv[RD_AES_BLOCK_SIZE];
    uint8_t *payload = resp->data + resp->header_len;
    size_t len = resp->len - resp->header_len;
    if (len == 0)
        return RD_STATUS_NO_ERROR;
    legacy_iv(req->header, iv);
    return rd_crypto_aes128_ctr(req->key, iv, payload, payload, len) < 0
        ? RD_STATUS_INTERNAL_ERROR : RD_STATUS_NO_ERROR;
}

/* Every answer of the family gets a fresh nonce, even one without a body;
 * a payload is encrypted under it, then followed by the HMAC of the
 * ciphertext. */
static int seal_aes256(const rd_request_t *req, rd_response_t *resp)
{
    size_t len = resp->len - resp->header_len;
    if (rd_crypto_random_bytes(resp->data + RD_RESP48_NONCE, RD_REQ48_NONCE_SIZE) < 0) {
        memset(resp->data + RD_RESP48_NONCE, 0, RD_REQ48_NONCE_SIZE);
        return len == 0 ? RD_STATUS_NO_ERROR : RD_STATUS_INTERNAL_ERROR;
    }
    if (len == 0)
        return RD_STATUS_NO_ERROR;
    if (rd_response_append(resp, RD_HMAC_SIZE) == NULL)
        return RD_STATUS_MEMORY_ALLOC;
    uint8_t *ct = resp->data + resp->header_len;   /* the block may have moved */
    if (rd_crypto_aes256_ctr(req->key, resp->data + RD_RESP48_NONCE, ct, ct, len) < 0
        || rd_crypto_hmac_sha256(req->key, RD_AES256_KEY_SIZE, ct, len, ct + len) < 0)
        return RD_STATUS_INTERNAL_ERROR;
    return RD_STATUS_NO_ERROR;
}

int rd_crypt_seal(const rd_request_t *req, rd_response_t *resp, int status)
{
    const crypt_type_t *t = req != NULL ? find_type(req->enc_type) : NULL;
    if (t == NULL || t->seal == NULL || resp->header_len != t->header_size)
        return status;
    int rc = t->seal(req, resp);
    if (rc == RD_STATUS_NO_ERROR)
        return status;
    resp->len = resp->header_len;
    return rc;
}
