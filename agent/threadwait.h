/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What a thread is waiting in right now, from /proc/PID/task/TID/syscall. Many servers that
 * serve one request per thread still use non-blocking sockets, and wait for one socket at a
 * time with poll (APR's timeouts in Apache, Ruby's IO, PHP's streams); an event loop waits
 * for many at once (epoll, select, poll on several). The record alone (O_NONBLOCK) cannot
 * tell the two apart; the thread's wait can.
 */
#ifndef HOPTRACE_THREADWAIT_H
#define HOPTRACE_THREADWAIT_H

#include <stdint.h>

enum thread_wait {
	THREAD_WAIT_UNKNOWN = 0, /* running, gone, or in another call (futex, sleep, a read) */
	THREAD_WAIT_ONE_FD,	 /* poll/ppoll on exactly one descriptor */
	THREAD_WAIT_MANY,	 /* epoll_wait/epoll_pwait(2), select/pselect, poll on several */
};

/* The wait of thread tid of process tgid; proc_root NULL is /proc. */
enum thread_wait thread_wait_sample(const char *proc_root, uint32_t tgid, uint32_t tid);
/* The same, from the text of a syscall file (exposed for tests). */
enum thread_wait thread_wait_parse(const char *text);

#endif
