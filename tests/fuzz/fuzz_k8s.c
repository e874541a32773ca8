// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the pure half of Kubernetes metadata (agent/k8s_parse.c): the input
 * is taken both as a /proc/PID/cgroup text and as an API server answer (a pod object, or a
 * PodList whose items are pod objects). Besides memory errors it aborts when:
 *  - a container id found is not 64 lowercase hex digits, or a pod uid not 8-4-4-4-12;
 *  - the id is not a substring of the input (it must be read, never made up);
 *  - a pod accepted has an empty name or namespace, more containers or owners than its
 *    arrays hold, or strings not NUL-terminated within their fields.
 * libFuzzer passes data in a heap buffer of exactly size bytes, so ASan sees any over-read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "k8s_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_hex(const char *s, size_t n, int uid)
{
	if (strlen(s) != n)
		abort();
	for (size_t i = 0; i < n; i++) {
		int dash = uid && (i == 8 || i == 13 || i == 18 || i == 23);
		int hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');

		if (dash ? s[i] != '-' : !hex)
			abort();
	}
}

static void check_cgroup(const char *text, size_t len)
{
	char id[K8S_ID_LEN + 1], uid[K8S_UID_LEN + 1];
	int err = k8s_cgroup_ids(text, len, id, uid);

	if (err == 0) {
		check_hex(id, K8S_ID_LEN, 0);
		if (!memmem(text, len, id, K8S_ID_LEN))
			abort();
	} else if (err != -2 /* -ENOENT */ || id[0]) {
		abort();
	}
	if (uid[0])
		check_hex(uid, K8S_UID_LEN, 1);
}

static void check_pod(const struct json_doc *d, const struct json_value *v)
{
	struct k8s_pod p;

	if (k8s_pod_from_json(d, v, &p))
		return;
	check_hex(p.uid, K8S_UID_LEN, 1);
	if (!p.name[0] || !p.ns[0] || p.ncontainers > K8S_POD_CONTAINERS_MAX ||
	    p.nowners > K8S_OWNERS_MAX || !memchr(p.node, 0, sizeof(p.node)) ||
	    !memchr(p.app, 0, sizeof(p.app)))
		abort();
	for (unsigned i = 0; i < p.ncontainers; i++)
		if (p.containers[i].id[0])
			check_hex(p.containers[i].id, K8S_ID_LEN, 0);
	for (unsigned i = 0; i < p.nowners; i++)
		if (!p.owners[i].key || !memchr(p.owners[i].name, 0, sizeof(p.owners[i].name)))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct json_doc d;
	const struct json_value *root, *items;

	check_cgroup((const char *)data, size);
	if (json_doc__parse(&d, (const char *)data, size))
		return 0;
	root = json_doc__root(&d);
	check_pod(&d, root);
	items = json_doc__member(&d, root, "items");
	for (const struct json_value *it = json_doc__first(&d, items); it;
	     it = json_doc__next(&d, it))
		check_pod(&d, it);
	return 0;
}
