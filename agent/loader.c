// SPDX-License-Identifier: BSD-2-Clause
#include "loader.h"
#include "sampler.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "hoptrace.skel.h"
#include "inject.h"
#include "log.h"
#include "sysseed.h"
#include "text.h"
#include "tls.h"

#define LOADER_MAX_CPUS 4096

static bool is_power_of_two(uint32_t v)
{
	return v && !(v & (v - 1));
}

static int check_config(const struct loader_config *cfg)
{
	if (!is_power_of_two(cfg->capture_bytes) || cfg->capture_bytes < 64 ||
	    cfg->capture_bytes > HT_MAX_CAPTURE) {
		log_error("capture size %u is invalid: use a power of two between 64 and %u",
			  cfg->capture_bytes, HT_MAX_CAPTURE);
		return -EINVAL;
	}
	if (!is_power_of_two(cfg->ringbuf_bytes) || cfg->ringbuf_bytes < 4096) {
		log_error("ring buffer size %u is invalid: use a power of two of at least 4096",
			  cfg->ringbuf_bytes);
		return -EINVAL;
	}
	return 0;
}

/* Tests only (not documented): a smaller tls_states, so that a test floods it with a few
 * thousand sessions instead of 32k. Out of range or unset: the built-in size. */
static uint32_t tls_sessions_room(void)
{
	const char *v = getenv("HOPTRACE_TEST_TLS_SESSIONS");
	char *end;
	unsigned long n;

	if (!v || !*v)
		return HT_MAX_TLS_SESSIONS;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < 64 || n > HT_MAX_TLS_SESSIONS)
		return HT_MAX_TLS_SESSIONS;
	return (uint32_t)n;
}

static void set_rodata(struct hoptrace_bpf *skel, const struct loader_config *cfg,
		       const struct load_plan *plan)
{
	skel->rodata->self_tgid = (uint32_t)getpid();
	/* one process may hold half the session table: the rest stays for the others */
	skel->rodata->tls_session_share = tls_sessions_room() / 2;
	skel->rodata->capture_bytes = cfg->capture_bytes;
	skel->rodata->wakeup_bytes = cfg->wakeup_bytes;
	skel->rodata->filter_by_tgid = cfg->npids > 0;
	skel->rodata->filter_by_comm = cfg->ncomms > 0;
	skel->rodata->filter_by_port = cfg->nports > 0;
	skel->rodata->tls_enabled = plan->tls != TLS_OFF;
	skel->rodata->inject_enabled = plan->inject;
	skel->rodata->log_files_n = cfg->capture_logs ? cfg->nlog_keys : 0;
	if (cfg->sampler) {
		skel->rodata->sampler_parent_based = cfg->sampler->parent_based;
		skel->rodata->sampler_root = cfg->sampler->root;
		skel->rodata->sampler_threshold = cfg->sampler->threshold;
	}
}

/* ppid of a process from /proc/PID/stat ("pid (comm) state ppid ..."; comm may hold
 * spaces and parentheses, so parse from the last ')'). 0 when unreadable. */
static uint32_t read_ppid(const char *pid)
{
	char path[300], buf[512]; /* pid: a /proc entry name, up to 255 bytes */
	unsigned ppid = 0;
	const char *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		sscanf(p + 1, " %*c %u", &ppid);
	fclose(f);
	return ppid;
}

/* --pid follows children: the BPF fork hook covers those born from now on, this covers the
 * ones that already exist (the workers of a pre-fork server whose master was given). */
static int select_existing_descendants(struct hoptrace_bpf *skel)
{
	int map = bpf_map__fd(skel->maps.selected_tgids);
	bool added = true;
	uint8_t one = 1;

	/* a child may be listed before its parent: repeat until nothing new, bounded by depth */
	for (int pass = 0; added && pass < 16; pass++) {
		struct dirent *de;
		DIR *d = opendir("/proc");

		if (!d)
			return -errno;
		added = false;
		while ((de = readdir(d))) {
			uint32_t pid, ppid;

			if (de->d_name[0] < '1' || de->d_name[0] > '9')
				continue;
			pid = (uint32_t)strtoul(de->d_name, NULL, 10);
			ppid = read_ppid(de->d_name);
			if (!ppid || bpf_map_lookup_elem(map, &pid, &one) == 0 ||
			    bpf_map_lookup_elem(map, &ppid, &one) != 0)
				continue;
			one = 1;
			if (bpf_map_update_elem(map, &pid, &one, BPF_NOEXIST) == 0)
				added = true;
		}
		closedir(d);
	}
	return 0;
}

