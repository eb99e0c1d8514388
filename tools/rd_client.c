/* The client side of the protocol (include/rd_client.h): builds and seals
 * request frames, sends them, and parses and opens the answers. The bytes
 * are include/rd_frame.h's, the same names the server reads them by. */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "rd_bytes.h"
#include "rd_client.h"
#include "rd_crypto.h"
#include "rd_frame.h"

/* Type 1's 8-byte nonce ends with the echo bytes: 6 random bytes precede them. */
#define LEGACY_RANDOM   (RD_REQ32_ECHO - RD_REQ32_NONCE)

/* ---- building and parsing ------------------------------------------------ */

static void put_coin(uint8_t *at, const rd_client_coin_t *c)
{
    at[0] = (uint8_t)c->den;
    rd_put_be(at + RD_COIN_REF_SN, c->sn, RD_COIN_REF_SIZE - RD_COIN_REF_SN);
}

static void write_route(const rd_client_request_t *r, uint8_t *h)
{
    h[RD_REQ_ROUTING] = RD_ROUTING_RAIDA;
    h[RD_REQ_RAIDA_ID] = r->raida_id;
    h[RD_REQ_SHARD] = r->shard;
    h[RD_REQ_GROUP] = r->group;
    h[RD_REQ_COMMAND] = r->command;
    rd_put_be(h + RD_REQ_COIN_ID, r->coin_id, RD_COIN_ID_SIZE);
}

static void write_request_header(const rd_client_request_t *r, size_t body_size, uint8_t *h)
{
    memset(h, 0, RD_LEGACY_HEADER_SIZE);
    write_route(r, h);
    rd_put_be(h + RD_REQ32_BODY_SIZE, (uint32_t)body_size, RD_BODY_SIZE_SIZE);
    rd_put_be(h + RD_REQ32_ECHO, r->echo, RD_ECHO_SIZE);
}

/* 12 random bytes and their CRC: the server checks the CRC and sends the
 * 16 bytes back, which ties its answer to this request. */
static bool write_challenge(uint8_t *c)
{
    if (RAND_bytes(c, RD_CRC_INPUT_SIZE) != 1)
        return false;
    rd_put_be(c + RD_CRC_INPUT_SIZE, (uint32_t)crc32(0L, c, RD_CRC_INPUT_SIZE),
              RD_CHALLENGE_SIZE - RD_CRC_INPUT_SIZE);
    return true;
}

size_t rd_client_build(const rd_client_request_t *r, uint8_t *out, size_t cap,
                       uint8_t *challenge)
{
    rd_client_ctx_t ctx;
    if (r->enc_type != RD_ENC_NONE)
        return 0;
    size_t len = rd_client_seal(r, out, cap, &ctx);
    if (len > 0 && challenge != NULL)
        memcpy(challenge, ctx.expect, RD_CHALLENGE_SIZE);
    return len;
}

/* ---- encrypted requests ---------------------------------------------------- */

static bool modern_type(uint8_t type)
{
    return type == RD_ENC_AES256 || type == RD_ENC_AES256_TWO;
}

/* The body besides the payload: challenge or HMAC, and the trailer. */
static size_t body_overhead(uint8_t type)
{
    return (modern_type(type) ? RD_HMAC_SIZE : RD_CHALLENGE_SIZE) + RD_TRAILER_SIZE;
}

static size_t body_size_of(const rd_client_request_t *r)
{
    return body_overhead(r->enc_type) + r->payload_len;
}

size_t rd_client_frame_size(const rd_client_request_t *r)
{
    bool modern = modern_type(r->enc_type);
    if ((!modern && r->enc_type > RD_ENC_AES128) || (r->payload_len > 0 && r->payload == NULL)
        || r->payload_len > RD_MAX_REQUEST_BODY - body_overhead(r->enc_type))
        return 0;
    return (modern ? RD_MODERN_HEADER_SIZE : RD_LEGACY_HEADER_SIZE) + body_size_of(r);
}

/* Type 1: the 8-byte nonce is 6 random bytes and the echo bytes; the
 * answer's challenge hash is the challenge XOR the key. */
