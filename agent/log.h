/* SPDX-License-Identifier: BSD-2-Clause */
/* One logger for the agent and its tools: levels, printf checking, stderr; text or JSON. */
#ifndef HOPTRACE_LOG_H
#define HOPTRACE_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN = 1,
	LOG_INFO = 2,
	LOG_DEBUG = 3,
};

/* How a line looks: "hoptrace HH:MM:SS.mmm level: msg" (text, the default), or one JSON
 * object a line (--log-format json): {"ts","level","msg", key fields...}. */
enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON = 1,
};

/* Messages above this level are dropped. Default LOG_INFO. */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
void log_set_format(enum log_format fmt);
enum log_format log_get_format(void);
/* "error", "warn", "info", "debug" (and "warning") -> *lvl; "text", "json" -> *fmt.
 * 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *lvl);
int log_parse_format(const char *s, enum log_format *fmt);
/* The level's name ("error" ... "debug"). */
const char *log_level_name(enum log_level lvl);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A key field of a JSON line: a string (str != NULL) or an unsigned number (str == NULL).
 * Text lines leave them out: the message says the same for a human reader. */
struct log_field {
	const char *key;
	const char *str;
	uint64_t num;
};

#define LOG_STR(k, v) ((struct log_field){.key = (k), .str = (v)}) /* v: not NULL */
#define LOG_NUM(k, v) ((struct log_field){.key = (k), .num = (uint64_t)(v)})

/* log_msg with key fields f[0..n). */
void log_fields(enum log_level lvl, const struct log_field *f, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Longest JSON escape of one input byte: a control byte is "\\xNN" (5), U+2028 "\u2028"
 * (6 for 3 bytes). */
#define LOG_JSON_ESC_MAX_PER_BYTE 6

/*
 * in[0..len) as the inside of a JSON string into out (cap bytes, always NUL-terminated, cut
 * only between whole escapes); returns the length written. The result is ASCII or
 * well-formed UTF-8 whatever the input, and so is the string a JSON reader decodes from it:
 * '"' and '\' are escaped; each byte of a C0 control, DEL, a C1 control (U+0080..U+009F)
 * or of what is not well-formed UTF-8 becomes the text "\xNN" (written "\\xNN"), as text
 * logs show it (text_escape_terminal), so that `jq -r .msg` sends no escape sequence to a
 * terminal; U+2028/U+2029 become \u2028/\u2029 (line breaks to JavaScript readers).
 */
size_t log_json_escape(char *out, size_t cap, const char *in, size_t len);

/* The bytes log_format_json needs at most for a message of msg_len bytes and fields f. */
size_t log_json_size(size_t msg_len, const struct log_field *f, size_t n);

/*
 * One JSON log line (no newline) into out (cap bytes, at least log_json_size): ts (an
 * RFC 3339 UTC time with milliseconds, from unix_ns), level, msg, then the fields. A field
 * whose key is ts, level or msg is left out (keys are unique). Returns the length.
 */
size_t log_format_json(char *out, size_t cap, uint64_t unix_ns, enum log_level lvl, const char *msg,
		       size_t msg_len, const struct log_field *f, size_t n);

/*
 * One line that carries the counters of text, a summary as stats_print writes it (lines
 * "  name  value  description"; other lines are skipped), as numeric fields after
 * head[0..nhead). For the exit summary in JSON format: one object, not a table.
 */
void log_counters(enum log_level lvl, const char *msg, const struct log_field *head, size_t nhead,
		  const char *text);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
