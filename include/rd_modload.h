/* Loading a configuration's command modules, in the master (at start, at
 * -t and at each reload): the built-in ones, each load_module shared
 * object (dlopen, here and never in a worker, whose system call filter
 * forbids mapping code), the module settings groups checked against the
 * modules' tables, and the configure hooks. */
#ifndef RD_MODLOAD_H
#define RD_MODLOAD_H

#include <stddef.h>

#include "rd_config.h"
#include "rd_module.h"

/* The modules of CF, configured; NULL with "FILE:LINE: what" in ERR when
 * the configuration is refused. */
rd_module_set_t *rd_modload_modules(const rd_config_t *cf, char *err, size_t err_len);

#endif
