/* The page files' layout (see include/rd_coinfile.h): page paths, valid
 * coins, the MFS month. No I/O here. */
#include "config.h"

#include <errno.h>
#include <stdio.h>

#include "rd_coinfile.h"

bool rd_coinfile_valid(int8_t den, uint32_t sn)
{
    return den >= RD_COIN_MIN_DEN && den <= RD_COIN_MAX_DEN && sn <= RD_COIN_MAX_SN;
}

int rd_coinfile_page_path(char *buf, size_t size, const char *data_dir, int8_t den, uint32_t page,
                          bool upper)
{
    if (page > 0xFFFF) {
        errno = EINVAL;
        return -1;
    }
    int n = snprintf(buf, size, upper ? "%s/Data/%02X/%02X/%04X.bin" : "%s/Data/%02x/%02x/%04x.bin",
                     data_dir, (unsigned)(uint8_t)den, (unsigned)(page >> 8), (unsigned)page);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

uint8_t rd_mfs_now(time_t now)
{
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL)
        return 1;
    long mfs = ((long)tm.tm_year + 1900 - 2023) * 12 + (tm.tm_mon + 1 - 2);
    if (mfs < 1)
        return 1;
    return mfs > 255 ? 255 : (uint8_t)mfs;
}
