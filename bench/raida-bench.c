/* raida-bench: load generator for RAIDA servers, in the manner of
 * redis-benchmark. TCP: C connections kept busy, one request per
 * connection as the protocol has it. UDP: C datagrams outstanding. Idle:
 * C connections held open, for measuring the server's memory per
 * connection. Every answer is checked byte for byte.
 *
 * The request is an echo, or (-m) a detect of N coins or a pown of one
 * coin, the coins from a coin list (tools/rd_coinlist.h). A coin belongs
 * to one thread, and a pown takes a coin no other request holds, so the
 * bench always knows each coin's AN: every detect and pown must pass. A
 * pown that got no answer leaves its coin's AN unknown; such coins are
 * settled by detect at the end, and the list is rewritten with the ANs the
 * coins have. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "rd_bytes.h"
#include "rd_client.h"
#include "rd_client_auth.h"
#include "rd_clock.h"
#include "rd_coinlist.h"
#include "rd_crypto.h"
#include "rd_protocol.h"
#include "rd_sockaddr.h"

#define EXIT_OK       0
#define EXIT_BAD      1     /* at least one bad answer */
#define EXIT_USAGE    2     /* bad arguments or setup failure */

#define NS_PER_S      1000000000ull
#define NS_PER_MS     1000000ull
#define REQ_ECHO_CAP  96    /* an echo request: 50 bytes, 82 for type 4 */
#define RESP_CAP      128   /* answers are 32 bytes (48 for type 4): more is a bad answer */
#define MAX_COINS_PER_REQ 512   /* a detect of 512 coins takes 10,752 bytes */
#define AN_SIZE       RD_CLIENT_KEY_SIZE
#define MAX_EVENTS    512
#define RETRY_NS      (10 * NS_PER_MS)  /* pause of a slot after a failed connect */
#define POLL_MAX_MS   100   /* the loop looks at the stop flag this often at least */
#define UDP_ECHOES    65536u
#define UDP_BATCH     64
#define UDP_RCVBUF    (4 << 20)
#define MAX_BAD_SHOWN 5
#define MAX_CONNS     1000000ul
#define MAX_THREADS   64u
#define FD_RESERVE    32    /* descriptors besides the connections */

/* ---- latency histogram --------------------------------------------------- */

/* Log-linear buckets (as HdrHistogram): 2^7 sub-buckets per power of two
 * keep every value within 1% in 58 KB, whatever the run's length. */
#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_SIZE     ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct hist {
    uint64_t count[HIST_SIZE];
    uint64_t total;
    uint64_t max;
} hist_t;

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned shift = 63u - (unsigned)__builtin_clzll(v) - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (unsigned)(v >> shift) - HIST_SUB;
}

/* The highest value a bucket holds: a percentile is never understated. */
static uint64_t hist_high(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned shift = i / HIST_SUB - 1;
    uint64_t mantissa = i % HIST_SUB + HIST_SUB;
    return ((mantissa + 1) << shift) - 1;
}

static void hist_record(hist_t *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(hist_t *into, const hist_t *from)
{
    for (unsigned i = 0; i < HIST_SIZE; i++)
        into->count[i] += from->count[i];
    into->total += from->total;
    if (from->max > into->max)
        into->max = from->max;
}

static uint64_t hist_percentile(const hist_t *h, double q)
{
    uint64_t want = (uint64_t)(q / 100.0 * (double)h->total + 0.999999);
    uint64_t seen = 0;

    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < HIST_SIZE; i++) {
        seen += h->count[i];
        if (seen >= want)
            return hist_high(i) < h->max ? hist_high(i) : h->max;
    }
    return h->max;
}

/* ---- state --------------------------------------------------------------- */

enum mode { MODE_TCP, MODE_UDP, MODE_IDLE };
enum cmd { CMD_ECHO, CMD_DETECT, CMD_POWN };
enum err_kind { ERR_CONNECT, ERR_CLOSED, ERR_TIMEOUT, ERR_BAD, ERR_KINDS };
enum slot_state { SLOT_FREE, SLOT_PARKED, SLOT_CONNECTING, SLOT_WAITING, SLOT_HELD };

static const char *const err_names[ERR_KINDS] = { "connect", "closed", "timeout", "bad_answer" };

typedef struct options {
    enum mode mode;
    unsigned long conns;
    uint64_t requests;          /* 0: bounded by time only */
    double seconds;             /* 0: bounded by -n only */
    unsigned threads;
    int timeout_ms;
    bool json;
    bool quiet;
    bool allow_remote;
    uint8_t raida_id;
    uint16_t coin_id;
    uint8_t enc_type;           /* 0, or 1 or 4 with coin */
    rd_client_coin_t coin;
    bool key_set;
    enum cmd cmd;               /* -m */
    unsigned per_req;           /* -N: coins per detect */
    const char *list_path;      /* -L */
    const char *ack_path;       /* -A */
    rd_coinlist_t list;         /* the coins and their ANs; coin i belongs to thread i % threads */
    size_t req_cap;
    const char *host;
    const char *port;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char addr_text[INET6_ADDRSTRLEN];
} options_t;

typedef struct slot slot_t;

TAILQ_HEAD(slot_list, slot);
typedef struct slot_list slot_list_t;

/* One request in flight (or one held connection). */
struct slot {
    TAILQ_ENTRY(slot) link;
    slot_list_t *list;          /* the list it is on, if any */
    int fd;
    enum slot_state state;
    uint32_t index;
    uint16_t echo;
    uint64_t start_ns;
    size_t req_len;
    size_t sent;
    size_t got;
    uint8_t challenge[RD_CHALLENGE_SIZE];
    rd_client_ctx_t ctx;        /* encrypted requests: how to open the answer */
    long coin;                  /* pown: the list index of the coin it holds, or -1 */
    uint8_t pan[AN_SIZE];       /* pown: the coin's AN once it passes */
    uint8_t *req;               /* opt.req_cap bytes */
    uint8_t resp[RESP_CAP];
};

/* A coin's AN is known, or (a pown without an answer) one of two. */
typedef struct coin_state {
    bool unknown;               /* the AN is the list's or PAN: settled at the end */
    uint8_t pan[AN_SIZE];
} coin_state_t;

/* A pown the server acknowledged: coin INDEX has AN PAN now. */
typedef struct ack {
    uint32_t index;
    uint8_t pan[AN_SIZE];
} ack_t;

struct bench;

typedef struct worker {
    struct bench *b;
    pthread_t tid;
    int epfd;
    int udp_fd;
    slot_t *slots;
    size_t nslots;
    size_t active;              /* slots not free */
    slot_list_t pending;        /* in flight, oldest first: the timeout order */
    slot_list_t parked;         /* waiting to retry after a failed connect */
    uint64_t retry_at;
    uint16_t next_echo;
    int32_t *echo_slot;         /* UDP: echo bytes -> slot index, -1 free */
    uint32_t *out;              /* UDP: slots whose request awaits sending */
    size_t out_count;
    uint8_t *reqs;              /* the slots' request buffers */
    /* Coins (-m detect, pown): this thread's share of the list. */
    uint32_t *coins;            /* list indexes */
    size_t ncoins;
    size_t next_coin;           /* detect: where the next request starts */
    uint32_t *idle_coins;       /* pown: a ring of the coins no request holds */
    size_t idle_head, idle_count;
    uint8_t *payload;           /* scratch for building a payload */
    rd_client_coin_t *batch;    /* detect: the coins of one request */
    ack_t *acks;
    size_t nacks, acks_cap;
    uint64_t no_coin;           /* pown: requests not sent, every coin being busy */
    hist_t hist;
    uint64_t ok;
    uint64_t err[ERR_KINDS];
    uint64_t late;              /* UDP answers after their timeout */
    uint64_t established;       /* idle mode */
    uint64_t closed_by_peer;
    uint64_t end_ns;
    _Atomic uint64_t shown_ok;  /* copies for the progress line */
    _Atomic uint64_t shown_err;
    _Atomic uint64_t shown_est;
    atomic_bool finished;
} worker_t;

typedef struct bench {
    options_t opt;
    coin_state_t *coin_state;   /* one per coin of opt.list */
    uint64_t start_ns;
    uint64_t deadline_ns;       /* 0: none */
    uint64_t timeout_ns;
    atomic_bool stop;
    atomic_bool failed;         /* a worker could not go on */
    _Atomic uint64_t issued;    /* requests handed out, against -n */
    atomic_uint bad_shown;
    /* After a pown run (main thread only). */
    uint64_t acks;              /* powns the server acknowledged */
    uint64_t settled;           /* coins whose AN a detect at the end told */
    uint64_t unsettled;         /* coins whose AN is still not known */
    worker_t *workers;
    unsigned nworkers;
} bench_t;

