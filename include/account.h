/* account: user and group names or numbers (RUN_USER, API_SOCKET_OWNER, ...)
 * resolved through the password and group databases. Pure: it fills a
 * reason and never logs. */
#ifndef NEONFCGI_ACCOUNT_H
#define NEONFCGI_ACCOUNT_H

#include <stddef.h>
#include <sys/types.h>

#define ACCOUNT_NO_GID ((gid_t)-1)

/* A user name, or a number (digits only) taken as a uid even when no user
 * has it. *primary is the user's primary group, ACCOUNT_NO_GID for a number
 * without an entry. 0, or -1 with why filled (without the value: the caller
 * quotes it). */
int account_user(const char *spec, uid_t *uid, gid_t *primary, char *why, size_t whylen)
    __attribute__((warn_unused_result));
/* A group name, or a number (digits only) taken as a gid. */
int account_group(const char *spec, gid_t *gid, char *why, size_t whylen)
    __attribute__((warn_unused_result));
/* The user name of uid; 0, or -1 with "#1234" in buf when no user has it. */
int account_user_name(uid_t uid, char *buf, size_t len);

#endif
