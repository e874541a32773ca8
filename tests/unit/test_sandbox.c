// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for sandbox: the agent's own filter (sandbox__install), installed in a forked
 * child, refuses what it lists in every thread, old and new, and lets the rest through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sandbox.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Result of a denied call: -1 with EPERM, as the filter returns. */
static bool refused(long r)
{
	return r == -1 && errno == EPERM;
}

static bool exec_refused(void)
{
	/* an exec that went through ends the child as false does: status 1, no "ok" */
	char *const argv[] = {"false", NULL}, *const envp[] = {NULL};

	return refused(execve("/bin/false", argv, envp)) &&
	       refused(syscall(SYS_execveat, AT_FDCWD, "/bin/false", argv, envp, 0));
}

/* A thread that exists before the filter, as the agent's writers and worker do: it waits
 * for the go, then tries to exec. */
struct old_thread {
	int go[2];
	bool refused;
};

static void *old_thread_main(void *arg)
{
	struct old_thread *t = arg;
	char c;

	if (read(t->go[0], &c, 1) == 1)
		t->refused = exec_refused();
	return NULL;
}

static void *new_thread_main(void *arg)
{
	*(bool *)arg = exec_refused();
	return NULL;
}

static int seccomp_mode(void)
{
	char line[128];
	int mode = -1;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp: %d", &mode) == 1)
			break;
	if (f)
		fclose(f);
	return mode;
}

/* In the child: the first check that failed, or NULL. */
static const char *child_checks(void)
{
	struct old_thread old = {.refused = false};
	bool new_refused = false;
	pthread_t th;
	int err;

	if (pipe(old.go) || pthread_create(&th, NULL, old_thread_main, &old))
		return "cannot start the thread";
	err = sandbox__install();
	if (err)
		return strerror(-err);
	if (write(old.go[1], "g", 1) != 1 || pthread_join(th, NULL))
		return "the thread did not run";
	if (!old.refused)
		return "execve allowed in a thread started before the filter";
	if (!exec_refused())
		return "execve allowed";
	/* threads still start (clone3 reports ENOSYS: glibc falls back to clone) */
	if (pthread_create(&th, NULL, new_thread_main, &new_refused) || pthread_join(th, NULL))
		return "no thread can start under the filter";
	if (!new_refused)
		return "execve allowed in a thread started after the filter";
	/* (the ASan build lets LeakSanitizer attach to its own threads: sandbox.c) */
	if (!refused(ptrace(PTRACE_POKEDATA, getppid(), 0, 0)) ||
	    !refused(ptrace(PTRACE_SEIZE, getppid(), 0, 0)))
		return "ptrace allowed";
	if (!refused(unshare(CLONE_NEWUSER)) || !refused(unshare(CLONE_NEWNS)))
		return "unshare allowed";
	if (!refused(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)))
		return "clone of a new user namespace allowed";
	if (!refused(mount("none", "/tmp", "tmpfs", 0, NULL)))
		return "mount allowed";
	if (!refused(syscall(SYS_finit_module, -1, "", 0)))
		return "finit_module allowed";
	if (!refused(syscall(SYS_process_vm_readv, getppid(), NULL, 0, NULL, 0, 0)))
		return "process_vm_readv allowed";
	if (seccomp_mode() != 2)
		return "/proc/self/status does not show Seccomp: 2";
	/* what the agent does all along */
	if (getpid() <= 0 || write(STDERR_FILENO, "", 0) != 0)
		return "an allowed call failed";
	return NULL;
}

static void test_filter_refuses_listed_calls_in_every_thread(void **state)
{
	char why[256] = "";
	int res[2], status;
	ssize_t n;
	pid_t child;

	(void)state;
	assert_int_equal(pipe(res), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		const char *err;

		close(res[0]);
		alarm(10);
		err = child_checks();
		if (!err)
			err = "ok";
		if (write(res[1], err, strlen(err)) < 0)
			_exit(2);
		_exit(0);
	}
	close(res[1]);
	n = read(res[0], why, sizeof(why) - 1);
	why[n > 0 ? n : 0] = '\0';
	close(res[0]);
	assert_int_equal(waitpid(child, &status, 0), child);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || strcmp(why, "ok") != 0)
		fail_msg("child: %s (status %d)", why[0] ? why : "no report (exec'd?)", status);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_filter_refuses_listed_calls_in_every_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