static volatile sig_atomic_t interrupted;

static void close_keep_errno(int fd)
{
    int saved = errno;

    close(fd);
    errno = saved;
}

/* ---- slot lists ---------------------------------------------------------- */

static void list_append(slot_list_t *l, slot_t *s)
{
    s->list = l;
    TAILQ_INSERT_TAIL(l, s, link);
}

static void list_remove(slot_t *s)
{
    slot_list_t *l = s->list;

    if (l == NULL)
        return;
    TAILQ_REMOVE(l, s, link);
    s->list = NULL;
}

/* ---- recording outcomes -------------------------------------------------- */

static bool past_deadline(const bench_t *b, uint64_t now)
{
    return b->deadline_ns != 0 && now >= b->deadline_ns;
}

/* Outcomes after the deadline are not counted: the run's length is the
 * deadline, so counting them would inflate the rate. */
static bool record_allowed(worker_t *w, uint64_t now)
{
    if (!past_deadline(w->b, now))
        return true;
    atomic_store_explicit(&w->b->stop, true, memory_order_relaxed);
    return false;
}

static void record_ok(worker_t *w, const slot_t *s, uint64_t now)
{
    if (!record_allowed(w, now))
        return;
    hist_record(&w->hist, now - s->start_ns);
    w->ok++;
}

static void record_error(worker_t *w, enum err_kind kind, uint64_t now)
{
    if (record_allowed(w, now))
        w->err[kind]++;
}

static void show_bad(bench_t *b, const char *why)
{
    if (atomic_fetch_add(&b->bad_shown, 1) < MAX_BAD_SHOWN)
        fprintf(stderr, "raida-bench: bad answer: %s\n", why);
}

/* Takes a ticket for one more request, against -n and the stop flag. */
static bool claim(worker_t *w)
{
    bench_t *b = w->b;

    if (atomic_load_explicit(&b->stop, memory_order_relaxed))
        return false;
    if (b->opt.requests == 0)
        return true;
    return atomic_fetch_add_explicit(&b->issued, 1, memory_order_relaxed) < b->opt.requests;
}

static void slot_free(worker_t *w, slot_t *s)
{
    s->state = SLOT_FREE;
    w->active--;
}

/* ---- coins (-m detect, pown) ---------------------------------------------- */

enum coin_outcome {
    COIN_POWNED,                /* the server said so: the AN is the PAN */
    COIN_UNCHANGED,             /* not sent, or refused: the AN is the old one */
    COIN_UNKNOWN,               /* sent, no verdict came: settled at the end */
};

static void idle_coin_push(worker_t *w, uint32_t i)
{
    w->idle_coins[(w->idle_head + w->idle_count++) % w->ncoins] = i;
}

static bool idle_coin_pop(worker_t *w, uint32_t *i)
{
    if (w->idle_count == 0)
        return false;
    *i = w->idle_coins[w->idle_head];
    w->idle_head = (w->idle_head + 1) % w->ncoins;
    w->idle_count--;
    return true;
}

static void add_ack(worker_t *w, uint32_t index, const uint8_t *pan)
{
    if (w->nacks == w->acks_cap) {
        size_t cap = w->acks_cap ? 2 * w->acks_cap : 1024;
        ack_t *a = realloc(w->acks, cap * sizeof(*a));
        if (a == NULL) {
            fprintf(stderr, "raida-bench: out of memory for the acknowledged powns\n");
            atomic_store(&w->b->failed, true);
            atomic_store(&w->b->stop, true);
            return;
        }
        w->acks = a;
        w->acks_cap = cap;
    }
    w->acks[w->nacks].index = index;
    memcpy(w->acks[w->nacks++].pan, pan, AN_SIZE);
}

/* The slot's pown is over: its coin goes back to the idle ones with the
 * AN it has now, or waits for the end when that is not known. */
static void coin_done(worker_t *w, slot_t *s, enum coin_outcome how)
{
    if (s->coin < 0)
        return;
    uint32_t i = (uint32_t)s->coin;
    s->coin = -1;
    switch (how) {
    case COIN_POWNED:
        memcpy(w->b->opt.list.coin[i].key, s->pan, AN_SIZE);
        add_ack(w, i, s->pan);
        idle_coin_push(w, i);
        break;
    case COIN_UNCHANGED:
        idle_coin_push(w, i);
        break;
    case COIN_UNKNOWN:
        w->b->coin_state[i].unknown = true;
        memcpy(w->b->coin_state[i].pan, s->pan, AN_SIZE);
        break;
    }
}

/* What an answer says of the pown's coin: a parsed status other than a
 * pass (or a mixed one, which one coin cannot have) changed nothing. */
static enum coin_outcome outcome_of(bool ok, int status)
{
    if (ok)
        return COIN_POWNED;
    if (status >= 0 && status != RD_STATUS_ALL_PASS && status != RD_STATUS_MIXED)
        return COIN_UNCHANGED;
    return COIN_UNKNOWN;
}

/* detect: the next N coins of this thread's share, round robin. */
static size_t detect_payload(worker_t *w)
{
    const options_t *o = &w->b->opt;
    for (unsigned k = 0; k < o->per_req; k++) {
        w->batch[k] = o->list.coin[w->coins[w->next_coin]];
        w->next_coin = (w->next_coin + 1) % w->ncoins;
    }
    return rd_client_auth_build(RD_AUTH_DETECT, w->batch, o->per_req, NULL, w->payload, o->req_cap);
}

/* pown: an idle coin and a fresh random PAN; 0 when no coin is idle. */
static size_t pown_payload(worker_t *w, slot_t *s)
{
    const options_t *o = &w->b->opt;
    uint32_t i;
    if (!idle_coin_pop(w, &i)) {
        w->no_coin++;
        return 0;
    }
    if (rd_crypto_random_bytes(s->pan, AN_SIZE) < 0) {
        idle_coin_push(w, i);
        fprintf(stderr, "raida-bench: no random bytes for a PAN\n");
        atomic_store(&w->b->failed, true);
        atomic_store(&w->b->stop, true);
        return 0;
    }
    s->coin = (long)i;
    return rd_client_auth_build(RD_AUTH_POWN, &o->list.coin[i], 1, s->pan, w->payload, o->req_cap);
}

/* ---- requests ------------------------------------------------------------ */

static bool build_request(worker_t *w, slot_t *s)
{
    const options_t *o = &w->b->opt;
    rd_client_request_t r = {
        .raida_id = o->raida_id, .coin_id = o->coin_id,
        .group = 0, .command = 0, .echo = s->echo,
        .enc_type = o->enc_type, .coin = { o->coin },
    };

    if (o->cmd != CMD_ECHO) {
        r.group = RD_GROUP_AUTH;
        r.command = o->cmd == CMD_DETECT ? RD_AUTH_DETECT : RD_AUTH_POWN;
        r.payload = w->payload;
        r.payload_len = o->cmd == CMD_DETECT ? detect_payload(w) : pown_payload(w, s);
        /* No coin idle: this slot rests (pown_payload said why otherwise). */
        if (r.payload_len == 0)
            return false;
    }
    if (o->enc_type != 0)
        s->req_len = rd_client_seal(&r, s->req, o->req_cap, &s->ctx);
    else
        s->req_len = rd_client_build(&r, s->req, o->req_cap, s->challenge);
    if (s->req_len > 0)
        return true;
    coin_done(w, s, COIN_UNCHANGED);
    fprintf(stderr, "raida-bench: cannot build a request (random bytes)\n");
    atomic_store(&w->b->failed, true);
    atomic_store(&w->b->stop, true);
    return false;
}

/* Decodes an answer; an encrypted one is checked and opened in place. */
static int decode_answer(const bench_t *b, const slot_t *s, uint8_t *buf, size_t len,
                         rd_client_response_t *r)
{
    if (b->opt.enc_type == 0)
        return rd_client_parse(buf, len, r);
    return rd_client_open(&s->ctx, buf, len, r);
}

/* The challenge came back as it should: type 0 echoes it, type 1 hashes it
 * with the key (rd_client_open checks that); the 48-byte family has none. */
static bool challenge_ok(const bench_t *b, const slot_t *s, const rd_client_response_t *r)
{
    if (b->opt.enc_type == 0)
        return memcmp(r->challenge_hash, s->challenge, RD_CHALLENGE_SIZE) == 0;
    return b->opt.enc_type != 1 || r->authentic;
}

