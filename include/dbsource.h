/* dbsource: where the connection string comes from (DESIGN.md §2):
 * DATABASE_URL (environment or env file), the file named by
 * DATABASE_URL_FILE, or the systemd credential database-url in
 * $CREDENTIALS_DIRECTORY; libpq's PGPASSWORD folded in; and the variables
 * that may hold the password, which leave the environment once the
 * configuration is read (§5). Pure: problems go to a list, file contents
 * never into a message. */
#ifndef NEONFCGI_DBSOURCE_H
#define NEONFCGI_DBSOURCE_H

#include <stdbool.h>
#include <stddef.h>

struct problems;

#define DBSOURCE_CREDENTIAL_NAME "database-url" /* the systemd credential's name */
#define DBSOURCE_LINE_MAX        65536          /* bytes of a file's first line */

enum dbsource_origin {
	DBSOURCE_NONE,       /* nothing gave a connection string */
	DBSOURCE_ENV,        /* DATABASE_URL in the environment */
	DBSOURCE_ENV_FILE,   /* DATABASE_URL in the env file */
	DBSOURCE_FILE,       /* the file DATABASE_URL_FILE names */
	DBSOURCE_CREDENTIAL, /* $CREDENTIALS_DIRECTORY/database-url */
};

/* The variables as the configuration found them; NULL or "" is unset. */
struct dbsource_input {
	const char *url; /* DATABASE_URL */
	bool url_in_env_file;
	const char *file; /* DATABASE_URL_FILE */
	bool file_in_env_file;
	const char *credentials_dir; /* CREDENTIALS_DIRECTORY (environment only) */
	const char *env_file;        /* the env file read, for messages; NULL: none */
};

/* Where the configuration's connection string came from. */
struct dbsource {
	enum dbsource_origin origin;
	char *path;      /* DBSOURCE_FILE, DBSOURCE_CREDENTIAL: the file read */
	bool pgpassword; /* its password is PGPASSWORD's (dbsource_add_pgpassword) */
};

/* Environment variables that may hold the password, NULL-terminated. */
extern const char *const dbsource_secret_vars[];

/* The connection string in *url (the caller wipes and frees it) and its
 * origin in *src. 0 with *url NULL when nothing is set (the caller reports
 * DATABASE_URL as required); -1 with problems appended to p when both
 * DATABASE_URL and DATABASE_URL_FILE are set, when the file or credential
 * cannot be used, or when CREDENTIALS_DIRECTORY holds no credential. *src
 * is cleared first and released with dbsource_clear. */
int dbsource_resolve(const struct dbsource_input *in, struct dbsource *src, char **url,
		     struct problems *p) __attribute__((warn_unused_result));
void dbsource_clear(struct dbsource *src);
/* Whether the connection string was read from a file (its content must not
 * be quoted, not even redacted: the file may hold anything). */
bool dbsource_from_file(const struct dbsource *src);
/* The problems that conninfo_check() found in url, from a file, moved to
 * p with each "DATABASE_URL=\"<url redacted>\"" replaced by the file's name. */
void dbsource_relabel(const struct dbsource *src, const char *url, const struct problems *found,
		      struct problems *p);
/* Read the first line of the regular file at path, without its "\n" or
 * "\r\n", into *out (wipe and free it). -1 with err saying what is wrong
 * ("cannot be opened: ...", "is empty", ...): never a byte of the file. */
int dbsource_read_file(const char *path, char **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* libpq reads PGPASSWORD when the connection string names no password;
 * once PGPASSWORD has left the environment, the string must carry it. If
 * *url names none (not even an empty one) and pgpassword is not empty,
 * replace *url by a copy with the password added (a URI query parameter or
 * a key=value pair) and set src->pgpassword. */
void dbsource_add_pgpassword(char **url, const char *pgpassword, struct dbsource *src);
/* For check-config: "the environment", "the env file ./.env", "the file
 * DATABASE_URL_FILE=/x", ...; always NUL-terminates buf. */
void dbsource_describe(const struct dbsource *src, const char *env_file, char *buf, size_t len);

#endif
