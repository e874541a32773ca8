// SPDX-License-Identifier: BSD-2-Clause
#include "procmaps.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "text.h"

#define DELETED_SUFFIX " (deleted)"
#define DELETED_LEN (sizeof(DELETED_SUFFIX) - 1)

/* A cursor over the line: every reader checks the end. */
struct cursor {
	const char *p, *end;
};

static int digit_value(char ch, unsigned base)
{
	if (base == 16)
		return hex_digit_value((unsigned char)ch);
	return ch >= '0' && ch <= '9' ? ch - '0' : -1;
}

/* 1 to max_digits digits in base 16 or 10, not followed by another digit, no overflow. */
static int take_number(struct cursor *c, unsigned base, unsigned max_digits, uint64_t *out)
{
	uint64_t v = 0;
	unsigned n = 0;
	int d;

	while (c->p < c->end && (d = digit_value(*c->p, base)) >= 0) {
		if (n == max_digits || v > (UINT64_MAX - (uint64_t)d) / base)
			return -EINVAL;
		v = v * base + (uint64_t)d;
		c->p++;
		n++;
	}
	if (!n)
		return -EINVAL;
	*out = v;
	return 0;
}

static int take_char(struct cursor *c, char want)
{
	if (c->p >= c->end || *c->p != want)
		return -EINVAL;
	c->p++;
	return 0;
}

static int take_perms(struct cursor *c, char perms[4])
{
	static const char allowed[4][2] = {{'r', '-'}, {'w', '-'}, {'x', '-'}, {'p', 's'}};

	if (c->end - c->p < 4)
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		if (c->p[i] != allowed[i][0] && c->p[i] != allowed[i][1])
			return -EINVAL;
		perms[i] = c->p[i];
	}
	c->p += 4;
	return 0;
}

/* "start-end perms offset major:minor inode" */
static int take_fields(struct cursor *c, struct procmaps_entry *e)
{
	uint64_t major, minor;

	if (take_number(c, 16, 16, &e->start) || take_char(c, '-') ||
	    take_number(c, 16, 16, &e->end) || take_char(c, ' ') || take_perms(c, e->perms) ||
	    take_char(c, ' ') || take_number(c, 16, 16, &e->offset) || take_char(c, ' ') ||
	    take_number(c, 16, 8, &major) || take_char(c, ':') || take_number(c, 16, 8, &minor) ||
	    take_char(c, ' ') || take_number(c, 10, 20, &e->inode))
		return -EINVAL;
	if (e->start >= e->end || major > UINT32_MAX || minor > UINT32_MAX)
		return -EINVAL;
	e->dev_major = (uint32_t)major;
	e->dev_minor = (uint32_t)minor;
	return 0;
}

int procmaps_parse_line(const char *line, size_t len, struct procmaps_entry *e)
{
	struct cursor c = {line, line + len};
	size_t n;

	memset(e, 0, sizeof(*e));
	if (len && line[len - 1] == '\n')
		c.end--;
	if (memchr(line, '\n', (size_t)(c.end - line)) || memchr(line, '\0', len) ||
	    take_fields(&c, e))
		return -EINVAL;
	/* the kernel pads with spaces before the path; no path: nothing, or spaces */
	while (c.p < c.end && *c.p == ' ')
		c.p++;
	if (c.p == c.end)
		return 0;
	n = (size_t)(c.end - c.p);
	/* the suffix the kernel appends to an unlinked file's path; a file really named so is
	 * taken as deleted too, which only costs it the fallback by path */
	if (n > DELETED_LEN && memcmp(c.end - DELETED_LEN, DELETED_SUFFIX, DELETED_LEN) == 0) {
		e->deleted = true;
		n -= DELETED_LEN;
	}
	e->path = c.p;
	e->path_len = n;
	return 0;
}

int procmaps_map_files_name(const struct procmaps_entry *e, char *buf, size_t size)
{
	return snprintf(buf, size, "%" PRIx64 "-%" PRIx64, e->start, e->end);
}
