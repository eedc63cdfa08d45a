/* cwd_fixture: see cwd_fixture.h. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cwd_fixture.h"

static char tmpdir[64];
static char oldcwd[4096];

int cwd_fixture_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/neonfcgi-test-XXXXXX");
	if (getcwd(oldcwd, sizeof oldcwd) == NULL || mkdtemp(tmpdir) == NULL || chdir(tmpdir) != 0)
		return -1;
	return 0;
}

int cwd_fixture_teardown(void **state)
{
	(void)state;
	if (chdir(oldcwd) != 0 || rmdir(tmpdir) != 0)
		return -1;
	return 0;
}
