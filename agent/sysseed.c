// SPDX-License-Identifier: BSD-2-Clause
#include "sysseed.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>

#include "hoptrace/events.h"

struct blocked_call {
	long nr;
	unsigned long args[4];
	unsigned long sp, pc; /* tell two calls with the same arguments apart */
};

static bool is_blocking_read(long nr)
{
	/* the reads a server thread waits in (the exit program decodes these) */
	return nr == SYS_read || nr == SYS_readv || nr == SYS_recvfrom || nr == SYS_recvmsg;
}

/* The syscall a thread is blocked in, from /proc/PID/task/TID/syscall ("NR ARG1..ARG6 SP
 * PC"; "running" or "-1 SP PC" otherwise). */
static bool read_blocked_call(const char *pid, const char *tid, struct blocked_call *c)
{
	char path[600], buf[256]; /* pid and tid: /proc entry names, up to 255 bytes each */
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%s/task/%s/syscall", pid, tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return sscanf(buf, "%ld %lx %lx %lx %lx %*x %*x %lx %lx", &c->nr, &c->args[0], &c->args[1],
		      &c->args[2], &c->args[3], &c->sp, &c->pc) == 7;
}

static bool fd_is_socket(const char *pid, unsigned long fd)
{
	char path[300], link[32]; /* pid: a /proc entry name, up to 255 bytes */
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%s/fd/%lu", pid, fd);
	n = readlink(path, link, sizeof(link) - 1);
	return n > 7 && strncmp(link, "socket:", 7) == 0;
}

static bool same_call(const struct blocked_call *a, const struct blocked_call *b)
{
	return a->nr == b->nr && memcmp(a->args, b->args, sizeof(a->args)) == 0 && a->sp == b->sp &&
	       a->pc == b->pc;
}

/* Seed one thread's blocked read. The thread may return at any moment: the entry is put
 * only where its syscall's entry left none, and taken back unless the thread is still in
 * the very same call (else another syscall's exit could take it for its own). */
static bool seed_thread(int map_fd, const char *pid, const char *tid)
{
	struct blocked_call c, again;
	struct ht_sys_io io = {0}, cur;
	uint64_t key = strtoull(pid, NULL, 10) << 32 | strtoull(tid, NULL, 10);

	if (!read_blocked_call(pid, tid, &c) || !is_blocking_read(c.nr) || c.args[0] > 0x7fffffff ||
	    !fd_is_socket(pid, c.args[0]))
		return false;
	io.kind = HT_SYS_IO_SEED;
	io.nr = (uint16_t)c.nr;
	io.fd = (int32_t)c.args[0];
	io.buf = c.args[1];
	io.iov = c.args[2];
	io.flags = (uint32_t)c.args[3];
	io.dir = HT_DIR_INGRESS;
	if (bpf_map_update_elem(map_fd, &key, &io, BPF_NOEXIST))
		return false;
	if (read_blocked_call(pid, tid, &again) && same_call(&c, &again))
		return true;
	if (bpf_map_lookup_elem(map_fd, &key, &cur) == 0 && cur.kind == HT_SYS_IO_SEED)
		bpf_map_delete_elem(map_fd, &key);
	return false;
}

static unsigned seed_process(int map_fd, const char *pid)
{
	char path[300]; /* pid: a /proc entry name, up to 255 bytes */
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%s/task", pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (de->d_name[0] >= '1' && de->d_name[0] <= '9')
			n += seed_thread(map_fd, pid, de->d_name);
	closedir(d);
	return n;
}

unsigned sysseed_blocked_reads(int map_fd, uint32_t self_tgid)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir("/proc");

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9' ||
		    strtoul(de->d_name, NULL, 10) == self_tgid)
			continue;
		n += seed_process(map_fd, de->d_name);
	}
	closedir(d);
	return n;
}
