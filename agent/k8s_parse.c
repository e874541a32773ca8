// SPDX-License-Identifier: BSD-2-Clause
#include "k8s_parse.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "json_read.h"

/* ---- cgroup paths ----------------------------------------------------------------------- */

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_container_id(const char *s, size_t n)
{
	if (n != K8S_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_hex(s[i]))
			return false;
	return true;
}

static bool has_prefix(const char *s, size_t n, const char *prefix)
{
	size_t p = strlen(prefix);

	return n >= p && memcmp(s, prefix, p) == 0;
}

static bool has_suffix(const char *s, size_t n, const char *suffix)
{
	size_t p = strlen(suffix);

	return n >= p && memcmp(s + n - p, suffix, p) == 0;
}

/* The runtimes whose cgroup names carry a container id after "<runtime>-" or ":<runtime>:". */
static const char *const runtime_prefixes[] = {"cri-containerd", "crio", "docker", "libpod"};

static bool is_runtime(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(runtime_prefixes) / sizeof(runtime_prefixes[0]); i++)
		if (strlen(runtime_prefixes[i]) == n && memcmp(s, runtime_prefixes[i], n) == 0)
			return true;
	return false;
}

/* The container id one path component names, or NULL. */
static const char *component_container_id(const char *c, size_t n)
{
	const char *colon;
	size_t dash;

	if (is_container_id(c, n))
		return c; /* cgroupfs driver, plain docker */
	/* containerd under systemd: "kubepods-...-pod<uid>.slice:cri-containerd:<id>" */
	colon = memrchr(c, ':', n);
	if (colon && is_container_id(colon + 1, n - (size_t)(colon + 1 - c))) {
		const char *prev = memrchr(c, ':', (size_t)(colon - c));

		if (prev && is_runtime(prev + 1, (size_t)(colon - prev - 1)))
			return colon + 1;
		return NULL;
	}
	/* systemd driver "<runtime>-<id>.scope"; CRI-O under cgroupfs "crio-<id>" */
	if (has_suffix(c, n, ".scope"))
		n -= 6;
	if (n <= K8S_ID_LEN + 1)
		return NULL;
	dash = n - K8S_ID_LEN - 1;
	if (c[dash] != '-' || !is_runtime(c, dash) || !is_container_id(c + dash + 1, K8S_ID_LEN))
		return NULL;
	return c + dash + 1;
}

/* 8-4-4-4-12 hex digits; sep is the separator the path writes ('-', or '_' for systemd). */
static bool is_pod_uid(const char *s, size_t n, char sep)
{
	if (n != K8S_UID_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash_pos = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash_pos ? s[i] != sep : !is_lower_hex(s[i]))
			return false;
	}
	return true;
}

/* The pod uid one path component names ("pod<uid>", "kubepods[-qos]-pod<uid_>.slice") into
 * out, or false. */
static bool component_pod_uid(const char *c, size_t n, char out[K8S_UID_LEN + 1])
{
	const char *p = NULL;
	char sep = '-';

	if (has_prefix(c, n, "pod") && is_pod_uid(c + 3, n - 3, '-')) {
		p = c + 3;
	} else if (has_prefix(c, n, "kubepods") && has_suffix(c, n, ".slice") &&
		   n >= K8S_UID_LEN + 18 && memcmp(c + n - 6 - K8S_UID_LEN - 4, "-pod", 4) == 0 &&
		   is_pod_uid(c + n - 6 - K8S_UID_LEN, K8S_UID_LEN, '_')) {
		p = c + n - 6 - K8S_UID_LEN;
		sep = '_';
	}
	if (!p)
		return false;
	for (size_t i = 0; i < K8S_UID_LEN; i++)
		out[i] = p[i] == sep ? '-' : p[i];
	out[K8S_UID_LEN] = '\0';
	return true;
}

/*
 * Whether a cgroup path lies where only the kubelet and the container runtimes make
 * cgroups. A user may name cgroups freely in a tree delegated to them (systemd's
 * user@UID.service): an id taken from anywhere would let any local user's process take on
 * a pod's identity. So the path's first component must be the kubelet's ("kubepods",
 * "kubepods.slice", "kubepods-<qos>..."), docker's ("docker") or systemd's system slice,
 * where runtimes put "<runtime>-<id>.scope". Read in a cgroup namespace rooted inside the
 * kubelet's tree (a pod's own view), the path starts with ".." up to a common ancestor; a
 * pod or container component right after them is then a sibling in that tree too.
 */
