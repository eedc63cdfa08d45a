/* sdnotify: a path or an abstract ("@name") datagram socket, per systemd's
 * sd_notify(3) protocol. Written by hand: libsystemd would be a dependency
 * for twenty lines, and the server must run where systemd does not. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

/* Fill sa from NOTIFY_SOCKET; its length for sendto(), or 0 if unusable. */
static socklen_t notify_address(const char *path, struct sockaddr_un *sa)
{
	size_t len = strlen(path);

	if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof(sa->sun_path))
		return 0;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, len);
	if (path[0] == '@')
		sa->sun_path[0] = '\0'; /* abstract namespace: no trailing NUL counted */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

int sdnotify_send(const char *state, char *err, size_t errlen)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t salen;
	int fd;

	if (path == NULL || path[0] == '\0')
		return 0;
	salen = notify_address(path, &sa);
	if (salen == 0) {
		snprintf(err, errlen,
			 "NOTIFY_SOCKET=\"%.120s\": must be an absolute path or an @abstract "
			 "name shorter than %zu bytes",
			 path, sizeof(sa.sun_path));
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	int saved = errno;
	close(fd);
	if (n < 0 || (size_t)n != strlen(state)) {
		snprintf(err, errlen, "NOTIFY_SOCKET=\"%.120s\": %s", path,
			 n < 0 ? strerror(saved) : "short write");
		return -1;
	}
	return 0;
}
