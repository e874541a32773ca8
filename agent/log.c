// SPDX-License-Identifier: BSD-2-Clause
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text.h"

static enum log_level current_level = LOG_INFO;

void log_set_level(enum log_level lvl)
{
	current_level = lvl;
}

enum log_level log_get_level(void)
{
	return current_level;
}

/* The message after the prefix in line (of size cap, prefix bytes used), in a heap copy
 * when it does not fit: the line pointer, NULL when out of memory (the caller truncates). */
static char *format_rest(char *line, size_t cap, size_t prefix, size_t *len, const char *fmt,
			 va_list ap)
{
	va_list again;
	char *heap;
	int n;

	va_copy(again, ap);
	n = vsnprintf(line + prefix, cap - prefix, fmt, ap);
	if (n < 0)
		n = 0;
	*len = prefix + (size_t)n;
	if (*len < cap - 1) { /* room for the newline too */
		va_end(again);
		return line;
	}
	heap = malloc(*len + 2);
	if (heap) {
		memcpy(heap, line, prefix);
		vsnprintf(heap + prefix, (size_t)n + 1, fmt, again);
	}
	va_end(again);
	return heap;
}

/* Write prefix and the escaped message msg[0..len) as one line (see log_msg). */
static void write_line(const char *prefix, size_t plen, const char *msg, size_t len)
{
	char line[4096], *buf = line;
	size_t need = plen + TEXT_ESC_MAX_PER_BYTE * len + 2, n;

	if (need > sizeof(line)) {
		buf = malloc(need);
		if (!buf) { /* no memory for a long line: its start, still one line */
			buf = line;
			need = sizeof(line);
		}
	}
	memcpy(buf, prefix, plen);
	n = plen + text_escape_terminal(buf + plen, need - plen - 1, msg, len, 0);
	buf[n] = '\n';
	fwrite(buf, 1, n + 1, stderr);
	if (buf != line)
		free(buf);
}

/*
 * One fwrite per line, on unbuffered stderr one write(2): a reader of the log (a test
 * harness polling a file) never sees a line cut between the prefix and the message, and
 * lines of the export workers and the loop thread never interleave. Messages carry paths,
 * names and values from processes and the environment: control bytes and escape sequences
 * in them are shown escaped, never sent to the terminal, and a line stays one line.
 */
void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	char stamp[32], line[1024], *out;
	struct timespec ts;
	size_t prefix, len;
	struct tm tm;
	va_list ap;

	if (lvl > current_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	prefix = (size_t)snprintf(line, sizeof(line), "hoptrace %s.%03ld %s: ", stamp,
				  ts.tv_nsec / 1000000, names[lvl]);
	va_start(ap, fmt);
	out = format_rest(line, sizeof(line), prefix, &len, fmt, ap);
	va_end(ap);
	if (!out) { /* no memory for a long line: its start, still one line */
		out = line;
		len = sizeof(line) - 2;
	}
	write_line(out, prefix, out + prefix, len - prefix);
	if (out != line)
		free(out);
}
