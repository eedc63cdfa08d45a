/* envfile: parser of KEY=value env files (comments, `export `, quotes). */
#ifndef NEONFCGI_ENVFILE_H
#define NEONFCGI_ENVFILE_H

#include <stddef.h>

struct problems;

struct envfile_entry {
	char *key;
	char *value;
};

struct envfile {
	struct envfile_entry *entries;
	size_t n;
};

/* Parse text (not NUL-terminated necessarily) into out; syntax errors are
 * appended to p as "ENV_FILE <name> line N: ..." and the line is skipped.
 * Returns 0 when no error was found, -1 otherwise. Later keys win. */
int envfile_parse(const char *text, size_t len, const char *name, struct envfile *out,
		  struct problems *p);
/* Read and parse a file; -1 with a problem appended if it cannot be read. */
int envfile_read(const char *path, struct envfile *out, struct problems *p);
/* Value of key, or NULL. */
const char *envfile_get(const struct envfile *ef, const char *key);
void envfile_free(struct envfile *ef);

#endif
