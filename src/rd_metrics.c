/* The metrics' shared mapping and the hooks that count into it (see
 * include/rd_metrics.h for the layout and why it is shared). Every hook is
 * a relaxed atomic add or store into memory of the calling process's own
 * slot: no lock, no system call. */
#include "config.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "rd_commands.h"
#include "rd_metrics.h"
#include "rd_clock.h"

const uint64_t rd_metrics_bounds_ns[RD_METRICS_BUCKETS] = {
    50000, 100000, 250000, 500000,                      /* 50 µs .. 500 µs */
    1000000, 2500000, 5000000, 10000000,                /* 1 ms .. 10 ms */
    25000000, 50000000, 100000000, 250000000,           /* 25 ms .. 250 ms */
    500000000, 1000000000, 2500000000ULL, 5000000000ULL, /* 0.5 s .. 5 s */
};

/* This process's view: the mapping, and the slots it writes. */
static struct {
    rd_metrics_t *seg;
    rd_metrics_slot_t *slot;
    rd_metrics_proc_t *proc;
} rd_metrics_state;

static void add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static void set(_Atomic uint64_t *gauge, uint64_t v)
{
    atomic_store_explicit(gauge, v, memory_order_relaxed);
}

int rd_metrics_init(void)
{
    void *mem = mmap(NULL, sizeof(rd_metrics_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (mem == MAP_FAILED)
        return -1;
    rd_metrics_state.seg = mem;
    rd_metrics_state.seg->master.start_time = (uint64_t)time(NULL);
    return 0;
}

void rd_metrics_fini(void)
{
    if (rd_metrics_state.seg != NULL)
        munmap(rd_metrics_state.seg, sizeof(rd_metrics_t));
    memset(&rd_metrics_state, 0, sizeof(rd_metrics_state));
}

const rd_metrics_t *rd_metrics_get(void)
{
    return rd_metrics_state.seg;
}

void rd_metrics_attach(unsigned worker_slot, size_t proc)
{
    rd_metrics_t *m = rd_metrics_state.seg;

    if (m == NULL)
        return;
    rd_metrics_state.slot = &m->slots[worker_slot % RD_METRICS_SLOTS];
    rd_metrics_state.proc = proc < RD_METRICS_PROCS ? &m->procs[proc] : NULL;
}

/* ---- the data path ---- */

static void hist_observe(rd_metrics_hist_t *h, uint64_t ns)
{
    size_t i = 0;

    while (i < RD_METRICS_BUCKETS && ns > rd_metrics_bounds_ns[i])
        i++;
    add(&h->bucket[i], 1);
    add(&h->sum_ns, ns);
}

/* A built-in command's place (rd_command_at), RD_METRICS_COMMANDS for a
 * request whose header named none, a loaded module's command, or past the
 * counted ones: every generation numbers the built-in ones alike. */
static size_t command_index(const rd_request_t *req)
{
    const rd_command_t *cmd = req != NULL && req->header_valid ? req->cmd : NULL;

    if (cmd == NULL || cmd->metrics_index >= RD_METRICS_COMMANDS)
        return RD_METRICS_COMMANDS;
    return cmd->metrics_index;
}

uint64_t rd_metrics_request(int transport, const rd_request_t *req, const rd_response_t *resp,
                            uint64_t start_ns)
{
    rd_metrics_slot_t *s = rd_metrics_state.slot;
    uint64_t now = rd_clock_ns();
    uint64_t ns = start_ns != 0 && now > start_ns ? now - start_ns : 0;
    uint8_t status = resp->len > 2 ? resp->data[2] : 0;
    size_t group = req != NULL && req->header_valid && req->group < RD_METRICS_GROUPS
                       ? req->group : RD_METRICS_GROUPS;

    if (s == NULL)
        return ns;
    add(&s->requests[transport][command_index(req)][status], 1);
    hist_observe(&s->duration[transport][group], ns);
    if (rd_metrics_state.proc != NULL)
        add(&rd_metrics_state.proc->requests, 1);
    return ns;
}

void rd_metrics_accepted(void)
{
    if (rd_metrics_state.slot != NULL)
        add(&rd_metrics_state.slot->accepted, 1);
}

void rd_metrics_refused(int reason)
{
    if (rd_metrics_state.slot != NULL && reason >= 0 && reason < RD_REFUSED_REASONS)
        add(&rd_metrics_state.slot->refused[reason], 1);
}

void rd_metrics_timeout(int kind)
{
    if (rd_metrics_state.slot != NULL && kind >= 0 && kind < RD_TIMEOUT_KINDS)
        add(&rd_metrics_state.slot->timeouts[kind], 1);
}

void rd_metrics_udp(int outcome)
{
    if (rd_metrics_state.slot != NULL && outcome >= 0 && outcome < RD_UDP_OUTCOMES)
        add(&rd_metrics_state.slot->udp[outcome], 1);
}

void rd_metrics_rate_limited(int transport)
{
    if (rd_metrics_state.slot != NULL)
        add(&rd_metrics_state.slot->rate_limited[transport], 1);
}

void rd_metrics_pool_wait(uint64_t waited_ns)
{
    if (rd_metrics_state.slot != NULL)
        hist_observe(&rd_metrics_state.slot->pool_wait, waited_ns);
}

void rd_metrics_store_sync(uint64_t ns)
{
    if (rd_metrics_state.slot != NULL)
        hist_observe(&rd_metrics_state.slot->store_sync, ns);
}

void rd_metrics_commit_wait(uint64_t waited_ns)
{
    if (rd_metrics_state.slot != NULL)
        hist_observe(&rd_metrics_state.slot->commit_wait, waited_ns);
}

void rd_metrics_connections(size_t open)
{
    if (rd_metrics_state.proc != NULL)
        set(&rd_metrics_state.proc->connections, open);
}

void rd_metrics_pool(size_t threads, size_t queued, size_t running)
{
    rd_metrics_proc_t *p = rd_metrics_state.proc;

    if (p == NULL)
        return;
    set(&p->pool_threads, threads);
    set(&p->pool_queue, queued);
    set(&p->pool_busy, running);
}

void rd_metrics_mod_queue(size_t length)
{
    if (rd_metrics_state.proc != NULL)
        set(&rd_metrics_state.proc->mod_queue, length);
}

void rd_metrics_store_pages(size_t mapped)
{
    if (rd_metrics_state.proc != NULL)
        set(&rd_metrics_state.proc->store_pages, mapped);
}

/* ---- the master ---- */

void rd_metrics_reload(bool ok)
{
    if (rd_metrics_state.seg != NULL)
        add(&rd_metrics_state.seg->master.reloads[ok ? 0 : 1], 1);
}

void rd_metrics_generation(unsigned generation)
{
    if (rd_metrics_state.seg != NULL)
        set(&rd_metrics_state.seg->master.generation, generation);
}

void rd_metrics_workers(unsigned serving)
{
    if (rd_metrics_state.seg != NULL)
        set(&rd_metrics_state.seg->master.workers, serving);
}

void rd_metrics_worker_restart(int status)
{
    if (rd_metrics_state.seg != NULL)
        add(&rd_metrics_state.seg->master.restarts[WIFSIGNALED(status) ? RD_RESTART_SIGNAL
                                                                      : RD_RESTART_CRASH], 1);
}

void rd_metrics_proc_gone(size_t proc)
{
    rd_metrics_proc_t *p;

    if (rd_metrics_state.seg == NULL || proc >= RD_METRICS_PROCS)
        return;
    p = &rd_metrics_state.seg->procs[proc];
    set(&p->requests, 0);
    set(&p->connections, 0);
    set(&p->pool_threads, 0);
    set(&p->pool_busy, 0);
    set(&p->pool_queue, 0);
    set(&p->mod_queue, 0);
    set(&p->store_pages, 0);
}

uint64_t rd_metrics_proc_requests(size_t proc)
{
    if (rd_metrics_state.seg == NULL || proc >= RD_METRICS_PROCS)
        return 0;
    return atomic_load_explicit(&rd_metrics_state.seg->procs[proc].requests,
                                memory_order_relaxed);
}
