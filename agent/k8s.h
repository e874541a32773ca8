/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Kubernetes pod metadata for the resources of traced processes (README "Kubernetes pod
 * metadata"). A worker thread LISTs this node's pods from the API server
 * (fieldSelector=spec.nodeName=NODE, in pages) and WATCHes them from the list's
 * resourceVersion; a 410 Gone (expired resourceVersion) starts a new LIST; a server that is
 * down or answers errors is retried with capped exponential backoff. It keeps a bounded
 * cache: container id -> pod (name, namespace, uid, container name, node, owner, the
 * app.kubernetes.io/name label). The event loop only looks things up, under a mutex held
 * for a copy: nothing it does waits for the network.
 */
#ifndef HOPTRACE_K8S_H
#define HOPTRACE_K8S_H

#include <argp.h>
#include <stdbool.h>
#include <stdint.h>

struct resource;

enum k8s_mode { K8S_AUTO = 0, K8S_ON, K8S_OFF };

#define K8S_DEFAULT_MAX_PODS 512
#define K8S_MAX_PODS_LIMIT 65536
#define K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct k8s_config {
	enum k8s_mode mode; /* --k8s-meta / HOPTRACE_K8S_META */
	const char
	    *api; /* --k8s-api, HOPTRACE_K8S_API, else https://$KUBERNETES_SERVICE_HOST:PORT */
	const char *token_file;	  /* --k8s-token-file, HOPTRACE_K8S_TOKEN_FILE */
	const char *ca_file;	  /* --k8s-ca-file, HOPTRACE_K8S_CA_FILE */
	const char *node;	  /* --k8s-node-name, K8S_NODE_NAME */
	unsigned max_pods;	  /* --k8s-max-pods, HOPTRACE_K8S_MAX_PODS */
	unsigned backoff_max_ms;  /* --k8s-backoff-max-ms: the cap of the retry delay */
	unsigned list_page;	  /* pods per LIST page (--k8s-list-page) */
	unsigned watch_timeout_s; /* the server ends each WATCH after this (timeoutSeconds) */
};

/* The command-line options (an argp child of the agent's parser; its input is a struct
 * k8s_config). */
extern const struct argp k8s_argp;

/* Defaults, then the environment (flags parsed afterwards override it). */
void k8s_config_init(struct k8s_config *c);

struct k8s;

/*
 * Resolve the configuration (auto: on when KUBERNETES_SERVICE_HOST and _PORT are set and the
 * token file is readable) and start the worker. *out is NULL when metadata is off. Returns 0,
 * or -EINVAL for a configuration that cannot work when asked for explicitly (logged).
 */
int k8s__start(const struct k8s_config *cfg, struct k8s **out);
/* Stop the worker (within about a second) and free everything. NULL is ignored. */
void k8s__stop(struct k8s *k);
/* A number that changes whenever the cache does (lock-free). */
uint64_t k8s__generation(const struct k8s *k);
/*
 * Add the pod metadata of r's container (r->container_id, else r->pod_uid) to r: the
 * k8s.* attributes, and service.name from the app.kubernetes.io/name label or the owner's
 * name unless the process named itself. Returns true when the pod was found. Event loop
 * thread; takes the cache mutex for the copy only.
 */
bool k8s__enrich(struct k8s *k, struct resource *r);

#endif
