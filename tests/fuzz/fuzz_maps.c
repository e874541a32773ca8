// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the /proc/PID/maps line parser (agent/procmaps.c). The whole input
 * is one line; its path part is what a traced process chooses. Besides memory errors it
 * aborts when an invariant that agent/tls.c relies on is broken:
 *  - an accepted line has start < end and a path inside the line, starting with no space;
 *  - the map_files name has no leading zero (the kernel rejects those) and reads back as
 *    the same two addresses;
 *  - the line the kernel would print for the entry parses back to the same entry.
 * libFuzzer passes data in a heap buffer of exactly size bytes, so ASan sees any over-read.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procmaps.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_map_files_name(const struct procmaps_entry *e)
{
	char name[PROCMAPS_MAP_FILES_NAME_MAX], *end;
	int n = procmaps_map_files_name(e, name, sizeof(name));

	if (n <= 0 || (size_t)n >= sizeof(name) || (name[0] == '0' && name[1] != '-'))
		abort();
	if (strtoull(name, &end, 16) != e->start || *end != '-')
		abort();
	if (end[1] == '0' || strtoull(end + 1, &end, 16) != e->end || *end)
		abort();
}

/* The entry as show_map_vma() prints it, parsed again. */
static void check_round_trip(const struct procmaps_entry *e)
{
	static char line[1 << 17];
	struct procmaps_entry back;
	int n;

	n = snprintf(line, sizeof(line), "%08" PRIx64 "-%08" PRIx64 " %.4s %08" PRIx64
		     " %02x:%02x %" PRIu64 " ",
		     e->start, e->end, e->perms, e->offset, e->dev_major, e->dev_minor, e->inode);
	if (n < 0 || (size_t)n + e->path_len + 32 > sizeof(line))
		return;
	if (e->path) {
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%*s", n < 73 ? 73 - n : 0, "");
		memcpy(line + n, e->path, e->path_len);
		n += (int)e->path_len;
		if (e->deleted)
			n += snprintf(line + n, sizeof(line) - (size_t)n, " (deleted)");
	}
	line[n++] = '\n';
	if (procmaps_parse_line(line, (size_t)n, &back))
		abort();
	if (back.start != e->start || back.end != e->end || back.offset != e->offset ||
	    back.inode != e->inode || back.dev_major != e->dev_major ||
	    back.dev_minor != e->dev_minor || memcmp(back.perms, e->perms, 4) ||
	    back.path_len != e->path_len || back.deleted != e->deleted ||
	    (e->path && memcmp(back.path, e->path, e->path_len)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct procmaps_entry e;

	if (procmaps_parse_line(line, size, &e))
		return 0;
	if (e.start >= e.end)
		abort();
	if (e.path && (e.path < line || e.path + e.path_len > line + size || e.path[0] == ' '))
		abort();
	if (!e.path && (e.path_len || e.deleted))
		abort();
	check_map_files_name(&e);
	check_round_trip(&e);
	return 0;
}
