#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/rand.h>

#include "rd_bytes.h"
#include "rd_client.h"
#include "rd_coins.h"
#include "rd_protocol.h"

#define EXIT_OK      0
#define EXIT_STATUS  1      /* the server answered with another status than success */
#define EXIT_USAGE   2      /* bad arguments, network trouble, malformed answer */

#define ADMIN_KEY_SIZE 16
#define MAX_PAYLOAD    (0xFFFFu - RD_MIN_BODY_SIZE)
#define RESP_CAP       (RD_MODERN_HEADER_SIZE + 0xFFFFFFu)     /* the largest u24 body */
#define MAX_COINS      2

_Static_assert(RD_COIN_AN_SIZE == RD_CLIENT_KEY_SIZE, "page files hold the keys the client uses");

enum cli_command { CLI_ECHO, CLI_VERSION, CLI_STATS, CLI_RAW };

typedef struct cli {
    bool udp;
    int timeout_ms;
    const char *host;
    const char *port;
    enum cli_command cmd;
    bool key_set;
    uint8_t key[ADMIN_KEY_SIZE];
    rd_client_request_t req;
    uint8_t *payload;           /* raw payload, owned */
    /* Encryption coins: each of -D, -S, -K may come twice (type 5). */
    unsigned n_den, n_sn, n_key;
    const char *data_dir;
} cli_t;

#define SYNOPSIS \
    "usage: raida-cli [-u] [-r RAIDA_ID] [-c COIN_ID] [-k ADMIN_KEY_HEX] [-t TIMEOUT_MS]\n" \
    "                 [-e ECHO] [-E TYPE -D DEN -S SN [-K KEY_HEX | -d DATA_DIR]]\n" \
    "                 HOST PORT COMMAND\n"

static void usage(FILE *out)
{
    fprintf(out, SYNOPSIS
        "\n"
        "Sends one request to a RAIDA server and prints its answer.\n"
        "\n"
        "commands:\n"
        "  echo                              group 0, command 0\n"
        "  version                           group 0, command 1\n"
        "  stats                             group 0, command 2 (send the key with -k)\n"
        "  raw GROUP COMMAND [PAYLOAD_HEX]   any command, the answer's payload in hex\n"
        "\n"
        "options:\n"
        "  -u              UDP instead of TCP\n"
        "  -r RAIDA_ID     RAIDA id to address (default 0)\n"
        "  -c COIN_ID      coin id (default 6)\n"
        "  -k KEY          admin key, 32 hex digits\n"
        "  -t TIMEOUT_MS   timeout of each network wait (default 2000)\n"
        "  -e ECHO         echo bytes, 0..65535 or 0x0000..0xffff (default random)\n"
        "  -E TYPE         encryption: 0 none (default), 1 AES-128 with the coin's key,\n"
        "                  4 AES-256 with its SHA-256, 5 AES-256 with two coins\n"
        "  -D DEN          denomination of the encryption coin, -128..127\n"
        "  -S SN           serial number of the encryption coin\n"
        "  -K KEY          key of the encryption coin, 32 hex digits\n"
        "  -d DATA_DIR     read the keys from the page files under DATA_DIR/Data instead\n"
        "                  (type 5: give -D, -S and -K twice, the first coin first)\n"
        "  -h              this help\n"
        "\n"
        "exit status: 0 success (250), 1 any other status, 2 usage or network error,\n"
        "or an answer that is malformed or not authentic\n");
}

/* On a mistake the synopsis is enough; -h tells the rest. */
static void short_usage(void)
{
    fputs(SYNOPSIS "(raida-cli -h for more)\n", stderr);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "raida-cli: %s: %s\n", what, arg);
    short_usage();
    return -1;
}

/* Decimal, or hexadecimal with 0x: a leading zero does not mean octal here. */
static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (*s == '\0' || *s == '-' || *s == '+')
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, base);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_key(cli_t *c, const char *arg)
{
    if (strlen(arg) != 2 * ADMIN_KEY_SIZE || rd_hex_decode(arg, c->key, ADMIN_KEY_SIZE) != ADMIN_KEY_SIZE)
        return usage_error("the admin key must be 32 hex digits", arg);
    c->key_set = true;
    return 0;
}

static int parse_number(const char *arg, unsigned long max, const char *what, unsigned long *v)
{
    if (!parse_uint(arg, max, v))
        return usage_error(what, arg);
    return 0;
}

/* The signed byte; 128..255 name the same bytes as -128..-1. */
static int parse_den(const char *arg, int8_t *den)
{
    unsigned long v;
    bool neg = arg[0] == '-';
    if (!parse_uint(arg + neg, neg ? 128 : 255, &v))
        return usage_error("bad denomination (-128..127)", arg);
    *den = (int8_t)(uint8_t)(neg ? 256 - v : v);
    return 0;
}

