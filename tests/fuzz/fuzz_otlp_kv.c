// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the key=value lists a process or the environment hands the agent:
 * the input is a /proc/PID/environ block (NUL-separated, as a process sets it). Its
 * OTEL_RESOURCE_ATTRIBUTES goes through resource_parse_attributes (otlp_kv_parse, reserved
 * keys, caps), and the whole input once more through otlp_kv_parse as a header list. Besides
 * memory errors it aborts when an invariant is broken:
 *  - a resource keeps at most RESOURCE_MAX_EXTRA attributes, none reserved, none over the
 *    key and value caps, at most RESOURCE_EXTRA_BYTES_MAX bytes in all;
 *  - a parse error message is NUL-terminated within its buffer.
 * libFuzzer passes data in a heap buffer of exactly size bytes: the harness copies it with a
 * NUL after it, as the agent reads environ.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "export/otlp_config.h"
#include "proc.h"
#include "resource.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_resource(const struct resource *r)
{
	size_t total = 0;

	if (r->nextra > RESOURCE_MAX_EXTRA)
		abort();
	for (unsigned i = 0; i < r->nextra; i++) {
		size_t k = strlen(r->extra[i].key), v = strlen(r->extra[i].value);

		if (!k || k > RESOURCE_KEY_MAX || v > RESOURCE_VALUE_MAX)
			abort();
		if (!strncmp(r->extra[i].key, "host.", 5) ||
		    !strcmp(r->extra[i].key, "k8s.pod.uid"))
			abort();
		total += k + v;
	}
	if (total > RESOURCE_EXTRA_BYTES_MAX)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *env = malloc(size + 1);
	struct resource *r = resource_new(1, 1);
	const char *v;
	struct otlp_kv *kv;
	char msg[64];
	unsigned n;

	if (!env || !r)
		abort();
	memcpy(env, data, size);
	env[size] = '\0';
	v = proc_environ_lookup(env, size, "OTEL_RESOURCE_ATTRIBUTES");
	if (v) {
		if (v < env || v > env + size)
			abort();
		resource_parse_attributes(r, v);
		check_resource(r);
	}
	memset(msg, 'x', sizeof(msg));
	if (otlp_kv_parse(env, "OTEL_EXPORTER_OTLP_HEADERS", &kv, &n, msg, sizeof(msg)) == 0)
		otlp_kv_free(kv, n);
	else if (!memchr(msg, '\0', sizeof(msg)))
		abort();
	resource_put(r);
	free(env);
	return 0;
}
