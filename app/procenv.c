/* procenv: the process environment, copied for the configuration and
 * scrubbed of secrets. What /proc/PID/environ shows is a range of the
 * process's own memory, fixed at exec; glibc's unsetenv() only drops the
 * pointer from environ, and setenv() copies live on the heap. So a secret
 * leaves by having its bytes overwritten first, then its entry removed. */
#include "procenv.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

extern char **environ;

struct procenv {
	char **vars;  /* the copy, NULL-terminated */
	char **where; /* the strings copied, where they lie */
	size_t n;
};

struct procenv *procenv_snapshot(char *const *env)
{
	struct procenv *pe = xcalloc(1, sizeof *pe);
	size_t n = 0;

	while (env != NULL && env[n] != NULL)
		n++;
	pe->vars = xcalloc(n + 1, sizeof *pe->vars);
	pe->where = xcalloc(n + 1, sizeof *pe->where);
	for (pe->n = 0; pe->n < n; pe->n++) {
		pe->vars[pe->n] = xstrdup(env[pe->n]);
		pe->where[pe->n] = env[pe->n];
	}
	return pe;
}

char *const *procenv_vars(const struct procenv *pe)
{
	return pe->vars;
}

void procenv_free(struct procenv *pe)
{
	if (pe == NULL)
		return;
	for (size_t i = 0; i < pe->n; i++)
		xfree_wiped(pe->vars[i]);
	free(pe->vars);
	free(pe->where);
	free(pe);
}

/* Overwrite the value of each "name=value" of list; how many there were. */
static size_t wipe_values(char **list, const char *name)
{
	size_t len = strlen(name), n = 0;

	for (char **e = list; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') {
			explicit_bzero(*e + len + 1, strlen(*e + len + 1));
			n++;
		}
	}
	return n;
}

size_t procenv_scrub(struct procenv *pe, const char *name)
{
	size_t n;

	/* The strings as they were at start-up first: a setenv() since may
	 * have replaced one in environ, leaving the original bytes behind.
	 * Every entry: an environment may name a variable twice. The name is
	 * left in place: a setenv() copy is also a key in glibc's tree of
	 * known strings, which orders them by their text. */
	if (pe != NULL)
		(void)wipe_values(pe->where, name);
	n = wipe_values(environ, name);
	if (n > 0)
		(void)unsetenv(name); /* fails only for a name with '=' in it */
	return n;
}

size_t procenv_scrub_all(struct procenv *pe, const char *const *names)
{
	size_t n = 0;

	for (; *names != NULL; names++)
		n += procenv_scrub(pe, *names);
	return n;
}
