/* Giving up root: the workers and the metrics process become the
 * configured user (and group) once they hold what they need. */
#ifndef RD_PRIVILEGE_H
#define RD_PRIVILEGE_H

#include "rd_config.h"

/* Becomes CF's user and group when running as root with a user set; WHO
 * names the process in the log. Returns -1 (logged) on failure. */
int rd_drop_privileges(const rd_config_t *cf, const char *who);

#endif