/* The answer expected: status 250 to an echo, 241 (every coin passed) to
 * a detect or pown; our echo bytes and challenge; no body. *STATUS gets
 * the answer's status, or -1 when it is no frame. */
static bool answer_ok(const bench_t *b, const slot_t *s, uint8_t *buf, size_t len,
                      char *why, size_t cap, int *status)
{
    size_t header = b->opt.enc_type >= 4 ? RD_MODERN_HEADER_SIZE : RD_RESPONSE_HEADER_SIZE;
    bool echo = b->opt.cmd == CMD_ECHO;
    uint8_t want = echo ? RD_STATUS_SUCCESS : RD_STATUS_ALL_PASS;
    uint8_t group = echo ? RD_GROUP_STATUS : RD_GROUP_AUTH;
    rd_client_response_t r;

    *status = -1;
    if (decode_answer(b, s, buf, len, &r) < 0) {
        snprintf(why, cap, "%zu bytes, not a response frame", len);
        return false;
    }
    *status = r.status;
    if (r.status != want)
        snprintf(why, cap, "status %u (%s)", r.status, rd_frame_status_name(r.status));
    else if (r.raida_id != b->opt.raida_id)
        snprintf(why, cap, "RAIDA id %u, not %u", r.raida_id, b->opt.raida_id);
    else if (r.group != group)
        snprintf(why, cap, "command group %u, not %u", r.group, group);
    else if (header == RD_RESPONSE_HEADER_SIZE && r.echo != s->echo)
        snprintf(why, cap, "echo bytes %04x, not %04x", r.echo, s->echo);
    else if (r.body_size != 0 || len != header)
        snprintf(why, cap, "body size %u in %zu bytes, not an empty body", r.body_size, len);
    else if (!challenge_ok(b, s, &r))
        snprintf(why, cap, "the challenge did not come back");
    else
        return true;
    return false;
}

/* ---- TCP ----------------------------------------------------------------- */

static int tcp_open(const options_t *o)
{
    int fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)&o->addr, o->addr_len) == 0 || errno == EINPROGRESS)
        return fd;
    close_keep_errno(fd);
    return -1;
}

static void tcp_start(worker_t *w, slot_t *s);

static void tcp_next(worker_t *w, slot_t *s)
{
    if (claim(w))
        tcp_start(w, s);
    else
        slot_free(w, s);
}

/* A failed connect is retried after a pause, not at once: a server that
 * refuses would otherwise be hammered in a tight loop. */
static void tcp_park(worker_t *w, slot_t *s, enum err_kind kind, uint64_t now)
{
    coin_done(w, s, COIN_UNCHANGED);    /* nothing was sent */
    record_error(w, kind, now);
    if (!claim(w)) {
        slot_free(w, s);
        return;
    }
    s->state = SLOT_PARKED;
    if (TAILQ_EMPTY(&w->parked))
        w->retry_at = now + RETRY_NS;
    list_append(&w->parked, s);
}

static void tcp_end(slot_t *s)
{
    close(s->fd);
    s->fd = -1;
    list_remove(s);
}

static void tcp_fail(worker_t *w, slot_t *s, enum err_kind kind)
{
    uint64_t now = rd_clock_ns();

    tcp_end(s);
    if (kind == ERR_CONNECT) {
        tcp_park(w, s, kind, now);
        return;
    }
    coin_done(w, s, COIN_UNKNOWN);
    record_error(w, kind, now);
    tcp_next(w, s);
}

static void tcp_judge(worker_t *w, slot_t *s)
{
    uint64_t now = rd_clock_ns();
    char why[128];
    int status;
    bool ok;

    tcp_end(s);
    ok = answer_ok(w->b, s, s->resp, s->got, why, sizeof(why), &status);
    coin_done(w, s, outcome_of(ok, status));
    if (ok) {
        record_ok(w, s, now);
    } else {
        record_error(w, ERR_BAD, now);
        show_bad(w->b, why);
    }
    tcp_next(w, s);
}

static bool connect_errno(int err)
{
    return err == ECONNREFUSED || err == ETIMEDOUT || err == ENETUNREACH
        || err == EHOSTUNREACH || err == EADDRNOTAVAIL;
}

/* Returns 1 when the request is out, 0 when the socket is not ready yet
 * (still connecting), -1 on an error (errno). */
static int tcp_send(slot_t *s)
{
    while (s->sent < s->req_len) {
        ssize_t n = send(s->fd, s->req + s->sent, s->req_len - s->sent, MSG_NOSIGNAL);

        if (n >= 0)
            s->sent += (size_t)n;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        else if (errno != EINTR)
            return -1;
    }
    s->state = SLOT_WAITING;
    return 1;
}

static enum err_kind send_error_kind(int err)
{
    return connect_errno(err) ? ERR_CONNECT : ERR_CLOSED;
}

/* Sending at once after connect() usually works on loopback, where the
 * handshake completes within the call: it saves waiting for EPOLLOUT. A
 * failure here parks the slot, never restarts it at once, so that a server
 * refusing everything cannot drive this into deep recursion. */
static void tcp_start(worker_t *w, slot_t *s)
{
    struct epoll_event ee = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s };

    s->echo = w->next_echo++;
    if (!build_request(w, s)) {
        slot_free(w, s);
        return;
    }
    s->start_ns = rd_clock_ns();
    s->sent = s->got = 0;
    s->fd = tcp_open(&w->b->opt);
    if (s->fd >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->fd, &ee) < 0) {
        close(s->fd);
        s->fd = -1;
    }
    if (s->fd < 0) {
        tcp_park(w, s, ERR_CONNECT, s->start_ns);
        return;
    }
    s->state = SLOT_CONNECTING;
    list_append(&w->pending, s);
    if (tcp_send(s) < 0) {
        enum err_kind kind = send_error_kind(errno);

        tcp_end(s);
        tcp_park(w, s, kind, rd_clock_ns());
    }
}

/* The server closes after its answer, so EOF ends it. With the peer's FIN
 * already seen (EPOLLRDHUP), a short read has emptied the socket and the
 * read that would return 0 is skipped. */