static int parse_enc_type(cli_t *c, const char *arg)
{
    unsigned long v;
    if (!parse_uint(arg, 5, &v) || v == 2 || v == 3)
        return usage_error("the encryption type must be 0, 1, 4 or 5", arg);
    c->req.enc_type = (uint8_t)v;
    return 0;
}

/* The first -D, -S or -K is the first coin's, the second the second's. */
static int parse_coin_option(cli_t *c, int opt, const char *arg)
{
    unsigned *n = opt == 'D' ? &c->n_den : opt == 'S' ? &c->n_sn : &c->n_key;
    unsigned long v;
    if (*n >= MAX_COINS)
        return usage_error("-D, -S and -K come at most twice", arg);
    rd_client_coin_t *coin = &c->req.coin[(*n)++];
    switch (opt) {
    case 'D':
        return parse_den(arg, &coin->den);
    case 'S':
        if (parse_number(arg, UINT32_MAX, "bad serial number", &v) < 0)
            return -1;
        coin->sn = (uint32_t)v;
        return 0;
    default:
        if (strlen(arg) != 2 * RD_CLIENT_KEY_SIZE || rd_hex_decode(arg, coin->key, RD_CLIENT_KEY_SIZE) != RD_CLIENT_KEY_SIZE)
            return usage_error("a coin key must be 32 hex digits", arg);
        return 0;
    }
}

static int parse_option(cli_t *c, int opt, const char *arg)
{
    unsigned long v;
    switch (opt) {
    case 'u':
        c->udp = true;
        return 0;
    case 'r':
        if (parse_number(arg, UINT8_MAX, "bad RAIDA id", &v) < 0)
            return -1;
        c->req.raida_id = (uint8_t)v;
        return 0;
    case 'c':
        if (parse_number(arg, UINT16_MAX, "bad coin id", &v) < 0)
            return -1;
        c->req.coin_id = (uint16_t)v;
        return 0;
    case 'k':
        return parse_key(c, arg);
    case 't':
        if (!parse_uint(arg, INT_MAX, &v) || v == 0)
            return usage_error("bad timeout", arg);
        c->timeout_ms = (int)v;
        return 0;
    case 'e':
        if (parse_number(arg, UINT16_MAX, "bad echo", &v) < 0)
            return -1;
        c->req.echo = (uint16_t)v;
        return 0;
    case 'E':
        return parse_enc_type(c, arg);
    case 'D': case 'S': case 'K':
        return parse_coin_option(c, opt, arg);
    case 'd':
        c->data_dir = arg;
        return 0;
    default:
        short_usage();
        return -1;
    }
}

static int parse_raw(cli_t *c, int argc, char **argv)
{
    unsigned long g, cmd;
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "raida-cli: raw needs GROUP COMMAND [PAYLOAD_HEX]\n");
        short_usage();
        return -1;
    }
    if (parse_number(argv[0], UINT8_MAX, "bad group", &g) < 0
        || parse_number(argv[1], UINT8_MAX, "bad command", &cmd) < 0)
        return -1;
    c->req.group = (uint8_t)g;
    c->req.command = (uint8_t)cmd;
    if (argc < 3)
        return 0;

    size_t hex_len = strlen(argv[2]);
    if (hex_len / 2 > MAX_PAYLOAD)
        return usage_error("payload too long", "at most 65517 bytes");
    c->payload = malloc(hex_len / 2 + 1);
    if (c->payload == NULL) {
        fprintf(stderr, "raida-cli: out of memory\n");
        return -1;
    }
    long n = rd_hex_decode(argv[2], c->payload, hex_len / 2 + 1);
    if (n < 0)
        return usage_error("bad payload (hex digits expected)", argv[2]);
    c->req.payload = c->payload;
    c->req.payload_len = (size_t)n;
    return 0;
}

static int parse_command(cli_t *c, int argc, char **argv)
{
    const char *name = argv[0];
    c->req.group = 0;
    if (strcmp(name, "raw") == 0) {
        c->cmd = CLI_RAW;
        return parse_raw(c, argc - 1, argv + 1);
    }
    if (argc != 1)
        return usage_error("unexpected argument", argv[1]);
    if (strcmp(name, "echo") == 0) {
        c->cmd = CLI_ECHO;
        c->req.command = 0;
    } else if (strcmp(name, "version") == 0) {
        c->cmd = CLI_VERSION;
        c->req.command = 1;
    } else if (strcmp(name, "stats") == 0) {
        c->cmd = CLI_STATS;
        c->req.command = 2;
        /* Without -k no key is sent at all: the server answers 38. */
        if (c->key_set) {
            c->req.payload = c->key;
            c->req.payload_len = ADMIN_KEY_SIZE;
        }
    } else {
        return usage_error("unknown command", name);
    }
    return 0;
}

