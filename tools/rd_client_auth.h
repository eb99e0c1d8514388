/* Client side of the authentication group (group 1) and of audit (group 0,
 * command 3): the payloads of detect, detect sum, pown and pown sum for N
 * coins, and the decoding of their answers (docs/protocol.md, section
 * "Authentication group"). Frames are made and sent by tools/rd_client.h;
 * the coins come from tools/rd_coinlist.h. Nothing here does I/O. */
#ifndef RD_CLIENT_AUTH_H
#define RD_CLIENT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_client.h"
#include "rd_coinfile.h"
#include "rd_frame.h"

#define RD_AUDIT_RECORD_SIZE 5      /* den (1) and issued coins (4) */
#define RD_AUDIT_SIZE       (RD_COIN_DENS * RD_AUDIT_RECORD_SIZE)   /* 75 */

enum rd_auth_cmd {
    RD_AUTH_DETECT = RD_CMD_DETECT,         /* N x (den, sn, AN) */
    RD_AUTH_DETECT_SUM = RD_CMD_DETECT_SUM, /* N x (den, sn), XOR of the ANs */
    RD_AUTH_POWN = RD_CMD_POWN,             /* N x (den, sn, AN, PAN) */
    RD_AUTH_POWN_SUM = RD_CMD_POWN_SUM,     /* N x (den, sn), XOR of the ANs, delta */
};

/* The answer to an authentication command (rd_client_auth_parse_result). */
enum {
    RD_AUTH_MALFORMED = -1,     /* a result status with a body that does not fit */
    RD_AUTH_NO_RESULT = -2,     /* another status: the request was refused (16, 39, 40...) */
};

/* Bytes of the payload of CMD for N coins; 0 when N is 0 or CMD unknown. */
size_t rd_client_auth_payload_size(enum rd_auth_cmd cmd, size_t n);

/* Writes the payload of CMD for the N COINS (their key is the AN they are
 * known by) into OUT. NEW (pown: N PANs, 16 bytes each; pown sum: the
 * 16-byte delta) is not read by the detect commands and may be NULL there.
 * Returns the payload's length, or 0 when CAP is too small, N is 0 or NEW
 * is missing. */
size_t rd_client_auth_build(enum rd_auth_cmd cmd, const rd_client_coin_t *coins, size_t n,
                     const uint8_t *new_an, uint8_t *out, size_t cap);

/* XOR of the N coins' ANs into SUM (what the sum commands send). */
void rd_client_auth_xor(const rd_client_coin_t *coins, size_t n, uint8_t sum[RD_CLIENT_KEY_SIZE]);

/* Bytes of the bitfield of N coins: ceil(N / 8). */
static inline size_t rd_auth_bitfield_size(size_t n)
{
    return (n + 7) / 8;
}

/* Coin I's bit: bit I % 8 of byte I / 8, least significant first. */
static inline bool rd_auth_passed(const uint8_t *bits, size_t i)
{
    return (bits[i / 8] >> (i % 8)) & 1;
}

/* Decodes the answer to CMD for N coins, from its status and payload (the
 * body without the trailer). PASSED (rd_auth_bitfield_size(N) bytes) gets
 * which coins passed. Returns how many passed; RD_AUTH_NO_RESULT for a
 * status that is no verdict (PASSED untouched); RD_AUTH_MALFORMED for a
 * verdict that breaks the protocol: 241 or 242 with a body, 243 to a sum
 * command or with a bitfield of another size, with bits set past N, or
 * saying all passed or all failed. */
long rd_client_auth_parse_result(enum rd_auth_cmd cmd, uint8_t status, const uint8_t *payload,
                          size_t len, size_t n, uint8_t *passed);

/* Decodes an audit answer's payload: COUNT[i] gets the issued coins of
 * denomination RD_COIN_MIN_DEN + i. Returns 0, or -1 when it is not the
 * 15 records of denominations -8..6 in order. */
int rd_client_auth_parse_audit(const uint8_t *payload, size_t len, uint32_t count[RD_COIN_DENS]);

#endif
