/* Process titles as ps shows them ("raidad: master process -c FILE"),
 * written over the argv area as nginx does. */
#ifndef RD_PROCTITLE_H
#define RD_PROCTITLE_H

/* Moves the environment out of the way; call once, first thing in main.
 * Returns -1 (titles then stay as they were) when memory is short. */
int rd_proctitle_init(int argc, char **argv);
void rd_proctitle_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
