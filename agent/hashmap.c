// SPDX-License-Identifier: BSD-2-Clause
#include "hashmap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

/* A deleted slot keeps probing chains intact until the next rehash. */
static char tombstone_marker;
#define TOMBSTONE ((void *)&tombstone_marker)

static size_t hash_u64(uint64_t k)
{
	/* splitmix64 finaliser: cookies and pids are sequential, spread them */
	k ^= k >> 30;
	k *= 0xbf58476d1ce4e5b9ULL;
	k ^= k >> 27;
	k *= 0x94d049bb133111ebULL;
	k ^= k >> 31;
	return (size_t)k;
}

int u64map_init(struct u64map *m, size_t max_count)
{
	m->cap = 64;
	m->count = 0;
	m->tombs = 0;
	m->max_count = max_count;
	m->slots = calloc(m->cap, sizeof(*m->slots));
	return m->slots ? 0 : -ENOMEM;
}

void u64map_free(struct u64map *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->count = m->tombs = 0;
}

static struct u64map_slot *find_slot(const struct u64map *m, uint64_t key)
{
	size_t mask = m->cap - 1;

	for (size_t i = hash_u64(key) & mask, n = 0; n < m->cap; i = (i + 1) & mask, n++) {
		struct u64map_slot *s = &m->slots[i];

		if (!s->value)
			return NULL;
		if (s->value != TOMBSTONE && s->key == key)
			return s;
	}
	return NULL;
}

void *u64map_get(const struct u64map *m, uint64_t key)
{
	struct u64map_slot *s = find_slot(m, key);

	return s ? s->value : NULL;
}

static void insert_fresh(struct u64map_slot *slots, size_t cap, uint64_t key, void *value)
{
	size_t mask = cap - 1;
	size_t i = hash_u64(key) & mask;

	while (slots[i].value)
		i = (i + 1) & mask;
	slots[i].key = key;
	slots[i].value = value;
}

static int rehash(struct u64map *m, size_t new_cap)
{
	struct u64map_slot *slots = calloc(new_cap, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		void *v = m->slots[i].value;

		if (v && v != TOMBSTONE)
			insert_fresh(slots, new_cap, m->slots[i].key, v);
	}
	free(m->slots);
	m->slots = slots;
	m->cap = new_cap;
	m->tombs = 0;
	return 0;
}

/* The slot holding key, or else the slot a new key goes to (the first tombstone on the
 * probe path, or the empty slot that ends it). */
static struct u64map_slot *find_slot_for_put(const struct u64map *m, uint64_t key, bool *found)
{
	size_t mask = m->cap - 1;
	struct u64map_slot *reuse = NULL;

	*found = false;
	for (size_t i = hash_u64(key) & mask, n = 0; n < m->cap; i = (i + 1) & mask, n++) {
		struct u64map_slot *s = &m->slots[i];

		if (!s->value)
			return reuse ? reuse : s;
		if (s->value == TOMBSTONE) {
			if (!reuse)
				reuse = s;
		} else if (s->key == key) {
			*found = true;
			return s;
		}
	}
	return reuse;
}

/*
 * Live entries + tombstones stay at most half the slots: with linear probing a miss at 3/4
 * load walks ~8 slots on average, at 1/2 about 2.5 (the tracker looks up and deletes on
 * every event, so misses and tombstones are the common case). The table grows when the
 * live entries alone fill a quarter of it, else it is rebuilt in place without tombstones.
 */
int u64map_put(struct u64map *m, uint64_t key, void *value)
{
	struct u64map_slot *s;
	bool found;
	int err;

	s = find_slot_for_put(m, key, &found);
	if (found) {
		s->value = value;
		return 0;
	}
	if (m->count >= m->max_count)
		return -ENOSPC;
	if ((m->count + m->tombs + 1) * 2 > m->cap) {
		err = rehash(m, (m->count + 1) * 4 > m->cap ? m->cap * 2 : m->cap);
		if (err)
			return err;
		s = find_slot_for_put(m, key, &found);
	}
	if (s->value == TOMBSTONE)
		m->tombs--;
	s->key = key;
	s->value = value;
	m->count++;
	return 0;
}

void *u64map_del(struct u64map *m, uint64_t key)
{
	struct u64map_slot *s = find_slot(m, key);
	void *old;

	if (!s)
		return NULL;
	old = s->value;
	s->value = TOMBSTONE;
	m->count--;
	m->tombs++;
	return old;
}

int u64map_next(const struct u64map *m, size_t *iter, uint64_t *key, void **value)
{
	while (*iter < m->cap) {
		struct u64map_slot *s = &m->slots[(*iter)++];

		if (s->value && s->value != TOMBSTONE) {
			*key = s->key;
			*value = s->value;
			return 1;
		}
	}
	return 0;
}
