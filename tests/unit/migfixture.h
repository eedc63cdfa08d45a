/* migfixture: what test_migplan.c and test_migrate.c share: temporary
 * migration directories that a teardown removes even when an assertion ended
 * the test half-way. */
#ifndef NEONFCGI_TEST_MIGFIXTURE_H
#define NEONFCGI_TEST_MIGFIXTURE_H

#include <stddef.h>

/* A fresh directory under /tmp; its path goes to dir (at least 64 bytes).
 * -1 when it cannot be made (a cmocka setup then fails the test). */
int migfixture_dir_make(char *dir, size_t len);
/* Write content to dir/name; fails the running test when it cannot. */
void migfixture_dir_write(const char *dir, const char *name, const char *content);
/* Remove dir, its files and its empty subdirectories; asserts nothing, so a
 * teardown can call it after any failure, and returns -1 when something
 * stayed behind (the teardown's failure). 0 for "". */
int migfixture_dir_remove(const char *dir);

#endif