static int fill_selection(struct hoptrace_bpf *skel, const struct loader_config *cfg)
{
	uint8_t one = 1;
	int err;

	for (unsigned i = 0; i < cfg->npids; i++) {
		err = bpf_map__update_elem(skel->maps.selected_tgids, &cfg->pids[i],
					   sizeof(uint32_t), &one, 1, BPF_ANY);
		if (err)
			return err;
	}
	if (cfg->npids) {
		err = select_existing_descendants(skel);
		if (err)
			return err;
	}
	for (unsigned i = 0; i < cfg->ncomms; i++) {
		char key[HT_COMM_LEN] = {0};

		strncpy(key, cfg->comms[i], HT_COMM_LEN - 1);
		err = bpf_map__update_elem(skel->maps.selected_comms, key, sizeof(key), &one, 1,
					   BPF_ANY);
		if (err)
			return err;
	}
	for (unsigned i = 0; i < cfg->nports; i++) {
		uint32_t port = cfg->ports[i];

		err = bpf_map__update_elem(skel->maps.selected_ports, &port, sizeof(port), &one, 1,
					   BPF_ANY);
		if (err)
			return err;
	}
	return 0;
}

/* ---- what failed to load, from libbpf's messages ------------------------------------ */

/* libbpf reports which program or map failed only in its messages ("libbpf: prog 'x': ..."),
 * so the failure is taken from there: the loader then knows which function to change. */
static struct {
	char object[80];	     /* "prog 'ht_exit'" or "map 'events'" of the first failure */
	char reason[LOADER_WHY_LEN]; /* its message, and the verifier's complaint if any */
	char held[16384];	     /* warnings kept back: printed only if loading fails */
	size_t held_len;
} failure;

static void failure_reset(void)
{
	failure.object[0] = failure.reason[0] = '\0';
	failure.held_len = 0;
}

/* The verifier's complaint: the last line of its log before "processed N insns". */
static void verifier_complaint(const char *log, char *out, size_t size)
{
	const char *end = strstr(log, "\nprocessed ");
	const char *start;

	if (!end)
		end = strstr(log, "-- END PROG LOAD LOG --");
	if (!end)
		return;
	while (end > log && end[-1] == '\n')
		end--;
	for (start = end; start > log && start[-1] != '\n'; start--)
		;
	snprintf(out, size, "%.*s", (int)(end - start), start);
}

static void note_failure(const char *msg)
{
	const char *p = msg + strlen("libbpf: ");
	const char *q;
	size_t n;

	if (strncmp(msg, "libbpf: ", 8) != 0 ||
	    (strncmp(p, "prog '", 6) != 0 && strncmp(p, "map '", 5) != 0))
		return;
	q = strstr(p, "': ");
	if (!q)
		return;
	n = (size_t)(q + 1 - p);
	if (!failure.object[0]) {
		snprintf(failure.object, sizeof(failure.object), "%.*s", (int)n, p);
		snprintf(failure.reason, sizeof(failure.reason), "%s", q + 3);
		failure.reason[strcspn(failure.reason, "\n")] = '\0';
	} else if (strncmp(failure.object, p, n) == 0 && strstr(q, "-- BEGIN PROG LOAD LOG --")) {
		char line[160] = "";
		size_t len = strlen(failure.reason);

		verifier_complaint(q, line, sizeof(line));
		if (line[0])
			snprintf(failure.reason + len, sizeof(failure.reason) - len, " (%s)", line);
	}
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char small[1024], *msg = small, *shown;
	va_list copy;
	int n;

	if (level != LIBBPF_WARN && log_get_level() < LOG_DEBUG)
		return 0;
	/* verifier logs run to megabytes: whole, or the complaint at their end is lost */
	va_copy(copy, ap);
	n = vsnprintf(small, sizeof(small), fmt, copy);
	va_end(copy);
	if (n < 0)
		return n;
	if ((size_t)n >= sizeof(small)) {
		msg = malloc((size_t)n + 1);
		if (!msg)
			return -ENOMEM;
		va_copy(copy, ap);
		vsnprintf(msg, (size_t)n + 1, fmt, copy);
		va_end(copy);
	}
	if (level == LIBBPF_WARN)
		note_failure(msg);
	/* libbpf names the files it attaches to: paths a traced process chose */
	shown = malloc(TEXT_ESC_MAX_PER_BYTE * (size_t)n + 1);
	if (shown)
		text_escape_terminal(shown, TEXT_ESC_MAX_PER_BYTE * (size_t)n + 1, msg, (size_t)n,
				     TEXT_ESC_KEEP_LF);
	if (msg != small)
		free(msg);
	if (!shown)
		return -ENOMEM;
	if (log_get_level() >= LOG_DEBUG && log_get_format() == LOG_FORMAT_JSON) {
		log_debug("libbpf: %s", shown); /* one JSON line, its newlines escaped */
	} else if (log_get_level() >= LOG_DEBUG) {
		/* multi-line messages pass through, lines kept */
		fprintf(stderr, "hoptrace: %s", shown);
	} else {
		/* a failure the loader may recover from (another backend) is not the user's
		 * problem: keep it until the outcome is known */
		size_t room = sizeof(failure.held) - failure.held_len;

		if (room > 1)
			snprintf(failure.held + failure.held_len, room, "hoptrace: %s", shown);
		failure.held_len = strnlen(failure.held, sizeof(failure.held));
	}
	free(shown);
	return n;
}

/* The online CPUs, from a list like "0-3,6,8-9"; each gets a ring. Returns how many were
 * written to cpus (at most max), or -errno. */
