// SPDX-License-Identifier: BSD-2-Clause
#include "resource.h"

#include <stdlib.h>

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
	free(r);
}
