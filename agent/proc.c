// SPDX-License-Identifier: BSD-2-Clause
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "export/otlp_config.h"
#include "k8s_parse.h"
#include "log.h"
#include "resource.h"
#include "stats.h"
#include "text.h"

#define ENVIRON_MAX (256 * 1024)

struct proc_entry {
	uint64_t start_ns;
	struct resource *res;
	uint64_t exited_at; /* monotonic ns, 0 while running */
	uint64_t meta_gen;  /* the metadata generation its pod was last looked up in */
};

/* How long an exited process stays known, so spans ended by its sockets closing can say
 * why. */
#define EXITED_LINGER_NS (10ULL * 1000000000ULL)

int proc_table__init_sized(struct proc_table *pt, const char *proc_root, size_t max)
{
	pt->proc_root = proc_root ? proc_root : "/proc";
	pt->overflow = NULL;
	pt->n_exited = 0;
	pt->meta = (struct proc_meta_source){0};
	return u64map_init(&pt->by_tgid, max ? max : PROC_TABLE_MAX);
}

int proc_table__init(struct proc_table *pt, const char *proc_root)
{
	return proc_table__init_sized(pt, proc_root, 0);
}

/* Remove the entry of tgid from the table and free it. */
static void entry_remove(struct proc_table *pt, uint32_t tgid, struct proc_entry *e)
{
	u64map_del(&pt->by_tgid, tgid);
	if (e->exited_at)
		pt->n_exited--;
	resource_put(e->res);
	free(e);
}

static void entry_free(struct proc_entry *e)
{
	resource_put(e->res);
	free(e);
}

void proc_table__free(struct proc_table *pt)
{
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&pt->by_tgid, &it, &k, &v);)
		entry_free(v);
	u64map_free(&pt->by_tgid);
	resource_put(pt->overflow);
	pt->overflow = NULL;
}

/* Read a whole small file of a /proc/PID directory (stat, environ, cgroup). Returns bytes
 * read or -errno. */