static void tcp_read(worker_t *w, slot_t *s, bool peer_closed)
{
    for (;;) {
        size_t room = RESP_CAP - s->got;
        ssize_t n;

        if (room == 0) {
            tcp_judge(w, s);    /* too long: the judge says so */
            return;
        }
        n = recv(s->fd, s->resp + s->got, room, 0);
        if (n > 0) {
            s->got += (size_t)n;
            if (peer_closed && (size_t)n < room)
                break;
        } else if (n == 0) {
            break;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else if (errno != EINTR) {
            if (s->got == 0) {
                tcp_fail(w, s, ERR_CLOSED);
                return;
            }
            break;
        }
    }
    if (s->got == 0)
        tcp_fail(w, s, ERR_CLOSED);
    else
        tcp_judge(w, s);
}

static void tcp_event(worker_t *w, slot_t *s, uint32_t events)
{
    if (s->state == SLOT_CONNECTING) {
        int rc = tcp_send(s);

        if (rc < 0)
            tcp_fail(w, s, send_error_kind(errno));
        if (rc <= 0)
            return;
    }
    if (s->state == SLOT_WAITING && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        tcp_read(w, s, (events & (EPOLLRDHUP | EPOLLHUP)) != 0);
}

static void tcp_expire(worker_t *w, slot_t *s)
{
    tcp_fail(w, s, ERR_TIMEOUT);
}

/* ---- UDP ----------------------------------------------------------------- */

static void udp_start(worker_t *w, slot_t *s);

static void udp_next(worker_t *w, slot_t *s)
{
    if (claim(w))
        udp_start(w, s);
    else
        slot_free(w, s);
}

/* Echo bytes tell the answers apart; the next free value is taken, so a
 * value comes back only after 65536 others. */
static uint16_t udp_echo(worker_t *w)
{
    for (unsigned i = 0; i < UDP_ECHOES; i++) {
        uint16_t e = w->next_echo++;

        if (w->echo_slot[e] < 0)
            return e;
    }
    return w->next_echo;    /* unreachable: a thread has fewer slots */
}

static void udp_end(worker_t *w, slot_t *s)
{
    w->echo_slot[s->echo] = -1;
    list_remove(s);
}

static void udp_fail(worker_t *w, slot_t *s, enum err_kind kind)
{
    uint64_t now = rd_clock_ns();

    udp_end(w, s);
    coin_done(w, s, kind == ERR_CONNECT ? COIN_UNCHANGED : COIN_UNKNOWN);
    record_error(w, kind, now);
    if (kind != ERR_CONNECT) {
        udp_next(w, s);
        return;
    }
    if (!claim(w)) {
        slot_free(w, s);
        return;
    }
    s->state = SLOT_PARKED;
    if (TAILQ_EMPTY(&w->parked))
        w->retry_at = now + RETRY_NS;
    list_append(&w->parked, s);
}

/* The request is queued, not sent: udp_flush sends the queue with one
 * system call before the loop waits again. */
static void udp_start(worker_t *w, slot_t *s)
{
    s->echo = udp_echo(w);
    if (!build_request(w, s)) {
        slot_free(w, s);
        return;
    }
    s->state = SLOT_WAITING;
    w->echo_slot[s->echo] = (int32_t)s->index;
    w->out[w->out_count++] = s->index;
}

/* Sends up to UDP_BATCH queued requests from FIRST; returns how many left
 * the queue (sent, or failed: a full buffer or an ICMP error from an
 * earlier datagram). */
static size_t udp_send_batch(worker_t *w, size_t first, uint64_t now)
{
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    size_t n = w->out_count - first < UDP_BATCH ? w->out_count - first : UDP_BATCH;
    int sent;

    memset(msgs, 0, n * sizeof(msgs[0]));
    for (size_t i = 0; i < n; i++) {
        slot_t *s = &w->slots[w->out[first + i]];

        iov[i] = (struct iovec){ .iov_base = s->req, .iov_len = s->req_len };
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    do
        sent = sendmmsg(w->udp_fd, msgs, (unsigned)n, 0);
    while (sent < 0 && errno == EINTR);
    for (int i = 0; i < sent; i++) {
        slot_t *s = &w->slots[w->out[first + (size_t)i]];

        s->start_ns = now;
        list_append(&w->pending, s);
    }
    if ((size_t)(sent > 0 ? sent : 0) == n)
        return n;
    /* The first one not sent failed; the rest get their own try. */
    sent = sent > 0 ? sent : 0;
    udp_fail(w, &w->slots[w->out[first + (size_t)sent]], ERR_CONNECT);
    return (size_t)sent + 1;
}

static void udp_flush(worker_t *w)
{
    uint64_t now = rd_clock_ns();
    size_t done = 0;

    while (done < w->out_count)
        done += udp_send_batch(w, done, now);
    w->out_count = 0;
}

static void udp_answer(worker_t *w, uint8_t *buf, size_t len)
{
    rd_client_response_t r;
    char why[128];
    slot_t *s;
    int status;
    bool ok;

    if (rd_client_parse(buf, len, &r) < 0) {
        snprintf(why, sizeof(why), "%zu-byte datagram, not a response frame", len);
        record_error(w, ERR_BAD, rd_clock_ns());
        show_bad(w->b, why);
        return;
    }
    if (w->echo_slot[r.echo] < 0) {
        w->late++;
        return;
    }
    s = &w->slots[w->echo_slot[r.echo]];
    ok = answer_ok(w->b, s, buf, len, why, sizeof(why), &status);
    coin_done(w, s, outcome_of(ok, status));
    if (ok) {
        udp_end(w, s);
        record_ok(w, s, rd_clock_ns());
        udp_next(w, s);
    } else {
        show_bad(w->b, why);
        udp_fail(w, s, ERR_BAD);
    }
}

/* recvmmsg: one system call for a batch of answers. */
static void udp_read(worker_t *w)
{
    static __thread uint8_t bufs[UDP_BATCH][RESP_CAP];
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];

    for (;;) {
        memset(msgs, 0, sizeof(msgs));
        for (unsigned i = 0; i < UDP_BATCH; i++) {
            iov[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = RESP_CAP };
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(w->udp_fd, msgs, UDP_BATCH, MSG_DONTWAIT, NULL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;     /* EAGAIN, or an ICMP error: the requests time out */
        for (int i = 0; i < n; i++)
            udp_answer(w, bufs[i], msgs[i].msg_len);
        if (n < UDP_BATCH)
            return;
    }
}

static void udp_expire(worker_t *w, slot_t *s)
{
    udp_fail(w, s, ERR_TIMEOUT);
}

static int udp_open(worker_t *w)
{
    const options_t *o = &w->b->opt;
    struct epoll_event ee = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };
    int size = UDP_RCVBUF;

    w->udp_fd = socket(o->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w->udp_fd < 0)
        return -1;
    /* Answers to C outstanding requests may all arrive before we read:
     * a drop here would be blamed on the server. */
    setsockopt(w->udp_fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    if (connect(w->udp_fd, (const struct sockaddr *)&o->addr, o->addr_len) < 0)
        return -1;
    w->echo_slot = malloc(UDP_ECHOES * sizeof(*w->echo_slot));
    w->out = malloc(w->nslots * sizeof(*w->out));
    if (w->echo_slot == NULL || w->out == NULL)
        return -1;
    memset(w->echo_slot, 0xff, UDP_ECHOES * sizeof(*w->echo_slot));
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->udp_fd, &ee);
}

/* ---- idle connections ---------------------------------------------------- */

static void idle_close(worker_t *w, slot_t *s)
{
    close(s->fd);
    s->fd = -1;
    slot_free(w, s);
}

static void idle_start(worker_t *w, slot_t *s)
{
    struct epoll_event ee = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s };

    s->fd = tcp_open(&w->b->opt);
    if (s->fd >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->fd, &ee) == 0) {
        s->state = SLOT_CONNECTING;
        return;
    }
    if (s->fd >= 0)
        close(s->fd);
    w->err[ERR_CONNECT]++;
    slot_free(w, s);
}

static int pending_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

static void idle_event(worker_t *w, slot_t *s, uint32_t events)
{
    if (s->state == SLOT_CONNECTING) {
        if ((events & (EPOLLERR | EPOLLHUP)) || pending_error(s->fd) != 0) {
            w->err[ERR_CONNECT]++;
            idle_close(w, s);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        s->state = SLOT_HELD;
        w->established++;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        w->closed_by_peer++;
        idle_close(w, s);
    }
}

/* ---- the loop ------------------------------------------------------------ */

static void start_slot(worker_t *w, slot_t *s)
{
    switch (w->b->opt.mode) {
    case MODE_TCP:  tcp_start(w, s); break;
    case MODE_UDP:  udp_start(w, s); break;
    case MODE_IDLE: idle_start(w, s); break;
    }
}

static void expire(worker_t *w, uint64_t now)
{
    slot_t *s;

    while ((s = TAILQ_FIRST(&w->pending)) != NULL && now - s->start_ns >= w->b->timeout_ns) {
        if (w->b->opt.mode == MODE_UDP)
            udp_expire(w, s);
        else
            tcp_expire(w, s);
    }
}

static void retry_parked(worker_t *w, uint64_t now)
{
    slot_list_t list = TAILQ_HEAD_INITIALIZER(list);
    slot_t *s;

    if (TAILQ_EMPTY(&w->parked) || now < w->retry_at)
        return;
    /* Detach first: a retry that fails again parks itself anew. */
    TAILQ_CONCAT(&list, &w->parked, link);
    TAILQ_FOREACH(s, &list, link)
        s->list = &list;
    while ((s = TAILQ_FIRST(&list)) != NULL) {
        list_remove(s);
        start_slot(w, s);
    }
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static int wait_ms(const worker_t *w, uint64_t now)
{
    uint64_t wait = POLL_MAX_MS * NS_PER_MS;
    const bench_t *b = w->b;

    if (b->deadline_ns != 0)
        wait = min_u64(wait, b->deadline_ns - now);
    if (!TAILQ_EMPTY(&w->pending)) {
        uint64_t due = TAILQ_FIRST(&w->pending)->start_ns + b->timeout_ns;

        wait = min_u64(wait, due > now ? due - now : 0);
    }
    if (!TAILQ_EMPTY(&w->parked))
        wait = min_u64(wait, w->retry_at > now ? w->retry_at - now : 0);
    return (int)((wait + NS_PER_MS - 1) / NS_PER_MS);
}

static void dispatch(worker_t *w, const struct epoll_event *ev)
{
    slot_t *s = ev->data.ptr;

    if (s == NULL)
        udp_read(w);
    else if (w->b->opt.mode == MODE_IDLE)
        idle_event(w, s, ev->events);
    else
        tcp_event(w, s, ev->events);
}

static void publish(worker_t *w)
{
    uint64_t errors = 0;

    for (int k = 0; k < ERR_KINDS; k++)
        errors += w->err[k];
    atomic_store_explicit(&w->shown_ok, w->ok, memory_order_relaxed);
    atomic_store_explicit(&w->shown_err, errors, memory_order_relaxed);
    atomic_store_explicit(&w->shown_est, w->established, memory_order_relaxed);
}

static void worker_loop(worker_t *w)
{
    struct epoll_event events[MAX_EVENTS];
    bench_t *b = w->b;

    while (w->active > 0 && !atomic_load_explicit(&b->stop, memory_order_relaxed)) {
        uint64_t now = rd_clock_ns();
        int n;

        if (past_deadline(b, now))
            break;
        expire(w, now);
        retry_parked(w, now);
        if (w->out_count > 0)
            udp_flush(w);
        n = epoll_wait(w->epfd, events, MAX_EVENTS, wait_ms(w, now));
        if (n < 0 && errno != EINTR) {
            perror("raida-bench: epoll_wait");
            atomic_store(&b->failed, true);
            break;
        }
        for (int i = 0; i < n; i++)
            dispatch(w, &events[i]);
        publish(w);
    }
    w->end_ns = rd_clock_ns();
    if (past_deadline(b, w->end_ns))
        w->end_ns = b->deadline_ns;
}

/* What is still in flight when the run ends is dropped, not counted. */
static void worker_close_all(worker_t *w)
{
    for (size_t i = 0; i < w->nslots; i++) {
        if (w->slots[i].fd >= 0)
            close(w->slots[i].fd);
        coin_done(w, &w->slots[i], COIN_UNKNOWN);
    }
    if (w->udp_fd >= 0)
        close(w->udp_fd);
    if (w->epfd >= 0)
        close(w->epfd);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;

    for (size_t i = 0; i < w->nslots; i++) {
        slot_t *s = &w->slots[i];

        w->active++;
        if (w->b->opt.mode == MODE_IDLE || claim(w))
            start_slot(w, s);
        else
            slot_free(w, s);
    }
    publish(w);
    worker_loop(w);
    publish(w);
    worker_close_all(w);
    atomic_store(&w->finished, true);
    return NULL;
}

static int worker_init(worker_t *w, bench_t *b, size_t nslots)
{
    w->b = b;
    TAILQ_INIT(&w->pending);
    TAILQ_INIT(&w->parked);
    w->udp_fd = -1;
    w->nslots = nslots;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->slots = calloc(nslots, sizeof(*w->slots));
    if (w->epfd < 0 || w->slots == NULL)
        return -1;
    if (b->opt.mode != MODE_IDLE) {
        w->reqs = calloc(nslots, b->opt.req_cap);
        if (w->reqs == NULL)
            return -1;
    }
    for (size_t i = 0; i < nslots; i++) {
        w->slots[i].fd = -1;
        w->slots[i].index = (uint32_t)i;
        w->slots[i].coin = -1;
        if (w->reqs != NULL)
            w->slots[i].req = w->reqs + i * b->opt.req_cap;
    }
    return b->opt.mode == MODE_UDP ? udp_open(w) : 0;
}

static void worker_free(worker_t *w)
{
    free(w->reqs);
    free(w->coins);
    free(w->idle_coins);
    free(w->payload);
    free(w->batch);
    free(w->acks);
    free(w->slots);
    free(w->echo_slot);
    free(w->out);
}

/* ---- options ------------------------------------------------------------- */

#define SYNOPSIS \
    "usage: raida-bench [-u | -i] [-c CONNECTIONS] [-n REQUESTS] [-d SECONDS] [-t THREADS]\n" \
    "                   [-T TIMEOUT_MS] [-r RAIDA_ID] [-C COIN_ID] [-j] [-q]\n" \
    "                   [-E 1|4 -D DEN -S SN -K KEYHEX]\n" \
    "                   [-m echo|detect|pown -L COIN_LIST [-N COINS] [-A ACK_FILE]]\n" \
    "                   [--allow-remote] HOST PORT\n"

static void usage(FILE *out)
{
    fprintf(out, SYNOPSIS
        "\n"
        "Load generator for a RAIDA server: sends echo requests (group 0, command 0),\n"
        "or detect or pown requests, and checks every answer byte for byte (status 250,\n"
        "or 241 for detect and pown; RAIDA id, echo bytes, challenge, empty body).\n"
        "\n"
        "modes:\n"
        "  (default)         TCP: CONNECTIONS connections kept busy, a new connection\n"
        "                    per request (connect, send, read until the server closes)\n"
        "  -u                UDP: CONNECTIONS datagrams outstanding, matched on echo bytes\n"
        "  -i                idle: open CONNECTIONS connections, send nothing, hold them\n"
        "                    for the duration, then tell how many were established\n"
        "\n"
        "options:\n"
        "  -c CONNECTIONS    concurrency (default 64)\n"
        "  -n REQUESTS       stop after this many requests (default: by time only)\n"
        "  -d SECONDS        stop after this long (default 10, or none with -n)\n"
        "  -t THREADS        event loops, one per thread (default 1)\n"
        "  -T TIMEOUT_MS     a request not answered within this is an error\n"
        "                    (default 1000 for UDP, 5000 for TCP)\n"
        "  -r RAIDA_ID       RAIDA id to address and expect (default 0)\n"
        "  -C COIN_ID        coin id (default 6)\n"
        "  -E TYPE           encrypted requests: 1 (AES-128, TCP or UDP) or 4 (AES-256 and\n"
        "                    HMAC, TCP), with the coin -D DEN -S SN and its key -K KEYHEX\n"
        "  -m REQUEST        echo (default); detect: N coins a request (-N), each must\n"
        "                    pass; pown: one coin a request with a fresh random PAN,\n"
        "                    no coin in two requests at once, each must pass\n"
        "  -L COIN_LIST      the coins (DEN SN AN_HEX lines, as raida-coins writes);\n"
        "                    after a pown run it is rewritten with the coins' ANs\n"
        "  -N COINS          coins per detect request, 1..512 (default 1)\n"
        "  -A ACK_FILE       pown: write the acknowledged powns there (DEN SN PAN_HEX)\n"
        "  -j                print the result as JSON\n"
        "  -q                no progress line\n"
        "  --allow-remote    accept a HOST that is not a loopback address. Refused by\n"
        "                    default: thousands of connections a second at someone\n"
        "                    else's server is a denial-of-service attack.\n"
        "  -h                this help\n"
        "\n"
        "requests/s counts correct answers. Errors by kind: connect (refused or no\n"
        "address), closed (no answer before the server closed or reset), timeout,\n"
        "bad_answer. Exit status: 0 run completed without a bad answer, 1 bad answers,\n"
        "2 usage or setup error.\n");
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "raida-bench: %s: %s\n", what, arg);
    fputs(SYNOPSIS "(raida-bench -h for more)\n", stderr);
    return -1;
}

static bool parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v > 0 && v <= 86400.0 * 365))
        return false;
    *out = v;
    return true;
}

