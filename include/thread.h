/* thread: starting a helper thread (pool maintenance, connects, name
 * lookups) that must never take a process signal. */
#ifndef NEONFCGI_THREAD_H
#define NEONFCGI_THREAD_H

#include <pthread.h>

/* pthread_create with every signal blocked in the new thread except the
 * faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL), which stay deliverable so that a
 * crash is reported as one: a process signal must reach the thread whose
 * blocking call it is meant to interrupt. 0, or pthread_create's error. */
int thread_start(pthread_t *t, void *(*fn)(void *), void *arg) __attribute__((warn_unused_result));

#endif
