/*
 * pkce.c: Proof Key for Code Exchange (RFC 7636), S256 only: a code verifier from 32 bytes of
 * the OS random source, base64url without padding (43 characters), and its code challenge,
 * base64url(SHA-256(verifier)). Core: libc only.
 */
#include <string.h>

#include "core/env.h"
#include "core/pkce.h"
#include "core/sha256.h"

/* base64url of n bytes without padding into out (4 * n / 3 rounded up, plus a NUL). */
void ach_base64url(const unsigned char *s, size_t n, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;
	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
			     (i + 2 < n ? s[i + 2] : 0);
		size_t left = n - i;
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		if (left > 1)
			out[o++] = tab[v >> 6 & 63];
		if (left > 2)
			out[o++] = tab[v & 63];
	}
	out[o] = '\0';
}

void ach_pkce_challenge(const char *verifier, char out[ACH_PKCE_LEN + 1])
{
	unsigned char d[32];
	ach_sha256(verifier, strlen(verifier), d);
	ach_base64url(d, sizeof d, out);
}

int ach_pkce_new(char verifier[ACH_PKCE_LEN + 1], char challenge[ACH_PKCE_LEN + 1])
{
	unsigned char raw[32];
	if (ach_random_bytes(raw, sizeof raw) != 0)
		return -1;
	ach_base64url(raw, sizeof raw, verifier);
	memset(raw, 0, sizeof raw);
	ach_pkce_challenge(verifier, challenge);
	return 0;
}

int ach_pkce_verifier_valid(const char *s, size_t n)
{
	if (n < 43 || n > 128 || strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '.' || ch == '_' || ch == '~'))
			return 0;
	}
	return 1;
}

/* achievers._sha256_hex(s): SHA-256 of s as 64 hex digits (names a token's rate budget). */