enum { OPT_ALLOW_REMOTE = 256 };

static int parse_cmd(options_t *o, const char *arg)
{
    if (strcmp(arg, "echo") == 0)
        o->cmd = CMD_ECHO;
    else if (strcmp(arg, "detect") == 0)
        o->cmd = CMD_DETECT;
    else if (strcmp(arg, "pown") == 0)
        o->cmd = CMD_POWN;
    else
        return usage_error("-m: not a request raida-bench sends (echo, detect, pown)", arg);
    return 0;
}

/* The options that take a number: read within their bounds, then stored
 * by set_number. */
typedef struct {
    int opt;
    unsigned long min, max;
    const char *error;
} number_option_t;

static const number_option_t number_options[] = {
    { 'c', 1, MAX_CONNS, "-c: not a number of connections (1..1000000)" },
    { 'n', 1, ULONG_MAX, "-n: not a number of requests" },
    { 't', 1, MAX_THREADS, "-t: not a number of threads (1..64)" },
    { 'T', 1, 3600000, "-T: not a timeout in milliseconds (1..3600000)" },
    { 'r', 0, 24, "-r: not a RAIDA id (0..24)" },
    { 'C', 0, 65535, "-C: not a coin id (0..65535)" },
    { 'N', 1, MAX_COINS_PER_REQ, "-N: not a number of coins per request (1..512)" },
    { 'D', 0, 255, "-D: not a denomination (0..255, the signed byte)" },
    { 'S', 0, UINT32_MAX, "-S: not a serial number" },
};

