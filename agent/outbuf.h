/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Output that never blocks the event loop. stdout and -O may be a pipe or a terminal that
 * nobody reads (`hoptrace | sleep 1000`, a terminal stopped with Ctrl-S, a FIFO): a write(2)
 * there blocks, and in the loop thread it would stop the ring drain, the OTLP export and the
 * handling of SIGTERM. An outbuf is a stdio stream whose bytes go to a bounded in-memory
 * buffer; a thread of its own writes them to the file descriptor and is the only one that
 * can block. When the buffer is full, whole lines are dropped and counted (output_drops):
 * a reader never sees part of a line.
 */
#ifndef HOPTRACE_OUTBUF_H
#define HOPTRACE_OUTBUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define OUTBUF_MIN_BYTES (4u * 1024)
#define OUTBUF_MAX_BYTES (1u << 30)
#define OUTBUF_DEFAULT_BYTES (4u * 1024 * 1024)

struct outbuf;

/* A buffer of cap bytes in front of fd (not closed by the outbuf unless own_fd), named in
 * messages by what ("the standard output", a path). NULL with errno set on failure. */
struct outbuf *outbuf__new(int fd, int own_fd, size_t cap, const char *what);
/* The stream to write to: fully buffered; a fflush() hands its bytes to the buffer. */
FILE *outbuf__stream(struct outbuf *ob);
/* Wait up to deadline_ms for every complete line to be written. What is left then is
 * dropped and counted, and so is everything written to the stream afterwards: the fd
 * does not take output, and exit must not wait on it. 0, or -ETIMEDOUT. */
int outbuf__drain(struct outbuf *ob, int deadline_ms);
/* Lines dropped so far. */
uint64_t outbuf__drops(struct outbuf *ob);
/* Print the counters for the exit summary, in its format. */
void outbuf__print_stats(struct outbuf *ob, FILE *out);
/* Drain (deadline_ms), stop the writer and free. 0; -EIO when a write failed (logged, with
 * the error); -ETIMEDOUT when output was left unwritten (counted). */
int outbuf__close(struct outbuf *ob, int deadline_ms);

#endif
