/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * OTLP JSON (the OTLP/JSON encoding of opentelemetry-proto's docs/specification.md) into span
 * lines: the otlp:FILE source, and the converter the tempo: source reuses.
 */
#ifndef HOPTRACE_TSOURCE_OTLP_H
#define HOPTRACE_TSOURCE_OTLP_H

#include "json_read.h"
#include "tsource_conv.h"

/* One document: bytes and values a line of otlp:FILE or a Tempo response may hold. The
 * Collector's file exporter writes one export request a line: a batch of thousands of spans
 * is several MiB. The parsed form takes about 2 bytes a text byte and 48 a value. */
#define OTLP_DOC_MAX_LEN (32u << 20)
#define OTLP_DOC_MAX_VALUES (2u << 20)

/*
 * Hand every span of one parsed OTLP JSON document to c: an ExportTraceServiceRequest or
 * TracesData ({"resourceSpans":[...]}), Tempo's trace ({"batches":[...]}) or its v2 wrapping
 * ({"trace":{...}}). Field names in lowerCamelCase or as in the .proto; ids in hex (base64
 * accepted too: protobuf's own JSON mapping, which Tempo writes); 64-bit integers as strings
 * or numbers; enums as numbers or names. A span that cannot be read is skipped and counted;
 * an attribute that cannot be read is left out and counted in *dropped. Returns c->stop.
 */
int tsource_otlp_doc(struct tconv *c, const struct json_doc *d, const struct json_value *root,
		     uint64_t *dropped);

/* The otlp:FILE source (tsource.c's kinds[]): FILE holds one OTLP JSON document a line. */
int tsource_otlp_read(const char *prog, const char *rest, const struct tsource_opts *opts,
		      span_line_fn fn, void *ctx, struct tsource_stats *stats);

#endif
