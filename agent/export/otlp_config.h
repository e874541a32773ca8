/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * OTLP exporter configuration, read the way OpenTelemetry SDKs read it: the standard
 * OTEL_EXPORTER_OTLP_* and OTEL_BSP_* variables, signal-specific (_TRACES_) ones taking
 * precedence over general ones, and command-line flags over both. One setting has no OTel
 * variable: HOPTRACE_OTLP_EXPORTERS, the number of concurrent export workers.
 *
 *	struct otlp_config cfg;
 *	otlp_config_init(&cfg);
 *	err = otlp_config_from_env(&cfg, environ, msg, sizeof(msg));
 *	... for each --otlp-* flag: err = otlp_config_set(&cfg, "otlp-endpoint", arg, msg, ...);
 *	err = otlp_config_finish(&cfg, msg, sizeof(msg));
 *	... sink_otlp_new(&cfg) ...
 *	otlp_config_free(&cfg);
 *
 * Every function returns 0 or -errno; on -EINVAL, msg says which variable or flag was wrong
 * and what is accepted.
 */
#ifndef HOPTRACE_OTLP_CONFIG_H
#define HOPTRACE_OTLP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum otlp_protocol {
	OTLP_PROTOCOL_HTTP_PROTOBUF = 0,
	OTLP_PROTOCOL_GRPC = 1,
};

/* A key/value pair owned by whoever holds it (config: freed by otlp_config_free). */
struct otlp_kv {
	char *key;
	char *value;
};

/* The OTLP path of OTLP/HTTP (appended to OTEL_EXPORTER_OTLP_ENDPOINT) and the gRPC method. */
#define OTLP_HTTP_TRACES_PATH "/v1/traces"
#define OTLP_GRPC_EXPORT_PATH "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

#define OTLP_DEFAULT_HTTP_ENDPOINT "http://localhost:4318"
#define OTLP_DEFAULT_GRPC_ENDPOINT "http://localhost:4317"
#define OTLP_DEFAULT_TIMEOUT_MS 10000
#define OTLP_DEFAULT_QUEUE_SIZE 2048
#define OTLP_DEFAULT_QUEUE_BYTES (64u << 20)
/*
 * The SDK default is 5000 ms. hoptrace exports for every process of a host from one queue,
 * and people watch its traces arrive while they poke at a service: 1 s keeps that latency
 * short for one small POST a second, and busy hosts fill batches by size long before either.
 */
#define OTLP_DEFAULT_SCHEDULE_DELAY_MS 1000
#define OTLP_DEFAULT_BATCH_SIZE 512
#define OTLP_DEFAULT_EXPORT_TIMEOUT_MS 30000
/*
 * Export requests in flight at once (no OTel variable: HOPTRACE_OTLP_EXPORTERS). One sender
 * manages batch / round trip, 512 spans 20 ms away: 25k spans/s; otelcol's exporterhelper
 * runs 10 (num_consumers). Each worker holds a batch and a connection.
 */
#define OTLP_DEFAULT_EXPORTERS 4
#define OTLP_MAX_EXPORTERS 64

struct otlp_config {
	/* The URL requests go to; set by otlp_config_finish. */
	char *url;
	enum otlp_protocol protocol;
	bool gzip;
	/* gRPC endpoint without scheme: plaintext (h2c) rather than TLS. */
	bool insecure;
	/* True when any endpoint variable or flag was given: OTLP becomes the default output. */
	bool endpoint_set;
	int timeout_ms; /* one request; 0: no limit */
	char *ca_file;	/* NULL: system CAs */
	char *client_cert;
	char *client_key;
	unsigned nheaders;
	struct otlp_kv *headers; /* extra request headers (auth tokens) */
	unsigned nresource;
	struct otlp_kv *resource; /* the agent's OTEL_RESOURCE_ATTRIBUTES */
	int max_queue_size;	  /* spans */
	size_t max_queue_bytes;	  /* memory held by queued spans */
	int schedule_delay_ms;	  /* export at least this often when spans are queued */
	int max_batch_size;	  /* spans per request */
	/* How long one batch may keep being retried while newer spans are being dropped. */
	int export_timeout_ms;
	int exporters; /* export workers, each with one request in flight */

	/* Inputs otlp_config_finish resolves into url, and where each came from (for errors). */
	char *base_endpoint;
	char *traces_endpoint;
	const char *base_endpoint_src;
	const char *traces_endpoint_src;
};

/* Fill cfg with the defaults. Never fails. */
void otlp_config_init(struct otlp_config *cfg);

/*
 * Apply the OTEL_* variables found in envp (NULL-terminated "NAME=value" strings, as
 * environ; NULL means environ). Unset and empty variables are ignored, as SDKs do.
 */
int otlp_config_from_env(struct otlp_config *cfg, char *const *envp, char *msg, size_t msglen);

/*
 * Apply one command-line option: name without the leading dashes. Accepted names:
 * otlp-endpoint (base URL; a URL already ending in /v1/traces is used as is),
 * otlp-traces-endpoint (used as is), otlp-protocol, otlp-headers, otlp-compression,
 * otlp-timeout (ms), otlp-certificate, otlp-client-certificate, otlp-client-key,
 * otlp-insecure, otlp-queue-size, otlp-queue-bytes (K/M/G suffixes), otlp-schedule-delay,
 * otlp-batch-size, otlp-export-timeout, otlp-exporters, resource-attributes.
 * Returns -ENOENT for an unknown name.
 */
int otlp_config_set(struct otlp_config *cfg, const char *name, const char *value, char *msg,
		    size_t msglen);

/* Check the whole and compute cfg->url. Call once, after all the sets. */
int otlp_config_finish(struct otlp_config *cfg, char *msg, size_t msglen);

/* Free what cfg owns; cfg may then be initialised again. */
void otlp_config_free(struct otlp_config *cfg);

/*
 * Parse a W3C-baggage-like list "k1=v1,k2=v2" with percent-encoded values, as used by
 * OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES. Whitespace around keys and
 * values is trimmed. On success *out holds *n owned pairs (free with otlp_kv_free).
 * what names the source in the error message.
 */
int otlp_kv_parse(const char *list, const char *what, struct otlp_kv **out, unsigned *n, char *msg,
		  size_t msglen);
void otlp_kv_free(struct otlp_kv *kv, unsigned n);

/* Human-readable name of a protocol ("http/protobuf", "grpc"). */
const char *otlp_protocol_name(enum otlp_protocol p);

#endif
