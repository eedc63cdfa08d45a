/* listenq: the accept queue of the listening socket, for /metrics.
 *
 * For a listening unix socket the kernel's unix_diag answers rqueue = the
 * connections waiting to be accepted and wqueue = the backlog limit
 * (sk_max_ack_backlog); /proc/net/unix and SIOCINQ say nothing of the kind,
 * which is why PHP-FPM's figure is wrong there. For a listening TCP socket
 * TCP_INFO carries the same two numbers in tcpi_unacked and tcpi_sacked. */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "listenq.h"

enum listenq_kind listenq_kind(int fd)
{
	struct sockaddr_storage sa = { 0 };
	socklen_t len = sizeof(sa);
	int listening = 0;
	socklen_t olen = sizeof(listening);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen) < 0 || !listening)
		return LISTENQ_NONE;
	if (sa.ss_family == AF_UNIX)
		return LISTENQ_UNIX;
	if (sa.ss_family == AF_INET || sa.ss_family == AF_INET6)
		return LISTENQ_TCP;
	return LISTENQ_NONE;
}

static int sample_tcp(int fd, struct listenq_sample *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -1;
	out->queued = (long)ti.tcpi_unacked;
	out->limit = (long)ti.tcpi_sacked;
	return 0;
}

/* Ask unix_diag about the socket with inode ino. */
static int ask_unix_diag(int nl, unsigned ino)
{
	struct {
		struct nlmsghdr nh;
		struct unix_diag_req req;
	} msg = {
		.nh = { .nlmsg_len = sizeof(msg),
			.nlmsg_type = SOCK_DIAG_BY_FAMILY,
			.nlmsg_flags = NLM_F_REQUEST },
		.req = { .sdiag_family = AF_UNIX,
			 .udiag_states = 1u << 10 /* TCP_LISTEN */,
			 .udiag_ino = ino,
			 .udiag_show = UDIAG_SHOW_RQLEN,
			 .udiag_cookie = { INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE } },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };

	return sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&kernel, sizeof(kernel)) ==
		       (ssize_t)sizeof(msg)
		   ? 0
		   : -1;
}

/* The UNIX_DIAG_RQLEN attribute of the answer in buf. */
static int parse_unix_diag(const char *buf, size_t n, struct listenq_sample *out)
{
	const struct nlmsghdr *nh = (const struct nlmsghdr *)buf;

	if (!NLMSG_OK(nh, n) || nh->nlmsg_type != SOCK_DIAG_BY_FAMILY) {
		if (NLMSG_OK(nh, n) && nh->nlmsg_type == NLMSG_ERROR)
			errno = -((const struct nlmsgerr *)NLMSG_DATA(nh))->error;
		else
			errno = EPROTO;
		return -1;
	}
	const struct unix_diag_msg *m = NLMSG_DATA(nh);
	const struct rtattr *a = (const struct rtattr *)(m + 1);
	int alen = (int)(nh->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
	for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
		if (a->rta_type != UNIX_DIAG_RQLEN ||
		    RTA_PAYLOAD(a) < sizeof(struct unix_diag_rqlen))
			continue;
		const struct unix_diag_rqlen *rq = RTA_DATA(a);
		out->queued = (long)rq->udiag_rqueue;
		out->limit = (long)rq->udiag_wqueue;
		return 0;
	}
	errno = EPROTO;
	return -1;
}

static int sample_unix(int fd, struct listenq_sample *out)
{
	struct stat st;
	char buf[1024] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct timeval tv = { .tv_usec = 100000 }; /* the kernel answers at once */
	int rc = -1;

	if (fstat(fd, &st) < 0)
		return -1;
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -1;
	(void)setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (ask_unix_diag(nl, (unsigned)st.st_ino) == 0) {
		ssize_t n = recv(nl, buf, sizeof(buf), 0);
		if (n > 0)
			rc = parse_unix_diag(buf, (size_t)n, out);
	}
	int saved = errno;
	close(nl);
	errno = saved;
	return rc;
}

int listenq_sample(int fd, enum listenq_kind kind, struct listenq_sample *out)
{
	switch (kind) {
	case LISTENQ_UNIX: return sample_unix(fd, out);
	case LISTENQ_TCP: return sample_tcp(fd, out);
	case LISTENQ_NONE: break;
	}
	errno = ENOTSOCK;
	return -1;
}
