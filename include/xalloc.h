/* xalloc: allocation that aborts on failure, the one place it is handled
 * (lighttpd's ck_malloc); and freeing of buffers that may hold a secret. */
#ifndef NEONFCGI_XALLOC_H
#define NEONFCGI_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n) __attribute__((malloc, returns_nonnull));
/* n elements of size bytes, zeroed. */
void *xcalloc(size_t n, size_t size) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t n) __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((malloc, returns_nonnull));
/* The first n bytes of s (which need not be NUL-terminated), NUL-terminated. */
char *xstrndup(const char *s, size_t n) __attribute__((malloc, returns_nonnull));
/* A growable array of strings it owns: append s (taken over), or free every
 * string and the array, leaving *v NULL and *n 0. */
void xstrv_push(char ***v, size_t *n, char *s);
void xstrv_free(char ***v, size_t *n);
/* Overwrite a NUL-terminated string, then free it; NULL is fine. */
void xfree_wiped(char *s);
/* Overwrite n bytes (text that need not be NUL-terminated), then free; NULL is fine. */
void xfree_wiped_n(void *p, size_t n);

#endif