static bool path_is_runtime_owned(const char *path, size_t n)
{
	char uid[K8S_UID_LEN + 1];
	bool up = false;
	size_t i = 0;

	for (;;) {
		size_t start, len;
		const char *c;

		while (i < n && path[i] == '/')
			i++;
		start = i;
		while (i < n && path[i] != '/')
			i++;
		c = path + start;
		len = i - start;
		if (len == 2 && c[0] == '.' && c[1] == '.') {
			up = true;
			continue;
		}
		if (!len)
			return false;
		if (has_prefix(c, len, "kubepods"))
			return true;
		if ((len == 6 && memcmp(c, "docker", 6) == 0) ||
		    (len == 12 && memcmp(c, "system.slice", 12) == 0))
			return true;
		return up && (component_pod_uid(c, len, uid) || component_container_id(c, len));
	}
}

/* Search one cgroup path (path[0..n)), its deepest components first. */
static int path_ids(const char *path, size_t n, char id[K8S_ID_LEN + 1],
		    char pod_uid[K8S_UID_LEN + 1])
{
	bool have_id = false;
	size_t end = n;

	if (!path_is_runtime_owned(path, n))
		return -ENOENT;

	while (end > 0) {
		const char *slash = memrchr(path, '/', end);
		size_t start = slash ? (size_t)(slash - path) + 1 : 0;
		const char *c = path + start, *cid;
		size_t len = end - start;

		if (!have_id && (cid = component_container_id(c, len))) {
			memcpy(id, cid, K8S_ID_LEN);
			id[K8S_ID_LEN] = '\0';
			have_id = true;
		}
		if (!pod_uid[0]) {
			/* "<pod slice>:cri-containerd:<id>": the slice is before the first ':' */
			const char *colon = memchr(c, ':', len);

			component_pod_uid(c, colon ? (size_t)(colon - c) : len, pod_uid);
		}
		if (have_id && pod_uid[0])
			break;
		end = slash ? (size_t)(slash - path) : 0;
	}
	return have_id ? 0 : -ENOENT;
}

/* The path of one line "hierarchy:controllers:path", or NULL; *v2 when it is cgroup v2's. */
static const char *line_path(const char *line, size_t n, size_t *plen, bool *v2)
{
	const char *c1 = memchr(line, ':', n), *c2;

	if (!c1)
		return NULL;
	c2 = memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - line));
	if (!c2)
		return NULL;
	*v2 = c1 - line == 1 && line[0] == '0' && c2 == c1 + 1;
	*plen = n - (size_t)(c2 + 1 - line);
	return c2 + 1;
}

int k8s_cgroup_ids(const char *text, size_t len, char id[K8S_ID_LEN + 1],
		   char pod_uid[K8S_UID_LEN + 1])
{
	char uid_v1[K8S_UID_LEN + 1] = "";
	int found_v1 = -ENOENT;

	id[0] = '\0';
	pod_uid[0] = '\0';
	for (size_t off = 0; off < len;) {
		const char *line = text + off, *nl = memchr(line, '\n', len - off), *path;
		size_t n = nl ? (size_t)(nl - line) : len - off, plen;
		char id1[K8S_ID_LEN + 1], uid1[K8S_UID_LEN + 1] = "";
		bool v2;

		off += n + 1;
		path = line_path(line, n, &plen, &v2);
		if (!path)
			continue;
		if (v2) {
			if (path_ids(path, plen, id, pod_uid) == 0)
				return 0;
			continue;
		}
		if (found_v1 && path_ids(path, plen, id1, uid1) == 0) {
			found_v1 = 0;
			memcpy(uid_v1, uid1, sizeof(uid_v1));
			memcpy(id, id1, sizeof(id1));
		} else if (!uid_v1[0] && uid1[0]) {
			memcpy(uid_v1, uid1, sizeof(uid_v1));
		}
	}
	if (!pod_uid[0])
		memcpy(pod_uid, uid_v1, K8S_UID_LEN + 1);
	if (found_v1)
		id[0] = '\0';
	return found_v1;
}

/* ---- owners ---------------------------------------------------------------------------- */

#define CRONJOB_SUFFIX_MIN_DIGITS 8 /* minutes since 1970 passed 10^7 in 1989 */
#define CRONJOB_POD_LAG_MAX_S (24 * 3600)

