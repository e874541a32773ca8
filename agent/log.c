// SPDX-License-Identifier: BSD-2-Clause
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text.h"

static enum log_level current_level = LOG_INFO;
static enum log_format current_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level lvl)
{
	current_level = lvl;
}

enum log_level log_get_level(void)
{
	return current_level;
}

void log_set_format(enum log_format fmt)
{
	current_format = fmt;
}

enum log_format log_get_format(void)
{
	return current_format;
}

const char *log_level_name(enum log_level lvl)
{
	return (unsigned)lvl <= LOG_DEBUG ? level_names[lvl] : "debug";
}

int log_parse_level(const char *s, enum log_level *lvl)
{
	for (int i = LOG_ERROR; i <= LOG_DEBUG; i++) {
		if (s && strcmp(s, level_names[i]) == 0) {
			*lvl = (enum log_level)i;
			return 0;
		}
	}
	if (s && strcmp(s, "warning") == 0) {
		*lvl = LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

int log_parse_format(const char *s, enum log_format *fmt)
{
	if (s && strcmp(s, "text") == 0)
		*fmt = LOG_FORMAT_TEXT;
	else if (s && strcmp(s, "json") == 0)
		*fmt = LOG_FORMAT_JSON;
	else
		return -EINVAL;
	return 0;
}

/* ---- JSON lines ---------------------------------------------------------------------- */

static char *put_u_escape(char *out, unsigned cp)
{
	static const char digits[] = "0123456789abcdef";

	*out++ = '\\';
	*out++ = 'u';
	for (int shift = 12; shift >= 0; shift -= 4)
		*out++ = digits[(cp >> shift) & 0xf];
	return out;
}

/* The escape of the character (or invalid byte) at in[0..avail) into esc (at most 6 bytes:
 * "\u2028"); *used: input bytes it stands for. Returns its length. */
static size_t escape_one(char *esc, const unsigned char *in, size_t avail, size_t *used)
{
	static const char digits[] = "0123456789abcdef";
	size_t seq = utf8_sequence_len(in, avail);
	unsigned c = in[0];

	*used = seq ? seq : 1;
	/* not UTF-8, a C0 control or DEL, a C1 control (CSI and friends): each byte as the text
	 * "\xNN", its backslash escaped; a reader that decodes the string gets no control */
	if (!seq || (seq == 1 && (c < 0x20 || c == 0x7f)) ||
	    (seq == 2 && c == 0xc2 && in[1] < 0xa0)) {
		*used = 1;
		memcpy(esc, "\\\\x", 3);
		esc[3] = digits[c >> 4];
		esc[4] = digits[c & 0xf];
		return 5;
	}
	if (seq == 1) {
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			return 2;
		}
		esc[0] = (char)c;
		return 1;
	}
	if (seq == 3 && c == 0xe2 && in[1] == 0x80 && (in[2] == 0xa8 || in[2] == 0xa9))
		return (size_t)(put_u_escape(esc, in[2] == 0xa8 ? 0x2028 : 0x2029) - esc);
	memcpy(esc, in, seq);
	return seq;
}

size_t log_json_escape(char *out, size_t cap, const char *in, size_t len)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0, i = 0;

	if (!cap)
		return 0;
	while (i < len) {
		char esc[8];
		size_t used, n = escape_one(esc, p + i, len - i, &used);

		if (o + n >= cap)
			break;
		memcpy(out + o, esc, n);
		o += n;
		i += used;
	}
	out[o] = '\0';
	return o;
}

size_t log_json_size(size_t msg_len, const struct log_field *f, size_t n)
{
	/* {"ts":"2026-12-05T23:58:04.123Z","level":"debug","msg":""} is 59 bytes */
	size_t need = 64 + LOG_JSON_ESC_MAX_PER_BYTE * msg_len + 1;

	for (size_t i = 0; i < n; i++) {
		need += 6 + LOG_JSON_ESC_MAX_PER_BYTE * strlen(f[i].key);
		need += f[i].str ? 2 + LOG_JSON_ESC_MAX_PER_BYTE * strlen(f[i].str)
				 : TEXT_U64_DIGITS_MAX;
	}
	return need;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" of unix_ns into out (32 bytes). */
static void format_rfc3339(char *out, uint64_t unix_ns)
{
	time_t sec = (time_t)(unix_ns / 1000000000ull);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(unix_ns / 1000000ull % 1000));
}