static int read_online_cpus(uint32_t *cpus, int max)
{
	char buf[4096], *p;
	FILE *f = fopen("/sys/devices/system/cpu/online", "re");
	int n = 0;

	if (!f)
		return -errno;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!p)
		return -EIO;
	while (*p && *p != '\n') {
		char *end;
		unsigned long lo = strtoul(p, &end, 10), hi = lo;

		if (end == p)
			return -EINVAL;
		if (*end == '-')
			hi = strtoul(end + 1, &end, 10);
		for (unsigned long c = lo; c <= hi && n < max; c++)
			cpus[n++] = (uint32_t)c;
		p = *end == ',' ? end + 1 : end;
	}
	return n;
}

static uint32_t round_down_pow2(uint32_t v)
{
	while (v & (v - 1))
		v &= v - 1;
	return v;
}

/* Each ring gets an equal share of the budget, but not less than 512 KiB (tens of ms of
 * a busy CPU's records: the consumer drains every 5 ms), unless the budget itself is less. */
static uint32_t ring_size_per_cpu(uint32_t total, unsigned ncpus)
{
	uint32_t floor = total < (512u << 10) ? total : (512u << 10);
	uint32_t share = round_down_pow2(total / (ncpus ? ncpus : 1));

	if (share < 4096)
		share = 4096;
	return share > floor ? share : floor;
}

/* A ring buffer for each online CPU. The first also serves as the template the events
 * array is created with (the kernel checks each ring added against it). */
static int create_rings(struct loader *ld, unsigned ncpus)
{
	ld->ring_fds = calloc(ncpus, sizeof(*ld->ring_fds));
	if (!ld->ring_fds)
		return -ENOMEM;
	for (unsigned i = 0; i < ncpus; i++) {
		int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "ht_events_cpu", 0, 0, ld->ring_bytes,
					NULL);

		if (fd < 0)
			return -errno;
		ld->ring_fds[ld->nrings++] = fd;
	}
	return bpf_map__set_inner_map_fd(ld->skel->maps.events, ld->ring_fds[0]);
}

/* Each ring in the events array at its CPU's index. */
static int install_rings(struct loader *ld, const uint32_t *cpus)
{
	int outer_fd = bpf_map__fd(ld->skel->maps.events);

	for (unsigned i = 0; i < ld->nrings; i++)
		if (bpf_map_update_elem(outer_fd, &cpus[i], &ld->ring_fds[i], BPF_ANY))
			return -errno;
	return 0;
}

static int size_maps(struct loader *ld, const struct loader_config *cfg, unsigned nonline)
{
	int ncpus = libbpf_num_possible_cpus();
	int err;

	if (ncpus <= 0)
		return ncpus ? ncpus : -EINVAL;
	ld->ring_bytes = ring_size_per_cpu(cfg->ringbuf_bytes, nonline);
	err = create_rings(ld, nonline);
	if (err) {
		log_error("cannot create the ring buffers (%u x %u bytes): %s%s", nonline,
			  ld->ring_bytes, strerror(-err),
			  err == -EINVAL ? " (BPF ring buffers need Linux 5.8+)"
			  : (err == -ENOMEM || err == -EPERM) && geteuid() == 0
			      ? " (too little memory, or a locked-memory limit: ulimit -l)"
			      : "");
		return err;
	}
	err = bpf_map__set_max_entries(ld->skel->maps.events, (uint32_t)ncpus);
	if (!err)
		err = bpf_map__set_max_entries(ld->skel->maps.capture_heap, (uint32_t)ncpus);
	if (!err)
		err = bpf_map__set_max_entries(ld->skel->maps.tls_states, tls_sessions_room());
	if (err)
		log_error("cannot size the BPF maps: %s", strerror(-err));
	return err;
}

/* ---- choosing the programs --------------------------------------------------------- */

static const char *const capture_names[CAPTURE__COUNT] = {
    [CAPTURE_AUTO] = "auto",
    [CAPTURE_TP_BTF] = "tp_btf",
    [CAPTURE_FEXIT] = "fexit",
    [CAPTURE_SYSCALLS] = "syscalls",
};

/* The programs of each capture backend (bpf/sockio.bpf.c, bpf/syscalls.bpf.c). */
#define CAPTURE_MAX_PROGS 6
static const char *const capture_progs[CAPTURE__COUNT][CAPTURE_MAX_PROGS] = {
    [CAPTURE_TP_BTF] = {"ht_sock_send", "ht_sock_recv", "ht_sock_state"},
    [CAPTURE_FEXIT] = {"ht_inet_sendmsg", "ht_inet_recvmsg", "ht_inet6_sendmsg", "ht_inet6_recvmsg",
		       "ht_inet_sendpage", "ht_sock_state"},
    [CAPTURE_SYSCALLS] = {"ht_sys_enter3", "ht_sys_enter4", "ht_sys_exit", "ht_sock_close"},
};

/* Syscalls whose tracepoints the syscall backend uses, and how many arguments the entry
 * program may read (no further than the record: the kernel checks); the first eight are
 * required. */