static void owner_set(struct k8s_owner *o, const char *key, const char *name, size_t n)
{
	o->key = key;
	if (n >= sizeof(o->name))
		n = sizeof(o->name) - 1;
	memcpy(o->name, name, n);
	o->name[n] = '\0';
}

/* "<cronjob>-<minutes>": the length of <cronjob> when the pod's creation time agrees with
 * the scheduled minute, else 0. */
static size_t cronjob_prefix(const char *job, int64_t created_unix_s)
{
	size_t n = strlen(job), digits = 0;
	int64_t minutes = 0;

	while (digits < n && job[n - 1 - digits] >= '0' && job[n - 1 - digits] <= '9')
		digits++;
	if (digits < CRONJOB_SUFFIX_MIN_DIGITS || digits > 12 || digits + 2 > n ||
	    job[n - 1 - digits] != '-' || job[n - digits] == '0' || created_unix_s <= 0)
		return 0;
	for (size_t i = n - digits; i < n; i++)
		minutes = minutes * 10 + (job[i] - '0');
	if (created_unix_s < minutes * 60 || created_unix_s - minutes * 60 > CRONJOB_POD_LAG_MAX_S)
		return 0;
	return n - digits - 1;
}

unsigned k8s_owners_derive(const char *kind, const char *name, const char *pod_template_hash,
			   int64_t created_unix_s, struct k8s_owner out[K8S_OWNERS_MAX])
{
	size_t n, h;

	if (!kind || !name || !*name)
		return 0;
	n = strlen(name);
	if (strcmp(kind, "ReplicaSet") == 0) {
		owner_set(&out[0], "k8s.replicaset.name", name, n);
		h = pod_template_hash ? strlen(pod_template_hash) : 0;
		if (h && n > h + 1 && name[n - h - 1] == '-' &&
		    strcmp(name + n - h, pod_template_hash) == 0) {
			owner_set(&out[1], "k8s.deployment.name", name, n - h - 1);
			return 2;
		}
		return 1;
	}
	if (strcmp(kind, "Job") == 0) {
		owner_set(&out[0], "k8s.job.name", name, n);
		h = cronjob_prefix(name, created_unix_s);
		if (h) {
			owner_set(&out[1], "k8s.cronjob.name", name, h);
			return 2;
		}
		return 1;
	}
	if (strcmp(kind, "StatefulSet") == 0) {
		owner_set(&out[0], "k8s.statefulset.name", name, n);
		return 1;
	}
	if (strcmp(kind, "DaemonSet") == 0) {
		owner_set(&out[0], "k8s.daemonset.name", name, n);
		return 1;
	}
	return 0;
}

int k8s_parse_time(const char *s, int64_t *out)
{
	struct tm tm = {0};
	char z = 0;
	int n = 0;

	if (!s ||
	    sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z, &n) != 7 ||
	    z != 'Z' || s[n] != '\0')
		return -EINVAL;
	if (tm.tm_year < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -EINVAL;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*out = (int64_t)timegm(&tm);
	return 0;
}

/* ---- pod objects ----------------------------------------------------------------------- */

/* obj.a.b... as a C string, or NULL. */
static const char *str_at(const struct json_doc *d, const struct json_value *obj,
			  const char *const *path, size_t depth)
{
	for (size_t i = 0; obj && i < depth; i++)
		obj = json_doc__member(d, obj, path[i]);
	return obj ? json_value_cstr(obj) : NULL;
}

/* Copy s into dst[cap]: false when absent or too long (a cut value would be a wrong one). */
static bool copy_str(char *dst, size_t cap, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!s || n >= cap)
		return false;
	memcpy(dst, s, n + 1);
	return true;
}

/* The controller among metadata.ownerReferences (controller: true), else the first. */
static const struct json_value *controller_ref(const struct json_doc *d,
					       const struct json_value *meta)
{
	const struct json_value *refs = json_doc__member(d, meta, "ownerReferences");
	const struct json_value *first = json_doc__first(d, refs);

	for (const struct json_value *r = first; r; r = json_doc__next(d, r)) {
		const struct json_value *c = json_doc__member(d, r, "controller");

		if (c && c->type == JSON_TRUE)
			return r;
	}
	return first;
}

