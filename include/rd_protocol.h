/* The RAIDA frame, server side: header and body validation, command
 * dispatch and response building. The network layer sees only this
 * interface and never a command's details. The bytes, the status codes
 * and the request and response records are include/rd_frame.h's
 * (docs/protocol.md describes them). */
#ifndef RD_PROTOCOL_H
#define RD_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_frame.h"

/* Header size announced by the first RD_PEEK_SIZE bytes: 48 for types 4
 * and 5, else 32 (an unknown type is refused by validate_header). */
size_t rd_protocol_header_size(const uint8_t *peek);

/* Checks a complete header (req->header, req->header_size bytes) and fills
 * the request's fields. Returns RD_STATUS_NO_ERROR or the status to answer. */
int rd_protocol_validate_header(const rd_protocol_t *p, rd_request_t *req);

/* Checks req->body: length and trailer, and for type 0 the challenge.
 * Encrypted bodies are checked further (key, CRC or HMAC) and decrypted by
 * rd_protocol_run_command, on a pool thread, since finding a key may read a
 * file. Returns RD_STATUS_NO_ERROR or the status to answer. */
int rd_protocol_validate_body(const rd_protocol_t *p, rd_request_t *req);

/* Decrypts the body (encrypted types), runs the request's command and
 * builds its response (success, or the error of decryption or of the
 * command), encrypted like the request. Safe to call from any thread. */
void rd_protocol_run_command(const rd_protocol_t *p, rd_request_t *req, rd_response_t *resp);

/* Counts the answer RESP to REQ in the stats (rd_stats.h), by its status:
 * the network layer calls it once, when the answer is final, so that one
 * replaced (a failed commit, a datagram's answer larger than the datagram)
 * counts once, as what is sent. */
void rd_protocol_count(const rd_protocol_t *p, const rd_request_t *req,
                       const rd_response_t *resp);

/* Builds the answer for a request that failed with STATUS. Uses as much of
 * the request as was read: echo bytes only with a whole header, the
 * challenge only with a body. */
void rd_protocol_error_response(const rd_protocol_t *p, const rd_request_t *req,
                                int status, rd_response_t *resp);

/* One whole frame in FRAME (a datagram, so req->datagram is set): checks
 * its header and body and fills REQ (whose body then points into FRAME).
 * Returns -1 when the frame is too short to be answered at all, else
 * RD_STATUS_NO_ERROR or the status to answer. */
int rd_protocol_read_frame(const rd_protocol_t *p, rd_request_t *req, uint8_t *frame,
                           size_t len);

/* One whole frame in FRAME (a datagram, so req->datagram is set): validates
 * it, runs it, answers;
 * REQ is filled as far as the frame allowed (for the caller's log). The body
 * is decrypted in place. Returns false when the frame is too short to be
 * answered at all (nothing goes into RESP then). */
bool rd_protocol_handle_frame(const rd_protocol_t *p, rd_request_t *req, uint8_t *frame,
                              size_t len, rd_response_t *resp);

/* True when REQ's answer (built by rd_protocol_run_command) may be sent
 * now: everything it read or changed is on stable storage. Otherwise the
 * caller has rd_protocol_commit run first (on a thread that may wait). */
bool rd_protocol_durable(const rd_protocol_t *p, const rd_request_t *req);

/* Waits until the store is durable up to LSN (group commit with every
 * other waiter, in every worker). 0, or -1: the answer must become 252. */
int rd_protocol_commit(const rd_protocol_t *p, uint64_t lsn);

/* Empties the store's journal into the pages when due, or now (FORCE). */
void rd_protocol_checkpoint(const rd_protocol_t *p, bool force);

/* The name of a built-in command, "unknown" for others (tools). */
const char *rd_protocol_command_name(uint8_t group, uint8_t command);
/* The name of REQ's command in its generation, "unknown" when the header
 * named none. */
const char *rd_protocol_request_name(const rd_request_t *req);

/* True when REQ (validated) costs less to run than to hand to another
 * thread: a plain request for a command that touches no coin. The network
 * layer may then run it on its own thread. */
bool rd_protocol_is_quick(const rd_request_t *req);

#endif
