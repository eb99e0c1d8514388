/* The scrape: the shared counters summed over their slots and written in
 * the Prometheus text exposition format 0.0.4, with # HELP and # TYPE for
 * every family. It only reads (relaxed loads): the data path never waits
 * for it. A counter read while another process adds to it may miss that
 * add, never see a value go down. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_commands.h"
#include "rd_metrics.h"

typedef struct sbuf {
    char *data;
    size_t len, cap;
    bool failed;
} sbuf_t;

__attribute__((format(printf, 2, 3)))
static void put(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        char *bigger = realloc(b->data, b->cap * 2 + (size_t)n);
        if (bigger == NULL) {
            b->failed = true;
            return;
        }
        b->data = bigger;
        b->cap = b->cap * 2 + (size_t)n;
    }
}

static uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void family(sbuf_t *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- sums over the slots ---- */

#define SUM_SLOTS(m, expr) ({                                   \
    uint64_t sum_ = 0;                                          \
    for (size_t i_ = 0; i_ < RD_METRICS_SLOTS; i_++) {          \
        const rd_metrics_slot_t *s = &(m)->slots[i_];           \
        sum_ += load(&(expr));                                  \
    }                                                           \
    sum_; })

#define SUM_PROCS(m, field) ({                                  \
    uint64_t sum_ = 0;                                          \
    for (size_t i_ = 0; i_ < RD_METRICS_PROCS; i_++)            \
        sum_ += load(&(m)->procs[i_].field);                    \
    sum_; })

/* One series per value of LABEL: the counters ARRAY[0..N) summed over the
 * slots, each labelled with its name from VALUES. */
#define PUT_BY_LABEL(b, m, name, label, values, n, array)                     \
    for (int v_ = 0; v_ < (n); v_++)                                            \
        put(b, name "{" label "=\"%s\"} %llu\n", (values)[v_],                  \
            (unsigned long long)SUM_SLOTS(m, s->array[v_]))

/* A histogram summed over the slots: H_OF(slot) names it in a slot. */
typedef struct hist_sum {
    uint64_t bucket[RD_METRICS_BUCKETS + 1];
    uint64_t sum_ns;
    uint64_t count;
} hist_sum_t;

static void hist_add(hist_sum_t *out, const rd_metrics_hist_t *h)
{
    for (size_t i = 0; i <= RD_METRICS_BUCKETS; i++) {
        uint64_t v = load(&h->bucket[i]);
        out->bucket[i] += v;
        out->count += v;
    }
    out->sum_ns += load(&h->sum_ns);
}

/* _count is the sum of the buckets as read, so that it always equals the
 * +Inf bucket, as the format requires. */
static void hist_put(sbuf_t *b, const char *name, const char *labels, const hist_sum_t *h)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cumulative = 0;

    for (size_t i = 0; i < RD_METRICS_BUCKETS; i++) {
        cumulative += h->bucket[i];
        put(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
            (double)rd_metrics_bounds_ns[i] / 1e9, (unsigned long long)cumulative);
    }
    put(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)h->count);
    put(b, "%s_sum%s%s%s %.9f\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
        (double)h->sum_ns / 1e9);
    put(b, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
        (unsigned long long)h->count);
}

/* A histogram of every slot's FIELD, without labels. */
static void put_slot_hist(sbuf_t *b, const rd_metrics_t *m, const char *name, const char *help,
                          size_t field)
{
    hist_sum_t h = { { 0 }, 0, 0 };

    for (size_t i = 0; i < RD_METRICS_SLOTS; i++)
        hist_add(&h, (const rd_metrics_hist_t *)((const char *)&m->slots[i] + field));
    family(b, name, "histogram", help);
    hist_put(b, name, "", &h);
}

static const char *const transports[RD_METRICS_TRANSPORTS] = { "tcp", "udp" };

/* ---- the families ---- */

