/* The one table of status names (include/rd_frame.h has the codes and
 * docs/protocol.md what each means). */
#include "config.h"

#include <stddef.h>

#include "rd_frame.h"

static const struct {
    uint8_t code;
    const char *name;
} status_names[] = {
    { RD_STATUS_NO_ERROR,                "no error" },
    { RD_STATUS_INVALID_SPLIT,           "invalid split id" },
    { RD_STATUS_INVALID_RAIDA_ID,        "invalid RAIDA id" },
    { RD_STATUS_INVALID_SHARD,           "invalid shard" },
    { RD_STATUS_INVALID_GROUP,           "invalid command group" },
    { RD_STATUS_INVALID_COMMAND,         "invalid command" },
    { RD_STATUS_INVALID_COIN_ID,         "invalid coin id" },
    { RD_STATUS_INVALID_PACKET_LENGTH,   "invalid packet length" },
    { RD_STATUS_COIN_NOT_FOUND,          "encryption coin not found" },
    { RD_STATUS_INVALID_ENCRYPTION_CODE, "invalid encryption code" },
    { RD_STATUS_INVALID_EOF,             "invalid EOF" },
    { RD_STATUS_INVALID_ENCRYPTION,      "invalid encryption" },
    { RD_STATUS_EMPTY_REQUEST,           "empty request" },
    { RD_STATUS_INVALID_CRC,             "invalid CRC" },
    { RD_STATUS_ADMIN_AUTH,              "admin authentication failed" },
    { RD_STATUS_NOT_WHOLE_COINS,         "payload not a whole number of coin records" },
    { RD_STATUS_INVALID_COIN,            "invalid serial number or denomination" },
    { RD_STATUS_RATE_EXCEEDED,           "request rate exceeded" },
    { RD_STATUS_INVALID_HMAC,            "invalid HMAC" },
    { RD_STATUS_ALL_PASS,                "all coins passed" },
    { RD_STATUS_ALL_FAIL,                "all coins failed" },
    { RD_STATUS_MIXED,                   "mixed: some coins passed" },
    { RD_STATUS_SUCCESS,                 "success" },
    { RD_STATUS_INTERNAL_ERROR,          "internal error" },
    { RD_STATUS_MEMORY_ALLOC,            "memory allocation failed" },
    { RD_STATUS_INVALID_ROUTING,         "invalid routing" },
};

const char *rd_frame_status_name(uint8_t status)
{
    for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
        if (status_names[i].code == status)
            return status_names[i].name;
    }
    return "unknown";
}
