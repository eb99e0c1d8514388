/* The crash record: before a worker runs a command's handler it writes,
 * into its own slot of a small mapping shared with the master, which
 * module, group and command it is about to run; it clears the entry
 * afterwards. When a worker dies, the master reads the slot and names
 * what was running, rather than guessing. The master reads the slot as
 * untrusted bytes: bounded and checked before a byte of it is logged. */
#ifndef RD_CRASHREC_H
#define RD_CRASHREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RD_CRASHREC_ENTRIES 32      /* threads of a worker recorded (the rest are not) */

/* The master, before any worker: SLOTS slots (one per process entry). */
int rd_crashrec_init(size_t slots);
void rd_crashrec_fini(void);

/* The child, after fork: its slot, emptied. */
void rd_crashrec_attach(size_t slot);

/* Around a handler, on any thread of a worker. */
void rd_crashrec_enter(const char *module, uint8_t group, uint8_t command);
void rd_crashrec_leave(void);

struct rd_module_set;

/* The master, after the worker of SLOT died: what it was running, as
 * "module M group G command C" (several joined by ", "), into OUT; false
 * when nothing (valid) was recorded. The slot is emptied. NAMES, when not
 * NULL, is the master's own table of the worker's generation: a command
 * of the recorded module found there adds its name, " (NAME)". */
bool rd_crashrec_read(size_t slot, const struct rd_module_set *names, char *out, size_t len);

/* The raw bytes of SLOT and their size (tests write into them what a
 * crashing worker might); NULL when there is no such slot. */
uint8_t *rd_crashrec_slot(size_t slot, size_t *size);

#endif