static void put_requests(sbuf_t *b, const rd_metrics_t *m)
{
    family(b, "raidad_requests_total", "counter",
           "Requests answered, by transport, command group, command and status code.");
    for (int t = 0; t < RD_METRICS_TRANSPORTS; t++) {
        for (size_t c = 0; c <= RD_METRICS_COMMANDS; c++) {
            const rd_command_t *cmd = c < RD_METRICS_COMMANDS ? rd_command_at(c) : NULL;
            char group[8] = "none";

            if (c < RD_METRICS_COMMANDS && cmd == NULL)
                continue;
            if (cmd != NULL)
                snprintf(group, sizeof(group), "%u", cmd->group);
            for (unsigned st = 0; st < 256; st++) {
                uint64_t v = SUM_SLOTS(m, s->requests[t][c][st]);

                if (v > 0)
                    put(b, "raidad_requests_total{transport=\"%s\",group=\"%s\",command=\"%s\","
                        "status=\"%u\"} %llu\n", transports[t], group,
                        cmd != NULL ? cmd->name : "none", st, (unsigned long long)v);
            }
        }
    }
}

static void put_durations(sbuf_t *b, const rd_metrics_t *m)
{
    family(b, "raidad_request_duration_seconds", "histogram",
           "Time from the whole request read to its answer queued, by transport and "
           "command group.");
    for (int t = 0; t < RD_METRICS_TRANSPORTS; t++) {
        for (size_t g = 0; g <= RD_METRICS_GROUPS; g++) {
            hist_sum_t h = { { 0 }, 0, 0 };
            char labels[64];

            for (size_t i = 0; i < RD_METRICS_SLOTS; i++)
                hist_add(&h, &m->slots[i].duration[t][g]);
            if (h.count == 0)
                continue;
            if (g < RD_METRICS_GROUPS)
                snprintf(labels, sizeof(labels), "transport=\"%s\",group=\"%zu\"",
                         transports[t], g);
            else
                snprintf(labels, sizeof(labels), "transport=\"%s\",group=\"none\"", transports[t]);
            hist_put(b, "raidad_request_duration_seconds", labels, &h);
        }
    }
    put_slot_hist(b, m, "raidad_pool_wait_seconds",
                  "Time a request waited in the thread pool's queue before a thread took it.",
                  offsetof(rd_metrics_slot_t, pool_wait));
}

static void put_connections(sbuf_t *b, const rd_metrics_t *m)
{
    static const char *const reasons[RD_REFUSED_REASONS] = {
        "worker_connections", "per_address", "descriptors", "pool_full" };
    static const char *const kinds[RD_TIMEOUT_KINDS] = { "read", "write" };

    family(b, "raidad_connections_accepted_total", "counter", "TCP connections accepted.");
    put(b, "raidad_connections_accepted_total %llu\n",
        (unsigned long long)SUM_SLOTS(m, s->accepted));
    family(b, "raidad_connections_open", "gauge", "TCP connections open now.");
    put(b, "raidad_connections_open %llu\n", (unsigned long long)SUM_PROCS(m, connections));
    family(b, "raidad_connections_refused_total", "counter",
           "TCP connections or requests turned away, by reason (worker_connections: "
           "times accepting paused at the cap).");
    PUT_BY_LABEL(b, m, "raidad_connections_refused_total", "reason", reasons,
                 RD_REFUSED_REASONS, refused);
    family(b, "raidad_timeouts_total", "counter",
           "TCP connections closed for a timeout, reading the request or writing the answer.");
    PUT_BY_LABEL(b, m, "raidad_timeouts_total", "kind", kinds, RD_TIMEOUT_KINDS, timeouts);
}

