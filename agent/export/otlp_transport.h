/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * OTLP request transport over libcurl: OTLP/HTTP (POST application/x-protobuf) and OTLP/gRPC
 * (unary TraceService/Export over HTTP/2, h2c or TLS, framed by hand: no gRPC library).
 * One transport is used by one thread; its connection is kept alive across requests.
 * Only otlp_transport__abort may be called from another thread.
 */
#ifndef HOPTRACE_OTLP_TRANSPORT_H
#define HOPTRACE_OTLP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "otlp_config.h"
#include "otlp_encode.h"

enum otlp_outcome {
	OTLP_OK = 0,	/* accepted (possibly partially: see rejected) */
	OTLP_RETRY = 1, /* transient: send the same request again later */
	OTLP_FAIL = 2,	/* permanent for this request: do not retry */
};

/* What became of one request. */
struct otlp_result {
	enum otlp_outcome outcome;
	long http_status;	/* 0: no HTTP response */
	int grpc_status;	/* -1: not gRPC or no status */
	int curl_code;		/* CURLcode of the transfer, 0 when a response came */
	int64_t retry_after_ms; /* the server's Retry-After, -1 if none */
	int64_t rejected;	/* partial_success.rejected_spans */
	bool aborted;		/* cut short by otlp_transport__abort or the deadline */
	size_t bytes_sent;	/* request body bytes, when the request went out */
	char message[256];	/* server or curl error text, or partial-success message */
};

struct otlp_transport;

/* Set up a transport for cfg (which must have been finished). NULL with msg on failure. */
struct otlp_transport *otlp_transport_new(const struct otlp_config *cfg, char *msg, size_t msglen);
void otlp_transport_free(struct otlp_transport *t);

/*
 * Send body's payload (already gzipped when cfg->gzip) as one export request and wait for
 * the answer, but not past deadline_ns (CLOCK_MONOTONIC; 0: only the configured timeout).
 * body's headroom is used for the gRPC message prefix.
 */
void otlp_transport__send(struct otlp_transport *t, struct otlp_buf *body, uint64_t deadline_ns,
			  struct otlp_result *res);

/* From any thread: make the request in progress, and any later one, end at once (on=true). */
void otlp_transport__abort(struct otlp_transport *t, bool on);

/* ---- pure helpers, exported for tests ----------------------------------------------------- */

/* The 5-byte gRPC Length-Prefixed-Message header: compressed flag, big-endian length. */
void otlp_grpc_frame(uint8_t hdr[5], bool compressed, uint32_t len);

/*
 * Parse one length-prefixed message from buf. Returns 0 with *msg and *msglen set,
 * -EBADMSG when buf is shorter than the header or the length it announces, or has bytes
 * beyond it (a unary response carries exactly one message).
 */
int otlp_grpc_unframe(const uint8_t *buf, size_t len, bool *compressed, const uint8_t **msg,
		      size_t *msglen);

/* Retry policy of the OTLP spec for an HTTP status and a gRPC status. */
enum otlp_outcome otlp_classify_http(long status);
enum otlp_outcome otlp_classify_grpc(int status);

/* The gRPC status an HTTP status maps to when a gRPC response has none (gRPC's mapping). */
int otlp_grpc_status_from_http(long status);

/* Retry-After (RFC 9110 10.2.3: delay-seconds or HTTP-date) in ms from now; -1 if invalid. */
int64_t otlp_parse_retry_after(const char *value, time_t now);

/* Decode gRPC's percent-encoded grpc-message in place. */
void otlp_grpc_message_decode(char *s);

/* Name of a gRPC status code ("UNAVAILABLE"), "UNKNOWN" outside 0..16. */
const char *otlp_grpc_status_name(int status);

#endif
