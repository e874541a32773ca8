/* SPDX-License-Identifier: BSD-2-Clause */
/* hoptrace-collect's request path without sockets, for tests/fuzz/fuzz_collect.c. */
#ifndef HOPTRACE_COLLECT_H
#define HOPTRACE_COLLECT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Set up for collect_feed(): spans go to sink, limits are small (1 MiB bodies, 16 MiB
 * unpacked) so that each input runs fast, and only errors are logged. 0 or -EINVAL.
 */
int collect_feed_setup(FILE *sink);

/*
 * Feed data to one connection as recvs of at most piece bytes (piece >= 1) and take each
 * answer at once: HTTP framing, gunzip, validation, unpack and output, as the receiver does
 * for a socket. Returns the HTTP status of the last answer, 0 if none.
 */
int collect_feed(const uint8_t *data, size_t len, size_t piece);

#endif
