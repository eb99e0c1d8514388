/* What the thread pool hands back on a worker's finished queue (rd_net.h;
 * mod_queue_size): a TCP connection (rd_tcp.c) or a UDP request
 * (rd_udp.c). The queue
 * carries bare pointers, so both records start with this tag, and the I/O
 * thread reads it to know whose record came back. */
#ifndef RD_JOB_H
#define RD_JOB_H

typedef enum rd_job_kind {
    RD_JOB_CONN = 0,            /* zero: a zero-filled connection record is one */
    RD_JOB_DATAGRAM,
} rd_job_kind_t;

/* The tag of a record taken off the queue (C allows reading a struct's
 * first member through a pointer to the struct). */
static inline rd_job_kind_t rd_job_kind(const void *record)
{
    return *(const rd_job_kind_t *)record;
}

#endif
