/*
 * sha256.h: SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104). Shared by the client and the
 * sandbox (each a separate product with its own headers): this header depends on nothing but
 * the C library.
 */
#ifndef ACH_SHA256_H
#define ACH_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct ach_sha256_ctx {
	uint32_t h[8];
	unsigned char block[64];
	size_t fill;
	uint64_t total;
} ach_sha256_ctx;

void ach_sha256_init(ach_sha256_ctx *c);
void ach_sha256_update(ach_sha256_ctx *c, const unsigned char *p, size_t n);
void ach_sha256_final(ach_sha256_ctx *c, unsigned char out[32]);

/* The digest of len bytes at data: raw (32 bytes) or as 64 lowercase hex digits and a NUL. */
void ach_sha256(const void *data, size_t len, unsigned char out[32]);
void ach_sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA-256 of msg under key, as 64 lowercase hex digits and a NUL. */
void ach_hmac_sha256_hex(const void *key, size_t klen, const void *msg, size_t mlen, char out[65]);

#endif
