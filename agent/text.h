/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Byte-level text helpers shared by the parsers, sinks and exporter. Pure functions: no
 * I/O, no globals. Header values and names come from untrusted traffic and processes.
 */
#ifndef HOPTRACE_TEXT_H
#define HOPTRACE_TEXT_H

#include <stddef.h>

/* Value of a hexadecimal digit (either case), or -1. */
int hex_digit_value(int c);

/*
 * Length of the well-formed UTF-8 sequence starting at p (Unicode 15, table 3-7: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0 if p does not start one.
 * avail: bytes readable at p (at least 1).
 */
size_t utf8_sequence_len(const unsigned char *p, size_t avail);

#endif
