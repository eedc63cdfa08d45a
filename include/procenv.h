/* procenv: the process environment. A private copy that the configuration
 * is read from, at start-up and on every SIGHUP, and the removal of secrets
 * from the live environment, bytes included (DESIGN.md §5). */
#ifndef NEONFCGI_PROCENV_H
#define NEONFCGI_PROCENV_H

#include <stddef.h>

struct procenv;

/* A deep copy of env, a NULL-terminated list of "KEY=value", which also
 * remembers where env's strings lie (procenv_scrub wipes them there even
 * after setenv() has replaced them in environ); aborts when out of memory. */
struct procenv *procenv_snapshot(char *const *env) __attribute__((malloc, returns_nonnull));
/* The copy, NULL-terminated, e.g. for struct config_source. */
char *const *procenv_vars(const struct procenv *pe);
/* Wipe the copy (it may hold the password) and free; NULL is fine. */
void procenv_free(struct procenv *pe);
/* Remove name from the live environment (environ) after overwriting the
 * value bytes of each of its entries where they lie: in the block the kernel
 * set up at exec, which /proc/PID/environ shows and which unsetenv() alone
 * leaves intact, or in a string that setenv() allocated. With pe, also the
 * entries of the environment pe was taken from (not the copy). The name
 * stays readable in the block; the value does not. Returns the entries
 * removed from environ. Not thread-safe, as setenv() is not. */
size_t procenv_scrub(struct procenv *pe, const char *name);
/* procenv_scrub() for each name of a NULL-terminated list. */
size_t procenv_scrub_all(struct procenv *pe, const char *const *names);

#endif
