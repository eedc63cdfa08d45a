/* pqopts: what the linked libpq cannot say about connection options: the
 * libpq release that introduced an option, the values an enumerated option
 * takes, and the option name in PQconninfoParse's refusal. Pure tables. */
#ifndef NEONFCGI_PQOPTS_H
#define NEONFCGI_PQOPTS_H

#include <stdbool.h>
#include <stddef.h>

/* The libpq major version that introduced keyword (14 to 18), or 0: known
 * before 14, or an option of no libpq release. */
int pqopts_since(const char *keyword);
/* Whether libpq accepts value for keyword. For an enumerated keyword,
 * *valid is its values for a message ("disable, prefer or require");
 * otherwise *valid is NULL and any value passes. */
bool pqopts_value_ok(const char *keyword, const char *value, const char **valid);
/* The option name PQconninfoParse quotes when it refuses an unknown one
 * ("invalid connection option", "invalid URI query parameter"): copied to
 * name when it has the syntax of a libpq keyword, else false. Nothing else
 * of msg is copied: it may quote the password. */
bool pqopts_refused_name(const char *msg, char *name, size_t len);

#endif
