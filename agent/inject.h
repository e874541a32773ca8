/* SPDX-License-Identifier: BSD-2-Clause */
/* --repair=inject: traceparent injection by sock_ops + sk_msg (bpf/inject.bpf.c). */
#ifndef HOPTRACE_INJECT_H
#define HOPTRACE_INJECT_H

#include <stdbool.h>

struct hoptrace_bpf;
struct injector;

/* Before load: load the injection programs and create their maps only when enabled; they
 * are never attached by the skeleton. */
void inject__configure(struct hoptrace_bpf *skel, bool enabled);
/* After load: attach the programs to the cgroup v2 root and their sockhash, then run the
 * start-up self-test (FIONREAD, epoll wake-up, bytes added, latency). Returns NULL, with the
 * reason logged and everything detached, when injection cannot be used: tracing goes on. */
struct injector *inject__start(struct hoptrace_bpf *skel);
/* Detach everything and release every socket from the sockhash. NULL is fine. */
void inject__destroy(struct injector *inj);

#endif
