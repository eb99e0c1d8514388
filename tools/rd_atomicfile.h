/* Files written whole or not at all: the data goes to a temporary file in
 * the same folder, is synced, and is renamed over the name; then the folder
 * is synced, so that the new name survives a crash too. A reader sees the
 * old file or the new one, never a part. Used by the tools that write coin
 * keys (tools/raida-coins.c, the coin lists of tools/rd_coinlist.c). */
#ifndef RD_ATOMICFILE_H
#define RD_ATOMICFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Writes LEN bytes of DATA as PATH with permissions MODE. Unless REPLACE,
 * an existing PATH is left alone and the call fails with EEXIST (checked
 * by the rename itself, so two writers cannot both win). Returns 0, or -1
 * with errno; on failure no temporary file is left behind. */
int rd_atomicfile_write(const char *path, const void *data, size_t len, mode_t mode, bool replace);

/* mkdir -p: makes PATH and its missing parents with MODE. Returns 0, or -1
 * with errno (ENOTDIR when a part is not a folder). */
int rd_atomicfile_mkdirs(const char *path, mode_t mode);

#endif
