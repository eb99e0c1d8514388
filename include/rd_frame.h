/* The RAIDA wire format, in one place: the sizes and byte offsets of the
 * request and response headers of both header families (the legacy
 * 32-byte one, encryption types 0-2, and the 48-byte one, types 4 and 5),
 * the body framing, the status codes, the command numbers raidad serves,
 * and the request and response records every layer passes along. The
 * response buffer's functions are src/rd_frame.c's. docs/protocol.md
 * describes the same bytes in prose.
 *
 * This header is the bottom of the data path (worker -> {tcp, udp} ->
 * protocol -> {commands, crypt} -> frame): it includes no other raidad
 * header, so that the protocol, the commands, the encryption and the
 * client library all read it and none of them has to read another. */
#ifndef RD_FRAME_H
#define RD_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- sizes --------------------------------------------------------------- */

#define RD_PEEK_SIZE            17  /* bytes that reveal the header family (byte 16) */
#define RD_LEGACY_HEADER_SIZE   32  /* types 0, 1, 2: request and response */
#define RD_MODERN_HEADER_SIZE   48  /* types 4, 5: request and response */
#define RD_MAX_HEADER_SIZE      48
#define RD_RESPONSE_HEADER_SIZE 32  /* legacy family; the 48-byte family answers in 48 */
#define RD_CHALLENGE_SIZE       16  /* 12 random bytes, then their CRC-32 */
#define RD_CRC_INPUT_SIZE       12  /* bytes of the challenge its CRC covers */
#define RD_TRAILER_SIZE          2
#define RD_TRAILER_BYTE       0x3E  /* both trailer bytes */
#define RD_MIN_BODY_SIZE        (RD_CHALLENGE_SIZE + RD_TRAILER_SIZE)
#define RD_HMAC_SIZE            32  /* types 4 and 5: HMAC-SHA256 after the ciphertext */
#define RD_MODERN_MIN_BODY_SIZE (RD_HMAC_SIZE + RD_TRAILER_SIZE)
#define RD_MAX_REQUEST_BODY 0xFFFFu /* a request announces its body size in a u16 */
#define RD_MAX_RESPONSE_BODY 0xFFFFFFu  /* a response, in a u24 */
#define RD_COIN_REF_SIZE         5  /* a coin on the wire: denomination (i8), serial number (u32) */
#define RD_COIN_REF_SN           1  /* the serial number's place in it */
#define RD_FRAME_ADDR_SIZE      16  /* a client address: IPv6, or IPv4 mapped */
#define RD_RESPONSE_INLINE      64  /* responses this small need no allocation */

/* ---- request header: bytes 0-16, the same in both families --------------- */

#define RD_REQ_ROUTING       0      /* must be RD_ROUTING_RAIDA */
#define RD_REQ_SPLIT         1      /* must be 0 */
#define RD_REQ_RAIDA_ID      2
#define RD_REQ_SHARD         3
#define RD_REQ_GROUP         4
#define RD_REQ_COMMAND       5
#define RD_REQ_COIN_ID       6      /* u16 */
#define RD_REQ_ENC_TYPE     16      /* which family the rest of the header is */

#define RD_ROUTING_RAIDA     1      /* the RAIDA cloud */
#define RD_COIN_ID_SIZE      2
#define RD_BODY_SIZE_SIZE    2      /* the request's u16 body size */

/* ---- request header, legacy family (32 bytes) ----------------------------- */

#define RD_REQ32_COIN       17      /* types 1, 2: the key's coin (RD_COIN_REF_SIZE bytes) */
#define RD_REQ32_BODY_SIZE  22      /* u16: bytes after the header, trailer included */
#define RD_REQ32_NONCE      24      /* types 1, 2: 8 bytes, padded with 8 zero bytes for CTR */
#define RD_REQ32_NONCE_SIZE  8
#define RD_REQ32_ECHO       30      /* 2 bytes the answer carries back */
#define RD_ECHO_SIZE         2

/* ---- request header, 48-byte family (types 4 and 5) ----------------------- */

#define RD_REQ48_BODY_SIZE  17      /* u16 */
#define RD_REQ48_COIN       19      /* the (first) key's coin */
#define RD_REQ48_NONCE      24      /* 24 bytes; its first 16 are the CTR counter block */
#define RD_REQ48_NONCE_SIZE 24
#define RD_REQ48_COIN2      24      /* type 5: the second coin, inside the nonce */

/* ---- response header: bytes 0-3 and 9-11, the same in both families ------- */

