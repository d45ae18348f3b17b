/*
 * kind.c: the kinds of failure of the public contract, and what an HTTP status means.
 */
#include <stddef.h>

#include "core/kind.h"

static const char *const kind_names[] = {
#define ACH_KIND_NAME(e, s) s,
	ACH_KINDS(ACH_KIND_NAME)
#undef ACH_KIND_NAME
};

const char *ach_kind_name(ach_kind k)
{
	return (unsigned)k < ACH_KIND_COUNT ? kind_names[k] : "unknown";
}

ach_kind ach_kind_for_status(long status)
{
	static const struct {
		long status;
		ach_kind kind;
	} map[] = {
		{400, ACH_KIND_INVALID}, {401, ACH_KIND_AUTH}, {403, ACH_KIND_FORBIDDEN},
		{404, ACH_KIND_NOT_FOUND}, {410, ACH_KIND_NOT_FOUND}, {422, ACH_KIND_INVALID},
		{429, ACH_KIND_RATE_LIMITED},
	};
	size_t i;
	if (status >= 200 && status < 300)
		return ACH_KIND_NONE;
	for (i = 0; i < sizeof map / sizeof map[0]; i++)
		if (map[i].status == status)
			return map[i].kind;
	if (status >= 400 && status < 500)
		return ACH_KIND_INVALID;
	return ACH_KIND_SERVER; /* 5xx, and answers a client should never get (1xx, 3xx) */
}
