/* What each encryption type changes in a frame, for rd_protocol.c only:
 * where the body size and the coins are, how the body is opened and the
 * answer sealed. The types are a table in rd_crypt.c. */
#ifndef RD_CRYPT_H
#define RD_CRYPT_H

#include <stdbool.h>
#include <stdint.h>

#include "rd_frame.h"

/* Checks that byte 16 names a type served here whose header family is the
 * one read, and takes the body size from where that type keeps it.
 * Returns RD_STATUS_NO_ERROR, 27 (type unknown) or 16 (wrong family). */
int rd_crypt_parse_header(rd_request_t *req);

/* The shortest body of ENC_TYPE, or 0 when the type is not served. */
uint32_t rd_crypt_min_body(uint8_t enc_type);

/* The challenge's CRC matches its 12 random bytes (types 0 and 1). */
bool rd_crypt_challenge_ok(const uint8_t *challenge);

/* Finds the coin keys, checks (CRC or HMAC) and decrypts the body in place,
 * and points req->payload at the command payload. Nothing to do for type 0.
 * Returns RD_STATUS_NO_ERROR or the status to answer. */
int rd_crypt_open(const rd_protocol_t *p, rd_request_t *req);

/* Encrypts the payload in RESP like the request, adds the HMAC and writes
 * the fresh nonce (48-byte family). Returns STATUS, or the error that made
 * it drop the payload. */
int rd_crypt_seal(const rd_request_t *req, rd_response_t *resp, int status);

#endif
