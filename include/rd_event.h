/* A small edge-triggered epoll loop. Each watched descriptor has an
 * rd_event_t (usually embedded in its owner) whose handler gets the events.
 * A handler that stops before its descriptor is drained (it did its share
 * for this wake-up) posts its event: edge-triggered epoll would not report
 * the bytes already waiting, so the loop calls the handler again on its
 * next turn, after the other descriptors and the timers had theirs. */
#ifndef RD_EVENT_H
#define RD_EVENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/epoll.h>

typedef struct rd_event rd_event_t;
typedef void (*rd_event_handler)(rd_event_t *ev, uint32_t events);

struct rd_event {
    int fd;
    rd_event_handler handler;
    void *data;
    bool posted;                        /* on the loop's posted list */
    TAILQ_ENTRY(rd_event) posted_link;
};

typedef struct rd_event_loop {
    int epfd;
    int max_events;
    struct epoll_event *events;
    TAILQ_HEAD(, rd_event) posted;      /* handlers to call again, in order */
} rd_event_loop_t;

int rd_event_loop_init(rd_event_loop_t *loop, int max_events);
void rd_event_loop_free(rd_event_loop_t *loop);

int rd_event_add(rd_event_loop_t *loop, rd_event_t *ev, uint32_t mask);
int rd_event_mod(rd_event_loop_t *loop, rd_event_t *ev, uint32_t mask);
/* Also forgets a posted event. */
int rd_event_del(rd_event_loop_t *loop, rd_event_t *ev);

/* Calls EV's handler with EPOLLIN on the loop's next turn (once, however
 * often posted); the next poll then does not wait. */
void rd_event_post(rd_event_loop_t *loop, rd_event_t *ev);
/* Takes a posted EV off the list: its owner is closing it. */
void rd_event_forget(rd_event_loop_t *loop, rd_event_t *ev);

/* Waits up to TIMEOUT_MS (not at all when events are posted) and calls the
 * handler of every ready event, then of the events posted before this turn.
 * Returns the number of events, 0 on timeout or EINTR, -1 on error. */
int rd_event_loop_poll(rd_event_loop_t *loop, int timeout_ms);

#endif
