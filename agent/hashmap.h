/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A small open-addressing hash map from uint64_t keys to pointer values, used for the
 * agent's tables (connections by cookie, processes by tgid, threads by tid). Grows by
 * doubling up to a fixed limit so memory stays bounded on a busy host.
 */
#ifndef HOPTRACE_HASHMAP_H
#define HOPTRACE_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

struct u64map_slot {
	uint64_t key;
	void *value; /* NULL: empty slot */
};

struct u64map {
	struct u64map_slot *slots;
	size_t cap;	  /* power of two */
	size_t count;	  /* live entries */
	size_t tombs;	  /* deleted slots still occupying probes */
	size_t max_count; /* inserts beyond this fail with -ENOSPC */
};

/* Initialise an empty map that holds at most max_count entries. Returns 0 or -ENOMEM. */
int u64map_init(struct u64map *m, size_t max_count);
void u64map_free(struct u64map *m);
/* The value for key, or NULL. */
void *u64map_get(const struct u64map *m, uint64_t key);
/* Insert or replace (value must not be NULL). Returns 0, -ENOSPC or -ENOMEM. */
int u64map_put(struct u64map *m, uint64_t key, void *value);
/* Remove key; returns the old value or NULL. */
void *u64map_del(struct u64map *m, uint64_t key);

/* Iterate: for (size_t i = 0; u64map_next(m, &i, &k, &v);) ... Deleting the current entry
 * while iterating is allowed. */
int u64map_next(const struct u64map *m, size_t *iter, uint64_t *key, void **value);

#endif
