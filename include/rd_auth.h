/* The authentication commands (group 1: detect, detect sum, pown, pown
 * sum) and audit (group 0, command 3), over the coin store. The payload
 * parsers are apart from the handlers so that they can be tested and
 * fuzzed alone. docs/protocol.md has the bytes (their numbers are
 * include/rd_frame.h's RD_CMD_*); docs/coins.md the
 * store they run on. */
#ifndef RD_AUTH_H
#define RD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "rd_frame.h"

/* A parsed payload: N coin records of STRIDE bytes (denomination, serial
 * number, then AN and PAN as the command has them), and for the sums the
 * XOR of the ANs and the delta. Points into the payload. */
typedef struct rd_auth_payload {
    uint8_t command;
    size_t n;
    size_t stride;
    const uint8_t *coins;
    const uint8_t *sum;         /* sums: the XOR of the N ANs */
    const uint8_t *delta;       /* pown sum: what each AN is XORed with */
} rd_auth_payload_t;

typedef struct rd_auth_coin {
    int8_t den;
    uint32_t sn;
    const uint8_t *an;          /* detect, pown */
    const uint8_t *pan;         /* pown */
} rd_auth_coin_t;

/* Splits PAYLOAD (LEN bytes) for COMMAND. Returns RD_STATUS_NO_ERROR, or
 * 16 (shorter than one coin), 39 (not whole records), and for the sums 40
 * (a coin that cannot exist, or one named twice). */
int rd_auth_parse(uint8_t command, const uint8_t *payload, size_t len, rd_auth_payload_t *out);
void rd_auth_coin(const rd_auth_payload_t *pl, size_t i, rd_auth_coin_t *coin);

/* The bitfield of a mixed answer: bit i mod 8 of byte i / 8 set when coin
 * i passed. OUT holds (N + 7) / 8 bytes. */
void rd_auth_bitfield(const bool *passed, size_t n, uint8_t *out);

/* The handlers, declared to the dispatcher by src/rd_mod_auth.c (group 1)
 * and src/rd_mod_status.c (audit). */
int rd_auth_detect(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp);
int rd_auth_detect_sum(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp);
int rd_auth_pown(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp);
int rd_auth_pown_sum(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp);
int rd_auth_audit(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp);

#endif
