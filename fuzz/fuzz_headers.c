/*
 * fuzz_headers.c: the header block of an answer. ach_header_find (Date, Retry-After,
 * Content-Type, a name that is a prefix of another), ach_parse_http_date and
 * ach_parse_retry_after on what it finds and on the raw input.
 *
 * Invariants checked: a found value lies inside the block; Retry-After is -1 or a finite
 * number >= 0 and never more than ~1e9 s from the date it is relative to.
 */
#include <math.h>
#include <stdlib.h>

#include "core/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"Date", "Retry-After", "Content-Type", "Retry", NULL};
	const char *block = (const char *)data;
	int i;
	for (i = 0; names[i] != NULL; i++) {
		size_t vlen = 0;
		const char *v = ach_header_find(block, size, names[i], &vlen);
		if (v != NULL) {
			int64_t date;
			double ra;
			if (v < block || v + vlen > block + size)
				abort();
			date = ach_parse_http_date(v, vlen);
			ra = ach_parse_retry_after(v, vlen, date, 1700000000.0);
			if (!(ra == -1 || (ra >= 0 && isfinite(ra))))
				abort();
		}
	}
	{
		int64_t d = ach_parse_http_date(block, size);
		double ra = ach_parse_retry_after(block, size, size & 1 ? 1700000000 : 0, 1700000000.0);
		(void)d;
		if (!(ra == -1 || (ra >= 0 && isfinite(ra))))
			abort();
	}
	return 0;
}
