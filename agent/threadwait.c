// SPDX-License-Identifier: BSD-2-Clause
#include "threadwait.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

static enum thread_wait classify(long nr, unsigned long nfds)
{
#ifdef SYS_poll
	if (nr == SYS_poll)
		return nfds == 1 ? THREAD_WAIT_ONE_FD : THREAD_WAIT_MANY;
#endif
	if (nr == SYS_ppoll)
		return nfds == 1 ? THREAD_WAIT_ONE_FD : THREAD_WAIT_MANY;
#ifdef SYS_epoll_wait
	if (nr == SYS_epoll_wait)
		return THREAD_WAIT_MANY;
#endif
#ifdef SYS_select
	if (nr == SYS_select)
		return THREAD_WAIT_MANY;
#endif
#ifdef SYS_epoll_pwait2
	if (nr == SYS_epoll_pwait2)
		return THREAD_WAIT_MANY;
#endif
	if (nr == SYS_epoll_pwait || nr == SYS_pselect6)
		return THREAD_WAIT_MANY;
	return THREAD_WAIT_UNKNOWN;
}

enum thread_wait thread_wait_parse(const char *text)
{
	unsigned long fds, nfds;
	long nr;

	/* "NR ARG1 ... ARG6 SP PC" in a syscall, "running" or "-1 SP PC" otherwise */
	if (sscanf(text, "%ld %lx %lx", &nr, &fds, &nfds) != 3 || nr < 0)
		return THREAD_WAIT_UNKNOWN;
	return classify(nr, nfds);
}

enum thread_wait thread_wait_sample(const char *proc_root, uint32_t tgid, uint32_t tid)
{
	char path[128], buf[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%u/task/%u/syscall", proc_root ? proc_root : "/proc", tgid,
		 tid);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return THREAD_WAIT_UNKNOWN;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return THREAD_WAIT_UNKNOWN;
	buf[n] = '\0';
	return thread_wait_parse(buf);
}
