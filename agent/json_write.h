/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The JSON string writer of the span lines (sink_json.c), for every other writer of span lines
 * (the converters of agent/tsource_*.c), so that a span reads the same whichever way it came:
 * valid UTF-8 whatever the input held, '"', '\' and control characters (C0, DEL, the C1
 * controls) escaped, each byte that is not well-formed UTF-8 written as \ufffd.
 */
#ifndef HOPTRACE_JSON_WRITE_H
#define HOPTRACE_JSON_WRITE_H

#include <stddef.h>

/* Bytes json_write_str may write for len bytes of text, quotes included. */
size_t json_write_room(size_t len);

/* str[0..len) as a JSON string at o, which has json_write_room(len) bytes free. Returns the
 * end of what was written (no NUL). */
char *json_write_str(char *o, const char *str, size_t len);

#endif
