/* A small edge-triggered epoll loop. Each watched descriptor has an
 * rd_event_t (usually embedded in its owner) whose handler gets the events. */
#ifndef RD_EVENT_H
#define RD_EVENT_H

#include <stdint.h>
#include <sys/epoll.h>

typedef struct rd_event rd_event_t;
typedef void (*rd_event_handler)(rd_event_t *ev, uint32_t events);

struct rd_event {
    int fd;
    rd_event_handler handler;
    void *data;
};

typedef struct rd_event_loop {
    int epfd;
    int max_events;
    struct epoll_event *events;
} rd_event_loop_t;

int rd_event_loop_init(rd_event_loop_t *loop, int max_events);
void rd_event_loop_free(rd_event_loop_t *loop);

int rd_event_add(rd_event_loop_t *loop, rd_event_t *ev, uint32_t mask);
int rd_event_mod(rd_event_loop_t *loop, rd_event_t *ev, uint32_t mask);
int rd_event_del(rd_event_loop_t *loop, rd_event_t *ev);

/* Waits up to TIMEOUT_MS and calls the handler of every ready event.
 * Returns the number of events, 0 on timeout or EINTR, -1 on error. */
int rd_event_loop_poll(rd_event_loop_t *loop, int timeout_ms);

#endif
