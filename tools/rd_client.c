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

#define HEADER_SIZE     32
#define MODERN_HEADER_SIZE 48
#define CHALLENGE_SIZE  16
#define CRC_INPUT_SIZE  12
#define TRAILER_SIZE     2
#define TRAILER_BYTE  0x3E
#define HMAC_SIZE       32
#define MAX_BODY_SIZE 0xFFFFu   /* requests announce it in a u16 */
#define LEGACY_NONCE_AT 24      /* type 1: 8 bytes, the last two being the echo bytes */
#define LEGACY_RANDOM    6
#define NONCE_AT        24      /* types 4, 5: 24 bytes; type 5's second coin in 24-28 */
#define NONCE_SIZE      24

/* ---- byte order ---------------------------------------------------------- */

/* ---- building and parsing ------------------------------------------------ */

static void write_route(const rd_client_request_t *r, uint8_t *h)
{
    h[0] = 1;                   /* routing: the RAIDA cloud */
    h[2] = r->raida_id;
    h[3] = r->shard;
    h[4] = r->group;
    h[5] = r->command;
    rd_put_be(h + 6, r->coin_id, 2);
}

static void write_request_header(const rd_client_request_t *r, size_t body_size, uint8_t *h)
{
    memset(h, 0, HEADER_SIZE);
    write_route(r, h);
    rd_put_be(h + 22, (uint32_t)body_size, 2);
    rd_put_be(h + 30, r->echo, 2);
}

/* 12 random bytes and their CRC: the server checks the CRC and sends the
 * 16 bytes back, which ties its answer to this request. */
static bool write_challenge(uint8_t *c)
{
    if (RAND_bytes(c, CRC_INPUT_SIZE) != 1)
        return false;
    rd_put_be(c + CRC_INPUT_SIZE, (uint32_t)crc32(0L, c, CRC_INPUT_SIZE), 4);
    return true;
}

size_t rd_client_build(const rd_client_request_t *r, uint8_t *out, size_t cap,
                       uint8_t *challenge)
{
    rd_client_ctx_t ctx;
    if (r->enc_type != 0)
        return 0;
    size_t len = rd_client_seal(r, out, cap, &ctx);
    if (len > 0 && challenge != NULL)
        memcpy(challenge, ctx.expect, CHALLENGE_SIZE);
    return len;
}

/* ---- encrypted requests ---------------------------------------------------- */

static bool modern_type(uint8_t type)
{
    return type == 4 || type == 5;
}

/* The body besides the payload: challenge or HMAC, and the trailer. */
static size_t body_overhead(uint8_t type)
{
    return (modern_type(type) ? HMAC_SIZE : CHALLENGE_SIZE) + TRAILER_SIZE;
}

static size_t body_size_of(const rd_client_request_t *r)
{
    return body_overhead(r->enc_type) + r->payload_len;
}

size_t rd_client_frame_size(const rd_client_request_t *r)
{
    bool modern = modern_type(r->enc_type);
    if ((!modern && r->enc_type > 1) || (r->payload_len > 0 && r->payload == NULL)
        || r->payload_len > MAX_BODY_SIZE - body_overhead(r->enc_type))
        return 0;
    return (modern ? MODERN_HEADER_SIZE : HEADER_SIZE) + body_size_of(r);
}

/* Type 1: the 8-byte nonce is 6 random bytes and the echo bytes; the
 * answer's challenge hash is the challenge XOR the key. */
static bool seal_aes128(const rd_client_request_t *r, uint8_t *out, size_t body_size,
                        rd_client_ctx_t *ctx)
{
    uint8_t *body = out + HEADER_SIZE;
    out[16] = 1;
    out[17] = (uint8_t)r->coin[0].den;
    rd_put_be(out + 18, r->coin[0].sn, 4);
    if (RAND_bytes(out + LEGACY_NONCE_AT, LEGACY_RANDOM) != 1)
        return false;
    memcpy(ctx->key, r->coin[0].key, RD_CLIENT_KEY_SIZE);
    memcpy(ctx->iv, out + LEGACY_NONCE_AT, 8);
    for (size_t i = 0; i < CHALLENGE_SIZE; i++)
        ctx->expect[i] ^= ctx->key[i];
    return rd_aes128_ctr(ctx->key, ctx->iv, body, body, body_size - TRAILER_SIZE) == 0;
}

