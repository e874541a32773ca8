/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The OpenTelemetry resource of one traced process: who produced a span. Built once per
 * process (tgid, start time) by proc.c from /proc, shared by that process's spans through
 * a reference count, so spans can outlive the process and cross to the export thread.
 */
#ifndef HOPTRACE_RESOURCE_H
#define HOPTRACE_RESOURCE_H

#include <stdbool.h>
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

/* Kubernetes attributes from the API server (k8s.h): k8s.pod.name, k8s.namespace.name,
 * k8s.container.name, k8s.node.name and the owner's k8s.<kind>.name (two at most: a
 * ReplicaSet and its Deployment, a Job and its CronJob). */
#define RESOURCE_MAX_K8S 8

struct resource_attr {
	const char *key; /* a string literal */
	char *value;	 /* owned */
};

/* Where service.name came from, most trusted first: a process's own setting always wins. */
enum resource_service_source {
	RESOURCE_SERVICE_EXE = 0, /* the executable's name (no better one known) */
	RESOURCE_SERVICE_PROCESS, /* OTEL_SERVICE_NAME or service.name of the process */
	RESOURCE_SERVICE_K8S,	  /* app.kubernetes.io/name label, else the owner's name */
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
	unsigned nk8s;	/* pod metadata of the process's container, from the API server */
	struct resource_attr k8s[RESOURCE_MAX_K8S];
	uint8_t service_source; /* enum resource_service_source */
	/* a container or pod id was read from the cgroup but its pod is not (yet) known:
	 * proc.c looks again when the metadata changes */
	uint8_t k8s_pending;
};

/* Allocate an empty resource with refcount 1. Strings are set by the caller (owned). */
struct resource *resource_new(uint32_t pid, uint64_t start_ns);
/* Take a reference (thread-safe). Returns r. */
struct resource *resource_get(struct resource *r);
/* Drop a reference (thread-safe); frees on the last one. NULL is ignored. */
void resource_put(struct resource *r);
/* A new resource (refcount 1) with every field of r copied, or NULL. */
struct resource *resource_clone(const struct resource *r);
/* Add a k8s attribute (value copied); -ENOSPC past RESOURCE_MAX_K8S, -ENOMEM. */
int resource_add_k8s(struct resource *r, const char *key, const char *value);
/* The value of a k8s attribute of r, or NULL. */
const char *resource_k8s(const struct resource *r, const char *key);

#endif