static const struct traced_syscall {
	const char *name;
	int nargs; /* 3: ht_sys_enter3, else ht_sys_enter4 */
} traced_syscalls[] = {
    {"read", 3},     {"write", 3},    {"readv", 3},	 {"writev", 3},
    {"sendto", 6},   {"recvfrom", 6}, {"sendmsg", 3},	 {"recvmsg", 3},
    {"sendmmsg", 4}, {"recvmmsg", 5}, {"sendfile64", 4}, {"splice", 6},
};
#define REQUIRED_SYSCALLS 8
#define NSYSCALLS (sizeof(traced_syscalls) / sizeof(traced_syscalls[0]))

static const char *const inject_progs[] = {"ht_inject_sockops", "ht_inject_msg", "ht_inject_skb"};

const char *loader__capture_name(enum capture_backend b)
{
	return b < CAPTURE__COUNT ? capture_names[b] : "?";
}

int loader__parse_capture(const char *s, enum capture_backend *out)
{
	for (int b = 0; b < CAPTURE__COUNT; b++) {
		if (strcmp(s, capture_names[b]) == 0) {
			*out = (enum capture_backend)b;
			return 0;
		}
	}
	return -EINVAL;
}

/* Why the kernel cannot run a backend, from its BTF and tracefs; NULL: it should. */
static const char *capture_unsupported(const struct kernel_facts *k, enum capture_backend b)
{
	switch (b) {
	case CAPTURE_TP_BTF:
		if (!k->sock_length_tps)
			return "no sock_send_length/sock_recv_length tracepoints (Linux 6.3+)";
		if (!k->task_pt_regs)
			return "no bpf_task_pt_regs helper (Linux 5.15+)";
		return NULL;
	case CAPTURE_FEXIT:
		if (!k->inet_msg_funcs)
			return "no inet_sendmsg/inet_recvmsg functions in the kernel's BTF";
		if (!k->task_pt_regs)
			return "no bpf_task_pt_regs helper (Linux 5.15+)";
		return NULL;
	case CAPTURE_SYSCALLS:
		if (!k->syscall_tps)
			return "tracefs does not list the syscall tracepoints "
			       "(CONFIG_FTRACE_SYSCALLS; "
			       "mount tracefs at /sys/kernel/tracing, or grant CAP_SYS_ADMIN "
			       "for hoptrace to mount it)";
		return NULL;
	default:
		return "unknown backend";
	}
}

/* The next capture backend to try, or CAPTURE_AUTO when none is left. */
static enum capture_backend next_capture(struct load_plan *plan, struct kernel_facts *k,
					 enum capture_backend forced)
{
	for (int b = CAPTURE_TP_BTF; b < CAPTURE__COUNT; b++) {
		const char *why;

		if (plan->capture_why[b][0] || (forced != CAPTURE_AUTO && b != (int)forced))
			continue;
		if (b == CAPTURE_SYSCALLS && !k->syscall_tps && kernel_mount_tracefs(k))
			log_info("mounted tracefs at /sys/kernel/tracing (syscall tracepoints)");
		/* tried whatever the facts say, the load will tell; but without tracefs the
		 * syscall tracepoints cannot even be named: say that, not libbpf's ENOENTs */
		if (forced != CAPTURE_AUTO && (b != CAPTURE_SYSCALLS || k->syscall_tps))
			return forced;
		why = capture_unsupported(k, (enum capture_backend)b);
		if (!why)
			return (enum capture_backend)b;
		snprintf(plan->capture_why[b], LOADER_WHY_LEN, "%s", why);
	}
	return CAPTURE_AUTO;
}

/* Injection reports its context from the capture programs built with HT_INJECT_CTX. */
static void plan_inject(struct load_plan *plan, const struct kernel_facts *k)
{
	if (!plan->inject)
		return;
	if (plan->capture == CAPTURE_SYSCALLS) {
		plan->inject = false;
		snprintf(plan->inject_why, LOADER_WHY_LEN,
			 "needs the tp_btf or fexit capture backend (this kernel runs syscalls)");
	} else if (!k->loop) {
		plan->inject = false;
		snprintf(plan->inject_why, LOADER_WHY_LEN, "no bpf_loop helper (Linux 5.17+)");
	}
	if (!plan->inject)
		log_warn("header injection is off: %s", plan->inject_why);
	if (plan->tls == TLS_WITH_INJECT_CTX && !plan->inject)
		plan->tls = TLS_PLAIN;
}

static void plan_init(struct load_plan *plan, struct kernel_facts *k,
		      const struct loader_config *cfg)
{
	memset(plan, 0, sizeof(*plan));
	plan->capture = next_capture(plan, k, cfg->capture);
	plan->exit_group_dead = k->exit_group_dead;
	plan->inject = cfg->inject;
	plan->tls = cfg->no_tls ? TLS_OFF : cfg->inject ? TLS_WITH_INJECT_CTX : TLS_PLAIN;
	if (cfg->no_tls)
		snprintf(plan->tls_why, LOADER_WHY_LEN, "--no-tls");
	plan_inject(plan, k);
}

static void set_autoload(struct hoptrace_bpf *skel, const char *name, bool on)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(skel->obj, name);

	if (prog)
		bpf_program__set_autoload(prog, on);
}