static bool seal_legacy(const rd_client_request_t *r, uint8_t *out, size_t body_size,
                        rd_client_ctx_t *ctx)
{
    uint8_t *body = out + HEADER_SIZE;
    write_request_header(r, body_size, out);
    if (!write_challenge(body))
        return false;
    if (r->payload_len > 0)
        memcpy(body + CHALLENGE_SIZE, r->payload, r->payload_len);
    body[body_size - 2] = TRAILER_BYTE;
    body[body_size - 1] = TRAILER_BYTE;
    memcpy(ctx->expect, body, CHALLENGE_SIZE);
    return r->enc_type == 0 || seal_aes128(r, out, body_size, ctx);
}

/* Key: SHA-256 of the coin key, or of both (first coin first). */
static bool modern_key(const rd_client_request_t *r, uint8_t *key)
{
    uint8_t keys[2 * RD_CLIENT_KEY_SIZE];
    size_t n = r->enc_type == 5 ? 2 : 1;
    for (size_t i = 0; i < n; i++)
        memcpy(keys + i * RD_CLIENT_KEY_SIZE, r->coin[i].key, RD_CLIENT_KEY_SIZE);
    bool ok = rd_sha256(keys, n * RD_CLIENT_KEY_SIZE, key) == 0;
    rd_crypto_wipe(keys, sizeof(keys));
    return ok;
}

static bool write_modern_header(const rd_client_request_t *r, size_t body_size, uint8_t *h)
{
    memset(h, 0, MODERN_HEADER_SIZE);
    write_route(r, h);
    h[16] = r->enc_type;
    rd_put_be(h + 17, (uint32_t)body_size, 2);
    h[19] = (uint8_t)r->coin[0].den;
    rd_put_be(h + 20, r->coin[0].sn, 4);
    if (RAND_bytes(h + NONCE_AT, NONCE_SIZE) != 1)
        return false;
    if (r->enc_type == 5) {
        h[24] = (uint8_t)r->coin[1].den;
        rd_put_be(h + 25, r->coin[1].sn, 4);
    }
    return true;
}

/* Types 4, 5: ciphertext, its HMAC, the trailer; no challenge. */
static bool seal_modern(const rd_client_request_t *r, uint8_t *out, size_t body_size,
                        rd_client_ctx_t *ctx)
{
    uint8_t *body = out + MODERN_HEADER_SIZE;
    size_t len = r->payload_len;
    if (!write_modern_header(r, body_size, out) || !modern_key(r, ctx->key))
        return false;
    if (len > 0)
        memcpy(body, r->payload, len);
    body[body_size - 2] = TRAILER_BYTE;
    body[body_size - 1] = TRAILER_BYTE;
    return rd_aes256_ctr(ctx->key, out + NONCE_AT, body, body, len) == 0
        && rd_hmac_sha256(ctx->key, RD_AES256_KEY_SIZE, body, len, body + len) == 0;
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
    resp->raida_id = buf[0];
    resp->shard = buf[1];
    resp->status = buf[2];
    resp->group = buf[3];
}

int rd_client_parse(const uint8_t *buf, size_t len, rd_client_response_t *resp)
{
    if (len < HEADER_SIZE)
        return -1;
    parse_common(buf, resp);
    resp->frames = (uint16_t)rd_get_be(buf + 4, 2);
    resp->echo = (uint16_t)rd_get_be(buf + 6, 2);
    resp->body_size = (uint32_t)rd_get_be(buf + 9, 3);
    resp->exec_us = (uint32_t)rd_get_be(buf + 12, 4);
    memcpy(resp->challenge_hash, buf + 16, sizeof(resp->challenge_hash));
    resp->payload = buf + HEADER_SIZE;
    resp->payload_len = 0;
    if (resp->body_size == 0)
        return 0;

    const uint8_t *body = buf + HEADER_SIZE;
    size_t size = resp->body_size;
    if (size < TRAILER_SIZE || len - HEADER_SIZE < size
        || body[size - 2] != TRAILER_BYTE || body[size - 1] != TRAILER_BYTE)
        return -1;
    resp->payload_len = size - TRAILER_SIZE;
    return 0;
}

