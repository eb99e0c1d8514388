/* Client side of the protocol, shared by raida-cli, raida-bench and tests:
 * build a request frame, exchange it over TCP or UDP, decode the answer. */
#ifndef RD_CLIENT_H
#define RD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rd_client_request {
    uint8_t raida_id;
    uint16_t coin_id;
    uint8_t shard;
    uint8_t group;
    uint8_t command;
    uint16_t echo;
    const uint8_t *payload;
    size_t payload_len;
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
} rd_client_response_t;

/* Writes an unencrypted (type 0) frame with a fresh random challenge into
 * OUT. Returns its length, or 0 when CAP is too small. The 16 challenge
 * bytes are copied to CHALLENGE when it is not NULL. */
size_t rd_client_build(const rd_client_request_t *r, uint8_t *out, size_t cap,
                       uint8_t *challenge);

/* Decodes a response frame. Returns 0, or -1 if LEN does not hold one. */
int rd_client_parse(const uint8_t *buf, size_t len, rd_client_response_t *resp);

/* Sends REQ to HOST:PORT and reads the answer into RESP (TCP: until the
 * server closes; UDP: one datagram). Returns its length, or -1 with errno. */
long rd_client_exchange(const char *host, const char *port, bool udp,
                        const uint8_t *req, size_t req_len,
                        uint8_t *resp, size_t resp_cap, int timeout_ms);

/* Name of a status code ("success", "invalid CRC", ...); "unknown" if none. */
const char *rd_client_status_name(uint8_t status);

#endif
