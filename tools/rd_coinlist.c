/* Coin list files (see tools/rd_coinlist.h): reading with line-exact
 * errors, writing whole. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_atomicfile.h"
#include "rd_bytes.h"
#include "rd_coinfile.h"
#include "rd_coinlist.h"
#include "rd_crypto.h"

#define LINE_MAX_LEN   256      /* "DEN SN AN" takes 45 characters */
#define LINE_TEXT_SIZE 48       /* one written line: "-8 1023999 " + 32 digits + "\n" */

__attribute__((format(printf, 5, 6)))
static int fail(char *err, size_t err_len, const char *path, unsigned line, const char *fmt, ...)
{
    int n = line > 0 ? snprintf(err, err_len, "%s:%u: ", path, line)
                     : snprintf(err, err_len, "%s: ", path);
    if (n >= 0 && (size_t)n < err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int rd_coinlist_add(rd_coinlist_t *list, int8_t den, uint32_t sn, const uint8_t *an)
{
    /* Grown by hand, not realloc: the old copy of the keys is wiped. */
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        rd_client_coin_t *c = cap <= SIZE_MAX / sizeof(*c) ? malloc(cap * sizeof(*c)) : NULL;
        if (c == NULL)
            return -1;
        if (list->coin != NULL) {
            memcpy(c, list->coin, list->count * sizeof(*c));
            rd_crypto_wipe(list->coin, list->cap * sizeof(*c));
            free(list->coin);
        }
        list->coin = c;
        list->cap = cap;
    }
    rd_client_coin_t *c = &list->coin[list->count++];
    c->den = den;
    c->sn = sn;
    memcpy(c->key, an, RD_CLIENT_KEY_SIZE);
    return 0;
}

long rd_coinlist_find(const rd_coinlist_t *list, int8_t den, uint32_t sn)
{
    for (size_t i = 0; i < list->count; i++)
        if (list->coin[i].den == den && list->coin[i].sn == sn)
            return (long)i;
    return -1;
}

void rd_coinlist_free(rd_coinlist_t *list)
{
    if (list->coin != NULL)
        rd_crypto_wipe(list->coin, list->cap * sizeof(*list->coin));
    free(list->coin);
    memset(list, 0, sizeof(*list));
}

/* Parses "DEN SN AN" (LINE has no newline). Returns NULL, or what is wrong. */
static const char *parse_coin(const char *line, rd_client_coin_t *c)
{
    char *end;
    errno = 0;
    long den = strtol(line, &end, 10);
    if (end == line || errno != 0 || (*end != ' ' && *end != '\t'))
        return "expected \"DEN SN AN\": the denomination is not a number";
    line = end;
    while (*line == ' ' || *line == '\t')
        line++;
    if (*line < '0' || *line > '9')
        return "expected \"DEN SN AN\": the serial number is not a number";
    unsigned long long sn = strtoull(line, &end, 10);
    if (errno != 0 || (*end != ' ' && *end != '\t'))
        return "expected \"DEN SN AN\": the serial number is not a number";
    if (den < INT8_MIN || den > INT8_MAX || sn > UINT32_MAX
        || !rd_coinfile_valid((int8_t)den, (uint32_t)sn))
        return "not a valid coin (denomination -8..6, serial number 0..1023999)";
    line = end;
    while (*line == ' ' || *line == '\t')
        line++;
    char hex[2 * RD_CLIENT_KEY_SIZE + 1];
    size_t n = strcspn(line, " \t");
    if (n != 2 * RD_CLIENT_KEY_SIZE)
        return "the AN must be 32 hex digits";
    memcpy(hex, line, n);
    hex[n] = '\0';
    if (rd_hex_decode(hex, c->key, RD_CLIENT_KEY_SIZE) != RD_CLIENT_KEY_SIZE)
        return "the AN must be 32 hex digits";
    line += n;
    line += strspn(line, " \t");
    if (*line != '\0')
        return "unexpected text after the AN";
    c->den = (int8_t)den;
    c->sn = (uint32_t)sn;
    return NULL;
}

/* Reads one line into BUF without its newline; 0 at the end, -1 when the
 * line is too long. */
static int read_line(FILE *f, char *buf, size_t size)
{
    if (fgets(buf, (int)size, f) == NULL)
        return 0;
    size_t len = strlen(buf);
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    else if (!feof(f))
        return -1;
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    return 1;
}

static int read_lines(FILE *f, const char *path, rd_coinlist_t *list, unsigned *lines,
                      size_t max_coins, char *err, size_t err_len)
{
    char buf[LINE_MAX_LEN];
    unsigned line = 0;
    int rc;
    while ((rc = read_line(f, buf, sizeof(buf))) != 0) {
        line++;
        if (rc < 0)
            return fail(err, err_len, path, line, "line too long");
        const char *p = buf + strspn(buf, " \t");
        if (*p == '\0' || *p == '#')
            continue;
        rd_client_coin_t c;
        const char *why = parse_coin(p, &c);
        if (why != NULL)
            return fail(err, err_len, path, line, "%s", why);
        if (list->count == max_coins)
            return fail(err, err_len, path, line, "the file grew while it was read");
        if (rd_coinlist_add(list, c.den, c.sn, c.key) < 0)
            return fail(err, err_len, path, line, "out of memory");
        rd_crypto_wipe(&c, sizeof(c));
        lines[list->count - 1] = line;
    }
    if (ferror(f))
        return fail(err, err_len, path, 0, "%s", strerror(errno));
    return 0;
}

typedef struct coin_at {
    uint64_t id;
    unsigned line;
} coin_at_t;

static int by_id(const void *a, const void *b)
{
    uint64_t x = ((const coin_at_t *)a)->id, y = ((const coin_at_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* Sorted, a coin listed twice sits next to itself. */
static int check_unique(const rd_coinlist_t *list, const unsigned *lines, const char *path,
                        char *err, size_t err_len)
{
    coin_at_t *ids = malloc((list->count ? list->count : 1) * sizeof(*ids));
    if (ids == NULL)
        return fail(err, err_len, path, 0, "out of memory");
    for (size_t i = 0; i < list->count; i++)
        ids[i] = (coin_at_t){ (uint64_t)(uint8_t)list->coin[i].den << 32 | list->coin[i].sn,
                              lines[i] };
    qsort(ids, list->count, sizeof(*ids), by_id);
    int rc = 0;
    for (size_t i = 1; i < list->count && rc == 0; i++) {
        if (ids[i].id == ids[i - 1].id) {
            unsigned a = ids[i - 1].line, b = ids[i].line;
            rc = fail(err, err_len, path, a > b ? a : b, "coin %d %u is listed twice (line %u too)",
                      (int8_t)(uint8_t)(ids[i].id >> 32), (uint32_t)ids[i].id, a < b ? a : b);
        }
    }
    free(ids);
    return rc;
}

int rd_coinlist_read(const char *path, rd_coinlist_t *list, char *err, size_t err_len)
{
    memset(list, 0, sizeof(*list));
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return fail(err, err_len, path, 0, "%s", strerror(errno));
    /* Line numbers of the coins, for the duplicate check: the file's size
     * bounds the count (a coin line takes 36 bytes at least). */
    unsigned *lines = NULL;
    size_t max_coins = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        rewind(f);
        max_coins = (size_t)(size > 0 ? size : 0) / 36 + 1;
        lines = malloc(max_coins * sizeof(*lines));
    }
    int rc = lines == NULL ? fail(err, err_len, path, 0, "cannot read: %s", strerror(errno))
                           : read_lines(f, path, list, lines, max_coins, err, err_len);
    if (rc == 0)
        rc = check_unique(list, lines, path, err, err_len);
    free(lines);
    fclose(f);
    if (rc < 0)
        rd_coinlist_free(list);
    return rc;
}

static size_t comment_size(const char *comment)
{
    size_t n = 0;
    for (const char *p = comment; p != NULL && *p != '\0'; p++)
        n += *p == '\n' ? 3 : 1;
    return comment != NULL ? n + 3 : 0;
}

/* "# " before every line of COMMENT. */
static size_t put_comment(char *out, const char *comment)
{
    size_t n = 0;
    if (comment == NULL)
        return 0;
    out[n++] = '#';
    out[n++] = ' ';
    for (const char *p = comment; *p != '\0'; p++) {
        out[n++] = *p;
        if (*p == '\n') {
            out[n++] = '#';
            out[n++] = ' ';
        }
    }
    out[n++] = '\n';
    return n;
}

int rd_coinlist_write(const char *path, const rd_coinlist_t *list, const char *comment,
                      bool replace)
{
    size_t cap = comment_size(comment) + list->count * LINE_TEXT_SIZE + 1;
    char *text = malloc(cap);
    if (text == NULL)
        return -1;
    size_t len = put_comment(text, comment);
    for (size_t i = 0; i < list->count; i++) {
        const rd_client_coin_t *c = &list->coin[i];
        len += (size_t)snprintf(text + len, cap - len, "%d %u ", c->den, c->sn);
        for (size_t k = 0; k < RD_CLIENT_KEY_SIZE; k++)
            len += (size_t)snprintf(text + len, cap - len, "%02x", c->key[k]);
        text[len++] = '\n';
    }
    int rc = rd_atomicfile_write(path, text, len, 0600, replace);
    int saved = errno;
    rd_crypto_wipe(text, cap);
    free(text);
    errno = saved;
    return rc;
}
