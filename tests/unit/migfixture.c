/* migfixture: temporary migration directories for the migration tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migfixture.h"

int migfixture_dir_make(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/test_migrate.XXXXXX");
	return mkdtemp(dir) != NULL ? 0 : -1;
}

void migfixture_dir_write(const char *dir, const char *name, const char *content)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	assert_int_equal(fclose(f), 0);
}

int migfixture_dir_remove(const char *dir)
{
	DIR *d;
	struct dirent *de;
	char path[512];

	if (dir[0] == '\0')
		return 0;
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) < 0)
			(void)rmdir(path); /* a subdirectory; what stays fails the rmdir below */
	}
	closedir(d);
	return rmdir(dir);
}
