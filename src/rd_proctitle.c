/* Process titles written over the argv area (see include/rd_proctitle.h). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_proctitle.h"

extern char **environ;

/* The one area of memory the title may use: argv and the environment
 * strings that follow it. Process-wide by nature, like environ itself. */
static char *title_start;
static size_t title_len;

static char **copy_environ(void)
{
    size_t n = 0;
    char **copy;

    while (environ[n] != NULL)
        n++;
    copy = calloc(n + 1, sizeof(*copy));
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if ((copy[i] = strdup(environ[i])) == NULL) {
            while (i > 0)
                free(copy[--i]);
            free(copy);
            return NULL;
        }
    }
    return copy;
}

int rd_proctitle_init(int argc, char **argv)
{
    char *end = argv[0];
    char **env;

    for (int i = 0; i < argc && argv[i] == end; i++)
        end = argv[i] + strlen(argv[i]) + 1;
    for (size_t i = 0; environ[i] != NULL && environ[i] == end; i++)
        end = environ[i] + strlen(environ[i]) + 1;
    if ((env = copy_environ()) == NULL)
        return -1;
    environ = env;
    title_start = argv[0];
    title_len = (size_t)(end - argv[0]);
    return 0;
}

void rd_proctitle_set(const char *fmt, ...)
{
    char title[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(title, sizeof(title), fmt, ap);
    va_end(ap);
    /* The kernel's name of the process (comm) stays the program's, as
     * nginx's does: pidof, pgrep -x and killall find raidad by it, and
     * the kernel's own messages (OOM, seccomp) name it. */
    if (title_start == NULL)
        return;
    memset(title_start, 0, title_len);
    memcpy(title_start, title, strnlen(title, title_len - 1));
}