static const number_option_t *number_option(int c)
{
    for (size_t i = 0; i < sizeof(number_options) / sizeof(number_options[0]); i++)
        if (number_options[i].opt == c)
            return &number_options[i];
    return NULL;
}

/* V is within the bounds of option C's entry. */
static void set_number(options_t *o, int c, unsigned long v)
{
    switch (c) {
    case 'c': o->conns = v; break;
    case 'n': o->requests = v; break;
    case 't': o->threads = (unsigned)v; break;
    case 'T': o->timeout_ms = (int)v; break;
    case 'r': o->raida_id = (uint8_t)v; break;
    case 'C': o->coin_id = (uint16_t)v; break;
    case 'N': o->per_req = (unsigned)v; break;
    case 'D': o->coin.den = (int8_t)(uint8_t)v; break;
    case 'S': o->coin.sn = (uint32_t)v; break;
    default: break;
    }
}

static int parse_option(options_t *o, int c, const char *arg)
{
    const number_option_t *n = number_option(c);
    unsigned long v;

    if (n != NULL) {
        if (!parse_ulong(arg, n->min, n->max, &v))
            return usage_error(n->error, arg);
        set_number(o, c, v);
        return 0;
    }
    switch (c) {
    case 'u': o->mode = MODE_UDP; return 0;
    case 'i': o->mode = MODE_IDLE; return 0;
    case 'j': o->json = true; return 0;
    case 'q': o->quiet = true; return 0;
    case OPT_ALLOW_REMOTE: o->allow_remote = true; return 0;
    case 'd':
        if (!parse_seconds(arg, &o->seconds))
            return usage_error("-d: not a duration in seconds", arg);
        return 0;
    case 'E':
        if (!parse_ulong(arg, 0, 5, &v) || (v != 0 && v != 1 && v != 4))
            return usage_error("-E: not an encryption type this tool sends (0, 1, 4)", arg);
        o->enc_type = (uint8_t)v;
        return 0;
    case 'm':
        return parse_cmd(o, arg);
    case 'L': o->list_path = arg; return 0;
    case 'A': o->ack_path = arg; return 0;
    case 'K':
        if (rd_hex_decode(arg, o->coin.key, RD_CLIENT_KEY_SIZE) != RD_CLIENT_KEY_SIZE)
            return usage_error("-K: not a key of 32 hex digits", arg);
        o->key_set = true;
        return 0;
    default:
        fputs(SYNOPSIS "(raida-bench -h for more)\n", stderr);
        return -1;
    }
}

static void default_options(options_t *o)
{
    memset(o, 0, sizeof(*o));
    o->mode = MODE_TCP;
    o->conns = 64;
    o->threads = 1;
    o->coin_id = 6;
}

static int check_coin_options(const options_t *o)
{
    if (o->cmd == CMD_ECHO && (o->list_path || o->ack_path || o->per_req))
        return usage_error("-L, -N and -A go with -m detect or -m pown", "-m echo");
    if (o->cmd != CMD_ECHO && o->mode == MODE_IDLE)
        return usage_error("idle connections send nothing", "-m with -i");
    if (o->cmd != CMD_ECHO && o->list_path == NULL)
        return usage_error("-m detect and -m pown need the coins", "-L COIN_LIST");
    if (o->cmd == CMD_POWN && o->per_req > 1)
        return usage_error("a pown takes one coin a request", "-N");
    if (o->cmd != CMD_POWN && o->ack_path)
        return usage_error("-A goes with -m pown", o->ack_path);
    return 0;
}

/* The largest frame: the 48-byte header, HMAC (or challenge) and trailer,
 * and the payload. */
static size_t request_cap(const options_t *o)
{
    if (o->cmd == CMD_ECHO)
        return REQ_ECHO_CAP;
    return RD_MODERN_HEADER_SIZE + RD_MODERN_MIN_BODY_SIZE
        + rd_client_auth_payload_size(o->cmd == CMD_DETECT ? RD_AUTH_DETECT : RD_AUTH_POWN,
                                      o->per_req);
}

static void settle_options(options_t *o)
{
    if (o->per_req == 0)
        o->per_req = 1;
    o->req_cap = request_cap(o);
    if (o->timeout_ms == 0)
        o->timeout_ms = o->mode == MODE_UDP ? 1000 : 5000;
    /* Idle connections are bounded by time alone. */
    if (o->seconds == 0 && (o->requests == 0 || o->mode == MODE_IDLE))
        o->seconds = 10;
    if (o->threads > o->conns)
        o->threads = (unsigned)o->conns;
}

/* Returns 0, 1 for -h (done), -1 on a usage error. */
static int parse_options(int argc, char **argv, options_t *o)
{
    static const struct option longs[] = {
        { "allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *shorts = "uic:n:d:t:T:r:C:E:D:S:K:m:L:N:A:jqh";
    int c;

    default_options(o);
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (parse_option(o, c, optarg) < 0)
            return -1;
    }
    if (argc - optind != 2)
        return usage_error("expected HOST PORT",
                           argc - optind < 2 ? "too few arguments" : argv[optind + 2]);
    o->host = argv[optind];
    o->port = argv[optind + 1];
    if (o->enc_type != 0 && !o->key_set)
        return usage_error("-E needs the coin's key", "-K KEYHEX");
    /* UDP answers are matched by their echo bytes: only the legacy family has them. */
    if (o->enc_type >= 4 && o->mode == MODE_UDP)
        return usage_error("-E 4 has no echo bytes to match UDP answers by", "-u");
    if (check_coin_options(o) < 0)
        return -1;
    settle_options(o);
    return 0;
}

/* ---- target -------------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* IPv4 is preferred: "localhost" may list ::1 first while servers often
 * listen on 127.0.0.1 only. Every address the name has must be loopback. */
static int resolve(options_t *o)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC }, *res, *pick = NULL;
    int rc;

    hints.ai_socktype = o->mode == MODE_UDP ? SOCK_DGRAM : SOCK_STREAM;
    rc = getaddrinfo(o->host, o->port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "raida-bench: %s port %s: %s\n", o->host, o->port, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (!o->allow_remote && !is_loopback(ai->ai_addr)) {
            rd_sockaddr_ip_text(ai->ai_addr, o->addr_text, sizeof(o->addr_text));
            fprintf(stderr, "raida-bench: %s is %s, not a loopback address: refused"
                    " (--allow-remote to load a server that is yours)\n", o->host, o->addr_text);
            freeaddrinfo(res);
            return -1;
        }
        if (pick == NULL || (pick->ai_family != AF_INET && ai->ai_family == AF_INET))
            pick = ai;
    }
    memcpy(&o->addr, pick->ai_addr, pick->ai_addrlen);
    o->addr_len = pick->ai_addrlen;
    rd_sockaddr_ip_text(pick->ai_addr, o->addr_text, sizeof(o->addr_text));
    freeaddrinfo(res);
    return 0;
}

