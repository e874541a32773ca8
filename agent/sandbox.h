/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A seccomp filter for the agent after start-up. The agent keeps capabilities that a
 * bug in its parsers could turn against the host (CAP_SYS_ADMIN, CAP_SYS_PTRACE): the
 * filter takes away the system calls that would make such a bug an escalation and that
 * the agent never makes once everything is attached: running programs, reading or
 * writing other processes' memory, mounts and namespaces, kernel modules and kexec,
 * keyrings, and the like. It is a deny-list (EPERM), not an allow-list: libcurl, libbpf
 * and glibc make calls that differ between versions, and attaching uprobes to processes
 * that start later needs bpf() and perf_event_open() all along.
 */
#ifndef HOPTRACE_SANDBOX_H
#define HOPTRACE_SANDBOX_H

/* Install the filter in every thread of the process (those started later inherit it),
 * and set no_new_privs. 0 or -errno (-ENOSYS: the kernel has no seccomp filters). */
int sandbox__install(void);

#endif
