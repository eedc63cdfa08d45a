/* privdrop: RUN_USER and RUN_GROUP (DESIGN.md §1). Started as root, the
 * process gives up root for good once its socket is open, before any worker
 * or database connection exists; not started as root, it must already be
 * the user and group they name. */
#ifndef NEONFCGI_PRIVDROP_H
#define NEONFCGI_PRIVDROP_H

#include <stddef.h>

struct config;

enum privdrop_result {
	PRIVDROP_NOT_ROOT,        /* nothing to do: started unprivileged */
	PRIVDROP_DROPPED,         /* now RUN_USER:RUN_GROUP, root cannot be regained */
	PRIVDROP_STAYED_ROOT,     /* root without RUN_USER: the caller warns */
	PRIVDROP_ROOT_ON_PURPOSE, /* RUN_USER names root */
};

/* Before the socket is opened: -1 with err (a configuration problem) when
 * RUN_USER or RUN_GROUP names someone else and we are not root. */
int privdrop_check(const struct config *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* After the socket is open: switch as the result says; -1 with err when the
 * switch failed or could be undone (the process must then not serve). */
int privdrop_apply(const struct config *cfg, enum privdrop_result *result, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