static bool seal_aes128(const rd_client_request_t *r, uint8_t *out, size_t body_size,
                        rd_client_ctx_t *ctx)
{
    uint8_t *body = out + RD_LEGACY_HEADER_SIZE;
    out[RD_REQ_ENC_TYPE] = RD_ENC_AES128;
    put_coin(out + RD_REQ32_COIN, &r->coin[0]);
    if (RAND_bytes(out + RD_REQ32_NONCE, LEGACY_RANDOM) != 1)
        return false;
    memcpy(ctx->key, r->coin[0].key, RD_CLIENT_KEY_SIZE);
    memcpy(ctx->iv, out + RD_REQ32_NONCE, RD_REQ32_NONCE_SIZE);
    for (size_t i = 0; i < RD_CHALLENGE_SIZE; i++)
        ctx->expect[i] ^= ctx->key[i];
    return rd_crypto_aes128_ctr(ctx->key, ctx->iv, body, body, body_size - RD_TRAILER_SIZE) == 0;
}

static bool seal_legacy(const rd_client_request_t *r, uint8_t *out, size_t body_size,
                        rd_client_ctx_t *ctx)
{
    uint8_t *body = out + RD_LEGACY_HEADER_SIZE;
    write_request_header(r, body_size, out);
    if (!write_challenge(body))
        return false;
    if (r->payload_len > 0)
        memcpy(body + RD_CHALLENGE_SIZE, r->payload, r->payload_len);
    body[body_size - 2] = RD_TRAILER_BYTE;
    body[body_size - 1] = RD_TRAILER_BYTE;
    memcpy(ctx->expect, body, RD_CHALLENGE_SIZE);
    return r->enc_type == RD_ENC_NONE || seal_aes128(r, out, body_size, ctx);
}

/* Key: SHA-256 of the coin key, or of both (first coin first). */
static bool modern_key(const rd_client_request_t *r, uint8_t *key)
{
    uint8_t keys[2 * RD_CLIENT_KEY_SIZE];
    size_t n = r->enc_type == RD_ENC_AES256_TWO ? 2 : 1;
    for (size_t i = 0; i < n; i++)
        memcpy(keys + i * RD_CLIENT_KEY_SIZE, r->coin[i].key, RD_CLIENT_KEY_SIZE);
    bool ok = rd_crypto_sha256(keys, n * RD_CLIENT_KEY_SIZE, key) == 0;
    rd_crypto_wipe(keys, sizeof(keys));
    return ok;
}

static bool write_modern_header(const rd_client_request_t *r, size_t body_size, uint8_t *h)
{
    memset(h, 0, RD_MODERN_HEADER_SIZE);
    write_route(r, h);
    h[RD_REQ_ENC_TYPE] = r->enc_type;
    rd_put_be(h + RD_REQ48_BODY_SIZE, (uint32_t)body_size, RD_BODY_SIZE_SIZE);
    put_coin(h + RD_REQ48_COIN, &r->coin[0]);
    if (RAND_bytes(h + RD_REQ48_NONCE, RD_REQ48_NONCE_SIZE) != 1)
        return false;
    if (r->enc_type == RD_ENC_AES256_TWO)
        put_coin(h + RD_REQ48_COIN2, &r->coin[1]);
    return true;
}

/* Types 4, 5: ciphertext, its HMAC, the trailer; no challenge. */
static bool seal_modern(const rd_client_request_t *r, uint8_t *out, size_t body_size,
                        rd_client_ctx_t *ctx)
{
    uint8_t *body = out + RD_MODERN_HEADER_SIZE;
    size_t len = r->payload_len;
    if (!write_modern_header(r, body_size, out) || !modern_key(r, ctx->key))
        return false;
    if (len > 0)
        memcpy(body, r->payload, len);
    body[body_size - 2] = RD_TRAILER_BYTE;
    body[body_size - 1] = RD_TRAILER_BYTE;
    return rd_crypto_aes256_ctr(ctx->key, out + RD_REQ48_NONCE, body, body, len) == 0
        && rd_crypto_hmac_sha256(ctx->key, RD_AES256_KEY_SIZE, body, len, body + len) == 0;
}

