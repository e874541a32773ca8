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

/* Longest decimal of a 64-bit integer: 18446744073709551615, or -9223372036854775808. */
#define TEXT_U64_DIGITS_MAX 20

/* v in decimal at out (TEXT_U64_DIGITS_MAX bytes free), no NUL; returns the end. Two digits
 * a step: span timestamps and attributes are formatted for every span. */
char *text_put_u64(char *out, uint64_t v);

#endif
