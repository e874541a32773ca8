// SPDX-License-Identifier: BSD-2-Clause
#include "loader.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "hoptrace.skel.h"
#include "inject.h"
#include "log.h"
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

static void set_rodata(struct hoptrace_bpf *skel, const struct loader_config *cfg)
{
	skel->rodata->self_tgid = (uint32_t)getpid();
	skel->rodata->capture_bytes = cfg->capture_bytes;
	skel->rodata->wakeup_bytes = cfg->wakeup_bytes;
	skel->rodata->filter_by_tgid = cfg->npids > 0;
	skel->rodata->filter_by_comm = cfg->ncomms > 0;
	skel->rodata->filter_by_port = cfg->nports > 0;
	skel->rodata->tls_enabled = !cfg->no_tls;
	tls__configure(skel, !cfg->no_tls);
	skel->rodata->inject_enabled = cfg->inject;
	inject__configure(skel, cfg->inject);
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

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && log_get_level() < LOG_DEBUG)
		return 0;
	if (level == LIBBPF_INFO && log_get_level() < LOG_DEBUG)
		return 0;
	/* verifier logs are long multi-line messages: pass them through unchanged */
	fputs(level == LIBBPF_WARN ? "hoptrace: libbpf warning: " : "hoptrace: libbpf: ", stderr);
	return vfprintf(stderr, fmt, ap);
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
		log_error("cannot create the ring buffers (%u x %u bytes): %s", nonline,
			  ld->ring_bytes, strerror(-err));
		return err;
	}
	err = bpf_map__set_max_entries(ld->skel->maps.events, (uint32_t)ncpus);
	if (!err)
		err = bpf_map__set_max_entries(ld->skel->maps.capture_heap, (uint32_t)ncpus);
	if (err)
		log_error("cannot size the BPF maps: %s", strerror(-err));
	return err;
}

int loader__start(struct loader *ld, const struct loader_config *cfg)
{
	uint32_t cpus[LOADER_MAX_CPUS];
	int err, nonline;

	memset(ld, 0, sizeof(*ld));
	err = check_config(cfg);
	if (err)
		return err;
	libbpf_set_print(libbpf_log);
	ld->skel = hoptrace_bpf__open();
	if (!ld->skel) {
		err = -errno;
		log_error("cannot open the BPF object: %s", strerror(-err));
		return err;
	}
	set_rodata(ld->skel, cfg);
	nonline = read_online_cpus(cpus, LOADER_MAX_CPUS);
	if (nonline <= 0) {
		err = nonline ? nonline : -ENOENT;
		log_error("cannot read the online CPUs from /sys/devices/system/cpu/online: %s",
			  strerror(-err));
		goto err_destroy;
	}
	err = size_maps(ld, cfg, (unsigned)nonline);
	if (err)
		goto err_destroy;
	err = hoptrace_bpf__load(ld->skel);
	if (err) {
		log_error("cannot load the BPF programs: %s (run as root, with BTF at "
			  "/sys/kernel/btf/vmlinux; -v shows the verifier log)",
			  strerror(-err));
		goto err_destroy;
	}
	err = install_rings(ld, cpus);
	if (err) {
		log_error("cannot install the ring buffers: %s", strerror(-err));
		goto err_destroy;
	}
	err = fill_selection(ld->skel, cfg);
	if (err) {
		log_error("cannot store the process/port selection: %s", strerror(-err));
		goto err_destroy;
	}
	/* before the capture programs: the self-test's own traffic is not traced */
	if (cfg->inject)
		ld->inject = inject__start(ld->skel);
	err = hoptrace_bpf__attach(ld->skel);
	if (err) {
		log_error("cannot attach the BPF programs: %s", strerror(-err));
		goto err_destroy;
	}
	ld->stats_fd = bpf_map__fd(ld->skel->maps.stats);
	/* without it HTTPS is not traced, everything else is */
	if (!cfg->no_tls)
		ld->tls = tls__start(ld->skel, cfg);
	return 0;

err_destroy:
	loader__destroy(ld);
	return err;
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
	};

	return idx >= 0 && idx < HT_STAT__COUNT && names[idx] ? names[idx] : "?";
}