/* Each connection is a descriptor: take all the hard limit allows. */
static int raise_nofile(const options_t *o)
{
    struct rlimit rl;
    rlim_t need = o->mode == MODE_UDP ? FD_RESERVE : (rlim_t)o->conns + FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr, "raida-bench: %lu connections need about %lu descriptors,"
                " the limit is %lu\n", o->conns, (unsigned long)need, (unsigned long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* ---- running ------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int workers_create(bench_t *b)
{
    const options_t *o = &b->opt;

    b->nworkers = o->threads;
    b->workers = calloc(b->nworkers, sizeof(*b->workers));
    if (b->workers == NULL)
        return -1;
    for (unsigned i = 0; i < b->nworkers; i++) {
        size_t share = o->conns / b->nworkers + (i < o->conns % b->nworkers ? 1 : 0);

        if (o->mode == MODE_UDP && share >= UDP_ECHOES) {
            fprintf(stderr, "raida-bench: at most %u datagrams outstanding per thread (-t)\n",
                    UDP_ECHOES - 1);
            return -1;
        }
        if (worker_init(&b->workers[i], b, share) < 0) {
            perror("raida-bench: setting up");
            return -1;
        }
    }
    return 0;
}

static void workers_destroy(bench_t *b)
{
    for (unsigned i = 0; b->workers != NULL && i < b->nworkers; i++)
        worker_free(&b->workers[i]);
    free(b->workers);
}

/* Threads take no signals: the main thread sees them and sets the flag. */
static int workers_start(bench_t *b)
{
    sigset_t all, old;
    int rc = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    b->start_ns = rd_clock_ns();
    if (b->opt.seconds > 0)
        b->deadline_ns = b->start_ns + (uint64_t)(b->opt.seconds * (double)NS_PER_S);
    for (unsigned i = 0; i < b->nworkers; i++) {
        if (pthread_create(&b->workers[i].tid, NULL, worker_main, &b->workers[i]) != 0) {
            fprintf(stderr, "raida-bench: cannot start thread %u\n", i);
            atomic_store(&b->stop, true);
            b->nworkers = i;
            rc = -1;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

typedef struct totals {
    uint64_t ok, errors, established;
} totals_t;

static totals_t shown_totals(bench_t *b)
{
    totals_t t = { 0, 0, 0 };

    for (unsigned i = 0; i < b->nworkers; i++) {
        t.ok += atomic_load_explicit(&b->workers[i].shown_ok, memory_order_relaxed);
        t.errors += atomic_load_explicit(&b->workers[i].shown_err, memory_order_relaxed);
        t.established += atomic_load_explicit(&b->workers[i].shown_est, memory_order_relaxed);
    }
    return t;
}

static bool all_finished(bench_t *b)
{
    for (unsigned i = 0; i < b->nworkers; i++)
        if (!atomic_load(&b->workers[i].finished))
            return false;
    return true;
}

typedef struct progress {
    bool tty;
    bool ready_said;
    uint64_t last_ns;
    uint64_t last_ok;
} progress_t;

static void progress_line(bench_t *b, progress_t *p, uint64_t now)
{
    totals_t t = shown_totals(b);
    double elapsed = (double)(now - b->start_ns) / (double)NS_PER_S;
    double rate = (double)(t.ok - p->last_ok) * (double)NS_PER_S / (double)(now - p->last_ns);

    if (b->opt.mode == MODE_IDLE)
        fprintf(stderr, "\r\033[K%6.1f s  %10" PRIu64 " established  %" PRIu64 " errors",
                elapsed, t.established, t.errors);
    else
        fprintf(stderr, "\r\033[K%6.1f s  %12" PRIu64 " ok  %10.0f req/s  %" PRIu64 " errors",
                elapsed, t.ok, rate, t.errors);
    p->last_ns = now;
    p->last_ok = t.ok;
}

/* Idle mode says once, on stderr, when every connection is settled, so
 * that a script can measure the server while they are held. */
static void idle_ready(bench_t *b, progress_t *p)
{
    totals_t t = shown_totals(b);

    if (p->ready_said || b->opt.mode != MODE_IDLE || b->opt.quiet
        || t.established + t.errors < b->opt.conns)
        return;
    p->ready_said = true;
    fprintf(stderr, "%sholding %" PRIu64 " established connections (%" PRIu64 " failed)\n",
            p->tty ? "\r\033[K" : "", t.established, t.errors);
}

static void wait_workers(bench_t *b)
{
    progress_t p = { .tty = !b->opt.quiet && isatty(STDERR_FILENO), .last_ns = b->start_ns };
    struct timespec tick = { 0, 50 * (long)NS_PER_MS };

    while (!all_finished(b)) {
        uint64_t now;

        if (interrupted)
            atomic_store(&b->stop, true);
        nanosleep(&tick, NULL);
        now = rd_clock_ns();
        idle_ready(b, &p);
        if (p.tty && now - p.last_ns >= NS_PER_S)
            progress_line(b, &p, now);
    }
    if (p.tty)
        fputs("\r\033[K", stderr);
    for (unsigned i = 0; i < b->nworkers; i++)
        pthread_join(b->workers[i].tid, NULL);
}

/* ---- the coins: before and after the run ---------------------------------- */

static int load_coins(bench_t *b)
{
    options_t *o = &b->opt;
    char err[512];

    if (o->cmd == CMD_ECHO)
        return 0;
    if (rd_coinlist_read(o->list_path, &o->list, err, sizeof(err)) < 0) {
        fprintf(stderr, "raida-bench: %s\n", err);
        return -1;
    }
    if (o->list.count < o->threads) {
        fprintf(stderr, "raida-bench: %s: %zu coins for %u threads (-t): each needs one\n",
                o->list_path, o->list.count, o->threads);
        return -1;
    }
    if (o->cmd == CMD_POWN && o->enc_type != 0
        && rd_coinlist_find(&o->list, o->coin.den, o->coin.sn) >= 0) {
        fprintf(stderr, "raida-bench: %s holds the encryption coin %d %u: a pown would change"
                " its key\n", o->list_path, o->coin.den, o->coin.sn);
        return -1;
    }
    b->coin_state = calloc(o->list.count, sizeof(*b->coin_state));
    return b->coin_state != NULL ? 0 : -1;
}

/* Coin i goes to thread i % threads; a pown thread holds its coins in a
 * ring of idle ones. */
static int share_coins(bench_t *b)
{
    const options_t *o = &b->opt;

    for (unsigned t = 0; o->cmd != CMD_ECHO && t < b->nworkers; t++) {
        worker_t *w = &b->workers[t];
        size_t n = o->list.count / b->nworkers + (t < o->list.count % b->nworkers ? 1 : 0);

        w->coins = malloc(n * sizeof(*w->coins));
        w->idle_coins = malloc(n * sizeof(*w->idle_coins));
        w->payload = malloc(o->req_cap);
        w->batch = malloc(o->per_req * sizeof(*w->batch));
        if (w->coins == NULL || w->idle_coins == NULL || w->payload == NULL || w->batch == NULL)
            return -1;
        for (size_t i = t; i < o->list.count; i += b->nworkers)
            w->coins[w->ncoins++] = (uint32_t)i;
        for (size_t i = 0; o->cmd == CMD_POWN && i < w->ncoins; i++)
            idle_coin_push(w, w->coins[i]);
        if (o->cmd == CMD_POWN && w->ncoins < w->nslots && !o->quiet)
            fprintf(stderr, "raida-bench: thread %u has %zu coins for %zu requests in flight:"
                    " at most %zu at once\n", t, w->ncoins, w->nslots, w->ncoins);
    }
    return 0;
}

/* A detect of coin C by itself, unencrypted: 1 passed, 0 failed, -1 no
 * verdict (tried three times: a UDP datagram may be lost). */
static int detect_one(const options_t *o, const rd_client_coin_t *c)
{
    uint8_t payload[RD_COIN_REF_SIZE + AN_SIZE], req[REQ_ECHO_CAP + sizeof(payload)];
    uint8_t resp[RESP_CAP];
    rd_client_request_t r = {
        .raida_id = o->raida_id, .coin_id = o->coin_id,
        .group = RD_GROUP_AUTH, .command = RD_AUTH_DETECT, .payload = payload,
        .payload_len = rd_client_auth_build(RD_AUTH_DETECT, c, 1, NULL, payload, sizeof(payload)),
    };
    rd_client_response_t a;

    for (int attempt = 0; attempt < 3; attempt++) {
        size_t len = rd_client_build(&r, req, sizeof(req), NULL);
        long n = len == 0 ? -1 : rd_client_exchange(o->host, o->port, o->mode == MODE_UDP, req,
                                                    len, resp, sizeof(resp), o->timeout_ms);

        if (n < 0 || rd_client_parse(resp, (size_t)n, &a) < 0)
            continue;
        if (a.status == RD_STATUS_ALL_PASS || a.status == RD_STATUS_ALL_FAIL)
            return a.status == RD_STATUS_ALL_PASS;
    }
    return -1;
}

/* A pown without an answer: the coin has its old AN, or the PAN. A
 * detect tells which (the protocol's own remedy). */
static void settle_coins(bench_t *b)
{
    options_t *o = &b->opt;

    for (size_t i = 0; o->cmd == CMD_POWN && i < o->list.count; i++) {
        rd_client_coin_t *c = &o->list.coin[i], with_pan = *c;

        if (!b->coin_state[i].unknown)
            continue;
        memcpy(with_pan.key, b->coin_state[i].pan, AN_SIZE);
        if (detect_one(o, c) == 1) {
            b->settled++;
        } else if (detect_one(o, &with_pan) == 1) {
            memcpy(c->key, with_pan.key, AN_SIZE);
            b->settled++;
        } else if (b->unsettled++ < MAX_BAD_SHOWN) {
            fprintf(stderr, "raida-bench: coin %d %u: neither its AN nor the PAN of its last"
                    " pown passed a detect; the list keeps the AN\n", c->den, c->sn);
        }
    }
    if (b->unsettled > MAX_BAD_SHOWN)
        fprintf(stderr, "raida-bench: %" PRIu64 " coins in all whose AN is not known\n",
                b->unsettled);
}

/* The list with the ANs the coins have now, and the acknowledged powns. */
static int write_coins(bench_t *b)
{
    options_t *o = &b->opt;
    rd_coinlist_t acks = { 0 };
    int rc = 0;

    if (o->cmd != CMD_POWN)
        return 0;
    if (rd_coinlist_write(o->list_path, &o->list,
                          "DEN SN AN (rewritten by raida-bench after a pown run)", true) < 0) {
        fprintf(stderr, "raida-bench: cannot rewrite %s: %s\n", o->list_path, strerror(errno));
        rc = -1;
    }
    for (unsigned t = 0; t < b->nworkers; t++) {
        const worker_t *w = &b->workers[t];

        for (size_t i = 0; i < w->nacks; i++) {
            const rd_client_coin_t *c = &o->list.coin[w->acks[i].index];

            if (rd_coinlist_add(&acks, c->den, c->sn, w->acks[i].pan) < 0)
                rc = -1;
        }
        b->acks += w->nacks;
    }
    if (o->ack_path != NULL
        && rd_coinlist_write(o->ack_path, &acks, "powns the server acknowledged, in each thread's"
                             " order: DEN SN PAN", true) < 0) {
        fprintf(stderr, "raida-bench: cannot write %s: %s\n", o->ack_path, strerror(errno));
        rc = -1;
    }
    rd_coinlist_free(&acks);
    return rc;
}

/* ---- report -------------------------------------------------------------- */

typedef struct result {
    hist_t hist;
    uint64_t ok;
    uint64_t err[ERR_KINDS];
    uint64_t errors;
    uint64_t late;
    uint64_t established;
    uint64_t closed_by_peer;
    uint64_t no_coin;
    double seconds;
} result_t;

static void collect(const bench_t *b, result_t *r)
{
    uint64_t end = b->start_ns;

    memset(r, 0, sizeof(*r));
    for (unsigned i = 0; i < b->nworkers; i++) {
        const worker_t *w = &b->workers[i];

        hist_merge(&r->hist, &w->hist);
        r->ok += w->ok;
        for (int k = 0; k < ERR_KINDS; k++)
            r->err[k] += w->err[k];
        r->late += w->late;
        r->established += w->established;
        r->closed_by_peer += w->closed_by_peer;
        r->no_coin += w->no_coin;
        if (w->end_ns > end)
            end = w->end_ns;
    }
    for (int k = 0; k < ERR_KINDS; k++)
        r->errors += r->err[k];
    r->seconds = (double)(end - b->start_ns) / (double)NS_PER_S;
}

static const char *cmd_name(enum cmd c)
{
    return c == CMD_DETECT ? "detect" : c == CMD_POWN ? "pown" : "echo";
}

static const char *mode_name(enum mode m)
{
    return m == MODE_UDP ? "udp" : m == MODE_IDLE ? "idle" : "tcp";
}

static double rate(const result_t *r)
{
    return r->seconds > 0 ? (double)r->ok / r->seconds : 0;
}

static double pct_us(const result_t *r, double q)
{
    return (double)hist_percentile(&r->hist, q) / 1000.0;
}

static void report_latency(const result_t *r)
{
    if (r->hist.total == 0) {
        printf("latency (us)      none answered\n");
        return;
    }
    printf("latency (us)      p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
           pct_us(r, 50), pct_us(r, 90), pct_us(r, 99), pct_us(r, 99.9),
           (double)r->hist.max / 1000.0);
}

static void report_text(const bench_t *b, const result_t *r)
{
    const options_t *o = &b->opt;

    printf("target            %s %s port %s, %lu connection%s, %u thread%s\n", mode_name(o->mode),
           o->addr_text, o->port, o->conns, o->conns == 1 ? "" : "s", b->nworkers,
           b->nworkers == 1 ? "" : "s");
    printf("duration          %.3f s\n", r->seconds);
    if (o->mode == MODE_IDLE) {
        printf("established       %" PRIu64 "\n", r->established);
        printf("held to the end   %" PRIu64 "\n", r->established - r->closed_by_peer);
        printf("closed by server  %" PRIu64 "\n", r->closed_by_peer);
        printf("connect errors    %" PRIu64 "\n", r->err[ERR_CONNECT]);
        return;
    }
    printf("requests          %" PRIu64 "\n", r->ok + r->errors);
    printf("ok                %" PRIu64 "\n", r->ok);
    printf("errors            %" PRIu64 " (connect %" PRIu64 ", closed %" PRIu64 ", timeout %"
           PRIu64 ", bad answer %" PRIu64 ")\n", r->errors, r->err[ERR_CONNECT],
           r->err[ERR_CLOSED], r->err[ERR_TIMEOUT], r->err[ERR_BAD]);
    if (o->mode == MODE_UDP)
        printf("late answers      %" PRIu64 "\n", r->late);
    printf("requests/s        %.1f\n", rate(r));
    report_latency(r);
    if (o->cmd == CMD_DETECT)
        printf("coins per request %u\n", o->per_req);
    if (o->cmd == CMD_POWN)
        printf("powns             %" PRIu64 " acknowledged; after the run %" PRIu64
               " coins settled by detect, %" PRIu64 " unknown; %" PRIu64
               " requests found no idle coin\n", b->acks, b->settled, b->unsettled, r->no_coin);
}

static void report_json(const bench_t *b, const result_t *r)
{
    const options_t *o = &b->opt;

    printf("{\"mode\":\"%s\",\"host\":\"%s\",\"port\":\"%s\",\"connections\":%lu,"
           "\"threads\":%u,\"seconds\":%.3f", mode_name(o->mode), o->addr_text, o->port,
           o->conns, b->nworkers, r->seconds);
    if (o->mode == MODE_IDLE) {
        printf(",\"established\":%" PRIu64 ",\"held\":%" PRIu64 ",\"closed_by_server\":%"
               PRIu64 ",\"connect_errors\":%" PRIu64 "}\n", r->established,
               r->established - r->closed_by_peer, r->closed_by_peer, r->err[ERR_CONNECT]);
        return;
    }
    printf(",\"requests\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"errors\":{", r->ok + r->errors, r->ok);
    for (int k = 0; k < ERR_KINDS; k++)
        printf("%s\"%s\":%" PRIu64, k ? "," : "", err_names[k], r->err[k]);
    printf("},\"late\":%" PRIu64 ",\"requests_per_s\":%.1f,\"latency_us\":{\"p50\":%.1f,"
           "\"p90\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f,\"max\":%.1f}", r->late, rate(r),
           pct_us(r, 50), pct_us(r, 90), pct_us(r, 99), pct_us(r, 99.9),
           (double)r->hist.max / 1000.0);
    printf(",\"request\":\"%s\"", cmd_name(o->cmd));
    if (o->cmd == CMD_DETECT)
        printf(",\"coins_per_request\":%u", o->per_req);
    if (o->cmd == CMD_POWN)
        printf(",\"acknowledged\":%" PRIu64 ",\"settled\":%" PRIu64 ",\"unknown\":%" PRIu64
               ",\"no_idle_coin\":%" PRIu64, b->acks, b->settled, b->unsettled, r->no_coin);
    printf("}\n");
}

int main(int argc, char **argv)
{
    static bench_t b;   /* large (histograms): not on the stack */
    result_t *r;
    int rc = parse_options(argc, argv, &b.opt);

    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (resolve(&b.opt) < 0 || raise_nofile(&b.opt) < 0 || load_coins(&b) < 0) {
        rd_coinlist_free(&b.opt.list);
        free(b.coin_state);
        return EXIT_USAGE;
    }
    b.timeout_ns = (uint64_t)b.opt.timeout_ms * NS_PER_MS;
    install_signals();
    if (workers_create(&b) < 0 || share_coins(&b) < 0 || (r = malloc(sizeof(*r))) == NULL) {
        workers_destroy(&b);
        rd_coinlist_free(&b.opt.list);
        free(b.coin_state);
        return EXIT_USAGE;
    }
    rc = workers_start(&b);
    wait_workers(&b);
    collect(&b, r);
    settle_coins(&b);
    if (write_coins(&b) < 0)
        rc = -1;
    if (b.opt.json)
        report_json(&b, r);
    else
        report_text(&b, r);
    fflush(stdout);
    if (rc < 0 || atomic_load(&b.failed))
        rc = EXIT_USAGE;
    else
        rc = r->err[ERR_BAD] > 0 || b.unsettled > 0 ? EXIT_BAD : EXIT_OK;
    free(r);
    workers_destroy(&b);
    rd_coinlist_free(&b.opt.list);
    free(b.coin_state);
    return rc;
}
