/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Byte-level text helpers shared by the parsers, sinks and exporter. Pure functions: no
 * I/O, no globals. Header values and names come from untrusted traffic and processes.
 */
#ifndef HOPTRACE_TEXT_H
#define HOPTRACE_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Value of a hexadecimal digit (either case), or -1. */
int hex_digit_value(int c);

/*
 * Length of the well-formed UTF-8 sequence starting at p (Unicode 15, table 3-7: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0 if p does not start one.
 * avail: bytes readable at p (at least 1).
 */
size_t utf8_sequence_len(const unsigned char *p, size_t avail);

/* A duration with its unit: "250ms", "1.5s", "800us", "90ns", "2m", "1h", "7d" (a decimal
 * number, at most 9 fraction digits, then ns, us, ms, s, m, h or d). 0 or -EINVAL (no
 * unit, junk, or past 2^63 ns). */
int text_parse_duration_ns(const char *s, uint64_t *out);

/* Longest decimal of a 64-bit integer: 18446744073709551615, or -9223372036854775808. */
#define TEXT_U64_DIGITS_MAX 20

/* v in decimal at out (TEXT_U64_DIGITS_MAX bytes free), no NUL; returns the end. Two digits
 * a step: span timestamps and attributes are formatted for every span. */
char *text_put_u64(char *out, uint64_t v);

/* Flags of text_escape_terminal. */
#define TEXT_ESC_ASCII 1u   /* every byte outside printable ASCII escaped: one column a byte */
#define TEXT_ESC_KEEP_LF 2u /* '\n' kept: multi-line text (libbpf's and the verifier's logs) */

/* Longest escape of one input byte ("\xNN"): out needs 4 bytes an input byte, plus 1. */
#define TEXT_ESC_MAX_PER_BYTE 4

/*
 * in[0..len) made safe for a terminal or a line-oriented log, into out (cap bytes, always
 * NUL-terminated, cut only between whole escapes): control bytes (C0 with CR, LF, TAB and
 * ESC; DEL), the C1 controls U+0080..U+009F (CSI starts escape sequences on some terminals)
 * and bytes that are not well-formed UTF-8 become "\xNN". With TEXT_ESC_ASCII every byte
 * outside printable ASCII does. The one function every text from processes, traffic,
 * configuration or the environment goes through on its way to a terminal or log. Returns
 * the length written.
 */
size_t text_escape_terminal(char *out, size_t cap, const char *in, size_t len, unsigned flags);

/*
 * url without what may be a secret, for logs and messages: no userinfo (user:token@), no
 * query, no fragment; into out (cap bytes, NUL-terminated, cut to fit). "(none)" for NULL.
 */
void text_url_for_log(char *out, size_t cap, const char *url);

#endif
