/* raida-cli: sends one RAIDA request (echo, version, stats, audit, detect,
 * pown and their sums, or raw bytes) over TCP or UDP, plain or encrypted,
 * and prints the answer. See man/raida-cli.1. */
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
#include "rd_client_auth.h"
#include "rd_coinlist.h"
#include "rd_coins.h"
#include "rd_crypto.h"
#include "rd_protocol.h"

#define EXIT_OK      0
#define EXIT_STATUS  1      /* the server answered with another status than success (250,
                               or 241 "all passed" for the coin commands) */
#define EXIT_USAGE   2      /* bad arguments, network trouble, malformed answer */

#define ADMIN_KEY_SIZE 16
#define MAX_PAYLOAD    (0xFFFFu - RD_MIN_BODY_SIZE)
#define RESP_CAP       (RD_MODERN_HEADER_SIZE + 0xFFFFFFu)     /* the largest u24 body */
#define MAX_COINS      2

_Static_assert(RD_COIN_AN_SIZE == RD_CLIENT_KEY_SIZE, "page files hold the keys the client uses");

enum cli_command { CLI_ECHO, CLI_VERSION, CLI_STATS, CLI_RAW, CLI_AUDIT, CLI_AUTH };

/* The coins a coin command names, and where they came from. */
typedef struct cli_coins {
    const char *list_path;      /* -L */
    rd_coinlist_t list;
    rd_client_coin_t *coin;     /* the coins of the request, in order */
    long *from;                 /* the list index of each, or -1 (command line) */
    size_t n;
    uint8_t *pan;               /* -P: the new ANs given, in order */
    size_t npan;
    uint8_t *new_an;            /* pown: each coin's PAN; pown sum: the delta */
} cli_coins_t;

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
    enum rd_auth_cmd auth;      /* CLI_AUTH */
    cli_coins_t coins;
} cli_t;

#define SYNOPSIS \
    "usage: raida-cli [-u] [-r RAIDA_ID] [-c COIN_ID] [-k ADMIN_KEY_HEX] [-t TIMEOUT_MS]\n" \
    "                 [-e ECHO] [-E TYPE -D DEN -S SN [-K KEY_HEX | -d DATA_DIR]]\n" \
    "                 [-L COIN_LIST] [-P PAN_HEX]... HOST PORT COMMAND [ARGS]\n"

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
        "  audit                             group 0, command 3: issued coins per denomination\n"
        "  detect [COIN...]                  group 1, command 10: are the ANs right?\n"
        "  detect-sum [COIN...]              group 1, command 11: is the XOR of the ANs right?\n"
        "  pown [COIN...]                    group 1, command 20: AN := PAN for each coin\n"
        "                                    whose AN is right\n"
        "  pown-sum [COIN...]                group 1, command 21: AN := AN XOR delta for all,\n"
        "                                    if the XOR of the ANs is right\n"
        "\n"
        "coins: with -L, COIN is an index into the list (0 is the first coin), a range\n"
        "FIRST-LAST of indexes, or DEN:SN; no COIN means every coin of the list. Without\n"
        "-L, COIN is DEN:SN:AN_HEX. A negative DEN after \"--\" (or as 248..255).\n"
        "pown and pown-sum on success write the new ANs back into the list.\n"
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
        "  -L COIN_LIST    the coin list (DEN SN AN_HEX lines) the coins come from\n"
        "  -P PAN_HEX      pown: the new AN of the next coin (the i-th -P for the i-th\n"
        "                  coin, the others get a random one); pown-sum: the delta\n"
        "                  (default random)\n"
        "  -h              this help\n"
        "\n"
        "exit status: 0 success (250; 241 all coins passed), 1 any other status, 2 usage\n"
        "or network error, an answer that is malformed or not authentic, or a coin list\n"
        "that could not be written\n");
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
    if (strlen(arg) != 2 * ADMIN_KEY_SIZE
        || rd_hex_decode(arg, c->key, ADMIN_KEY_SIZE) != ADMIN_KEY_SIZE)
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
        if (strlen(arg) != 2 * RD_CLIENT_KEY_SIZE
            || rd_hex_decode(arg, coin->key, RD_CLIENT_KEY_SIZE) != RD_CLIENT_KEY_SIZE)
            return usage_error("a coin key must be 32 hex digits", arg);
        return 0;
    }
}

