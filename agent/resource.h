/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The OpenTelemetry resource of one traced process: who produced a span. Built once per
 * process (tgid, start time) by proc.c from /proc, shared by that process's spans through
 * a reference count, so spans can outlive the process and cross to the export thread.
 */
#ifndef HOPTRACE_RESOURCE_H
#define HOPTRACE_RESOURCE_H

#include <stdint.h>

/* Caps on what one process's OTEL_RESOURCE_ATTRIBUTES (and OTEL_SERVICE_NAME) may add to
 * every span it makes: attributes, bytes of a key, of a value, of all keys and values. */
#define RESOURCE_MAX_EXTRA 16
#define RESOURCE_KEY_MAX 128
#define RESOURCE_VALUE_MAX 256
#define RESOURCE_EXTRA_BYTES_MAX 4096

struct resource_kv {
	char *key;
	char *value;
};

struct resource {
	int refcount; /* atomic; see resource_get/resource_put */
	uint32_t pid;
	uint64_t start_ns;  /* process start time (boot clock ns): identity with pid */
	char *service_name; /* OTEL_SERVICE_NAME of the process, else executable name */
	char *exe_name;	    /* process.executable.name */
	char *exe_path;	    /* process.executable.path, may be NULL */
	char *container_id; /* container.id, may be NULL */
	char *pod_uid;	    /* k8s.pod.uid, may be NULL */
	unsigned nextra;    /* from the process's OTEL_RESOURCE_ATTRIBUTES */
	struct resource_kv extra[RESOURCE_MAX_EXTRA];
	uint64_t spans; /* spans finished so far (hoptrace status); the loop thread's alone */
};

/* Allocate an empty resource with refcount 1. Strings are set by the caller (owned). */
struct resource *resource_new(uint32_t pid, uint64_t start_ns);
/* Take a reference (thread-safe). Returns r. */
struct resource *resource_get(struct resource *r);
/* Drop a reference (thread-safe); frees on the last one. NULL is ignored. */
void resource_put(struct resource *r);

#endif