static bool capture_prog_wanted(const struct kernel_facts *k, const char *name)
{
	if (strncmp(name, "ht_inet6_", 9) == 0)
		return k->inet6_msg_funcs;
	if (strcmp(name, "ht_inet_sendpage") == 0)
		return k->inet_sendpage;
	return true;
}

static void configure_capture(struct loader *ld)
{
	enum capture_backend chosen = ld->plan.capture;
	struct hoptrace_bpf *skel = ld->skel;

	for (int b = CAPTURE_TP_BTF; b < CAPTURE__COUNT; b++)
		for (int i = 0; i < CAPTURE_MAX_PROGS && capture_progs[b][i]; i++)
			set_autoload(skel, capture_progs[b][i], false);
	for (int i = 0; i < CAPTURE_MAX_PROGS && capture_progs[chosen][i]; i++)
		set_autoload(skel, capture_progs[chosen][i],
			     capture_prog_wanted(&ld->kernel, capture_progs[chosen][i]));
	/* attached by hand, once per syscall */
	bpf_program__set_autoattach(skel->progs.ht_sys_enter3, false);
	bpf_program__set_autoattach(skel->progs.ht_sys_enter4, false);
	bpf_program__set_autoattach(skel->progs.ht_sys_exit, false);
	/* each backend's per-socket state: socket storage, or a hash by address */
	bpf_map__set_autocreate(skel->maps.sock_states, chosen != CAPTURE_SYSCALLS);
	bpf_map__set_autocreate(skel->maps.sock_states_by_addr, chosen == CAPTURE_SYSCALLS);
	bpf_map__set_autocreate(skel->maps.sys_ios, chosen == CAPTURE_SYSCALLS);
}

static void configure(struct loader *ld, const struct loader_config *cfg)
{
	struct hoptrace_bpf *skel = ld->skel;

	set_rodata(skel, cfg, &ld->plan);
	configure_capture(ld);
	bpf_program__set_autoload(skel->progs.ht_exit, ld->plan.exit_group_dead);
	bpf_program__set_autoload(skel->progs.ht_exit_task_only, !ld->plan.exit_group_dead);
	tls__configure(skel, ld->plan.tls);
	inject__configure(skel, ld->plan.inject);
	/* --capture-logs: attached by hand, to syscall tracepoints; nothing exists without it */
	bpf_program__set_autoload(skel->progs.ht_log_write, cfg->capture_logs);
	bpf_program__set_autoload(skel->progs.ht_log_writev, cfg->capture_logs);
	bpf_program__set_autoattach(skel->progs.ht_log_write, false);
	bpf_program__set_autoattach(skel->progs.ht_log_writev, false);
	bpf_map__set_autocreate(skel->maps.log_procs, cfg->capture_logs);
	bpf_map__set_autocreate(skel->maps.log_files, cfg->capture_logs);
	bpf_map__set_autocreate(skel->maps.log_heap, cfg->capture_logs);
}

/* "program: what libbpf said", cut to fit */
static void failure_why(char why[LOADER_WHY_LEN], const char *prog)
{
	snprintf(why, LOADER_WHY_LEN, "%.48s: %.200s", prog, failure.reason);
}

/* A program or map failed to load or attach (failure.object): change what it belongs to,
 * saying why. Returns false when nothing is left to try. */
static bool plan_fallback(struct loader *ld, const struct loader_config *cfg)
{
	struct load_plan *plan = &ld->plan;
	const char *obj = failure.object;
	char name[80] = "";

	if (sscanf(obj, "prog '%79[^']'", name) != 1)
		return false;
	for (int i = 0; i < CAPTURE_MAX_PROGS && capture_progs[plan->capture][i]; i++) {
		if (strcmp(name, capture_progs[plan->capture][i]) != 0)
			continue;
		failure_why(plan->capture_why[plan->capture], name);
		log_info("capture backend %s does not work on this kernel (%s)",
			 capture_names[plan->capture], plan->capture_why[plan->capture]);
		plan->capture = next_capture(plan, &ld->kernel, cfg->capture);
		plan_inject(plan, &ld->kernel);
		return plan->capture != CAPTURE_AUTO;
	}
	if (strcmp(name, "ht_exit") == 0 || strcmp(name, "ht_exit_task_only") == 0) {
		if (plan->exit_group_dead != ld->kernel.exit_group_dead)
			return false; /* both tried */
		plan->exit_group_dead = !plan->exit_group_dead;
		return true;
	}
	if (strncmp(name, "ht_ssl_", 7) == 0 && plan->tls != TLS_OFF) {
		failure_why(plan->tls_why, name);
		plan->tls = plan->tls == TLS_WITH_INJECT_CTX ? TLS_PLAIN : TLS_OFF;
		log_warn("HTTPS %s: %s",
			 plan->tls == TLS_OFF ? "is not traced"
					      : "servers set no "
						"context for --repair=inject",
			 plan->tls_why);
		return true;
	}
	for (size_t i = 0; i < sizeof(inject_progs) / sizeof(inject_progs[0]); i++) {
		if (strcmp(name, inject_progs[i]) == 0 && plan->inject) {
			failure_why(plan->inject_why, name);
			plan->inject = false;
			if (plan->tls == TLS_WITH_INJECT_CTX)
				plan->tls = TLS_PLAIN;
			log_warn("header injection is off: %s", plan->inject_why);
			return true;
		}
	}
	return false;
}