static int parse_pan(cli_t *c, const char *arg)
{
    cli_coins_t *k = &c->coins;
    uint8_t *p = realloc(k->pan, (k->npan + 1) * RD_CLIENT_KEY_SIZE);
    if (p == NULL) {
        fprintf(stderr, "raida-cli: out of memory\n");
        return -1;
    }
    k->pan = p;
    if (strlen(arg) != 2 * RD_CLIENT_KEY_SIZE
        || rd_hex_decode(arg, p + k->npan * RD_CLIENT_KEY_SIZE, RD_CLIENT_KEY_SIZE)
               != RD_CLIENT_KEY_SIZE)
        return usage_error("-P: a PAN must be 32 hex digits", arg);
    k->npan++;
    return 0;
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
    case 'L':
        c->coins.list_path = arg;
        return 0;
    case 'P':
        return parse_pan(c, arg);
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

static int coin_usage(const char *what)
{
    fprintf(stderr, "raida-cli: %s\n", what);
    short_usage();
    return -1;
}

/* ---- coins ---------------------------------------------------------------- */

static const struct {
    const char *name;
    enum rd_auth_cmd cmd;
} auth_names[] = {
    { "detect", RD_AUTH_DETECT },
    { "detect-sum", RD_AUTH_DETECT_SUM },
    { "pown", RD_AUTH_POWN },
    { "pown-sum", RD_AUTH_POWN_SUM },
};

static bool auth_command(const char *name, enum rd_auth_cmd *cmd)
{
    for (size_t i = 0; i < sizeof(auth_names) / sizeof(auth_names[0]); i++) {
        if (strcmp(auth_names[i].name, name) == 0) {
            *cmd = auth_names[i].cmd;
            return true;
        }
    }
    return false;
}

static bool is_pown(enum rd_auth_cmd cmd)
{
    return cmd == RD_AUTH_POWN || cmd == RD_AUTH_POWN_SUM;
}

static int add_coin(cli_coins_t *k, const rd_client_coin_t *coin, long from)
{
    rd_client_coin_t *c = realloc(k->coin, (k->n + 1) * sizeof(*c));
    long *f = c == NULL ? NULL : realloc(k->from, (k->n + 1) * sizeof(*f));
    if (c != NULL)
        k->coin = c;
    if (f == NULL) {
        fprintf(stderr, "raida-cli: out of memory\n");
        return -1;
    }
    k->from = f;
    k->coin[k->n] = *coin;
    k->from[k->n++] = from;
    return 0;
}

/* "DEN:SN", the rest (":AN_HEX" or nothing) left in *REST. */
static bool parse_den_sn(const char *arg, rd_client_coin_t *coin, const char **rest)
{
    char den[8];
    const char *colon = strchr(arg, ':');
    if (colon == NULL || (size_t)(colon - arg) >= sizeof(den))
        return false;
    memcpy(den, arg, (size_t)(colon - arg));
    den[colon - arg] = '\0';
    unsigned long v;
    bool neg = den[0] == '-';
    if (!parse_uint(den + neg, neg ? 128 : 255, &v))
        return false;
    coin->den = (int8_t)(uint8_t)(neg ? 256 - v : v);
    const char *sn = colon + 1, *end = strchr(sn, ':');
    char buf[16];
    size_t len = end != NULL ? (size_t)(end - sn) : strlen(sn);
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, sn, len);
    buf[len] = '\0';
    if (!parse_uint(buf, UINT32_MAX, &v))
        return false;
    coin->sn = (uint32_t)v;
    *rest = end != NULL ? end + 1 : sn + len;
    return true;
}

/* Without a list: DEN:SN:AN_HEX. */
static int coin_from_args(cli_coins_t *k, const char *arg)
{
    rd_client_coin_t coin;
    const char *an;
    if (!parse_den_sn(arg, &coin, &an) || an[-1] != ':')
        return usage_error("a coin is DEN:SN:AN_HEX (or use -L COIN_LIST)", arg);
    if (strlen(an) != 2 * RD_CLIENT_KEY_SIZE
        || rd_hex_decode(an, coin.key, RD_CLIENT_KEY_SIZE) != RD_CLIENT_KEY_SIZE)
        return usage_error("a coin's AN must be 32 hex digits", arg);
    return add_coin(k, &coin, -1);
}

