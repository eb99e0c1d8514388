/* Client side of the protocol, shared by raida-cli, raida-bench and tests:
 * build a request frame, exchange it over TCP or UDP, decode the answer.
 *
 * Unencrypted (type 0): rd_client_build, rd_client_exchange, rd_client_parse.
 * Any type (0, 1, 4, 5): rd_client_frame_size, rd_client_seal,
 * rd_client_exchange, rd_client_open; the context that seal fills is what
 * open needs to check and decrypt the answer. */
#ifndef RD_CLIENT_H
#define RD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RD_CLIENT_KEY_SIZE 16

/* A coin whose key encrypts a request. */
typedef struct rd_client_coin {
    int8_t den;
    uint32_t sn;
    uint8_t key[RD_CLIENT_KEY_SIZE];
} rd_client_coin_t;

typedef struct rd_client_request {
    uint8_t raida_id;
    uint16_t coin_id;
    uint8_t shard;
    uint8_t group;
    uint8_t command;
    uint16_t echo;              /* legacy family (types 0, 1) only */
    const uint8_t *payload;
    size_t payload_len;
    uint8_t enc_type;           /* 0, 1 (AES-128), 4 or 5 (AES-256): rd_client_seal */
    rd_client_coin_t coin[2];   /* coin[0] for types 1, 4, 5; coin[1] for type 5 too */
} rd_client_request_t;

typedef struct rd_client_response {
    uint8_t raida_id;
    uint8_t shard;
    uint8_t status;
    uint8_t group;
    uint16_t frames;
    uint16_t echo;
    uint32_t body_size;
    uint32_t exec_us;
    uint8_t challenge_hash[16];
    const uint8_t *payload;     /* points into the buffer given to parse */
    size_t payload_len;
    /* Filled by rd_client_open. */
    uint8_t enc_type;           /* of the request */
    int8_t den;                 /* 48-byte family: the coin the answer names */
    uint32_t sn;
    bool authentic;             /* types 0, 1: the challenge hash is the expected one;
                                   4, 5: a body came and its HMAC matched */
} rd_client_response_t;

/* What rd_client_seal leaves for rd_client_open: the expected challenge
 * hash, and the key (handle it as such). */
typedef struct rd_client_ctx {
    uint8_t enc_type;
    uint8_t expect[16];         /* types 0, 1 */
    uint8_t key[32];            /* type 1: the coin key; 4, 5: the SHA-256 of the key(s) */
    uint8_t iv[16];             /* type 1: the counter block of the answer too */
} rd_client_ctx_t;

/* Writes an unencrypted (type 0) frame with a fresh random challenge into
 * OUT. Returns its length, or 0 when CAP is too small (or R->enc_type is
 * not 0: use rd_client_seal). The 16 challenge bytes are copied to
 * CHALLENGE when it is not NULL. */
size_t rd_client_build(const rd_client_request_t *r, uint8_t *out, size_t cap,
                       uint8_t *challenge);

/* Decodes a response frame. Returns 0, or -1 if LEN does not hold one. */
int rd_client_parse(const uint8_t *buf, size_t len, rd_client_response_t *resp);

/* Bytes the frame of R takes, or 0 when R cannot be sent (unknown type,
 * payload too long for the u16 body size). */
size_t rd_client_frame_size(const rd_client_request_t *r);

/* Writes R's frame into OUT, encrypted as R->enc_type says with R->coin's
 * keys (fresh random challenge and nonce), and fills CTX. Returns the
 * frame's length, or 0 when CAP is too small or R cannot be sent. */
size_t rd_client_seal(const rd_client_request_t *r, uint8_t *out, size_t cap,
                      rd_client_ctx_t *ctx);

/* Decodes the answer to the request that filled CTX (32- or 48-byte
 * header by its type), checks it (resp->authentic) and decrypts the
 * payload in place: always for type 1, only when authentic for 4 and 5.
 * Returns 0, or -1 if LEN does not hold a frame. */
int rd_client_open(const rd_client_ctx_t *ctx, uint8_t *buf, size_t len,
                   rd_client_response_t *resp);

/* Sends REQ to HOST:PORT and reads the answer into RESP (TCP: until the
 * server closes; UDP: one datagram). Returns its length, or -1 with errno. */
long rd_client_exchange(const char *host, const char *port, bool udp,
                        const uint8_t *req, size_t req_len,
                        uint8_t *resp, size_t resp_cap, int timeout_ms);

#endif
