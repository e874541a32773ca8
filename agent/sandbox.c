// SPDX-License-Identifier: BSD-2-Clause
#include "sandbox.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>

#include "log.h"

/* Refused with EPERM once the agent runs. Names this libseccomp does not know, or that the
 * architecture lacks, are skipped. */
static const char *const denied[] = {
    /* running other programs (nothing is exec'd after start-up) */
    "execve",
    "execveat",
    "uselib",
    /* other processes' memory, files and fds (the /proc files the agent reads are opened
     * with open/openat2, which stay) */
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "process_madvise",
    "kcmp",
    /* file systems and the file system view: tracefs is mounted at start-up if need be */
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "swapon",
    "swapoff",
    "quotactl",
    "quotactl_fd",
    "acct",
    "name_to_handle_at",
    "open_by_handle_at",
    "lookup_dcookie",
    /* namespaces */
    "unshare",
    "setns",
    /* the kernel itself */
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "iopl",
    "ioperm",
    "syslog",
    "_sysctl",
    "nfsservctl",
    /* clocks and names of the host */
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "sethostname",
    "setdomainname",
    "vhangup",
    /* keyrings */
    "keyctl",
    "add_key",
    "request_key",
    /* kernel attack surface the agent never uses */
    "personality",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
};

/* clone flags that make a new namespace. */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS,  CLONE_NEWUSER, CLONE_NEWPID,	  CLONE_NEWNET,
    CLONE_NEWUTS, CLONE_NEWIPC,	 CLONE_NEWCGROUP,
};

static int deny_by_name(scmp_filter_ctx ctx)
{
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		int err;

		if (nr == __NR_SCMP_ERROR)
			continue;
		err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
		/* -EDOM etc.: a pseudo-syscall of an architecture that lacks it */
		if (err && err != -EDOM && err != -EINVAL)
			return err;
	}
	return 0;
}

#ifdef __SANITIZE_ADDRESS__
/* The ASan build (the one the tests run) ends with LeakSanitizer's check, which stops the
 * agent's own threads with ptrace and reads their registers: PTRACE_PEEKUSER (3),
 * GETREGS (12), GETFPREGS (14), ATTACH (16), DETACH (17) and GETREGSET (0x4204) stay.
 * Every other request (all that change or read another process's memory) is refused: a
 * rule may compare an argument once, so the refused values are given as ranges, the
 * middle ones by value (requests between 64 and 0x4200 do not exist). */
static const struct ptrace_range {
	scmp_datum_t lo, hi;
} ptrace_denied[] = {
    {4, 11}, {13, 13}, {15, 15}, {18, 63}, {0x4200, 0x4203},
};

static int deny_ptrace(scmp_filter_ctx ctx)
{
	int err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ptrace), 1,
				   SCMP_A0(SCMP_CMP_LT, PTRACE_PEEKUSER));

	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ptrace), 1,
				       SCMP_A0(SCMP_CMP_GT, PTRACE_GETREGSET));
	for (size_t i = 0; !err && i < sizeof(ptrace_denied) / sizeof(ptrace_denied[0]); i++)
		for (scmp_datum_t r = ptrace_denied[i].lo; !err && r <= ptrace_denied[i].hi; r++)
			err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ptrace), 1,
					       SCMP_A0(SCMP_CMP_EQ, r));
	return err;
}
#else
/* Any request: the agent never traces a process (its /proc reads need CAP_SYS_PTRACE, not
 * ptrace). */
static int deny_ptrace(scmp_filter_ctx ctx)
{
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ptrace), 0);
}
#endif

/* Threads stay possible (libcurl's resolver, the writers), namespaces do not. clone3 takes
 * its flags in memory that a filter cannot read: it reports ENOSYS, and glibc falls back
 * to clone, whose flags are checked. */
static int deny_clone_namespaces(scmp_filter_ctx ctx)
{
	int err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);

	for (size_t i = 0; !err && i < sizeof(clone_ns_flags) / sizeof(clone_ns_flags[0]); i++)
		err = seccomp_rule_add(
		    ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
		    SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
	return err;
}

/* Typing into a terminal's input (TIOCSTI) or its console (TIOCLINUX): the agent only
 * writes to its terminal. */
static int deny_terminal_input(scmp_filter_ctx ctx)
{
	int err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				   SCMP_A1(SCMP_CMP_EQ, TIOCSTI));

	return err
		   ?: seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				       SCMP_A1(SCMP_CMP_EQ, TIOCLINUX));
}

int sandbox__install(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int err;

	if (!ctx)
		return -ENOMEM;
	/* every thread at once: the writers, exporters and the ELF worker run already */
	err = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (!err)
		err = deny_by_name(ctx);
	if (!err)
		err = deny_ptrace(ctx);
	if (!err)
		err = deny_clone_namespaces(ctx);
	if (!err)
		err = deny_terminal_input(ctx);
	if (!err)
		err = seccomp_load(ctx);
	seccomp_release(ctx);
	/* libseccomp >= 2.5 returns -errno; a positive value is a thread that TSYNC could not
	 * move to the filter */
	return err > 0 ? -EAGAIN : err;
}
