/* A fixed set of threads running jobs from a bounded FIFO. */
#ifndef RD_THREADPOOL_H
#define RD_THREADPOOL_H

#include <stddef.h>

typedef void (*rd_job_fn)(void *arg);
typedef struct rd_threadpool rd_threadpool_t;

rd_threadpool_t *rd_threadpool_create(unsigned threads, size_t capacity);

/* Queues FN(ARG). Returns -1 when CAPACITY jobs are already waiting. */
int rd_threadpool_submit(rd_threadpool_t *pool, rd_job_fn fn, void *arg);

/* Jobs queued or running right now. */
size_t rd_threadpool_busy(rd_threadpool_t *pool);
unsigned rd_threadpool_threads(const rd_threadpool_t *pool);

/* Runs every job already queued, then joins the threads and frees. */
void rd_threadpool_destroy(rd_threadpool_t *pool);

#endif
