/* The edge-triggered epoll loop (see include/rd_event.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "rd_event.h"

int rd_event_loop_init(rd_event_loop_t *loop, int max_events)
{
    loop->max_events = max_events;
    TAILQ_INIT(&loop->posted);
    loop->events = calloc((size_t)max_events, sizeof(*loop->events));
    if (loop->events == NULL)
        return -1;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop->events);
        loop->events = NULL;
        return -1;
    }
    return 0;
}

void rd_event_loop_free(rd_event_loop_t *loop)
{
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->epfd = -1;
    free(loop->events);
    loop->events = NULL;
}

static int event_ctl(rd_event_loop_t *loop, int op, rd_event_t *ev, uint32_t mask)
{
    struct epoll_event ee = { .events = mask, .data.ptr = ev };

    return epoll_ctl(loop->epfd, op, ev->fd, &ee);
}

int rd_event_add(rd_event_loop_t *loop, rd_event_t *ev, uint32_t mask)
{
    return event_ctl(loop, EPOLL_CTL_ADD, ev, mask);
}

int rd_event_mod(rd_event_loop_t *loop, rd_event_t *ev, uint32_t mask)
{
    return event_ctl(loop, EPOLL_CTL_MOD, ev, mask);
}

int rd_event_del(rd_event_loop_t *loop, rd_event_t *ev)
{
    rd_event_forget(loop, ev);
    return event_ctl(loop, EPOLL_CTL_DEL, ev, 0);
}

void rd_event_post(rd_event_loop_t *loop, rd_event_t *ev)
{
    if (ev->posted)
        return;
    ev->posted = true;
    TAILQ_INSERT_TAIL(&loop->posted, ev, posted_link);
}

void rd_event_forget(rd_event_loop_t *loop, rd_event_t *ev)
{
    if (!ev->posted)
        return;
    ev->posted = false;
    TAILQ_REMOVE(&loop->posted, ev, posted_link);
}

/* Only the events posted before this turn run: one that posts itself again
 * waits for the next turn, after epoll had its say. A handler may forget
 * another posted event (closing it): it is then simply not found. */
static void event_run_posted(rd_event_loop_t *loop)
{
    size_t n = 0;
    rd_event_t *ev;

    TAILQ_FOREACH(ev, &loop->posted, posted_link)
        n++;
    while (n-- > 0 && (ev = TAILQ_FIRST(&loop->posted)) != NULL) {
        rd_event_forget(loop, ev);
        ev->handler(ev, EPOLLIN);
    }
}

int rd_event_loop_poll(rd_event_loop_t *loop, int timeout_ms)
{
    int n;

    if (!TAILQ_EMPTY(&loop->posted))
        timeout_ms = 0;
    n = epoll_wait(loop->epfd, loop->events, loop->max_events, timeout_ms);
    if (n < 0 && errno != EINTR)
        return -1;
    for (int i = 0; i < n; i++) {
        rd_event_t *ev = loop->events[i].data.ptr;

        ev->handler(ev, loop->events[i].events);
    }
    event_run_posted(loop);
    return n < 0 ? 0 : n;
}
