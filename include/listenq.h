/* listenq: how many connections wait in a listening socket's accept queue,
 * and its limit (the backlog the kernel applies). Unix sockets are asked
 * through netlink sock_diag (UDIAG_SHOW_RQLEN), TCP sockets through TCP_INFO;
 * both count connections the kernel has completed and nobody has accepted. */
#ifndef NEONFCGI_LISTENQ_H
#define NEONFCGI_LISTENQ_H

enum listenq_kind { LISTENQ_NONE, LISTENQ_UNIX, LISTENQ_TCP };

struct listenq_sample {
	long queued, limit;
};

/* What kind of listening socket fd is (NONE: neither, or not a socket). */
enum listenq_kind listenq_kind(int fd);
/* 0 with *out, or -1 with errno (e.g. EAFNOSUPPORT: netlink not allowed). */
int listenq_sample(int fd, enum listenq_kind kind, struct listenq_sample *out)
    __attribute__((warn_unused_result));

#endif
