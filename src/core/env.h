/*
 * env.h: what the engine knows of the world outside: a monotonic clock, the wall clock and a
 * random source, given as a table of functions with a user-data pointer (doc/design.md,
 * "Layers"). ach_env_system is the real one; engine specs pass a virtual clock.
 */
#ifndef ACH_CORE_ENV_H
#define ACH_CORE_ENV_H

#include <stddef.h>

typedef struct ach_env {
	double (*now)(void *ud);  /* monotonic seconds */
	double (*wall)(void *ud); /* UNIX time, seconds */
	int (*random)(void *ud, void *out, size_t n); /* 0, or -1 when no random bytes */
	void *ud;
} ach_env;

extern const ach_env ach_env_system;

/* The system's, for the layers above the core (drivers, the binding). */
double ach_now(void);  /* monotonic seconds */
double ach_wall(void); /* UNIX time, seconds */
int ach_random_bytes(void *out, size_t n); /* 0, or -1 when the OS CSPRNG failed */

#endif