static void put_udp(sbuf_t *b, const rd_metrics_t *m)
{
    static const char *const outcomes[RD_UDP_OUTCOMES] = {
        "answered", "dropped_short", "dropped_rate", "dropped_size", "dropped_busy" };

    family(b, "raidad_udp_datagrams_total", "counter",
           "UDP datagrams received, by outcome (dropped: the request was not run).");
    PUT_BY_LABEL(b, m, "raidad_udp_datagrams_total", "outcome", outcomes, RD_UDP_OUTCOMES, udp);
    family(b, "raidad_rate_limited_total", "counter",
           "Requests refused for their address's rate (rate_limit), by transport.");
    PUT_BY_LABEL(b, m, "raidad_rate_limited_total", "transport", transports,
                 RD_METRICS_TRANSPORTS, rate_limited);
}

static void put_gauge(sbuf_t *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "gauge", help);
    put(b, "%s %llu\n", name, (unsigned long long)v);
}

static void put_pool(sbuf_t *b, const rd_metrics_t *m)
{
    put_gauge(b, "raidad_pool_threads", "Request threads, over every worker.",
              SUM_PROCS(m, pool_threads));
    put_gauge(b, "raidad_pool_busy_threads", "Request threads running a request now.",
              SUM_PROCS(m, pool_busy));
    put_gauge(b, "raidad_pool_queue_length", "Requests waiting for a pool thread now.",
              SUM_PROCS(m, pool_queue));
    put_gauge(b, "raidad_mod_queue_length",
              "Finished requests waiting for their I/O thread (modification queues).",
              SUM_PROCS(m, mod_queue));
}

static void put_master(sbuf_t *b, const rd_metrics_t *m)
{
    static const char *const causes[RD_RESTART_CAUSES] = { "crash", "signal", "heartbeat" };
    const rd_metrics_master_t *ms = &m->master;

    family(b, "raidad_reloads_total", "counter", "Configuration reloads, by result.");
    put(b, "raidad_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)load(&ms->reloads[0]));
    put(b, "raidad_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)load(&ms->reloads[1]));
    put_gauge(b, "raidad_config_generation", "Generation of the serving workers (1 at start, "
              "one more per reload started).", load(&ms->generation));
    family(b, "raidad_worker_restarts_total", "counter",
           "Serving workers that died and were replaced, by cause.");
    for (int c = 0; c < RD_RESTART_CAUSES; c++)
        put(b, "raidad_worker_restarts_total{cause=\"%s\"} %llu\n", causes[c],
            (unsigned long long)load(&ms->restarts[c]));
    put_gauge(b, "raidad_workers", "Worker processes serving now.", load(&ms->workers));
    family(b, "raidad_build_info", "gauge", "The running version (always 1).");
    put(b, "raidad_build_info{version=\"%s\",build=\"%s\"} 1\n", PACKAGE_VERSION,
        RAIDAD_BUILD_VERSION);
    put_gauge(b, "process_start_time_seconds", "Start time of the master, in seconds "
              "since the epoch.", ms->start_time);
}

/* How durable writes are doing: the count of the sync histogram is the
 * number of syncs, and the count of the wait histogram over it the
 * requests one sync released. */
static void put_store(sbuf_t *b, const rd_metrics_t *m)
{
    put_slot_hist(b, m, "raidad_store_sync_duration_seconds",
                  "Time of each fdatasync of the coin store's journal (its count: the syncs).",
                  offsetof(rd_metrics_slot_t, store_sync));
    put_slot_hist(b, m, "raidad_store_commit_wait_seconds",
                  "Time an answer with a change waited for the journal sync that covers it "
                  "(its count over the syncs: requests per sync).",
                  offsetof(rd_metrics_slot_t, commit_wait));
    put_gauge(b, "raidad_store_pages_mapped",
              "Coin page files mapped, summed over the worker processes.",
              SUM_PROCS(m, store_pages));
}

char *rd_metrics_render(const rd_metrics_t *m, size_t *len)
{
    sbuf_t b = { .cap = 16384 };

    if (m == NULL || (b.data = malloc(b.cap)) == NULL)
        return NULL;
    put_requests(&b, m);
    put_durations(&b, m);
    put_connections(&b, m);
    put_udp(&b, m);
    put_pool(&b, m);
    put_master(&b, m);
    put_store(&b, m);
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data;
}
