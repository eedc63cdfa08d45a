/* thread: the mask a helper thread starts with is set around its creation
 * (a new thread inherits its creator's mask), then the creator's restored. */
#include <signal.h>

#include "thread.h"

int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;

	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}