/* From the list: INDEX, FIRST-LAST or DEN:SN. */
static int coin_from_list(cli_coins_t *k, const char *arg)
{
    const rd_coinlist_t *l = &k->list;
    unsigned long first, last;
    if (strchr(arg, ':') != NULL) {
        rd_client_coin_t coin;
        const char *rest;
        if (!parse_den_sn(arg, &coin, &rest) || *rest != '\0')
            return usage_error("a coin of the list is INDEX, FIRST-LAST or DEN:SN", arg);
        long i = rd_coinlist_find(l, coin.den, coin.sn);
        if (i < 0)
            return usage_error("no such coin in the list", arg);
        return add_coin(k, &l->coin[i], i);
    }
    char buf[32];
    const char *dash = strchr(arg, '-');
    size_t len = dash != NULL ? (size_t)(dash - arg) : strlen(arg);
    if (len == 0 || len >= sizeof(buf))
        return usage_error("a coin of the list is INDEX, FIRST-LAST or DEN:SN", arg);
    memcpy(buf, arg, len);
    buf[len] = '\0';
    if (!parse_uint(buf, ULONG_MAX, &first)
        || (dash != NULL && !parse_uint(dash + 1, ULONG_MAX, &last)))
        return usage_error("a coin of the list is INDEX, FIRST-LAST or DEN:SN", arg);
    if (dash == NULL)
        last = first;
    if (first > last || last >= l->count) {
        fprintf(stderr, "raida-cli: %s: the list has %zu coins, indexes 0..%zu\n", arg, l->count,
                l->count ? l->count - 1 : 0);
        short_usage();
        return -1;
    }
    for (unsigned long i = first; i <= last; i++)
        if (add_coin(k, &l->coin[i], (long)i) < 0)
            return -1;
    return 0;
}