static bool random_echo(uint16_t *echo)
{
    uint8_t b[2];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return false;
    *echo = (uint16_t)(b[0] << 8 | b[1]);
    return true;
}

static int coin_usage(const char *what)
{
    fprintf(stderr, "raida-cli: %s\n", what);
    short_usage();
    return -1;
}

static int load_keys(cli_t *c, unsigned n)
{
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        rd_client_coin_t *coin = &c->req.coin[i];
        if (rd_coins_read_key(c->data_dir, coin->den, coin->sn, coin->key) != RD_COIN_OK) {
            fprintf(stderr, "raida-cli: no key for coin %d/%u in %s\n", coin->den, coin->sn,
                    c->data_dir);
            rc = -1;
        }
    }
    return rc;
}

/* Type 1 and 4 name one coin, type 5 two; their keys come from -K or -d. */
static int check_coins(cli_t *c)
{
    uint8_t type = c->req.enc_type;
    unsigned need = type == 5 ? 2 : type == 0 ? 0 : 1;
    if (need == 0 && (c->n_den || c->n_sn || c->n_key || c->data_dir))
        return coin_usage("-D, -S, -K and -d need -E 1, 4 or 5");
    if (c->n_den != need || c->n_sn != need)
        return coin_usage(need == 2 ? "-E 5 needs two coins: -D DEN -S SN, twice"
                                    : "-E 1 and -E 4 need one coin: -D DEN -S SN");
    if (c->data_dir != NULL && c->n_key > 0)
        return coin_usage("-K and -d exclude each other");
    if (c->data_dir != NULL)
        return load_keys(c, need);
    if (c->n_key != need)
        return coin_usage("every coin needs its key: -K KEY_HEX (or -d DATA_DIR)");
    return 0;
}

/* Returns 1 when -h asked for help, 0 when C is ready, -1 on a usage error. */
static int parse_args(cli_t *c, int argc, char **argv)
{
    bool echo_set = false;
    int opt;
    while ((opt = getopt(argc, argv, "ur:c:k:t:e:E:D:S:K:d:h")) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 1;
        }
        if (parse_option(c, opt, optarg) < 0)
            return -1;
        echo_set |= opt == 'e';
    }
    if (argc - optind < 3) {
        fprintf(stderr, "raida-cli: HOST PORT COMMAND expected\n");
        short_usage();
        return -1;
    }
    c->host = argv[optind];
    c->port = argv[optind + 1];
    if (parse_command(c, argc - optind - 2, argv + optind + 2) < 0 || check_coins(c) < 0)
        return -1;
    if (!echo_set && !random_echo(&c->req.echo)) {
        fprintf(stderr, "raida-cli: no random bytes for the echo\n");
        return -1;
    }
    return 0;
}

/* ---- printing the answer ------------------------------------------------- */

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader_t;

static bool read_be(reader_t *r, size_t n, uint64_t *v)
{
    if (r->left < n)
        return false;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = (*v << 8) | r->p[i];
    r->p += n;
    r->left -= n;
    return true;
}

static bool print_status_counts(reader_t *r)
{
    uint64_t n, code, count;
    if (!read_be(r, 2, &n))
        return false;
    for (uint64_t i = 0; i < n; i++) {
        if (!read_be(r, 1, &code) || !read_be(r, 8, &count))
            return false;
        printf("status %u: %llu\n", (unsigned)code, (unsigned long long)count);
    }
    return true;
}

static bool print_command_counts(reader_t *r)
{
    uint64_t n, group, command, count;
    if (!read_be(r, 2, &n))
        return false;
    for (uint64_t i = 0; i < n; i++) {
        if (!read_be(r, 1, &group) || !read_be(r, 1, &command) || !read_be(r, 8, &count))
            return false;
        printf("command %u.%u (%s): %llu\n", (unsigned)group, (unsigned)command,
               rd_protocol_command_name((uint8_t)group, (uint8_t)command),
               (unsigned long long)count);
    }
    return true;
}

static int print_stats(const uint8_t *payload, size_t len)
{
    reader_t r = { payload, len };
    uint64_t uptime, requests;
    if (!read_be(&r, 4, &uptime) || !read_be(&r, 8, &requests))
        goto malformed;
    printf("uptime: %llu\nrequests: %llu\n", (unsigned long long)uptime,
           (unsigned long long)requests);
    if (!print_status_counts(&r) || !print_command_counts(&r) || r.left != 0)
        goto malformed;
    return 0;
malformed:
    fprintf(stderr, "raida-cli: malformed stats payload (%zu bytes)\n", len);
    return -1;
}

