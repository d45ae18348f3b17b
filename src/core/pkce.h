/*
 * pkce.h: RFC 7636 S256 (core: libc only; doc/design.md).
 */
#ifndef ACH_CORE_PKCE_H
#define ACH_CORE_PKCE_H

#include <stddef.h>

#define ACH_PKCE_LEN 43 /* characters of a verifier we make, and of any S256 challenge */
/* A new verifier (32 random bytes, base64url) and its challenge; -1 when the OS random failed. */
int ach_pkce_new(char verifier[ACH_PKCE_LEN + 1], char challenge[ACH_PKCE_LEN + 1]);
void ach_pkce_challenge(const char *verifier, char out[ACH_PKCE_LEN + 1]);
int ach_pkce_verifier_valid(const char *s, size_t n); /* RFC 7636 4.1: 43-128 unreserved chars */
/* base64url of n bytes without padding into out (4 * n / 3 rounded up, plus a NUL). */
void ach_base64url(const unsigned char *s, size_t n, char *out);

#endif