size_t rd_client_seal(const rd_client_request_t *r, uint8_t *out, size_t cap,
                      rd_client_ctx_t *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->enc_type = r->enc_type;
    size_t total = rd_client_frame_size(r);
    if (total == 0 || cap < total)
        return 0;
    size_t body_size = body_size_of(r);
    bool ok = modern_type(r->enc_type) ? seal_modern(r, out, body_size, ctx)
                                       : seal_legacy(r, out, body_size, ctx);
    return ok ? total : 0;
}

/* ---- parsing and opening answers --------------------------------------------- */

/* Bytes 0-3 mean the same in both header families. */
static void parse_common(const uint8_t *buf, rd_client_response_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->raida_id = buf[RD_RESP_RAIDA_ID];
    resp->shard = buf[RD_RESP_SHARD];
    resp->status = buf[RD_RESP_STATUS];
    resp->group = buf[RD_RESP_GROUP];
}

int rd_client_parse(const uint8_t *buf, size_t len, rd_client_response_t *resp)
{
    if (len < RD_LEGACY_HEADER_SIZE)
        return -1;
    parse_common(buf, resp);
    resp->frames = (uint16_t)rd_get_be(buf + RD_RESP32_FRAMES, RD_RESP32_FRAMES_SIZE);
    resp->echo = (uint16_t)rd_get_be(buf + RD_RESP32_ECHO, RD_ECHO_SIZE);
    resp->body_size = (uint32_t)rd_get_be(buf + RD_RESP_BODY_SIZE, RD_RESP_BODY_SIZE_SIZE);
    resp->exec_us = (uint32_t)rd_get_be(buf + RD_RESP32_EXEC_US, RD_EXEC_US_SIZE);
    memcpy(resp->challenge_hash, buf + RD_RESP32_CHALLENGE, sizeof(resp->challenge_hash));
    resp->payload = buf + RD_LEGACY_HEADER_SIZE;
    resp->payload_len = 0;
    if (resp->body_size == 0)
        return 0;

    const uint8_t *body = buf + RD_LEGACY_HEADER_SIZE;
    size_t size = resp->body_size;
    if (size < RD_TRAILER_SIZE || len - RD_LEGACY_HEADER_SIZE < size
        || body[size - 2] != RD_TRAILER_BYTE || body[size - 1] != RD_TRAILER_BYTE)
        return -1;
    resp->payload_len = size - RD_TRAILER_SIZE;
    return 0;
}

static int parse_modern(const uint8_t *buf, size_t len, rd_client_response_t *resp)
{
    if (len < RD_MODERN_HEADER_SIZE)
        return -1;
    parse_common(buf, resp);
    resp->exec_us = (uint32_t)rd_get_be(buf + RD_RESP48_EXEC_US, RD_EXEC_US_SIZE);
    resp->body_size = (uint32_t)rd_get_be(buf + RD_RESP_BODY_SIZE, RD_RESP_BODY_SIZE_SIZE);
    resp->enc_type = buf[RD_RESP48_ENC_TYPE];
    resp->den = (int8_t)buf[RD_RESP48_COIN];
    resp->sn = (uint32_t)rd_get_be(buf + RD_RESP48_COIN + RD_COIN_REF_SN,
                                   RD_COIN_REF_SIZE - RD_COIN_REF_SN);
    resp->payload = buf + RD_MODERN_HEADER_SIZE;
    if (resp->body_size == 0)
        return 0;

    const uint8_t *body = buf + RD_MODERN_HEADER_SIZE;
    size_t size = resp->body_size;
    if (size < RD_MODERN_MIN_BODY_SIZE || len - RD_MODERN_HEADER_SIZE < size
        || body[size - 2] != RD_TRAILER_BYTE || body[size - 1] != RD_TRAILER_BYTE)
        return -1;
    resp->payload_len = size - RD_MODERN_MIN_BODY_SIZE;
    return 0;
}

static int open_modern(const rd_client_ctx_t *ctx, uint8_t *buf, size_t len,
                       rd_client_response_t *resp)
{
    uint8_t mac[RD_HMAC_SIZE];
    if (parse_modern(buf, len, resp) < 0)
        return -1;
    if (resp->body_size == 0)
        return 0;               /* nothing to authenticate */
    uint8_t *ct = buf + RD_MODERN_HEADER_SIZE;
    size_t n = resp->payload_len;
    if (rd_crypto_hmac_sha256(ctx->key, RD_AES256_KEY_SIZE, ct, n, mac) < 0)
        return -1;
    resp->authentic = rd_crypto_equal(mac, ct + n, RD_HMAC_SIZE);
    if (resp->authentic && rd_crypto_aes256_ctr(ctx->key, buf + RD_RESP48_NONCE, ct, ct, n) < 0)
        return -1;
    return 0;
}