static int load_list(cli_coins_t *k)
{
    char err[512];
    if (rd_coinlist_read(k->list_path, &k->list, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "raida-cli: %s\n", err);
    return -1;
}

/* The PANs (pown) or the delta (pown sum): given by -P, or random. */
static int choose_new_ans(cli_t *c)
{
    cli_coins_t *k = &c->coins;
    size_t want = c->auth == RD_AUTH_POWN ? k->n : 1;
    if (!is_pown(c->auth)) {
        if (k->npan > 0)
            return coin_usage("-P goes with pown and pown-sum only");
        return 0;
    }
    if (k->npan > want)
        return coin_usage(c->auth == RD_AUTH_POWN ? "more -P than coins"
                                                  : "pown-sum takes one -P, the delta");
    k->new_an = malloc(want * RD_CLIENT_KEY_SIZE);
    if (k->new_an == NULL) {
        fprintf(stderr, "raida-cli: out of memory\n");
        return -1;
    }
    if (k->npan > 0)
        memcpy(k->new_an, k->pan, k->npan * RD_CLIENT_KEY_SIZE);
    if (rd_crypto_random_bytes(k->new_an + k->npan * RD_CLIENT_KEY_SIZE,
                        (want - k->npan) * RD_CLIENT_KEY_SIZE) < 0) {
        fprintf(stderr, "raida-cli: no random bytes for the new ANs\n");
        return -1;
    }
    return 0;
}

static int build_auth_payload(cli_t *c)
{
    cli_coins_t *k = &c->coins;
    size_t size = rd_client_auth_payload_size(c->auth, k->n);
    if (size > MAX_PAYLOAD) {
        fprintf(stderr, "raida-cli: %zu coins do not fit in one request (%zu bytes, at most %u)\n",
                k->n, size, MAX_PAYLOAD);
        return -1;
    }
    c->payload = malloc(size);
    if (c->payload == NULL) {
        fprintf(stderr, "raida-cli: out of memory\n");
        return -1;
    }
    c->req.payload = c->payload;
    c->req.payload_len = rd_client_auth_build(c->auth, k->coin, k->n, k->new_an, c->payload, size);
    return c->req.payload_len == size ? 0 : -1;
}

static int parse_coins(cli_t *c, int argc, char **argv)
{
    cli_coins_t *k = &c->coins;
    if (k->list_path != NULL && load_list(k) < 0)
        return -1;
    for (int i = 0; i < argc; i++) {
        int rc = k->list_path != NULL ? coin_from_list(k, argv[i]) : coin_from_args(k, argv[i]);
        if (rc < 0)
            return -1;
    }
    for (size_t i = 0; argc == 0 && i < k->list.count; i++)
        if (add_coin(k, &k->list.coin[i], (long)i) < 0)
            return -1;
    if (k->n == 0)
        return coin_usage(k->list_path != NULL ? "the coin list is empty"
                                               : "no coin: give DEN:SN:AN_HEX, or -L COIN_LIST");
    if (choose_new_ans(c) < 0)
        return -1;
    return build_auth_payload(c);
}

static void free_coins(cli_coins_t *k)
{
    rd_coinlist_free(&k->list);
    if (k->coin != NULL)
        rd_crypto_wipe(k->coin, k->n * sizeof(*k->coin));
    free(k->coin);
    free(k->from);
    free(k->pan);
    free(k->new_an);
}

static int parse_command(cli_t *c, int argc, char **argv)
{
    const char *name = argv[0];
    c->req.group = 0;
    if (strcmp(name, "raw") == 0) {
        c->cmd = CLI_RAW;
        return parse_raw(c, argc - 1, argv + 1);
    }
    if (auth_command(name, &c->auth)) {
        c->cmd = CLI_AUTH;
        c->req.group = RD_GROUP_AUTH;
        c->req.command = (uint8_t)c->auth;
        return parse_coins(c, argc - 1, argv + 1);
    }
    if (argc != 1)
        return usage_error("unexpected argument", argv[1]);
    if (strcmp(name, "echo") == 0) {
        c->cmd = CLI_ECHO;
        c->req.command = RD_CMD_ECHO;
    } else if (strcmp(name, "version") == 0) {
        c->cmd = CLI_VERSION;
        c->req.command = RD_CMD_VERSION;
    } else if (strcmp(name, "audit") == 0) {
        c->cmd = CLI_AUDIT;
        c->req.command = RD_CMD_AUDIT;
    } else if (strcmp(name, "stats") == 0) {
        c->cmd = CLI_STATS;
        c->req.command = RD_CMD_STATS;
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
    while ((opt = getopt(argc, argv, "ur:c:k:t:e:E:D:S:K:d:L:P:h")) != -1) {
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
    if (c->cmd != CLI_AUTH && (c->coins.list_path != NULL || c->coins.npan > 0))
        return coin_usage("-L and -P go with detect, detect-sum, pown and pown-sum");
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
    printf("status: %u (%s)\n", r->status, rd_frame_status_name(r->status));
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

/* A verdict: success, or the coin commands' 241, 242, 243. */
static bool verdict_status(uint8_t status)
{
    return status == RD_STATUS_SUCCESS || status == RD_STATUS_ALL_PASS
        || status == RD_STATUS_ALL_FAIL || status == RD_STATUS_MIXED;
}

/* Type 0 proves nothing (anyone can echo a challenge): its check is only
 * shown. An encrypted verdict must prove the key, and any body of type 4
 * or 5 must carry a good HMAC, or its payload is not even readable. */
static bool answer_trusted(const rd_client_response_t *r)
{
    if (modern_type(r->enc_type))
        return r->body_size == 0 || r->authentic;
    return r->enc_type == 0 || !verdict_status(r->status) || r->authentic;
}

static int print_audit(const uint8_t *payload, size_t len)
{
    uint32_t count[RD_COIN_DENS];
    if (rd_client_auth_parse_audit(payload, len, count) < 0) {
        fprintf(stderr, "raida-cli: malformed audit payload (%zu bytes)\n", len);
        return -1;
    }
    for (int i = 0; i < RD_COIN_DENS; i++)
        printf("issued: %d %u\n", RD_COIN_MIN_DEN + i, count[i]);
    return 0;
}

static void print_an(const uint8_t *an)
{
    for (size_t k = 0; k < RD_CLIENT_KEY_SIZE; k++)
        printf("%02x", an[k]);
}

/* The AN coin I has now, when the pown changed it: its PAN, or its AN
 * XOR the delta. */
static void new_an_of(const cli_t *c, size_t i, uint8_t *an)
{
    const cli_coins_t *k = &c->coins;
    if (c->auth == RD_AUTH_POWN) {
        memcpy(an, k->new_an + i * RD_CLIENT_KEY_SIZE, RD_CLIENT_KEY_SIZE);
        return;
    }
    for (size_t b = 0; b < RD_CLIENT_KEY_SIZE; b++)
        an[b] = k->coin[i].key[b] ^ k->new_an[b];
}

/* One line a coin; a pown prints the new AN of every coin that passed,
 * so that it is not lost whatever happens to the list. */
static void print_coins(const cli_t *c, const uint8_t *passed, long count)
{
    const cli_coins_t *k = &c->coins;
    printf("passed: %ld of %zu\n", count, k->n);
    for (size_t i = 0; i < k->n; i++) {
        bool ok = rd_auth_passed(passed, i);
        printf("coin: %d %u %s", k->coin[i].den, k->coin[i].sn, ok ? "pass" : "fail");
        if (ok && is_pown(c->auth)) {
            uint8_t an[RD_CLIENT_KEY_SIZE];
            new_an_of(c, i, an);
            fputs(" ", stdout);
            print_an(an);
        }
        putchar('\n');
    }
}

/* After a pown: the coins that passed have new ANs, which go into the
 * list, written whole (a crash leaves the old list or the new one). */
static int update_list(cli_t *c, const uint8_t *passed, long count)
{
    cli_coins_t *k = &c->coins;
    if (k->list_path == NULL || !is_pown(c->auth) || count == 0)
        return 0;
    for (size_t i = 0; i < k->n; i++)
        if (k->from[i] >= 0 && rd_auth_passed(passed, i))
            new_an_of(c, i, k->list.coin[k->from[i]].key);
    if (rd_coinlist_write(k->list_path, &k->list, "DEN SN AN (rewritten by raida-cli after a pown)",
                          true) < 0) {
        fprintf(stderr, "raida-cli: cannot rewrite %s: %s (the new ANs are printed above)\n",
                k->list_path, strerror(errno));
        return -1;
    }
    printf("list: %s (%ld new ANs)\n", k->list_path, count);
    return 0;
}

/* A pown was sent and no verdict came back: the server may have made it
 * (over UDP the answer may be lost), and then the coins have the ANs below,
 * which must not be lost with this process. */
static void warn_pown_unknown(const cli_t *c)
{
    if (c->cmd != CLI_AUTH || !is_pown(c->auth))
        return;
    fprintf(stderr, "raida-cli: no verdict: the server may have made the pown; if so, the coins'"
            " ANs are now (a detect tells):\n");
    for (size_t i = 0; i < c->coins.n; i++) {
        uint8_t an[RD_CLIENT_KEY_SIZE];
        new_an_of(c, i, an);
        fprintf(stderr, "%d %u ", c->coins.coin[i].den, c->coins.coin[i].sn);
        for (size_t k = 0; k < RD_CLIENT_KEY_SIZE; k++)
            fprintf(stderr, "%02x", an[k]);
        fputc('\n', stderr);
    }
}

/* Returns an exit status: 0 when every coin passed. */
static int print_verdict(cli_t *c, const rd_client_response_t *r)
{
    size_t n = c->coins.n;
    uint8_t *passed = malloc(rd_auth_bitfield_size(n));
    if (passed == NULL) {
        fprintf(stderr, "raida-cli: out of memory\n");
        return EXIT_USAGE;
    }
    long count = rd_client_auth_parse_result(c->auth, r->status, r->payload, r->payload_len, n,
                                             passed);
    int rc = EXIT_STATUS;
    if (count == RD_AUTH_NO_RESULT) {
        if (r->payload_len > 0)
            print_hex(r->payload, r->payload_len);
    } else if (count == RD_AUTH_MALFORMED) {
        fprintf(stderr,
                "raida-cli: status %u with a %zu-byte payload is no verdict for %zu coins\n",
                r->status, r->payload_len, n);
        warn_pown_unknown(c);
        rc = EXIT_USAGE;
    } else {
        print_coins(c, passed, count);
        if (update_list(c, passed, count) < 0)
            rc = EXIT_USAGE;
        else if (r->status == RD_STATUS_ALL_PASS)
            rc = EXIT_OK;
    }
    free(passed);
    return rc;
}

/* Returns an exit status. */
static int print_body(cli_t *c, const rd_client_response_t *r)
{
    bool ok = r->status == RD_STATUS_SUCCESS;
    if (c->cmd == CLI_AUTH)
        return print_verdict(c, r);
    if (ok && c->cmd == CLI_STATS)
        return print_stats(r->payload, r->payload_len) == 0 ? EXIT_OK : EXIT_USAGE;
    if (ok && c->cmd == CLI_AUDIT)
        return print_audit(r->payload, r->payload_len) == 0 ? EXIT_OK : EXIT_USAGE;
    if (ok && c->cmd == CLI_VERSION)
        print_version(r->payload, r->payload_len);
    else if (r->payload_len > 0)
        print_hex(r->payload, r->payload_len);
    return ok ? EXIT_OK : EXIT_STATUS;
}

/* ---- main ---------------------------------------------------------------- */

static int run(cli_t *c)
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
        warn_pown_unknown(c);
        goto out;
    }
    rd_client_response_t r;
    if (rd_client_open(&ctx, resp, (size_t)n, &r) < 0) {
        fprintf(stderr, "raida-cli: malformed response (%ld bytes)\n", n);
        warn_pown_unknown(c);
        goto out;
    }
    print_header(&r);
    if (!answer_trusted(&r)) {
        fprintf(stderr, "raida-cli: the answer is not authentic (a wrong key?)\n");
        warn_pown_unknown(c);
        goto out;
    }
    rc = print_body(c, &r);
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
    free_coins(&c.coins);
    return rc;
}
