// SPDX-License-Identifier: BSD-2-Clause
#include "kernel.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "log.h"

/* Where libbpf 1.1 looks for tracepoints, in its order (debugfs first). */
static const char *const tracefs_dirs[] = {"/sys/kernel/debug/tracing", "/sys/kernel/tracing"};

static bool btf_has(const struct btf *btf, const char *name, int kind)
{
	return btf__find_by_name_kind(btf, name, kind) > 0;
}

/* Arguments a BTF tracepoint passes to its programs: btf_trace_<name> is a typedef of a
 * pointer to a prototype whose first parameter is the tracepoint's private data. */
static int tp_btf_nargs(const struct btf *btf, const char *tp)
{
	char name[128];
	const struct btf_type *t;
	int id;

	snprintf(name, sizeof(name), "btf_trace_%s", tp);
	id = btf__find_by_name_kind(btf, name, BTF_KIND_TYPEDEF);
	if (id <= 0)
		return -1;
	t = btf__type_by_id(btf, btf__resolve_type(btf, (__u32)id));
	if (!t || !btf_is_ptr(t))
		return -1;
	t = btf__type_by_id(btf, t->type);
	if (!t || !btf_is_func_proto(t))
		return -1;
	return (int)btf_vlen(t) - 1;
}

/* Does the kernel know this helper? Its enum bpf_func_id lists every helper it has. */
static bool btf_has_helper(const struct btf *btf, const char *helper)
{
	int id = btf__find_by_name_kind(btf, "bpf_func_id", BTF_KIND_ENUM);
	const struct btf_type *t = id > 0 ? btf__type_by_id(btf, (__u32)id) : NULL;
	const struct btf_enum *e;

	if (!t)
		return false;
	e = btf_enum(t);
	for (int i = 0; i < btf_vlen(t); i++, e++)
		if (strcmp(btf__name_by_offset(btf, e->name_off), helper) == 0)
			return true;
	return false;
}

static bool syscall_tracepoints_listed(void)
{
	char path[128];

	for (size_t i = 0; i < sizeof(tracefs_dirs) / sizeof(tracefs_dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/events/syscalls/sys_enter_read", tracefs_dirs[i]);
		if (access(path, F_OK) == 0)
			return true;
	}
	return false;
}

/* The kernel's BTF, NULL when it has none. libbpf's own line about a missing BTF is kept
 * for -v: the loader reports it in one line that says what to do. */
static struct btf *load_vmlinux_btf(void)
{
	libbpf_print_fn_t printer = NULL;
	struct btf *btf;

	if (log_get_level() < LOG_DEBUG)
		printer = libbpf_set_print(NULL);
	btf = btf__load_vmlinux_btf();
	if (printer)
		libbpf_set_print(printer);
	return btf;
}

void kernel_probe(struct kernel_facts *k)
{
	struct utsname u;
	struct btf *btf;

	memset(k, 0, sizeof(*k));
	if (uname(&u) == 0)
		snprintf(k->release, sizeof(k->release), "%s", u.release);
	k->syscall_tps = syscall_tracepoints_listed();
	btf = load_vmlinux_btf();
	if (!btf)
		return;
	k->btf = true;
	k->sock_length_tps = tp_btf_nargs(btf, "sock_send_length") >= 0 &&
			     tp_btf_nargs(btf, "sock_recv_length") >= 0;
	k->exit_group_dead = tp_btf_nargs(btf, "sched_process_exit") >= 2;
	k->inet_msg_funcs = btf_has(btf, "inet_sendmsg", BTF_KIND_FUNC) &&
			    btf_has(btf, "inet_recvmsg", BTF_KIND_FUNC);
	k->inet6_msg_funcs = btf_has(btf, "inet6_sendmsg", BTF_KIND_FUNC) &&
			     btf_has(btf, "inet6_recvmsg", BTF_KIND_FUNC);
	k->inet_sendpage = btf_has(btf, "inet_sendpage", BTF_KIND_FUNC);
	k->task_pt_regs = btf_has_helper(btf, "BPF_FUNC_task_pt_regs");
	k->loop = btf_has_helper(btf, "BPF_FUNC_loop");
	btf__free(btf);
}

bool kernel_mount_tracefs(struct kernel_facts *k)
{
	if (k->syscall_tps)
		return true;
	/* systemd mounts it at boot; minimal hosts and containers may not */
	if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL) != 0)
		return false;
	k->syscall_tps = syscall_tracepoints_listed();
	return true;
}
