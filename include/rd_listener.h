/* The listening sockets: for each listen address, a TCP and a UDP group of
 * SO_REUSEPORT sockets, one socket per CPU (include/rd_reuseport.h). */
#ifndef RD_LISTENER_H
#define RD_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "rd_config.h"
#include "rd_event.h"

typedef struct rd_listener {
    int fd;
    int type;                   /* SOCK_STREAM or SOCK_DGRAM */
    rd_listen_addr_t addr;
    unsigned slot;              /* its index in the address's group */
    unsigned slots;             /* the group's size */
} rd_listener_t;

/* Binds every listen address of CF, TCP and UDP. On failure logs why,
 * closes what it opened and returns -1. */
int rd_listeners_open(const rd_config_t *cf, rd_listener_t **out, size_t *count);
void rd_listeners_close(rd_listener_t *ls, size_t count);

/* The same, for a reload: a group whose address and type are unchanged is
 * taken over from OLD (same descriptors), so its queues live on; only new
 * addresses are bound. */
int rd_listeners_open_reusing(const rd_config_t *cf, const rd_listener_t *old, size_t old_count,
                              rd_listener_t **out, size_t *count);

/* Frees LS, closing every descriptor that KEEP does not also hold. */
void rd_listeners_release(rd_listener_t *ls, size_t count,
                          const rd_listener_t *keep, size_t keep_count);

/* One socket of TYPE bound to A (and listening, for SOCK_STREAM), without
 * the RAIDA listeners' options; -1 (logged) on failure. */
int rd_listener_bind(const rd_listen_addr_t *a, int type);

/* Puts EV, a listener's event, in LOOP when WANT, takes it out otherwise;
 * *IN_LOOP says where it is. -1 (logged) when it could not be put in. */
int rd_listener_watch(rd_event_loop_t *loop, rd_event_t *ev, bool *in_loop, bool want);

#endif