/* Append s to out at *o (room checked by the caller through log_json_size). */
static void put(char *out, size_t *o, const char *s)
{
	size_t n = strlen(s);

	memcpy(out + *o, s, n);
	*o += n;
}

static void put_string(char *out, size_t cap, size_t *o, const char *s, size_t len)
{
	out[(*o)++] = '"';
	*o += log_json_escape(out + *o, cap - *o - 1, s, len);
	out[(*o)++] = '"';
}

static bool reserved_key(const char *k)
{
	return !strcmp(k, "ts") || !strcmp(k, "level") || !strcmp(k, "msg");
}

size_t log_format_json(char *out, size_t cap, uint64_t unix_ns, enum log_level lvl, const char *msg,
		       size_t msg_len, const struct log_field *f, size_t n)
{
	char ts[32];
	size_t o = 0;

	if (cap < log_json_size(msg_len, f, n)) {
		if (cap)
			out[0] = '\0';
		return 0;
	}
	format_rfc3339(ts, unix_ns);
	put(out, &o, "{\"ts\":\"");
	put(out, &o, ts);
	put(out, &o, "\",\"level\":\"");
	put(out, &o, log_level_name(lvl));
	put(out, &o, "\",\"msg\":");
	put_string(out, cap, &o, msg, msg_len);
	for (size_t i = 0; i < n; i++) {
		if (reserved_key(f[i].key))
			continue;
		out[o++] = ',';
		put_string(out, cap, &o, f[i].key, strlen(f[i].key));
		out[o++] = ':';
		if (f[i].str)
			put_string(out, cap, &o, f[i].str, strlen(f[i].str));
		else
			o = (size_t)(text_put_u64(out + o, f[i].num) - out);
	}
	out[o++] = '}';
	out[o] = '\0';
	return o;
}

/* ---- writing ------------------------------------------------------------------------- */

static uint64_t unix_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The formatted message in buf (cap bytes) or, when longer, in a heap copy: the pointer
 * (the caller frees it when it is not buf), NULL when out of memory (buf holds the start). */
static char *format_msg(char *buf, size_t cap, size_t *len, const char *fmt, va_list ap)
{
	va_list again;
	char *heap;
	int n;

	va_copy(again, ap);
	n = vsnprintf(buf, cap, fmt, ap);
	if (n < 0)
		n = 0;
	*len = (size_t)n;
	if (*len < cap) {
		va_end(again);
		return buf;
	}
	heap = malloc(*len + 1);
	if (heap)
		vsnprintf(heap, *len + 1, fmt, again);
	else
		*len = cap - 1;
	va_end(again);
	return heap;
}

/* Bytes a text line needs: prefix, escaped message, newline. */
static size_t text_size(size_t msg_len)
{
	return 64 + TEXT_ESC_MAX_PER_BYTE * msg_len + 2;
}

/* "hoptrace HH:MM:SS.mmm level: msg" into out (text_size bytes). The key fields are for JSON
 * readers: the message already says what they hold. */