/* "containerd://<id>" (or any "<runtime>://<id>") into id; "" when not a 64-hex id. */
static void runtime_container_id(const char *s, char id[K8S_ID_LEN + 1])
{
	const char *sep = s ? strstr(s, "://") : NULL;

	id[0] = '\0';
	if (sep && is_container_id(sep + 3, strlen(sep + 3)))
		memcpy(id, sep + 3, K8S_ID_LEN + 1);
}

static void add_container(struct k8s_pod *p, const char *name, const char *id)
{
	struct k8s_container *c = NULL;

	for (unsigned i = 0; i < p->ncontainers; i++)
		if (strcmp(p->containers[i].name, name) == 0)
			c = &p->containers[i];
	if (!c) {
		if (p->ncontainers >= K8S_POD_CONTAINERS_MAX) {
			p->containers_dropped++;
			return;
		}
		c = &p->containers[p->ncontainers++];
		copy_str(c->name, sizeof(c->name), name);
		c->id[0] = '\0';
	}
	if (id)
		runtime_container_id(id, c->id);
}

/* Every container of a status list (containerStatuses, ...): name and id. */
static void add_statuses(const struct json_doc *d, const struct json_value *status,
			 const char *list, struct k8s_pod *p)
{
	const struct json_value *arr = json_doc__member(d, status, list);

	for (const struct json_value *c = json_doc__first(d, arr); c; c = json_doc__next(d, c)) {
		const char *name = json_value_cstr(json_doc__member(d, c, "name"));
		const char *id = json_value_cstr(json_doc__member(d, c, "containerID"));

		if (name && strlen(name) < K8S_LABEL_MAX)
			add_container(p, name, id);
	}
}

int k8s_pod_from_json(const struct json_doc *d, const struct json_value *pod, struct k8s_pod *out)
{
	static const char *const app_path[] = {"labels", "app.kubernetes.io/name"};
	static const char *const hash_path[] = {"labels", "pod-template-hash"};
	const struct json_value *meta = json_doc__member(d, pod, "metadata");
	const struct json_value *spec = json_doc__member(d, pod, "spec");
	const struct json_value *status = json_doc__member(d, pod, "status");
	const struct json_value *ref;
	const char *uid, *s;
	int64_t created = 0;

	memset(out, 0, sizeof(*out));
	uid = json_value_cstr(json_doc__member(d, meta, "uid"));
	if (!uid || !is_pod_uid(uid, strlen(uid), '-') ||
	    !copy_str(out->name, sizeof(out->name),
		      json_value_cstr(json_doc__member(d, meta, "name"))) ||
	    !copy_str(out->ns, sizeof(out->ns),
		      json_value_cstr(json_doc__member(d, meta, "namespace"))))
		return -EINVAL;
	memcpy(out->uid, uid, K8S_UID_LEN + 1);
	copy_str(out->resource_version, sizeof(out->resource_version),
		 json_value_cstr(json_doc__member(d, meta, "resourceVersion")));
	copy_str(out->node, sizeof(out->node),
		 json_value_cstr(json_doc__member(d, spec, "nodeName")));
	copy_str(out->app, sizeof(out->app), str_at(d, meta, app_path, 2));
	k8s_parse_time(json_value_cstr(json_doc__member(d, meta, "creationTimestamp")), &created);
	ref = controller_ref(d, meta);
	s = json_value_cstr(json_doc__member(d, ref, "name"));
	if (ref && s && strlen(s) < K8S_NAME_MAX)
		out->nowners =
		    k8s_owners_derive(json_value_cstr(json_doc__member(d, ref, "kind")), s,
				      str_at(d, meta, hash_path, 2), created, out->owners);
	/* the spec's containers first, so a container not started yet is known by name */
	for (const char *const *l = (const char *const[]){"initContainers", "containers", NULL}; *l;
	     l++) {
		const struct json_value *arr = json_doc__member(d, spec, *l);

		for (const struct json_value *c = json_doc__first(d, arr); c;
		     c = json_doc__next(d, c)) {
			const char *name = json_value_cstr(json_doc__member(d, c, "name"));

			if (name && strlen(name) < K8S_LABEL_MAX)
				add_container(out, name, NULL);
		}
	}
	add_statuses(d, status, "initContainerStatuses", out);
	add_statuses(d, status, "containerStatuses", out);
	add_statuses(d, status, "ephemeralContainerStatuses", out);
	return 0;
}
