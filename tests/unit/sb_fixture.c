/* sb_fixture: the scoreboard setup and teardown shared by the unit tests. */
#include "sb_fixture.h"

#include "scoreboard.h"

int sb_fixture_setup(void **state)
{
	struct scoreboard *sb = scoreboard_init_master();

	if (!sb)
		return -1;
	/* Readers visit only the slots a worker used; the tests use any. */
	atomic_store(&sb->master.slots_used, SB_SLOTS);
	*state = sb;
	return 0;
}

int sb_fixture_teardown(void **state)
{
	scoreboard_free(*state);
	return 0;
}