/* The syscall backend's programs, on each syscall's entry and exit tracepoints. */
static int attach_syscalls(struct loader *ld)
{
	ld->sys_links = calloc(2 * NSYSCALLS, sizeof(*ld->sys_links));
	if (!ld->sys_links)
		return -ENOMEM;
	for (size_t i = 0; i < NSYSCALLS; i++) {
		const struct traced_syscall *sc = &traced_syscalls[i];
		struct bpf_program *progs[2] = {sc->nargs == 3 ? ld->skel->progs.ht_sys_enter3
							       : ld->skel->progs.ht_sys_enter4,
						ld->skel->progs.ht_sys_exit};

		for (int j = 0; j < 2; j++) {
			char tp[64];
			struct bpf_link *link;

			snprintf(tp, sizeof(tp), "sys_%s_%s", j ? "exit" : "enter", sc->name);
			link = bpf_program__attach_tracepoint(progs[j], "syscalls", tp);
			if (!link) {
				int err = -errno;

				if (i < REQUIRED_SYSCALLS) {
					snprintf(failure.object, sizeof(failure.object),
						 "prog '%s'", bpf_program__name(progs[j]));
					snprintf(failure.reason, sizeof(failure.reason),
						 "cannot attach to syscalls/%s: %s", tp,
						 strerror(-err));
					return err;
				}
				log_info("syscall tracepoint %s is missing: %s is not captured", tp,
					 sc->name);
				continue;
			}
			ld->sys_links[ld->nsys_links++] = link;
		}
	}
	return 0;
}

/* --capture-logs: the log programs on the write syscalls' entries, and the named files'
 * identities. Log capture is an extra: when it cannot attach, tracing goes on without it,
 * with one line saying why. */
static void attach_logs(struct loader *ld, const struct loader_config *cfg)
{
	static const char *const tps[] = {"sys_enter_write", "sys_enter_pwrite64",
					  "sys_enter_writev", "sys_enter_pwritev"};
	int files = bpf_map__fd(ld->skel->maps.log_files);

	if (!ld->kernel.syscall_tps && kernel_mount_tracefs(&ld->kernel))
		log_info("mounted tracefs at /sys/kernel/tracing (syscall tracepoints)");
	for (uint32_t i = 0; i < cfg->nlog_keys; i++)
		if (bpf_map_update_elem(files, &cfg->log_keys[i], &cfg->log_key_file[i], BPF_ANY))
			log_warn("--capture-log-file: cannot fill the BPF map: %s",
				 strerror(errno));
	for (size_t i = 0; i < sizeof(tps) / sizeof(tps[0]); i++) {
		struct bpf_program *prog =
		    i < 2 ? ld->skel->progs.ht_log_write : ld->skel->progs.ht_log_writev;

		ld->log_links[i] = bpf_program__attach_tracepoint(prog, "syscalls", tps[i]);
		if (ld->log_links[i])
			continue;
		/* write and writev are what log libraries use; the p- forms are extras */
		if (i == 0 || i == 2) {
			log_warn("--capture-logs is off: cannot attach to syscalls/%s: %s", tps[i],
				 strerror(errno));
			for (size_t j = 0; j < i; j++) {
				bpf_link__destroy(ld->log_links[j]);
				ld->log_links[j] = NULL;
			}
			return;
		}
		log_info("syscall tracepoint %s is missing: its log writes are not captured",
			 tps[i]);
	}
	ld->logs_on = true;
}

int loader__log_procs_fd(const struct loader *ld)
{
	return ld->skel && ld->logs_on ? bpf_map__fd(ld->skel->maps.log_procs) : -1;
}

/* One attempt with the current plan: open, configure, load, attach. On failure everything
 * is released and failure.object says what failed (when libbpf said). */
static int try_start(struct loader *ld, const struct loader_config *cfg, const uint32_t *cpus,
		     unsigned nonline, const char **stage)
{
	int err;

	*stage = "open the BPF object";
	ld->skel = hoptrace_bpf__open();
	if (!ld->skel)
		return -errno;
	configure(ld, cfg);
	*stage = "create the BPF maps";
	err = size_maps(ld, cfg, nonline);
	if (err)
		return err;
	*stage = "load the BPF programs";
	err = hoptrace_bpf__load(ld->skel);
	if (err)
		return err;
	*stage = "fill the BPF maps";
	err = install_rings(ld, cpus);
	if (!err)
		err = fill_selection(ld->skel, cfg);
	if (err)
		return err;
	/* before the capture programs: the self-test's own traffic is not traced; but after
	 * the program that marks the sockets of selected tasks as they connect */
	if (ld->plan.inject) {
		ld->skel->links.ht_sock_state = bpf_program__attach(ld->skel->progs.ht_sock_state);
		if (!ld->skel->links.ht_sock_state)
			return -errno;
		ld->inject = inject__start(ld->skel);
	}
	*stage = "attach the BPF programs";
	err = hoptrace_bpf__attach(ld->skel);
	if (!err && ld->plan.capture == CAPTURE_SYSCALLS)
		err = attach_syscalls(ld);
	if (!err && cfg->capture_logs)
		attach_logs(ld, cfg);
	return err;
}

