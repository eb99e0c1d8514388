/* The RAIDA page files' layout, in one place: where a coin's record lives
 * and what its bytes mean. Used by the coin store (src/rd_coins.c,
 * src/rd_coins_disk.c), the client tools, and raida-coins
 * (tools/raida-coins.c), which makes them.
 *
 * DATA_DIR/Data/DD/MM/PPPP.bin: DD is the denomination (the signed byte as
 * two lowercase hex digits), PPPP the page number (serial number / 1024) in
 * four hex digits and MM its high byte. A page holds 1024 records of 17
 * bytes: the coin's 16-byte key (its authenticity number, AN), then its MFS
 * ("months from start"): 0 when the coin is not issued, otherwise the month
 * of its last change, counted in UTC from February 2023 = 0. */
#ifndef RD_COINFILE_H
#define RD_COINFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define RD_COIN_AN_SIZE       16
#define RD_COIN_RECORD_SIZE   17            /* the AN, then the MFS byte */
#define RD_COIN_MFS_AT        16            /* the MFS byte's offset in a record */
#define RD_COIN_PAGE_RECORDS  1024
#define RD_COIN_PAGE_SIZE     (RD_COIN_PAGE_RECORDS * RD_COIN_RECORD_SIZE)  /* 17,408 */
#define RD_COIN_MIN_DEN       (-8)
#define RD_COIN_MAX_DEN       6
#define RD_COIN_DENS          (RD_COIN_MAX_DEN - RD_COIN_MIN_DEN + 1)      /* 15 */
#define RD_COIN_PAGES         1000          /* pages 0..999 hold the valid serial numbers */
#define RD_COIN_MAX_SN        (RD_COIN_PAGES * RD_COIN_PAGE_RECORDS - 1)   /* 1,023,999 */
/* "/Data/DD/MM/PPPP.bin" and its terminating zero: what a page path adds to
 * the data directory. */
#define RD_COIN_PATH_TAIL     21

/* A coin the RAIDA can hold: denomination -8..6, serial number
 * 0..1,023,999. */
bool rd_coinfile_valid(int8_t den, uint32_t sn);

/* The page that holds serial number SN. */
static inline uint32_t rd_coin_page(uint32_t sn)
{
    return sn / RD_COIN_PAGE_RECORDS;
}

/* Writes DATA_DIR/Data/DD/MM/PPPP.bin into BUF: lowercase hex, what raidad
 * and raida-coins write, or with UPPER the uppercase of older
 * installations (read where there is no lowercase name). PAGE may go up to
 * 0xFFFF (four hex digits), beyond the valid pages, for readers that look
 * further. Returns 0, or -1 with errno: ENAMETOOLONG when SIZE is too
 * small, EINVAL when PAGE has more than four hex digits. */
int rd_coinfile_page_path(char *buf, size_t size, const char *data_dir, int8_t den, uint32_t page,
                          bool upper);

/* Offset of SN's record in its page file. */
static inline size_t rd_coin_record_offset(uint32_t sn)
{
    return (size_t)(sn % RD_COIN_PAGE_RECORDS) * RD_COIN_RECORD_SIZE;
}

/* The MFS of the month NOW falls in (UTC): (year - 2023) * 12 + (month - 2),
 * month 1..12; November 2026 is 45. Clamped to 1..255: 0 would mean "not
 * issued", and one byte holds it (a clock before February 2023 gives 1). */
uint8_t rd_mfs_now(time_t now);

#endif
