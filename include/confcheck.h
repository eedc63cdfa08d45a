/* confcheck: the checks of single configuration values that ask more than
 * the variable table can (the resolver, peer's entry syntax, the password and
 * group databases), and the ids RUN_USER and the socket's owner resolve to.
 * Pure: each fills a problem list and never logs. name is the variable's, for
 * the problem line; none of these values is secret, so they are quoted as
 * given. Used by config only: it holds no configuration of its own. */
#ifndef NEONFCGI_CONFCHECK_H
#define NEONFCGI_CONFCHECK_H

#include <stdbool.h>
#include <sys/types.h>

#include "problems.h"

/* API_HOST: an IP address, or a name that resolves now (at start-up and on
 * SIGHUP, never per request). 0, or -1 with a problem added. */
int confcheck_api_host(const char *name, const char *val, struct problems *p)
    __attribute__((warn_unused_result));
/* API_SOCKET: an absolute path that fits in sun_path. */
int confcheck_api_socket(const char *name, const char *val, struct problems *p)
    __attribute__((warn_unused_result));
/* FCGI_WEB_SERVER_ADDRS: comma-separated entries peer accepts. */
int confcheck_web_server_addrs(const char *name, const char *val, struct problems *p)
    __attribute__((warn_unused_result));
/* A user or a group, by name or number (account). */
int confcheck_user(const char *name, const char *val, struct problems *p)
    __attribute__((warn_unused_result));
int confcheck_group(const char *name, const char *val, struct problems *p)
    __attribute__((warn_unused_result));
/* A listen address beyond loopback without a peer list: adds the problem
 * that says FastCGI has no authentication. The caller decides it applies
 * (TCP, not spawned, no FCGI_WEB_SERVER_ADDRS). */
void confcheck_exposure(const char *api_host, struct problems *p);
/* RUN_USER's and RUN_GROUP's ids into *uid, *gid, (uid_t)-1 and (gid_t)-1
 * when there is no user to switch to. user and group are NULL when unset;
 * *_bad: the value already has its problem line, so none is added for it. */
void confcheck_run_ids(const char *user, bool user_bad, const char *group, bool group_bad,
		       uid_t *uid, gid_t *gid, struct problems *p);
/* API_SOCKET_OWNER's and API_SOCKET_GROUP's ids replace *uid and *gid,
 * which hold the defaults (RUN_USER's ids) on entry; -1 where one does not
 * resolve (its problem line comes from confcheck_user or confcheck_group). */
void confcheck_socket_ids(const char *owner, bool owner_bad, const char *group, bool group_bad,
			  uid_t *uid, gid_t *gid);

#endif