static ssize_t read_proc_file(int dirfd, const char *name, char *buf, size_t cap)
{
	size_t got = 0;
	int fd;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	while (got < cap - 1) {
		ssize_t n = read(fd, buf + got, cap - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}

int proc_stat_start_ticks(const char *stat, size_t len, uint64_t *ticks)
{
	const char *p = NULL, *end = stat + len;
	unsigned field = 2; /* the one ending at the last ')': comm may hold ") " itself */
	uint64_t v = 0;

	for (size_t i = len; i > 0; i--) {
		if (stat[i - 1] == ')') {
			p = stat + i;
			break;
		}
	}
	if (!p)
		return -EINVAL;
	while (p < end && field < 22) {
		if (*p++ == ' ')
			field++;
	}
	if (field != 22 || p == end || *p < '0' || *p > '9')
		return -EINVAL;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*ticks = v;
	return 0;
}

bool proc_start_matches(uint64_t stat_ticks, uint64_t hz, uint64_t start_ns, uint64_t suspended_ns)
{
	uint64_t tick_ns, lo, hi;

	if (!hz || hz > 1000000000ULL)
		return false;
	tick_ns = 1000000000ULL / hz;
	/* stat counts from boot including suspend (start_boottime), BPF's start_time
	 * does not: the gap is the time spent suspended before the process started, at most
	 * what has been suspended so far. A tick either way for the rounding. */
	lo = start_ns / tick_ns;
	hi = (start_ns + suspended_ns) / tick_ns;
	return stat_ticks + 1 >= lo && stat_ticks <= hi + 1;
}

/* Time this host has spent suspended so far: CLOCK_BOOTTIME minus CLOCK_MONOTONIC. */
static uint64_t suspended_ns_now(void)
{
	struct timespec boot, mono;
	int64_t d;

	if (clock_gettime(CLOCK_BOOTTIME, &boot) || clock_gettime(CLOCK_MONOTONIC, &mono))
		return 0;
	d = (boot.tv_sec - mono.tv_sec) * 1000000000LL + (boot.tv_nsec - mono.tv_nsec);
	return d > 0 ? (uint64_t)d : 0;
}

/*
 * Is the process behind dirfd the one the records named (start_ns: its leader's start_time,
 * CLOCK_MONOTONIC)? The records are read some time after they were made: by then the pid may
 * belong to another process, whose name, environment and container would pass for the first
 * one's. start_ns 0: unknown (records that do not carry it), trusted as before.
 */
static bool proc_is_same(int dirfd, uint64_t start_ns)
{
	char stat[1024];
	uint64_t ticks;
	ssize_t n;

	if (!start_ns)
		return true;
	n = read_proc_file(dirfd, "stat", stat, sizeof(stat));
	if (n <= 0 || proc_stat_start_ticks(stat, (size_t)n, &ticks))
		return false;
	return proc_start_matches(ticks, (uint64_t)sysconf(_SC_CLK_TCK), start_ns,
				  suspended_ns_now());
}

const char *proc_environ_lookup(const char *env, size_t len, const char *name)
{
	size_t nlen = strlen(name);

	for (size_t i = 0; i < len;) {
		const char *entry = env + i;
		size_t elen = strnlen(entry, len - i);

		if (elen > nlen && memcmp(entry, name, nlen) == 0 && entry[nlen] == '=')
			return entry + nlen + 1;
		i += elen + 1;
	}
	return NULL;
}

/*
 * Keys a traced process may not set: what the agent observes of it (process.*, container.id,
 * k8s.pod.uid) or of the host it runs on (host.*, os.*, k8s.node.*), and what says who made
 * the telemetry (telemetry.*). Any process could otherwise pass for another host or node.
 */
static bool resource_key_reserved(const char *key)
{
	static const char *const prefixes[] = {"host.", "os.", "k8s.node.", "telemetry.",
					       "process."};
	static const char *const exact[] = {"container.id", "k8s.pod.uid"};

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(key, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (strcmp(key, exact[i]) == 0)
			return true;
	return false;
}

/* Whether one attribute of the process's list may join its resource, given the bytes the
 * resource's extras already hold: every span of the process carries them. */
static bool resource_attr_fits(const struct resource *r, const struct otlp_kv *kv, size_t used)
{
	size_t klen = strlen(kv->key), vlen = strlen(kv->value);

	return !resource_key_reserved(kv->key) && klen <= RESOURCE_KEY_MAX &&
	       vlen <= RESOURCE_VALUE_MAX && used + klen + vlen <= RESOURCE_EXTRA_BYTES_MAX &&
	       r->nextra < RESOURCE_MAX_EXTRA;
}

/* OTEL_RESOURCE_ATTRIBUTES has one grammar, parsed in one place (otlp_kv_parse). As the
 * OTel spec asks of SDKs, a malformed value is discarded whole. Reserved keys and
 * attributes over the caps are dropped one by one, each counted. */
void resource_parse_attributes(struct resource *r, const char *s)
{
	struct otlp_kv *kv;
	size_t used = 0;
	char msg[160];
	unsigned n;

	if (!s || otlp_kv_parse(s, "OTEL_RESOURCE_ATTRIBUTES", &kv, &n, msg, sizeof(msg))) {
		if (s) {
			STAT_INC(resource_attrs_malformed);
			log_debug("process %u: malformed OTEL_RESOURCE_ATTRIBUTES (ignored)",
				  r->pid);
		}
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		if (resource_attr_fits(r, &kv[i], used)) {
			used += strlen(kv[i].key) + strlen(kv[i].value);
			r->extra[r->nextra].key = kv[i].key;
			r->extra[r->nextra].value = kv[i].value;
			r->nextra++;
		} else {
			STAT_INC(resource_attrs_dropped);
			free(kv[i].key);
			free(kv[i].value);
		}
	}
	free(kv); /* the strings now belong to r */
}

static void read_environment(int dirfd, struct resource *r)
{
	char *env = malloc(ENVIRON_MAX);
	const char *v;
	ssize_t n;

	if (!env)
		return;
	n = read_proc_file(dirfd, "environ", env, ENVIRON_MAX);
	if (n > 0) {
		v = proc_environ_lookup(env, (size_t)n, "OTEL_SERVICE_NAME");
		if (v && strlen(v) > RESOURCE_VALUE_MAX)
			STAT_INC(resource_attrs_dropped); /* the executable names it instead */
		else if (v && *v)
			r->service_name = strdup(v);
		v = proc_environ_lookup(env, (size_t)n, "OTEL_RESOURCE_ATTRIBUTES");
		if (v)
			resource_parse_attributes(r, v);
	}
	free(env);
}

static void read_executable(int dirfd, struct resource *r)
{
	char exe[PATH_MAX];
	ssize_t n;

	n = readlinkat(dirfd, "exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	/* an exe replaced on disk reads "/usr/bin/x (deleted)" */
	if (n > 10 && strcmp(exe + n - 10, " (deleted)") == 0)
		exe[n - 10] = '\0';
	r->exe_path = strdup(exe);
	r->exe_name = strdup(strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe);
}

/* container.id and k8s.pod.uid from the cgroup path (k8s_parse.h: the formats of the
 * systemd and cgroupfs drivers, containerd, CRI-O and docker). */
static void read_cgroup(int dirfd, struct resource *r)
{
	char buf[4096], id[K8S_ID_LEN + 1], uid[K8S_UID_LEN + 1];
	ssize_t n = read_proc_file(dirfd, "cgroup", buf, sizeof(buf));

	if (n <= 0)
		return;
	if (k8s_cgroup_ids(buf, (size_t)n, id, uid) == 0)
		r->container_id = strdup(id);
	if (uid[0])
		r->pod_uid = strdup(uid);
}

static struct resource *resource_from_proc(const struct proc_table *pt, uint32_t tgid,
					   uint64_t start_ns, const char *comm)
{
	struct resource *r = resource_new(tgid, start_ns);
	char path[64];
	int dirfd;

	if (!r)
		return NULL;
	/* everything is read through one /proc/PID descriptor: once the process is gone, its
	 * files fail (ESRCH) rather than show a process that took the pid since */
	snprintf(path, sizeof(path), "%s/%u", pt->proc_root, tgid);
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd >= 0 && !proc_is_same(dirfd, start_ns)) {
		STAT_INC(proc_identity_mismatch);
		close(dirfd);
		dirfd = -1;
	}
	if (dirfd >= 0) {
		read_environment(dirfd, r);
		read_executable(dirfd, r);
		read_cgroup(dirfd, r);
		close(dirfd);
	}
	if (!r->exe_name && comm && *comm)
		r->exe_name = strndup(comm, 16);
	/* OTel SDK precedence: OTEL_SERVICE_NAME, then service.name in
	 * OTEL_RESOURCE_ATTRIBUTES, then the pod's (k8s.h), then (our stand-in for
	 * unknown_service) the executable */
	for (unsigned i = 0; i < r->nextra && !r->service_name; i++)
		if (strcmp(r->extra[i].key, "service.name") == 0 && r->extra[i].value[0])
			r->service_name = strdup(r->extra[i].value);
	if (r->service_name)
		r->service_source = RESOURCE_SERVICE_PROCESS;
	else
		r->service_name = strdup(r->exe_name ? r->exe_name : "unknown_service");
	if (pt->meta.enrich && (r->container_id || r->pod_uid))
		r->k8s_pending = !pt->meta.enrich(pt->meta.ctx, r);
	return r;
}

void proc_table__set_meta(struct proc_table *pt, const struct proc_meta_source *meta)
{
	pt->meta = meta ? *meta : (struct proc_meta_source){0};
}

/* A process whose pod was not known: look again when the metadata has changed since. The
 * resource is immutable once spans hold it: a copy is enriched and replaces it. */
static void refresh_meta(struct proc_table *pt, struct proc_entry *e)
{
	uint64_t gen = pt->meta.generation(pt->meta.ctx);
	struct resource *r;

	if (gen == e->meta_gen)
		return;
	e->meta_gen = gen;
	r = resource_clone(e->res);
	if (!r)
		return;
	if (!pt->meta.enrich(pt->meta.ctx, r)) {
		resource_put(r);
		return;
	}
	r->k8s_pending = 0;
	resource_put(e->res);
	e->res = r;
}

/* Forget every process that exited, however recently: room for a running one. */
static void drop_exited(struct proc_table *pt)
{
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&pt->by_tgid, &it, &k, &v);) {
		struct proc_entry *e = v;

		if (e->exited_at)
			entry_remove(pt, (uint32_t)k, e);
	}
}

/* A process the full table has no room for: a resource named after comm, with nothing read
 * from /proc (256 KiB of environ per request would let whoever filled the table make every
 * request cost that). Kept until another process overflows, so a burst of requests of one
 * such process builds it once. */
static struct resource *overflow_resource(struct proc_table *pt, uint32_t tgid, uint64_t start_ns,
					  const char *comm)
{
	struct resource *r = pt->overflow;

	STAT_INC(drop_proc_table_full);
	if (r && r->pid == tgid && r->start_ns == start_ns)
		return r;
	r = resource_new(tgid, start_ns);
	if (!r)
		return NULL;
	r->exe_name = strndup(comm && *comm ? comm : "unknown_service", 16);
	r->service_name = r->exe_name ? strdup(r->exe_name) : NULL;
	resource_put(pt->overflow);
	pt->overflow = r;
	return r;
}

struct resource *proc_table__resource(struct proc_table *pt, uint32_t tgid, uint64_t start_ns,
				      const char *comm)
{
	struct proc_entry *e = u64map_get(&pt->by_tgid, tgid);

	if (e && e->start_ns == start_ns) {
		if (e->res->k8s_pending && pt->meta.enrich) {
			refresh_meta(pt, e);
			if (e->res->k8s_pending)
				STAT_INC(k8s_meta_unavailable);
		}
		return e->res;
	}
	if (e) {
		/* same pid, new process: pid reuse */
		entry_remove(pt, tgid, e);
	}
	/* the walk only when it frees something: not once per request of an overflow */
	if (pt->by_tgid.count >= pt->by_tgid.max_count && pt->n_exited)
		drop_exited(pt);
	if (pt->by_tgid.count >= pt->by_tgid.max_count)
		return overflow_resource(pt, tgid, start_ns, comm);
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->start_ns = start_ns;
	/* read before the lookup: a change during it is looked at again */
	e->meta_gen = pt->meta.generation ? pt->meta.generation(pt->meta.ctx) : 0;
	e->res = resource_from_proc(pt, tgid, start_ns, comm);
	if (!e->res || u64map_put(&pt->by_tgid, tgid, e)) {
		entry_free(e);
		return NULL;
	}
	if (e->res->k8s_pending)
		STAT_INC(k8s_meta_unavailable);
	return e->res;
}

void proc_table__forget(struct proc_table *pt, uint32_t tgid)
{
	struct proc_entry *e = u64map_get(&pt->by_tgid, tgid);

	if (e)
		entry_remove(pt, tgid, e);
}

void proc_table__mark_exited(struct proc_table *pt, uint32_t tgid, uint64_t now_ns)
{
	struct proc_entry *e = u64map_get(&pt->by_tgid, tgid);

	if (e && !e->exited_at) {
		e->exited_at = now_ns ? now_ns : 1;
		pt->n_exited++;
	}
}

bool proc_table__exited(const struct proc_table *pt, uint32_t tgid)
{
	struct proc_entry *e = u64map_get(&pt->by_tgid, tgid);

	return e && e->exited_at;
}

void proc_table__expire(struct proc_table *pt, uint64_t now_ns)
{
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&pt->by_tgid, &it, &k, &v);) {
		struct proc_entry *e = v;

		if (e->exited_at && now_ns - e->exited_at > EXITED_LINGER_NS)
			entry_remove(pt, (uint32_t)k, e);
	}
}

void proc_table__each(const struct proc_table *pt,
		      void (*fn)(void *ctx, const struct resource *r, bool exited), void *ctx)
{
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&pt->by_tgid, &it, &k, &v);) {
		const struct proc_entry *e = v;

		if (e->res)
			fn(ctx, e->res, e->exited_at != 0);
	}
}
