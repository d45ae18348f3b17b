/*
 * env.c: the system's clocks and random source, the environment the engine is given when its
 * host has no other (doc/design.md, "Layers": the engine never reads a clock itself; specs
 * give it a virtual one).
 */
#include <errno.h>
#include <sys/random.h>
#include <time.h>

#include "core/env.h"

double ach_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double ach_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ach_random_bytes(void *out, size_t n)
{
	unsigned char *p = out;
	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

static double sys_now(void *ud)
{
	(void)ud;
	return ach_now();
}

static double sys_wall(void *ud)
{
	(void)ud;
	return ach_wall();
}

static int sys_random(void *ud, void *out, size_t n)
{
	(void)ud;
	return ach_random_bytes(out, n);
}

const ach_env ach_env_system = {sys_now, sys_wall, sys_random, NULL};
