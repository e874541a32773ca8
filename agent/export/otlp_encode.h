/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Finished spans to OTLP ExportTraceServiceRequest bytes (protobuf-c). Pure: no I/O, no
 * globals; one encoder per thread, reused batch after batch so that steady state allocates
 * nothing (messages are built in an arena, strings point into the spans).
 */
#ifndef HOPTRACE_OTLP_ENCODE_H
#define HOPTRACE_OTLP_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "otlp_config.h"

struct span;

/*
 * Bytes kept free in front of every payload, so the gRPC message prefix (1 flag byte and a
 * 4-byte length) can be written without moving the payload.
 */
#define OTLP_HEADROOM 5

/* A growable byte buffer whose payload starts OTLP_HEADROOM bytes into data. */
struct otlp_buf {
	uint8_t *data;
	size_t len; /* payload bytes */
	size_t cap; /* payload capacity */
};

/* NULL while nothing was reserved: an offset from a null pointer is undefined behaviour. */
static inline uint8_t *otlp_buf_payload(const struct otlp_buf *b)
{
	return b->data ? b->data + OTLP_HEADROOM : NULL;
}

/* Make room for at least cap payload bytes (contents kept). Returns 0 or -ENOMEM. */
int otlp_buf_reserve(struct otlp_buf *b, size_t cap);
void otlp_buf_free(struct otlp_buf *b);

/* The instrumentation scope every span is reported under. */
#define OTLP_SCOPE_NAME "hoptrace"
#define OTLP_LINK_REASON_KEY "hoptrace.link.reason"

struct otlp_encoder;

/*
 * Create an encoder. attrs are the agent's own resource attributes (its
 * OTEL_RESOURCE_ATTRIBUTES); they are copied, and override the host defaults (host.name,
 * os.type, telemetry.sdk.*). NULL on allocation failure.
 */
struct otlp_encoder *otlp_encoder_new(const struct otlp_kv *attrs, unsigned nattrs);
void otlp_encoder_free(struct otlp_encoder *enc);

/*
 * Encode n spans as one ExportTraceServiceRequest into out (replacing its payload): one
 * ResourceSpans per distinct span->resource, in order of first appearance, each with one
 * ScopeSpans. Strings that are not valid UTF-8 are repaired (U+FFFD), since receivers that
 * validate proto3 strings would otherwise reject the whole request. Returns 0 or -ENOMEM.
 */
int otlp_encoder__encode(struct otlp_encoder *enc, struct span *const *spans, size_t n,
			 struct otlp_buf *out);

/*
 * Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates), 0 if the
 * byte at s does not start one. left >= 1.
 */
size_t otlp_utf8_seq(const unsigned char *s, size_t left);

/* Read one protobuf varint at *p (advanced past it). False when truncated or over 64 bits.
 * For the small hand-written decoders (error details, the receiver's depth check). */
bool otlp_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

/* The resource attributes of the encoder's agent, for tests and the exit summary. */
unsigned otlp_encoder__agent_attrs(const struct otlp_encoder *enc, const struct otlp_kv **kv);

struct resource;
/* The Resource message (its payload bytes) of traced process r, as spans carry it; valid until
 * the next call on enc. The metrics encoder uses it. Returns 0 or -ENOMEM. */
int otlp_encoder__resource(struct otlp_encoder *enc, const struct resource *r,
			   const uint8_t **payload, size_t *len);

#endif
