/* cwd_fixture: a private, empty working directory for a test (the
 * configuration tests read ./.env and write files beside it), left and
 * removed by the teardown. */
#ifndef NEONFCGI_TEST_CWD_FIXTURE_H
#define NEONFCGI_TEST_CWD_FIXTURE_H

/* cmocka setup/teardown: enter a fresh /tmp/neonfcgi-test-XXXXXX; go back
 * and remove it (it must be empty again). -1 fails the test. */
int cwd_fixture_setup(void **state);
int cwd_fixture_teardown(void **state);

#endif
