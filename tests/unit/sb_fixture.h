/* sb_fixture: a fresh scoreboard for each cmocka test, in *state, with every
 * slot visible to readers (they stop at the highest slot a worker used). */
#ifndef NEONFCGI_SB_FIXTURE_H
#define NEONFCGI_SB_FIXTURE_H

int sb_fixture_setup(void **state);
int sb_fixture_teardown(void **state);
/* A cmocka test run with the fixture. */
#define SB_FIXTURE_TEST(f) cmocka_unit_test_setup_teardown(f, sb_fixture_setup, sb_fixture_teardown)

#endif
