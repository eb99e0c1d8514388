/* Giving up root, for every child the master forks (workers, the metrics
 * process): one place, so that they all drop the same way. */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "rd_log.h"
#include "rd_privilege.h"

int rd_drop_privileges(const rd_config_t *cf, const char *who)
{
    struct passwd *pw;
    gid_t gid;

    if (cf->user[0] == '\0' || geteuid() != 0)
        return 0;
    if ((pw = getpwnam(cf->user)) == NULL) {
        rd_log(RD_LOG_CRIT, "%s: unknown user '%s'", who, cf->user);
        return -1;
    }
    gid = pw->pw_gid;
    if (cf->group[0] != '\0') {
        struct group *gr = getgrnam(cf->group);

        if (gr == NULL) {
            rd_log(RD_LOG_CRIT, "%s: unknown group '%s'", who, cf->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if (initgroups(cf->user, gid) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0) {
        rd_log(RD_LOG_CRIT, "%s: cannot become %s: %s", who, cf->user, strerror(errno));
        return -1;
    }
    return 0;
}