static size_t format_text(char *out, size_t cap, uint64_t unix_ns, enum log_level lvl,
			  const char *msg, size_t len)
{
	time_t sec = (time_t)(unix_ns / 1000000000ull);
	char stamp[16];
	struct tm tm;
	size_t o;

	gmtime_r(&sec, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	o = (size_t)snprintf(out, cap, "hoptrace %s.%03u %s: ", stamp,
			     (unsigned)(unix_ns / 1000000ull % 1000), log_level_name(lvl));
	return o + text_escape_terminal(out + o, cap - o, msg, len, 0);
}

/*
 * One fwrite per line, on unbuffered stderr one write(2): a reader of the log (a test
 * harness polling a file) never sees a line cut in two, and lines of the export workers and
 * the loop thread never interleave. Messages carry paths, names and values from processes
 * and the environment: control bytes and escape sequences in them are shown escaped, never
 * sent to the terminal, and a line stays one line (and, in JSON, valid JSON).
 */
static void emit(enum log_level lvl, const char *msg, size_t len, const struct log_field *f,
		 size_t n)
{
	bool json = current_format == LOG_FORMAT_JSON;
	size_t need = json ? log_json_size(len, f, n) + 1 : text_size(len);
	char line[4096], *buf = line;
	uint64_t now = unix_now_ns();
	size_t o;

	if (need > sizeof(line))
		buf = malloc(need);
	if (!buf) { /* no memory for a long line: its start, without the fields, still one */
		buf = line;
		n = 0;
		if (len > (sizeof(line) - 128) / LOG_JSON_ESC_MAX_PER_BYTE)
			len = (sizeof(line) - 128) / LOG_JSON_ESC_MAX_PER_BYTE;
		need = sizeof(line);
	}
	if (json)
		o = log_format_json(buf, need, now, lvl, msg, len, f, n);
	else
		o = format_text(buf, need, now, lvl, msg, len);
	buf[o] = '\n';
	fwrite(buf, 1, o + 1, stderr);
	if (buf != line)
		free(buf);
}

static void vlog(enum log_level lvl, const struct log_field *f, size_t n, const char *fmt,
		 va_list ap)
{
	char small[1024], *msg;
	size_t len;

	msg = format_msg(small, sizeof(small), &len, fmt, ap);
	emit(lvl, msg ? msg : small, len, f, n);
	if (msg && msg != small)
		free(msg);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if (lvl > current_level)
		return;
	va_start(ap, fmt);
	vlog(lvl, NULL, 0, fmt, ap);
	va_end(ap);
}

void log_fields(enum log_level lvl, const struct log_field *f, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (lvl > current_level)
		return;
	va_start(ap, fmt);
	vlog(lvl, f, n, fmt, ap);
	va_end(ap);
}

static bool key_seen(const struct log_field *f, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(f[i].key, key) == 0)
			return true;
	return false;
}

/* The counter of a summary line "  name   value  description", into f; false for any other
 * line. name is cut at the first blank in line (the line is the caller's copy). */
static bool counter_line(char *line, struct log_field *f)
{
	char *name = line, *end, *num;

	while (*name == ' ')
		name++;
	if (name == line || !*name)
		return false;
	end = strchr(name, ' ');
	if (!end)
		return false;
	*end = '\0';
	num = end + 1;
	while (*num == ' ')
		num++;
	if (*num < '0' || *num > '9')
		return false;
	*f = (struct log_field){.key = name, .num = strtoull(num, NULL, 10)};
	return true;
}

void log_counters(enum log_level lvl, const char *msg, const struct log_field *head, size_t nhead,
		  const char *text)
{
	size_t max = nhead, n = 0;
	struct log_field *f;
	char *copy, *save = NULL;

	if (lvl > current_level)
		return;
	for (const char *p = text; *p; p++)
		max += *p == '\n';
	copy = strdup(text);
	f = calloc(max + 1, sizeof(*f));
	if (!copy || !f) {
		free(copy);
		free(f);
		log_fields(lvl, head, nhead, "%s (counters not shown: out of memory)", msg);
		return;
	}
	memcpy(f, head, nhead * sizeof(*f));
	n = nhead;
	for (char *line = strtok_r(copy, "\n", &save); line && n <= max;
	     line = strtok_r(NULL, "\n", &save))
		if (counter_line(line, &f[n]) && !key_seen(f, n, f[n].key))
			n++;
	log_fields(lvl, f, n, "%s", msg);
	free(f);
	free(copy);
}
