/* A worker's commit threads: answers that must wait for the coin store's
 * journal to reach stable storage wait here, not on a pool thread. The
 * pool hands over an item with the journal position it needs; a commit
 * thread takes every item queued, has the store sync (group commit: one
 * fdatasync for every item waiting, from every worker) and hands the items
 * back through DONE. While one thread waits for its sync the next takes
 * what arrives meanwhile, and its sync overlaps. So a pool thread never
 * waits for a disk, and the number of answers one sync releases is
 * bounded only by the requests in flight. They also run the store's
 * checkpoints when they are due. */
#ifndef RD_COMMIT_H
#define RD_COMMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_protocol.h"

typedef struct rd_commit rd_commit_t;

/* DURABLE false: the journal could not be synced; the answer must say so. */
typedef void rd_commit_done_fn(void *item, bool durable);

/* Room for CAPACITY items (the worker's requests in flight); THREADS
 * commit threads (commit_threads). */
rd_commit_t *rd_commit_create(const rd_protocol_t *p, size_t capacity, size_t threads,
                              rd_commit_done_fn *done, unsigned tick_ms);

/* Queues ITEM until the journal is durable up to LSN. Never fails: the
 * caller has at most CAPACITY items in flight. */
void rd_commit_add(rd_commit_t *c, uint64_t lsn, void *item);

/* Releases every item still waiting (after their sync), stops the
 * threads, checkpoints the store. */
void rd_commit_destroy(rd_commit_t *c);

#endif
