// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for hoptrace-collect's request path (tools/hoptrace-collect.c through
 * collect_feed(): HTTP framing, chunked decoding, gunzip, the wire-format walk, protobuf-c
 * unpack with its byte budget, and the JSON output, written to /dev/null).
 *
 *   make build/fuzz/fuzz_collect && build/fuzz/fuzz_collect -max_total_time=60
 *
 * Input: a mode byte, a piece byte, then the payload. Mode 0: the payload is raw HTTP
 * input. Modes 1 to 3: the payload is the body of a well-formed POST /v1/traces, sent with
 * Content-Length (1), gzipped by the harness (2), or in chunks of piece + 1 bytes (3).
 * Each request is fed twice: in one recv, and in recvs of piece + 1 bytes. The receiver
 * must answer both the same (parsing is incremental: where the input is cut must not
 * matter), and must answer every well-framed request (modes 1 to 3).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "hoptrace-collect.h"

#define MAX_REQUEST (1u << 20)

static uint8_t req[MAX_REQUEST];

static size_t put(size_t at, const void *p, size_t n)
{
	if (at + n > sizeof(req))
		abort(); /* the harness sized it wrong */
	memcpy(req + at, p, n);
	return at + n;
}

static size_t put_str(size_t at, const char *s)
{
	return put(at, s, strlen(s));
}

/* gzip of in into out[0..cap); its length, 0 if zlib fails (never for these sizes). */
static size_t gzip_into(uint8_t *out, size_t cap, const uint8_t *in, size_t len)
{
	z_stream zs = {0};
	size_t n = 0;

	if (deflateInit2(&zs, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	if (deflate(&zs, Z_FINISH) == Z_STREAM_END)
		n = zs.total_out;
	deflateEnd(&zs);
	return n;
}

/* A POST /v1/traces around body, framed as mode says; its length. */
static size_t build_request(int mode, size_t chunk, const uint8_t *body, size_t len)
{
	char line[64];
	size_t at = put_str(0, "POST /v1/traces HTTP/1.1\r\nHost: fuzz\r\n"
			       "Content-Type: application/x-protobuf\r\n");

	if (mode == 3) {
		at = put_str(at, "Transfer-Encoding: chunked\r\n\r\n");
		for (size_t off = 0; off < len; off += chunk) {
			size_t n = len - off < chunk ? len - off : chunk;

			snprintf(line, sizeof(line), "%zx\r\n", n);
			at = put_str(at, line);
			at = put(at, body + off, n);
			at = put_str(at, "\r\n");
		}
		return put_str(at, "0\r\n\r\n");
	}
	if (mode == 2) {
		static uint8_t gz[MAX_REQUEST / 2];
		size_t n = gzip_into(gz, sizeof(gz), body, len);

		at = put_str(at, "Content-Encoding: gzip\r\n");
		snprintf(line, sizeof(line), "Content-Length: %zu\r\n\r\n", n);
		at = put_str(at, line);
		return put(at, gz, n);
	}
	snprintf(line, sizeof(line), "Content-Length: %zu\r\n\r\n", len);
	at = put_str(at, line);
	return put(at, body, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	const uint8_t *payload = data + 2;
	size_t len, piece;
	int mode, whole, split;

	if (!ready) {
		FILE *sink = fopen("/dev/null", "w");

		if (!sink || collect_feed_setup(sink))
			abort();
		ready = true;
	}
	if (size < 2 || size - 2 > MAX_REQUEST / 4)
		return 0;
	mode = data[0] % 4;
	piece = (size_t)data[1] + 1;
	if (mode == 0) {
		len = size - 2;
		memcpy(req, payload, len);
	} else {
		len = build_request(mode, piece, payload, size - 2);
	}
	whole = collect_feed(req, len, len ? len : 1);
	split = collect_feed(req, len, piece);
	if (whole != split) {
		fprintf(stderr, "answered %d in one recv, %d in recvs of %zu bytes\n", whole, split,
			piece);
		abort();
	}
	if (mode && !whole) {
		fprintf(stderr, "a well-framed request got no answer\n");
		abort();
	}
	return 0;
}
