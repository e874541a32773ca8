/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) header codec. Pure functions:
 * no I/O, no globals, so they are unit-tested and fuzzed on their own.
 */
#ifndef HOPTRACE_TRACEPARENT_H
#define HOPTRACE_TRACEPARENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACEPARENT_STR_LEN 55 /* "00-" 32 "-" 16 "-" 2 */
/* The spec asks to propagate at least 512 characters of tracestate. */
#define TRACESTATE_MAX_LEN 512
#define TRACESTATE_MAX_MEMBERS 32

struct trace_context {
	uint8_t trace_id[16];
	uint8_t parent_id[8];
	uint8_t flags;	 /* trace-flags as received (all 8 bits) */
	uint8_t version; /* version as received (0x00..0xfe) */
};

enum traceparent_result {
	TRACEPARENT_VALID = 0,
	TRACEPARENT_INVALID = 1,
};

/*
 * Parse one traceparent header value (the bytes after "traceparent:", possibly with
 * leading/trailing OWS, no CR/LF). Applies every rule of the spec: 2-hex lowercase version,
 * version ff rejected, version 00 exactly 55 chars, higher versions at least 55 chars and
 * followed by end or '-', lowercase hex only, all-zero trace id / parent id rejected.
 * Returns TRACEPARENT_VALID and fills *out, or TRACEPARENT_INVALID.
 */
enum traceparent_result traceparent_parse(const char *value, size_t len, struct trace_context *out);

/*
 * Format a version-00 traceparent value into buf (at least TRACEPARENT_STR_LEN + 1 bytes),
 * NUL-terminated. Only the sampled bit (0x01) and the random bit (0x02) of flags are kept,
 * as the spec asks for unknown bits. Returns TRACEPARENT_STR_LEN.
 */
int traceparent_format(const struct trace_context *tc, char *buf, size_t buflen);

/*
 * Validate and normalise the combined tracestate of a request. parts[i]/lens[i] are the
 * values of every tracestate header in order of appearance (header combination per
 * RFC 9110 5.3). Empty members are dropped, OWS trimmed, members joined with ",".
 * If any member is invalid (key or value grammar), there are more than 32 members, or
 * the result would not fit in outlen-1, the whole tracestate is invalid: returns -1 and
 * out[0] = '\0'. Otherwise returns the length written (0 for an empty tracestate).
 */
int tracestate_normalise(const char *const *parts, const size_t *lens, size_t nparts, char *out,
			 size_t outlen);

/* Lowercase hex encoding of n bytes into out (2n+1 bytes, NUL-terminated). */
void hex_encode(const uint8_t *in, size_t n, char *out);

/* True if all n bytes are zero. */
bool bytes_all_zero(const uint8_t *p, size_t n);

#endif