int rd_client_open(const rd_client_ctx_t *ctx, uint8_t *buf, size_t len,
                   rd_client_response_t *resp)
{
    if (modern_type(ctx->enc_type))
        return open_modern(ctx, buf, len, resp);
    if (rd_client_parse(buf, len, resp) < 0)
        return -1;
    resp->enc_type = ctx->enc_type;
    resp->authentic = rd_crypto_equal(resp->challenge_hash, ctx->expect, RD_CHALLENGE_SIZE);
    if (ctx->enc_type == RD_ENC_AES128 && resp->payload_len > 0
        && rd_crypto_aes128_ctr(ctx->key, ctx->iv, buf + RD_LEGACY_HEADER_SIZE,
                         buf + RD_LEGACY_HEADER_SIZE, resp->payload_len) < 0)
        return -1;
    return 0;
}

/* ---- sockets ------------------------------------------------------------- */

static void close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    for (;;) {
        int rc = poll(&pfd, 1, timeout_ms);
        if (rc > 0)
            return 0;
        if (rc == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

static int pending_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -1;
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

/* A connected non-blocking socket, or -1: connect() itself may wait, so it
 * is bounded by the timeout like every other wait. */
static int open_connected(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, timeout_ms) == 0 && pending_error(fd) == 0)
        return fd;
    close_keep_errno(fd);
    return -1;
}

static int send_all(int fd, const uint8_t *buf, size_t len, int timeout_ms)
{
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(fd, POLLOUT, timeout_ms) < 0)
                return -1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* One recv(), waiting up to the timeout for something to arrive. */
static ssize_t recv_wait(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(fd, POLLIN, timeout_ms) < 0)
                return -1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
}

/* The server closes after its answer, so EOF ends the answer. A reset after
 * part of it arrived still leaves that part to the caller to judge. */
static long recv_until_eof(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t n = recv_wait(fd, buf + got, cap - got, timeout_ms);
        if (n < 0)
            return got > 0 ? (long)got : -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (long)got;
}

static long exchange_one(const struct addrinfo *ai, bool udp, const uint8_t *req, size_t req_len,
                         uint8_t *resp, size_t resp_cap, int timeout_ms)
{
    int fd = open_connected(ai, timeout_ms);
    if (fd < 0)
        return -1;
    long n = -1;
    if (send_all(fd, req, req_len, timeout_ms) == 0)
        n = udp ? (long)recv_wait(fd, resp, resp_cap, timeout_ms)
                : recv_until_eof(fd, resp, resp_cap, timeout_ms);
    close_keep_errno(fd);
    return n;
}

/* Errors that say "not at this address": the next address may do better
 * (say, localhost resolving to ::1 first while the server listens on IPv4). */
static bool try_next_address(int err)
{
    return err == ECONNREFUSED || err == ENETUNREACH || err == EHOSTUNREACH
        || err == EADDRNOTAVAIL || err == EAFNOSUPPORT;
}

static int gai_errno(int rc)
{
    switch (rc) {
    case EAI_SYSTEM:  return errno;
    case EAI_MEMORY:  return ENOMEM;
    case EAI_AGAIN:   return EAGAIN;
    case EAI_SERVICE: case EAI_SOCKTYPE: case EAI_BADFLAGS: return EINVAL;
    default:          return ENXIO;     /* no such host */
    }
}

long rd_client_exchange(const char *host, const char *port, bool udp,
                        const uint8_t *req, size_t req_len,
                        uint8_t *resp, size_t resp_cap, int timeout_ms)
{
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        errno = gai_errno(rc);
        return -1;
    }
    long n = -1;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        n = exchange_one(ai, udp, req, req_len, resp, resp_cap, timeout_ms);
        if (n >= 0 || !try_next_address(errno))
            break;
    }
    int saved = errno;
    freeaddrinfo(res);
    errno = saved;
    return n;
}
