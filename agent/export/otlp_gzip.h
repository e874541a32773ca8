/* SPDX-License-Identifier: BSD-2-Clause */
/* gzip (RFC 1952) for OTLP payloads, with zlib state kept across calls. */
#ifndef HOPTRACE_OTLP_GZIP_H
#define HOPTRACE_OTLP_GZIP_H

#include <stddef.h>
#include <stdint.h>

#include "otlp_encode.h"

struct otlp_gzip;

/* A compressor at zlib level (1..9). NULL on allocation failure. */
struct otlp_gzip *otlp_gzip_new(int level);
void otlp_gzip_free(struct otlp_gzip *gz);

/* Compress in[0..len) into out's payload (replacing it). Returns 0 or -ENOMEM. */
int otlp_gzip__compress(struct otlp_gzip *gz, const uint8_t *in, size_t len, struct otlp_buf *out);

/*
 * Inflate a gzip (or zlib) stream into out's payload, at most max_out bytes, so that a
 * small hostile body cannot expand without bound. Returns 0, -EBADMSG on corrupt or
 * truncated input, -EFBIG past max_out, -ENOMEM.
 */
int otlp_gunzip(const uint8_t *in, size_t len, size_t max_out, struct otlp_buf *out);

#endif