static int parse_modern(const uint8_t *buf, size_t len, rd_client_response_t *resp)
{
    if (len < MODERN_HEADER_SIZE)
        return -1;
    parse_common(buf, resp);
    resp->exec_us = (uint32_t)rd_get_be(buf + 4, 4);
    resp->body_size = (uint32_t)rd_get_be(buf + 9, 3);
    resp->enc_type = buf[16];
    resp->den = (int8_t)buf[17];
    resp->sn = (uint32_t)rd_get_be(buf + 18, 4);
    resp->payload = buf + MODERN_HEADER_SIZE;
    if (resp->body_size == 0)
        return 0;

    const uint8_t *body = buf + MODERN_HEADER_SIZE;
    size_t size = resp->body_size;
    if (size < HMAC_SIZE + TRAILER_SIZE || len - MODERN_HEADER_SIZE < size
        || body[size - 2] != TRAILER_BYTE || body[size - 1] != TRAILER_BYTE)
        return -1;
    resp->payload_len = size - HMAC_SIZE - TRAILER_SIZE;
    return 0;
}

static int open_modern(const rd_client_ctx_t *ctx, uint8_t *buf, size_t len,
                       rd_client_response_t *resp)
{
    uint8_t mac[HMAC_SIZE];
    if (parse_modern(buf, len, resp) < 0)
        return -1;
    if (resp->body_size == 0)
        return 0;               /* nothing to authenticate */
    uint8_t *ct = buf + MODERN_HEADER_SIZE;
    size_t n = resp->payload_len;
    if (rd_hmac_sha256(ctx->key, RD_AES256_KEY_SIZE, ct, n, mac) < 0)
        return -1;
    resp->authentic = rd_crypto_equal(mac, ct + n, HMAC_SIZE);
    if (resp->authentic && rd_aes256_ctr(ctx->key, buf + NONCE_AT, ct, ct, n) < 0)
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
    resp->authentic = rd_crypto_equal(resp->challenge_hash, ctx->expect, CHALLENGE_SIZE);
    if (ctx->enc_type == 1 && resp->payload_len > 0
        && rd_aes128_ctr(ctx->key, ctx->iv, buf + HEADER_SIZE, buf + HEADER_SIZE,
                         resp->payload_len) < 0)
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

/* ---- status names -------------------------------------------------------- */

static const struct {
    uint8_t code;
    const char *name;
} status_names[] = {
    { 0,   "no error" },
    { 2,   "invalid split id" },
    { 3,   "invalid RAIDA id" },
    { 4,   "invalid shard" },
    { 5,   "invalid command group" },
    { 6,   "invalid command" },
    { 7,   "invalid coin id" },
    { 16,  "invalid packet length" },
    { 25,  "encryption coin not found" },
    { 27,  "invalid encryption code" },
    { 33,  "invalid EOF" },
    { 34,  "invalid encryption" },
    { 36,  "empty request" },
    { 37,  "invalid CRC" },
    { 38,  "admin authentication failed" },
    { 39,  "payload not a whole number of coin records" },
    { 40,  "invalid serial number or denomination" },
    { 160, "request rate exceeded" },
    { 204, "invalid HMAC" },
    { 241, "all coins passed" },
    { 242, "all coins failed" },
    { 243, "mixed: some coins passed" },
    { 250, "success" },
    { 252, "internal error" },
    { 254, "memory allocation failed" },
    { 255, "invalid routing" },
};

const char *rd_client_status_name(uint8_t status)
{
    for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
        if (status_names[i].code == status)
            return status_names[i].name;
    }
    return "unknown";
}
