/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One line of /proc/PID/maps, parsed as a pure function of (line, len). The file is written
 * by the kernel, but its last field is a path that the traced process chooses: it may hold
 * spaces, look like another line's fields, end with " (deleted)" or be longer than any
 * buffer a reader picked.
 */
#ifndef HOPTRACE_PROCMAPS_H
#define HOPTRACE_PROCMAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct procmaps_entry {
	uint64_t start, end; /* the mapping's addresses: start < end */
	uint64_t offset;     /* file offset of start */
	uint64_t inode;	     /* 0: not a file */
	uint32_t dev_major, dev_minor;
	char perms[4];	  /* "r-xp": [r-][w-][x-][ps] */
	const char *path; /* inside the line, not NUL-terminated; NULL when none */
	size_t path_len;  /* without " (deleted)" */
	bool deleted;	  /* " (deleted)": the path no longer names the mapped file */
};

/* Longest name procmaps_map_files_name writes, with its NUL ("%lx-%lx" of two u64). */
#define PROCMAPS_MAP_FILES_NAME_MAX 34

/* Parse one line (a trailing '\n' is allowed, no other). Returns 0, or -EINVAL when the
 * line does not have the kernel's layout. */
int procmaps_parse_line(const char *line, size_t len, struct procmaps_entry *e);

/* The name of the mapping's entry in /proc/PID/map_files: the kernel names them "%lx-%lx"
 * and rejects leading zeros, which maps prints ("%08lx"). Returns the length written. */
int procmaps_map_files_name(const struct procmaps_entry *e, char *buf, size_t size);

#endif
