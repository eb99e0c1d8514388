/* The crash record (include/rd_crashrec.h): one slot per worker process
 * in an anonymous shared mapping made by the master before it forks, one
 * entry per thread of the worker in a slot. Nothing is read by a worker
 * from another: each writes its own entries, and only the master reads,
 * after the writer is dead. */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "rd_crashrec.h"
#include "rd_module.h"

#define CRASHREC_MAGIC 0x52444352u  /* "RDCR" */

typedef struct crash_entry {
    _Atomic uint32_t active;        /* 1 while the handler runs */
    uint8_t group;
    uint8_t command;
    char module[RD_MODULE_NAME_SIZE];
} crash_entry_t;

typedef struct crash_slot {
    uint32_t magic;
    _Atomic uint32_t next_entry;    /* entries handed to threads so far */
    crash_entry_t entry[RD_CRASHREC_ENTRIES];
} crash_slot_t;

static crash_slot_t *slots;         /* the master's mapping, inherited */
static size_t slot_count;
static crash_slot_t *mine;          /* the worker's slot */
static _Thread_local crash_entry_t *my_entry;
static _Thread_local bool my_entry_tried;

int rd_crashrec_init(size_t n)
{
    void *map = mmap(NULL, n * sizeof(crash_slot_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (map == MAP_FAILED)
        return -1;
    slots = map;
    slot_count = n;
    return 0;
}

void rd_crashrec_fini(void)
{
    if (slots != NULL)
        munmap(slots, slot_count * sizeof(crash_slot_t));
    slots = NULL;
    slot_count = 0;
}

void rd_crashrec_attach(size_t slot)
{
    my_entry = NULL;
    my_entry_tried = false;
    mine = slots != NULL && slot < slot_count ? &slots[slot] : NULL;
    if (mine == NULL)
        return;
    memset(mine, 0, sizeof(*mine));
    mine->magic = CRASHREC_MAGIC;
}

/* A thread takes an entry the first time it runs a handler and keeps it. */
static crash_entry_t *entry(void)
{
    if (!my_entry_tried && mine != NULL) {
        uint32_t i = atomic_fetch_add_explicit(&mine->next_entry, 1, memory_order_relaxed);

        my_entry = i < RD_CRASHREC_ENTRIES ? &mine->entry[i] : NULL;
        my_entry_tried = true;
    }
    return my_entry;
}

void rd_crashrec_enter(const char *module, uint8_t group, uint8_t command)
{
    crash_entry_t *e = mine != NULL ? entry() : NULL;

    if (e == NULL)
        return;
    e->group = group;
    e->command = command;
    size_t n = strnlen(module, sizeof(e->module) - 1);

    memcpy(e->module, module, n);
    e->module[n] = '\0';
    atomic_store_explicit(&e->active, 1, memory_order_release);
}

void rd_crashrec_leave(void)
{
    if (my_entry != NULL)
        atomic_store_explicit(&my_entry->active, 0, memory_order_release);
}

/* A module name as the descriptor check allows it, within the entry. */
static bool name_valid(const char *s, size_t max)
{
    size_t n = 0;

    while (n < max && s[n] != '\0') {
        char c = s[n++];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return n > 0 && n < max;
}

/* The command's name in the master's own table, when the recorded module
 * serves it there; "" otherwise. */
static const char *command_name(const rd_module_set_t *names, const crash_entry_t *e)
{
    const rd_command_t *cmd = names != NULL ? rd_module_set_lookup(names, e->group, e->command)
                                            : NULL;

    return cmd != NULL && strcmp(cmd->module->desc->name, e->module) == 0 ? cmd->name : "";
}

bool rd_crashrec_read(size_t slot, const rd_module_set_t *names, char *out, size_t len)
{
    crash_slot_t copy;
    size_t used = 0;
    bool any = false;

    if (slots == NULL || slot >= slot_count || len == 0)
        return false;
    memcpy(&copy, &slots[slot], sizeof(copy));
    memset(&slots[slot], 0, sizeof(slots[slot]));
    out[0] = '\0';
    if (copy.magic != CRASHREC_MAGIC)
        return false;
    for (size_t i = 0; i < RD_CRASHREC_ENTRIES; i++) {
        const crash_entry_t *e = &copy.entry[i];
        int n;

        if (atomic_load_explicit(&e->active, memory_order_relaxed) != 1
            || !name_valid(e->module, sizeof(e->module)))
            continue;
        const char *name = command_name(names, e);

        n = snprintf(out + used, len - used, "%smodule %s group %u command %u%s%s%s",
                     any ? ", " : "", e->module, e->group, e->command,
                     name[0] != '\0' ? " (" : "", name, name[0] != '\0' ? ")" : "");
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
        any = true;
    }
    return any;
}

uint8_t *rd_crashrec_slot(size_t slot, size_t *size)
{
    if (slots == NULL || slot >= slot_count)
        return NULL;
    *size = sizeof(crash_slot_t);
    return (uint8_t *)&slots[slot];
}
