/* The RAIDA frame: header and body validation, command dispatch and
 * response building. The network layer sees only this interface and never
 * a command's details (see ../shared/protocol.md for the bytes). */
#ifndef RD_PROTOCOL_H
#define RD_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_cidr.h"
#include "rd_coins.h"
#include "rd_stats.h"

#define RD_PEEK_SIZE            17  /* bytes that reveal the header family (byte 16) */
#define RD_LEGACY_HEADER_SIZE   32
#define RD_MODERN_HEADER_SIZE   48
#define RD_MAX_HEADER_SIZE      48
#define RD_RESPONSE_HEADER_SIZE 32  /* legacy family; the 48-byte family answers in 48 */
#define RD_CHALLENGE_SIZE       16
#define RD_TRAILER_SIZE          2
#define RD_MIN_BODY_SIZE        (RD_CHALLENGE_SIZE + RD_TRAILER_SIZE)
#define RD_HMAC_SIZE            32  /* types 4 and 5: HMAC-SHA256 after the ciphertext */
#define RD_MODERN_MIN_BODY_SIZE (RD_HMAC_SIZE + RD_TRAILER_SIZE)
#define RD_RESPONSE_INLINE      64  /* responses this small need no allocation */

enum rd_status {
    RD_STATUS_NO_ERROR = 0,
    RD_STATUS_INVALID_SPLIT = 2,
    RD_STATUS_INVALID_RAIDA_ID = 3,
    RD_STATUS_INVALID_SHARD = 4,
    RD_STATUS_INVALID_GROUP = 5,
    RD_STATUS_INVALID_COMMAND = 6,
    RD_STATUS_INVALID_COIN_ID = 7,
    RD_STATUS_INVALID_PACKET_LENGTH = 16,
    RD_STATUS_COIN_NOT_FOUND = 25,
    RD_STATUS_INVALID_ENCRYPTION_CODE = 27,
    RD_STATUS_INVALID_EOF = 33,
    RD_STATUS_INVALID_ENCRYPTION = 34,
    RD_STATUS_EMPTY_REQUEST = 36,
    RD_STATUS_INVALID_CRC = 37,
    RD_STATUS_ADMIN_AUTH = 38,
    RD_STATUS_NOT_WHOLE_COINS = 39,   /* group 1: payload not a whole number of coin records */
    RD_STATUS_INVALID_COIN = 40,        /* sum commands: a coin that does not exist */
    RD_STATUS_RATE_EXCEEDED = 160,
    RD_STATUS_INVALID_HMAC = 204,
    RD_STATUS_ALL_PASS = 241,           /* group 1 verdicts */
    RD_STATUS_ALL_FAIL = 242,
    RD_STATUS_MIXED = 243,              /* a bitfield follows */
    RD_STATUS_SUCCESS = 250,
    RD_STATUS_INTERNAL_ERROR = 252,
    RD_STATUS_MEMORY_ALLOC = 254,
    RD_STATUS_INVALID_ROUTING = 255,
};

/* What the protocol needs to know of the server; read-only once set up, so
 * the I/O thread and the pool share it without locks. */
typedef struct rd_protocol {
    uint8_t raida_id;
    uint16_t coin_id;
    uint32_t max_body_size;
    bool admin_key_set;
    uint8_t admin_key[16];
    /* Clients that may send the admin key in clear (type 0) over TCP;
     * over UDP it is never accepted in clear. */
    const rd_cidr_t *admin_allow;
    size_t admin_allow_count;
    rd_stats_t *stats;
    rd_coins_t *coins;          /* the coin store, keys of types 1, 4, 5 too; NULL: no coins */
    /* The generation's command modules (rd_module.h); NULL: the built-in
     * ones only. */
    const struct rd_modset *modules;
} rd_protocol_t;

typedef struct rd_request {
    uint8_t header[RD_MAX_HEADER_SIZE];
    uint16_t header_have;       /* header bytes actually received */
    uint16_t header_size;       /* 32 or 48, once byte 16 is known; 0 before */
    uint8_t group;
    uint8_t command;
    uint8_t enc_type;
    bool header_valid;          /* group and command name a handler */
    const struct rd_command *cmd;   /* that handler, once header_valid */
    uint32_t body_size;         /* from the header: bytes after it, trailer included */
    uint8_t *body;              /* body_size bytes, owned by whoever filled it */
    bool body_complete;         /* all body_size bytes are in body */
    const uint8_t *payload;     /* command payload inside body, after validate_body */
    size_t payload_len;
    uint64_t start_ns;          /* CLOCK_MONOTONIC when processing began */
    /* Encryption (types 1, 4, 5), set by run_command; the key is wiped
     * once the answer is built. */
    uint8_t key[32];            /* type 1: the coin key (16 bytes); 4, 5: the SHA-256 */
    uint8_t challenge_hash[RD_CHALLENGE_SIZE];  /* type 1: challenge XOR key */
    bool challenge_set;         /* type 1: the decrypted challenge passed its CRC */
    /* The sender proved it holds a key: an encrypted request that opened,
     * or an admin command whose key matched. Only such a request may get
     * an answer larger than itself over UDP (no reflection amplifier). */
    bool authenticated;
    /* Where the request came from, set by the network layer: the client's
     * address (rd_cidr.h's 16-byte form; all zero when unknown, which no
     * allow list of loopback matches) and whether it came as a datagram
     * (rd_protocol_handle_frame sets that itself). */
    uint8_t client[RD_ADDR_SIZE];
    bool datagram;
    /* The journal position the answer waits for: it read or wrote a change
     * not yet on stable storage (0: none). See rd_protocol_durable. */
    uint64_t commit_lsn;
} rd_request_t;

/* A whole response frame: header, payload, trailer. */
typedef struct rd_response {
    uint8_t *data;              /* inline_buf or a heap block */
    size_t len;
    size_t cap;
    size_t header_len;          /* 32 or 48: the payload starts there */
    uint8_t inline_buf[RD_RESPONSE_INLINE];
} rd_response_t;

void rd_response_init(rd_response_t *resp);
void rd_response_release(rd_response_t *resp);
/* Room for N more payload bytes, or NULL when memory is short. */
uint8_t *rd_response_append(rd_response_t *resp, size_t n);

uint64_t rd_protocol_now_ns(void);

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