static void print_version(const uint8_t *payload, size_t len)
{
    fputs("version: ", stdout);
    for (size_t i = 0; i < len; i++)
        putchar(payload[i] >= 0x20 && payload[i] < 0x7F ? payload[i] : '?');
    putchar('\n');
}

static void print_hex(const uint8_t *payload, size_t len)
{
    fputs("payload: ", stdout);
    for (size_t i = 0; i < len; i++)
        printf("%02x", payload[i]);
    putchar('\n');
}

static bool modern_type(uint8_t type)
{
    return type == 4 || type == 5;
}

/* The 48-byte family has no echo bytes nor challenge: its answer names the
 * coin and proves itself by the HMAC of its body, when it has one. */
static void print_header(const rd_client_response_t *r)
{
    bool modern = modern_type(r->enc_type);
    printf("status: %u (%s)\n", r->status, rd_client_status_name(r->status));
    printf("raida_id: %u\n", r->raida_id);
    printf("group: %u\n", r->group);
    if (r->enc_type != 0)
        printf("encryption: %u\n", r->enc_type);
    if (modern)
        printf("coin: %d/%u\n", r->den, r->sn);
    else
        printf("echo: 0x%04x\n", r->echo);
    printf("body_size: %u\n", r->body_size);
    printf("exec_us: %u\n", r->exec_us);
    if (!modern)
        printf("challenge_ok: %s\n", r->authentic ? "yes" : "no");
    else
        printf("hmac_ok: %s\n", r->body_size == 0 ? "none" : r->authentic ? "yes" : "no");
}

/* Type 0 proves nothing (anyone can echo a challenge): its check is only
 * shown. An encrypted success must prove the key, and any body of type 4
 * or 5 must carry a good HMAC, or its payload is not even readable. */
static bool answer_trusted(const rd_client_response_t *r)
{
    if (modern_type(r->enc_type))
        return r->body_size == 0 || r->authentic;
    return r->enc_type == 0 || r->status != RD_STATUS_SUCCESS || r->authentic;
}

static int print_body(enum cli_command cmd, const rd_client_response_t *r)
{
    bool ok = r->status == RD_STATUS_SUCCESS;
    if (ok && cmd == CLI_STATS)
        return print_stats(r->payload, r->payload_len);
    if (ok && cmd == CLI_VERSION)
        print_version(r->payload, r->payload_len);
    else if (r->payload_len > 0)
        print_hex(r->payload, r->payload_len);
    return 0;
}

/* ---- main ---------------------------------------------------------------- */

static int run(const cli_t *c)
{
    size_t req_cap = rd_client_frame_size(&c->req);    /* 0: seal says no below */
    uint8_t *req = malloc(req_cap > 0 ? req_cap : 1), *resp = malloc(RESP_CAP);
    rd_client_ctx_t ctx;
    int rc = EXIT_USAGE;
    if (req == NULL || resp == NULL) {
        fprintf(stderr, "raida-cli: out of memory\n");
        goto out;
    }
    size_t req_len = rd_client_seal(&c->req, req, req_cap, &ctx);
    if (req_len == 0) {
        fprintf(stderr, "raida-cli: cannot build the request\n");
        goto out;
    }
    long n = rd_client_exchange(c->host, c->port, c->udp, req, req_len, resp, RESP_CAP,
                                c->timeout_ms);
    if (n < 0) {
        fprintf(stderr, "raida-cli: %s %s:%s: %s\n", c->udp ? "udp" : "tcp", c->host, c->port,
                strerror(errno));
        goto out;
    }
    rd_client_response_t r;
    if (rd_client_open(&ctx, resp, (size_t)n, &r) < 0) {
        fprintf(stderr, "raida-cli: malformed response (%ld bytes)\n", n);
        goto out;
    }
    print_header(&r);
    if (!answer_trusted(&r)) {
        fprintf(stderr, "raida-cli: the answer is not authentic (a wrong key?)\n");
        goto out;
    }
    if (print_body(c->cmd, &r) == 0)
        rc = r.status == RD_STATUS_SUCCESS ? EXIT_OK : EXIT_STATUS;
out:
    fflush(stdout);
    free(req);
    free(resp);
    return rc;
}

int main(int argc, char **argv)
{
    cli_t c;
    memset(&c, 0, sizeof(c));
    c.timeout_ms = 2000;
    c.req.coin_id = 6;
    int rc = parse_args(&c, argc, argv);
    if (rc == 0)
        rc = run(&c);
    else
        rc = rc > 0 ? EXIT_OK : EXIT_USAGE;
    free(c.payload);
    return rc;
}
