/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The syscall capture backend follows a read from its entry to its exit. A thread already
 * blocked in a socket read when the agent starts (a threaded server on an idle keep-alive
 * connection) made its entry unseen: its next request would be missed. At start-up the
 * agent reads where such threads wait (/proc/PID/task/TID/syscall) and leaves the exit
 * program what the entry would have (bpf/syscalls.bpf.c: resolve_seed).
 */
#ifndef HOPTRACE_SYSSEED_H
#define HOPTRACE_SYSSEED_H

#include <stdbool.h>
#include <stdint.h>

/* Seed every thread (but the agent's) blocked in a read of a socket into the sys_ios map.
 * Returns how many were seeded. */
unsigned sysseed_blocked_reads(int map_fd, uint32_t self_tgid);

#endif
