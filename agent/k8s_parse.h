/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The pure half of Kubernetes pod metadata (k8s.h runs the API client): which container a
 * process runs in, from its /proc/PID/cgroup; a pod object of the API server as the few
 * fields the agent keeps; and the workload that owns a pod. No I/O, no global state.
 */
#ifndef HOPTRACE_K8S_PARSE_H
#define HOPTRACE_K8S_PARSE_H

#include <stddef.h>
#include <stdint.h>

struct json_doc;
struct json_value;

#define K8S_ID_LEN 64	 /* a container id: 64 lowercase hex digits (containerd, CRI-O, docker) */
#define K8S_UID_LEN 36	 /* a pod uid: 8-4-4-4-12 hex digits */
#define K8S_NAME_MAX 254 /* a DNS subdomain (pod, owner and node names): 253 bytes + NUL */
#define K8S_LABEL_MAX 64 /* a DNS label (namespace, container name), a label value + NUL */
#define K8S_POD_CONTAINERS_MAX 12 /* containers, init and ephemeral ones of a pod kept */
#define K8S_OWNERS_MAX 2	  /* a ReplicaSet and its Deployment, a Job and its CronJob */

/*
 * The container of a process from the text of /proc/PID/cgroup (cgroup v2 "0::/path" and
 * v1 "N:controllers:/path" lines), into id[K8S_ID_LEN + 1]; its pod's uid into
 * pod_uid[K8S_UID_LEN + 1] when the path names one (else ""). The path components read, the
 * deepest first (a container's own sub-cgroups, a cluster nested in docker):
 *   systemd driver  kubepods-burstable-pod<uid_with_underscores>.slice,
 *                   cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope,
 *                   and containerd's "<slice>:cri-containerd:<id>" form;
 *   cgroupfs driver /kubepods/burstable/pod<uid>/<id> (CRI-O: crio-<id>);
 *   plain docker    /docker/<id>.
 * CRI-O's conmon (crio-conmon-<id>.scope) is the runtime's monitor, not the container: not
 * matched. The v2 line is preferred; a hybrid host's v1 lines are read when it names none.
 * Returns 0 with a container id, -ENOENT without one (pod_uid may still be set).
 */
int k8s_cgroup_ids(const char *text, size_t len, char id[K8S_ID_LEN + 1],
		   char pod_uid[K8S_UID_LEN + 1]);

struct k8s_container {
	char id[K8S_ID_LEN + 1]; /* "" until the runtime reports it in the pod status */
	char name[K8S_LABEL_MAX];
};

struct k8s_owner {
	const char *key; /* "k8s.deployment.name", ...: a string literal; NULL: none */
	char name[K8S_NAME_MAX];
};

struct k8s_pod {
	char uid[K8S_UID_LEN + 1];
	char name[K8S_NAME_MAX];
	char ns[K8S_LABEL_MAX];
	char node[K8S_NAME_MAX];
	char app[K8S_LABEL_MAX]; /* label app.kubernetes.io/name, "" when absent */
	char resource_version[32];
	unsigned nowners;
	struct k8s_owner owners[K8S_OWNERS_MAX]; /* the direct owner first */
	unsigned ncontainers;
	unsigned containers_dropped; /* over K8S_POD_CONTAINERS_MAX */
	struct k8s_container containers[K8S_POD_CONTAINERS_MAX];
};

/*
 * A pod object of the API server (a LIST item, a WATCH event's object) into *out. Keeps
 * metadata (uid, name, namespace, resourceVersion, the app.kubernetes.io/name label, the
 * controller owner), spec.nodeName and the container ids of status.containerStatuses,
 * initContainerStatuses and ephemeralContainerStatuses ("containerd://<id>", "cri-o://",
 * "docker://"); containers of the spec not started yet are kept without an id. Values over
 * their field's size make the pod invalid rather than cut (a cut name would be a wrong one).
 * Returns 0, or -EINVAL when uid, name or namespace is missing or malformed.
 */
int k8s_pod_from_json(const struct json_doc *d, const struct json_value *pod, struct k8s_pod *out);

/*
 * The owners of a pod from its controller ownerReference (kind, name), its
 * pod-template-hash label and its creation time (unix seconds, 0: unknown):
 *   ReplicaSet  k8s.replicaset.name, and k8s.deployment.name when the ReplicaSet's name is
 *               "<deployment>-<pod-template-hash>" (what the Deployment controller names it);
 *   Job         k8s.job.name, and k8s.cronjob.name when the Job's name is
 *               "<cronjob>-<scheduled time in minutes since 1970>" (the CronJob controller's
 *               name) and the pod was created within a day after that time: a Job named
 *               "migrate-20240101" by hand does not become a CronJob "migrate";
 *   StatefulSet, DaemonSet: their name; anything else (Node for static pods, custom
 *   controllers): no owner attribute.
 * Never guesses: without the evidence, only the direct owner is named.
 * Returns the number of owners written to out[K8S_OWNERS_MAX].
 */
unsigned k8s_owners_derive(const char *kind, const char *name, const char *pod_template_hash,
			   int64_t created_unix_s, struct k8s_owner out[K8S_OWNERS_MAX]);

/* RFC 3339 "2024-05-01T12:00:00Z" (as the API server writes timestamps) into unix seconds;
 * 0 or -EINVAL. */
int k8s_parse_time(const char *s, int64_t *out);

#endif
