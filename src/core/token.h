/*
 * token.h: token data, shared (reference counted) by token objects and client slots, and the
 * reading of a token answer (core: libc only; doc/design.md).
 */
#ifndef ACH_CORE_TOKEN_H
#define ACH_CORE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

typedef enum ach_grant {
	ACH_GRANT_CLIENT_CREDENTIALS,
	ACH_GRANT_AUTHORIZATION_CODE,
	ACH_GRANT_REFRESH_TOKEN,
	ACH_GRANT_SAVED /* came from a saved table; refresh follows its grant_type */
} ach_grant;

typedef struct ach_token_data {
	int refs;
	char *access_token;
	char *refresh_token; /* NULL when the server gave none */
	char *token_type;
	char *scope;
	char *grant_type; /* "client_credentials" or "authorization_code" */
	int64_t expires_at; /* UNIX time on the server's clock */
	int64_t skew;       /* server clock minus ours when it was issued, seconds */
} ach_token_data;

ach_token_data *ach_token_alloc(void); /* refs = 1, all else empty; NULL out of memory */
ach_token_data *ach_token_ref(ach_token_data *t);
void ach_token_unref(ach_token_data *t); /* wipes the secrets when the last goes */
/* Seconds until expiry on the server's clock, seen from `wall` (UNIX time here). */
double ach_token_remaining_at(const ach_token_data *t, double wall);
double ach_token_remaining(const ach_token_data *t); /* from the system's wall clock */
int ach_token_complete(const ach_token_data *t); /* every string it must have is there */
/* RFC 6750 b64token: visible ASCII only, so a token can never inject a header line. */
int ach_token_chars_ok(const char *s, size_t n);
/* "access_token" or "refresh_token" when that one holds a byte no token may, else NULL. */
const char *ach_token_bad_field(const ach_token_data *t);
/* Token data from a token answer's JSON body; NULL with *why set when it is not a usable
 * token. `date` is the answer's Date (UNIX time) or 0, `wall` the time here. */
ach_token_data *ach_token_from_json(const char *body, size_t n, const char *grant,
				    const char *scope, int64_t date, double wall, const char **why);

#endif
