/* sdnotify: systemd's readiness protocol (Type=notify) without libsystemd:
 * one datagram to the unix socket named by $NOTIFY_SOCKET, when it is set. */
#ifndef NEONFCGI_SDNOTIFY_H
#define NEONFCGI_SDNOTIFY_H

#include <stddef.h>

/* Send state ("READY=1\nSTATUS=..."). 0 when sent, or when NOTIFY_SOCKET is
 * unset or empty (not run by systemd: nothing to do); -1 with err filled. */
int sdnotify_send(const char *state, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