#define RD_RESP_RAIDA_ID     0
#define RD_RESP_SHARD        1
#define RD_RESP_STATUS       2
#define RD_RESP_GROUP        3
#define RD_RESP_BODY_SIZE    9      /* u24: payload and trailer, or 0 for no body */
#define RD_RESP_BODY_SIZE_SIZE 3
#define RD_EXEC_US_SIZE      4      /* u32 execution time in microseconds */

/* ---- response header, legacy family (32 bytes) ---------------------------- */

#define RD_RESP32_FRAMES     4      /* u16: UDP frame count, always 1 */
#define RD_RESP32_FRAMES_SIZE 2
#define RD_RESP32_ECHO       6      /* the request's echo bytes */
#define RD_RESP32_EXEC_US   12
#define RD_RESP32_CHALLENGE 16      /* the challenge hash, RD_CHALLENGE_SIZE bytes */

/* ---- response header, 48-byte family -------------------------------------- */

#define RD_RESP48_EXEC_US    4
#define RD_RESP48_ENC_TYPE  16
#define RD_RESP48_COIN      17      /* the request's (first) coin */
#define RD_RESP48_NONCE     24      /* a fresh nonce, RD_REQ48_NONCE_SIZE bytes */

/* ---- encryption types (request byte 16) ----------------------------------- */

enum rd_enc_type {
    RD_ENC_NONE = 0,
    RD_ENC_AES128 = 1,          /* AES-128-CTR with a coin's key */
    RD_ENC_LOCKER = 2,          /* AES-128-CTR with a locker key: not served */
    RD_ENC_AES256 = 4,          /* AES-256-CTR, key SHA-256 of a coin's key, HMAC */
    RD_ENC_AES256_TWO = 5,      /* the same, key SHA-256 of two coins' keys */
};

/* ---- commands raidad serves ------------------------------------------------ */

#define RD_GROUP_STATUS      0
#define RD_GROUP_AUTH        1
#define RD_CMD_ECHO          0      /* group 0 */
#define RD_CMD_VERSION       1
#define RD_CMD_STATS         2
#define RD_CMD_AUDIT         3
#define RD_CMD_DETECT       10      /* group 1 */
#define RD_CMD_DETECT_SUM   11
#define RD_CMD_POWN         20
#define RD_CMD_POWN_SUM     21

/* ---- status codes (response byte 2) --------------------------------------- */

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

/* The name of a status code ("success", "invalid CRC", ...); "unknown"
 * for a code the protocol does not define. */
const char *rd_frame_status_name(uint8_t status);

/* ---- the records passed along ---------------------------------------------- */

struct rd_cidr;
struct rd_stats;
struct rd_coins;
struct rd_module_set;
struct rd_command;

/* What the protocol needs to know of the server; read-only once set up, so
 * the I/O thread and the pool share it without locks. The commands and the
 * encryption read it too (the coin store, the counters, the admin key). */
typedef struct rd_protocol {
    uint8_t raida_id;
    uint16_t coin_id;
    uint32_t max_body_size;
    bool admin_key_set;
    uint8_t admin_key[16];
    /* Clients that may send the admin key in clear (type 0) over TCP;
     * over UDP it is never accepted in clear. */
    const struct rd_cidr *admin_allow;
    size_t admin_allow_count;
    struct rd_stats *stats;
    struct rd_coins *coins;     /* the coin store, keys of types 1, 4, 5 too; NULL: no coins */
    /* The generation's command modules (rd_module.h); NULL: the built-in
     * ones only. */
    const struct rd_module_set *modules;
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
    uint8_t client[RD_FRAME_ADDR_SIZE];
    bool datagram;
    /* The journal position the answer waits for: it read or wrote a change
     * not yet on stable storage (0: none). See rd_protocol_durable. */
    uint64_t commit_lsn;
} rd_request_t;

/* The answer waits for LSN too: every change it read or wrote is on stable
 * storage before it goes (a key read for the encryption and a command's
 * own change alike), so the furthest position is the one to wait for. */
static inline void rd_request_wait_for(rd_request_t *req, uint64_t lsn)
{
    if (lsn > req->commit_lsn)
        req->commit_lsn = lsn;
}

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
/* Room for N more payload bytes, or NULL when memory is short. Room for
 * the trailer is kept besides, so finishing the answer never fails. */
uint8_t *rd_response_append(rd_response_t *resp, size_t n);
/* Starts an answer with a header of HEADER_LEN bytes and no payload,
 * keeping the block RESP already has (a zero-filled record counts as an
 * initialised one). */
void rd_response_start(rd_response_t *resp, size_t header_len);

#endif