static void release(struct loader *ld)
{
	struct kernel_facts k = ld->kernel;
	struct load_plan plan = ld->plan;

	loader__destroy(ld);
	ld->kernel = k;
	ld->plan = plan;
}

/* Nothing could be loaded: say what the kernel lacks, and the oldest kernel that has it. */
static void explain_failure(const struct loader *ld, const char *stage, int err)
{
	if (failure.held_len && log_get_format() == LOG_FORMAT_JSON)
		log_error("%s", failure.held);
	else if (failure.held_len)
		fputs(failure.held, stderr);
	if (!ld->kernel.btf) {
		log_error("this kernel (%s) has no BTF at /sys/kernel/btf/vmlinux: hoptrace needs "
			  "CONFIG_DEBUG_INFO_BTF (Debian 11+, Ubuntu 20.10+, RHEL 8.2+, Amazon "
			  "Linux 2 5.10, GKE COS)",
			  ld->kernel.release);
		return;
	}
	if (ld->plan.capture == CAPTURE_AUTO) {
		log_error("no capture backend works on this kernel (%s):", ld->kernel.release);
		for (int b = CAPTURE_TP_BTF; b < CAPTURE__COUNT; b++)
			if (ld->plan.capture_why[b][0])
				log_error("  %-8s %s", capture_names[b], ld->plan.capture_why[b]);
		return;
	}
	if ((err == -EPERM || err == -EACCES) && geteuid() != 0) {
		log_error("cannot %s: %s (run as root, or grant CAP_BPF, CAP_PERFMON and "
			  "CAP_SYS_ADMIN)",
			  stage, strerror(-err));
		return;
	}
	if (failure.object[0])
		log_error("cannot %s on this kernel (%s): %s: %s (-v shows the verifier log)",
			  stage, ld->kernel.release, failure.object, failure.reason);
	else
		log_error("cannot %s on this kernel (%s): %s", stage, ld->kernel.release,
			  strerror(-err));
}

int loader__start(struct loader *ld, const struct loader_config *cfg)
{
	uint32_t cpus[LOADER_MAX_CPUS];
	const char *stage = "load the BPF programs";
	int err, nonline;

	memset(ld, 0, sizeof(*ld));
	err = check_config(cfg);
	if (err)
		return err;
	libbpf_set_print(libbpf_log);
	kernel_probe(&ld->kernel);
	plan_init(&ld->plan, &ld->kernel, cfg);
	nonline = read_online_cpus(cpus, LOADER_MAX_CPUS);
	if (nonline <= 0) {
		err = nonline ? nonline : -ENOENT;
		log_error("cannot read the online CPUs from /sys/devices/system/cpu/online: %s",
			  strerror(-err));
		return err;
	}
	err = -ENOENT;
	/* each retry changes one choice; a handful covers every function */
	for (int attempt = 0; attempt < 8 && ld->kernel.btf && ld->plan.capture != CAPTURE_AUTO;
	     attempt++) {
		failure_reset();
		err = try_start(ld, cfg, cpus, (unsigned)nonline, &stage);
		if (!err)
			break;
		release(ld);
		if (!plan_fallback(ld, cfg))
			break;
	}
	if (err) {
		explain_failure(ld, stage, err);
		release(ld);
		return err;
	}
	ld->stats_fd = bpf_map__fd(ld->skel->maps.stats);
	if (ld->plan.capture == CAPTURE_SYSCALLS)
		log_debug(
		    "reads already blocked on sockets, followed from now: %u",
		    sysseed_blocked_reads(bpf_map__fd(ld->skel->maps.sys_ios), (uint32_t)getpid()));
	/* without it HTTPS is not traced, everything else is */
	if (ld->plan.tls != TLS_OFF)
		ld->tls = tls__start(ld->skel, cfg, ld->plan.tls);
	return 0;
}

