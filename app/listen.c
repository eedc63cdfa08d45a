/* listen: our own socket code. FCGX_OpenSocket exits on errors, is IPv4-only,
 * parses the port into a short and unlinks a socket file a live server still
 * listens on; we do none of that. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "listen.h"

/* Large enough for c=1024 bursts from nginx; the kernel caps it at somaxconn. */
#define LISTEN_BACKLOG   4096
#define SYSTEMD_FIRST_FD 3

bool listen_fd0_is_listener(void)
{
	struct stat st;
	int accepting = 0;
	socklen_t len = sizeof(accepting);

	if (fstat(0, &st) < 0 || !S_ISSOCK(st.st_mode))
		return false;
	if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
		return false;
	return accepting != 0;
}

/* systemd sets LISTEN_PID to our pid and LISTEN_FDS to the count from fd 3. */
static bool systemd_passed_fd(void)
{
	const char *pid = getenv("LISTEN_PID");
	const char *fds = getenv("LISTEN_FDS");

	if (!pid || !fds)
		return false;
	if (strtol(pid, NULL, 10) != (long)getpid() || strtol(fds, NULL, 10) < 1)
		return false;
	/* Not for our children: they must not believe it was passed to them. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return true;
}

static void set_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags >= 0)
		(void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

/* A socket file exists: refuse if a server answers there, unlink if stale. */
static int clear_stale_socket(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "API_SOCKET=\"%s\": %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "API_SOCKET=\"%s\": exists and is not a socket; not replacing it", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int saved = errno;
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen,
			 "API_SOCKET=\"%s\": another server is already listening there", path);
		return -1;
	}
	if (saved != ECONNREFUSED && saved != ENOENT) {
		snprintf(err, errlen, "API_SOCKET=\"%s\": cannot probe: %s", path, strerror(saved));
		return -1;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "API_SOCKET=\"%s\": cannot remove the stale socket file: %s",
			 path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Give the new socket file its owner and group (API_SOCKET_OWNER/GROUP, or
 * RUN_USER's): lchown, so that a symlink put in its place in a directory
 * others may write is not followed by a process that may be root. */
static int own_socket_file(const struct config *cfg, const char *path, char *err, size_t errlen)
{
	if (cfg->socket_uid == (uid_t)-1 && cfg->socket_gid == (gid_t)-1)
		return 0;
	if (lchown(path, cfg->socket_uid, cfg->socket_gid) == 0)
		return 0;
	snprintf(err, errlen,
		 "API_SOCKET=\"%s\": cannot give the socket file to uid %ld gid %ld "
		 "(API_SOCKET_OWNER, API_SOCKET_GROUP or RUN_USER): %s",
		 path, cfg->socket_uid == (uid_t)-1 ? -1L : (long)cfg->socket_uid,
		 cfg->socket_gid == (gid_t)-1 ? -1L : (long)cfg->socket_gid, strerror(errno));
	return -1;
}

/* The file gets its mode from the umask at bind() (a socket is created
 * 0777 & ~umask), not from a chmod() of the path afterwards, which would
 * follow a symlink swapped in meanwhile. */
static int open_unix(const struct config *cfg, struct listener *out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = cfg->api_socket;
	int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "API_SOCKET=\"%s\": path too long", path);
		return -1;
	}
	if (clear_stale_socket(path, err, errlen) < 0)
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	mode_t old = umask(~(mode_t)cfg->api_socket_mode & 0777);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0)
		goto fail;
	memcpy(out->unix_path, path, strlen(path) + 1);
	if (own_socket_file(cfg, path, err, errlen) < 0) {
		listen_close(out, true);
		close(fd);
		return -1;
	}
	out->fd = fd;
	snprintf(out->address, sizeof(out->address), "unix:%s", path);
	return 0;
fail:
	snprintf(err, errlen, "API_SOCKET=\"%s\": %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static int bind_tcp(const struct addrinfo *ai)
{
	int one = 1;
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);

	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	int saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

static int open_tcp(const struct config *cfg, struct listener *out, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char port[16];
	int fd = -1;

	snprintf(port, sizeof(port), "%ld", cfg->api_port);
	int gai = getaddrinfo(cfg->api_host, port, &hints, &res);
	if (gai != 0) {
		snprintf(err, errlen, "API_HOST=\"%s\": %s", cfg->api_host, gai_strerror(gai));
		return -1;
	}
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
		fd = bind_tcp(ai);
	if (fd < 0)
		snprintf(err, errlen, "API_HOST=\"%s\" API_PORT=\"%s\": %s", cfg->api_host, port,
			 strerror(errno));
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	out->fd = fd;
	snprintf(out->address, sizeof(out->address),
		 strchr(cfg->api_host, ':') ? "[%s]:%s" : "%s:%s", cfg->api_host, port);
	return 0;
}

int listen_open(const struct config *cfg, struct listener *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (listen_fd0_is_listener()) {
		out->fd = 0;
		out->listening = true;
		snprintf(out->address, sizeof(out->address), "fd:0 (spawned)");
		return 0;
	}
	if (systemd_passed_fd()) {
		out->fd = SYSTEMD_FIRST_FD;
		out->listening = true;
		set_cloexec(out->fd);
		snprintf(out->address, sizeof(out->address), "fd:3 (systemd)");
		return 0;
	}
	if (cfg->api_socket)
		return open_unix(cfg, out, err, errlen);
	return open_tcp(cfg, out, err, errlen);
}

int listen_start(struct listener *l, char *err, size_t errlen)
{
	if (l->listening)
		return 0;
	if (listen(l->fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "listen on %s: %s", l->address, strerror(errno));
		return -1;
	}
	l->listening = true;
	return 0;
}

/* Removing a name needs write and search permission on its directory, and
 * in a sticky one (/tmp) to own the file or the directory. */
int listen_check_removable(const struct listener *l, char *why, size_t whylen)
{
	char dir[sizeof(l->unix_path)];
	struct stat dst, fst;
	char *slash;

	if (!l->unix_path[0])
		return 0;
	memcpy(dir, l->unix_path, sizeof(dir));
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) < 0) {
		snprintf(why, whylen, "directory \"%s\": %s", dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &dst) == 0 && (dst.st_mode & S_ISVTX) && lstat(l->unix_path, &fst) == 0 &&
	    fst.st_uid != geteuid() && dst.st_uid != geteuid()) {
		snprintf(why, whylen,
			 "directory \"%s\" is sticky and neither it nor the socket file is ours",
			 dir);
		return -1;
	}
	return 0;
}

int listen_close(struct listener *l, bool remove_file)
{
	int rc = 0;

	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	if (remove_file && l->unix_path[0] && unlink(l->unix_path) < 0 && errno != ENOENT)
		rc = -1;
	return rc;
}
