/*
 * kind.h: the kinds of failure (err.kind in the public contract; core, doc/design.md).
 */
#ifndef ACH_CORE_KIND_H
#define ACH_CORE_KIND_H

typedef enum ach_kind {
#define ACH_KINDS(X) \
	X(NONE, "none") \
	X(NETWORK, "network") \
	X(TIMEOUT, "timeout") \
	X(TLS, "tls") \
	X(AUTH, "auth") \
	X(FORBIDDEN, "forbidden") \
	X(NOT_FOUND, "not_found") \
	X(INVALID, "invalid") \
	X(RATE_LIMITED, "rate_limited") \
	X(SERVER, "server") \
	X(DECODE, "decode") \
	X(STATE_MISMATCH, "state_mismatch") \
	X(ACCESS_DENIED, "access_denied") \
	X(REAUTHORIZE, "reauthorize") \
	X(CANCELLED, "cancelled")
#define ACH_KIND_ENUM(e, s) ACH_KIND_##e,
	ACH_KINDS(ACH_KIND_ENUM)
#undef ACH_KIND_ENUM
	ACH_KIND_COUNT
} ach_kind;

const char *ach_kind_name(ach_kind k);
ach_kind ach_kind_for_status(long status);

#endif