void loader__describe(const struct loader *ld, FILE *out)
{
	const struct load_plan *p = &ld->plan;
	const struct kernel_facts *k = &ld->kernel;

	fprintf(out, "kernel %s\n", k->release);
	fprintf(out, "  %-10s %-9s %s\n", "capture", capture_names[p->capture],
		p->capture == CAPTURE_TP_BTF ? "tp_btf sock_send_length, sock_recv_length"
		: p->capture == CAPTURE_FEXIT
		    ? "fexit inet_sendmsg, inet_recvmsg"
		    : "tracepoints syscalls/sys_{enter,exit}_{read,write,...}");
	if (p->capture == CAPTURE_FEXIT)
		fprintf(out, "  %-10s %-9s %s%s\n", "", "",
			k->inet6_msg_funcs ? "+ inet6_sendmsg, inet6_recvmsg"
					   : "(no IPv6 functions)",
			k->inet_sendpage ? ", inet_sendpage" : "");
	for (int b = CAPTURE_TP_BTF; b < CAPTURE__COUNT; b++)
		if (b != (int)p->capture && p->capture_why[b][0])
			fprintf(out, "  %-10s %-9s not used: %s\n", "", capture_names[b],
				p->capture_why[b]);
	fprintf(out, "  %-10s %-9s %s\n", "close", p->capture == CAPTURE_SYSCALLS ? "tp" : "tp_btf",
		"inet_sock_set_state");
	fprintf(out, "  %-10s %-9s sched_process_fork, exec, exit (%s)\n", "processes", "tp_btf",
		p->exit_group_dead ? "group_dead from the tracepoint"
				   : "group_dead from signal->live");
	if (p->tls == TLS_OFF)
		fprintf(out, "  %-10s %-9s %s\n", "https", "off", p->tls_why);
	else
		fprintf(out, "  %-10s %-9s OpenSSL SSL_read/SSL_write[_ex]%s\n", "https", "uprobes",
			p->tls == TLS_WITH_INJECT_CTX ? " (with the context of --repair=inject)"
						      : "");
	if (p->inject)
		fprintf(out, "  %-10s %-9s sock_ops + sk_msg%s\n", "inject", "on",
			ld->inject ? "" : " (its start-up test FAILED)");
	else
		fprintf(out, "  %-10s %-9s %s\n", "inject", "off",
			p->inject_why[0] ? p->inject_why : "not asked for (--repair=inject)");
}

int loader__read_stats(const struct loader *ld, uint64_t out[HT_STAT__COUNT])
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *percpu;

	memset(out, 0, sizeof(uint64_t) * HT_STAT__COUNT);
	if (!ld->skel || ncpu <= 0)
		return -EINVAL;
	percpu = calloc((size_t)ncpu, sizeof(uint64_t));
	if (!percpu)
		return -ENOMEM;
	for (uint32_t k = 0; k < HT_STAT__COUNT; k++) {
		if (bpf_map_lookup_elem(ld->stats_fd, &k, percpu))
			continue;
		for (int c = 0; c < ncpu; c++)
			out[k] += percpu[c];
	}
	free(percpu);
	return 0;
}

void loader__destroy(struct loader *ld)
{
	for (unsigned i = 0; i < ld->nsys_links; i++)
		bpf_link__destroy(ld->sys_links[i]);
	free(ld->sys_links);
	ld->sys_links = NULL;
	ld->nsys_links = 0;
	for (size_t i = 0; i < sizeof(ld->log_links) / sizeof(ld->log_links[0]); i++) {
		bpf_link__destroy(ld->log_links[i]);
		ld->log_links[i] = NULL;
	}
	ld->logs_on = false;
	tls__destroy(ld->tls);
	ld->tls = NULL;
	inject__destroy(ld->inject);
	ld->inject = NULL;
	if (ld->skel)
		hoptrace_bpf__destroy(ld->skel);
	ld->skel = NULL;
	for (unsigned i = 0; i < ld->nrings; i++)
		close(ld->ring_fds[i]);
	free(ld->ring_fds);
	ld->ring_fds = NULL;
	ld->nrings = 0;
}

const char *loader__stat_name(int idx)
{
	static const char *const names[HT_STAT__COUNT] = {
	    [HT_STAT_EVENTS] = "bpf_events",
	    [HT_STAT_RINGBUF_FULL] = "bpf_drop_ringbuf_full",
	    [HT_STAT_READ_FAULT] = "bpf_drop_read_fault",
	    [HT_STAT_STORAGE_FULL] = "bpf_drop_storage_full",
	    [HT_STAT_NOT_HTTP] = "bpf_conns_not_http",
	    [HT_STAT_SOCKET_IO] = "bpf_socket_io",
	    [HT_STAT_PEEK_SKIPPED] = "bpf_peek_skipped",
	    [HT_STAT_NO_SYSCALL] = "bpf_io_without_buffer",
	    [HT_STAT_MAP_FULL] = "bpf_drop_map_full",
	    [HT_STAT_TLS_CALLS] = "bpf_tls_calls",
	    [HT_STAT_TLS_SOCKETS] = "bpf_tls_sockets",
	    [HT_STAT_TLS_NO_SOCKET] = "bpf_tls_without_socket",
	    [HT_STAT_TLS_PORT_UNKNOWN] = "bpf_tls_port_unknown",
	    [HT_STAT_INJECTED] = "bpf_injected",
	    [HT_STAT_INJECT_HAS_TP] = "bpf_inject_skip_has_tp",
	    [HT_STAT_INJECT_PARTIAL] = "bpf_inject_skip_partial",
	    [HT_STAT_INJECT_PUSH_FAIL] = "bpf_inject_push_failed",
	    [HT_STAT_INJECT_UNFRAMED] = "bpf_inject_skip_unframed",
	    [HT_STAT_TLS_RECREATED] = "bpf_tls_state_recreated",
	    [HT_STAT_TLS_RELEARNED] = "bpf_tls_sockets_relearned",
	    [HT_STAT_TLS_SHARE_FULL] = "bpf_tls_share_full",
	    [HT_STAT_LOG_WRITES] = "bpf_log_writes",
	};

	return idx >= 0 && idx < HT_STAT__COUNT && names[idx] ? names[idx] : "?";
}
