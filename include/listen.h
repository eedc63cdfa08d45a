/* listen: obtains the FastCGI listening socket from, in order, fd 0 (spawned
 * by lighttpd bin-path, spawn-fcgi, mod_fcgid), systemd socket activation,
 * API_SOCKET, or API_HOST:API_PORT (DESIGN.md §1). */
#ifndef NEONFCGI_LISTEN_H
#define NEONFCGI_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

struct config;

struct listener {
	int fd;
	bool listening;      /* listen() done (or inherited listening) */
	char address[160];   /* for logs: "unix:/path", "127.0.0.1:9009", "fd:0" */
	char unix_path[108]; /* set when we created a unix socket file (to unlink) */
};

/* True when fd 0 is a listening socket handed to us by a spawner. */
bool listen_fd0_is_listener(void);
/* Open (or adopt) the listening socket; -1 with err filled on failure. A
 * socket we create is bound (its file owned as the configuration says) but
 * not yet listening: until listen_start, connections are refused at once
 * rather than queued (start-up migrations may take a while). */
int listen_open(const struct config *cfg, struct listener *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
int listen_start(struct listener *l, char *err, size_t errlen) __attribute__((warn_unused_result));
/* After dropping privileges: 0 if this process may still remove the socket
 * file it created, else -1 with why filled. */
int listen_check_removable(const struct listener *l, char *why, size_t whylen)
    __attribute__((warn_unused_result));
/* Close the socket; remove_file also unlinks a unix socket file we created
 * (-1 with errno when that fails). */
int listen_close(struct listener *l, bool remove_file);

#endif
