// SPDX-License-Identifier: BSD-2-Clause
#include "resource.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct resource *resource_new(uint32_t pid, uint64_t start_ns)
{
	struct resource *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->refcount = 1;
	r->pid = pid;
	r->start_ns = start_ns;
	return r;
}

struct resource *resource_get(struct resource *r)
{
	__atomic_add_fetch(&r->refcount, 1, __ATOMIC_RELAXED);
	return r;
}

void resource_put(struct resource *r)
{
	if (!r || __atomic_sub_fetch(&r->refcount, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	free(r->service_name);
	free(r->exe_name);
	free(r->exe_path);
	free(r->container_id);
	free(r->pod_uid);
	for (unsigned i = 0; i < r->nextra; i++) {
		free(r->extra[i].key);
		free(r->extra[i].value);
	}
	for (unsigned i = 0; i < r->nk8s; i++)
		free(r->k8s[i].value);
	free(r);
}

/* strdup that keeps NULL, and says whether it failed on a non-NULL string. */
static bool dup_field(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return !src || *dst;
}

struct resource *resource_clone(const struct resource *r)
{
	struct resource *c = resource_new(r->pid, r->start_ns);
	bool ok;

	if (!c)
		return NULL;
	ok = dup_field(&c->service_name, r->service_name) & dup_field(&c->exe_name, r->exe_name) &
	     dup_field(&c->exe_path, r->exe_path) & dup_field(&c->container_id, r->container_id) &
	     dup_field(&c->pod_uid, r->pod_uid);
	for (unsigned i = 0; i < r->nextra; i++, c->nextra++)
		ok &= dup_field(&c->extra[i].key, r->extra[i].key) &
		      dup_field(&c->extra[i].value, r->extra[i].value);
	for (unsigned i = 0; i < r->nk8s; i++, c->nk8s++) {
		c->k8s[i].key = r->k8s[i].key;
		ok &= dup_field(&c->k8s[i].value, r->k8s[i].value);
	}
	c->service_source = r->service_source;
	c->k8s_pending = r->k8s_pending;
	if (!ok) {
		resource_put(c);
		return NULL;
	}
	return c;
}

int resource_add_k8s(struct resource *r, const char *key, const char *value)
{
	if (r->nk8s >= RESOURCE_MAX_K8S)
		return -ENOSPC;
	r->k8s[r->nk8s].value = strdup(value);
	if (!r->k8s[r->nk8s].value)
		return -ENOMEM;
	r->k8s[r->nk8s++].key = key;
	return 0;
}

const char *resource_k8s(const struct resource *r, const char *key)
{
	for (unsigned i = 0; i < r->nk8s; i++)
		if (strcmp(r->k8s[i].key, key) == 0)
			return r->k8s[i].value;
	return NULL;
}
