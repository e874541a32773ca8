// SPDX-License-Identifier: BSD-2-Clause
#include "selfmetrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "export/sink_otlp.h"
#include "health.h"
#include "status.h"
#include "hoptrace.skel.h"
#include "httpd.h"
#include "loader.h"
#include "outbuf.h"
#include "prom.h"
#include "ringmerge.h"
#include "stats.h"
#include "tracker.h"

#define PREFIX "hoptrace_"

static const char drops_help[] =
    "Things lost (records, messages, requests, spans, lines), by reason: the exit summary's "
    "counter of the same name, without its drop_ (README \"Prometheus endpoint\")";

/* HELP of the BPF-side counters (the comments of enum ht_stat). */
static const char *const bpf_help[HT_STAT__COUNT] = {
    [HT_STAT_EVENTS] = "records written to the ring buffers",
    [HT_STAT_RINGBUF_FULL] = "records lost: ring buffer full",
    [HT_STAT_READ_FAULT] = "socket I/O whose user buffer could not be read",
    [HT_STAT_STORAGE_FULL] = "socket storage could not be created",
    [HT_STAT_NOT_HTTP] = "connections classified as not HTTP",
    [HT_STAT_SOCKET_IO] = "TCP socket reads and writes seen after selection",
    [HT_STAT_PEEK_SKIPPED] = "MSG_PEEK reads ignored (data read again later)",
    [HT_STAT_NO_SYSCALL] = "socket I/O not made by a known syscall (io_uring, kernel)",
    [HT_STAT_MAP_FULL] = "map updates that failed",
    [HT_STAT_TLS_CALLS] = "SSL_read/SSL_write calls seen after selection",
    [HT_STAT_TLS_SOCKETS] = "sockets matched to a TLS session",
    [HT_STAT_TLS_NO_SOCKET] = "TLS sessions reported without a socket",
    [HT_STAT_TLS_PORT_UNKNOWN] = "TLS I/O skipped under --port: the session's socket is unknown",
    [HT_STAT_INJECTED] = "requests given a traceparent header (--repair=inject)",
    [HT_STAT_INJECT_HAS_TP] = "requests sent unchanged: they already carry a traceparent",
    [HT_STAT_INJECT_PARTIAL] = "requests sent unchanged: header block not whole in the message",
    [HT_STAT_INJECT_PUSH_FAIL] = "bpf_msg_push_data/pull_data failed: sent unchanged or dropped",
    [HT_STAT_INJECT_UNFRAMED] = "request-like messages sent unchanged: the connection's framing "
				"was lost",
    [HT_STAT_TLS_RECREATED] = "SSL calls on a session with no state (evicted, or older than the "
			      "agent)",
    [HT_STAT_TLS_RELEARNED] = "such sessions matched again to their socket",
    [HT_STAT_TLS_SHARE_FULL] = "TLS session states refused: the process holds its share",
    [HT_STAT_LOG_WRITES] = "log writes of server processes recorded (--capture-logs)",
};

/* A counter of stats.h is a loss when its name says so: "drop_X" (reason X) or "X_drops"
 * (reason X). The reason, or NULL. */
static const char *drop_reason(const char *name, char *buf, size_t cap)
{
	size_t n = strlen(name);

	if (strncmp(name, "drop_", 5) == 0)
		return name + 5;
	if (n > 6 && strcmp(name + n - 6, "_drops") == 0 && n - 6 < cap) {
		memcpy(buf, name, n - 6);
		buf[n - 6] = '\0';
		return buf;
	}
	return NULL;
}

/* Family name of a stats.h counter that is not a loss; *gauge when it is not a counter. */
static void stat_family(const char *name, char *out, size_t cap, bool *gauge)
{
	*gauge = strstr(name, "peak") != NULL; /* budget_peak_bytes: a high-water mark */
	/* kubernetes metadata: a cache size and a retry delay, both current values */
	*gauge = *gauge || !strcmp(name, "k8s_pods_cached") || !strcmp(name, "k8s_api_unavailable");
	if (strcmp(name, "bytes_captured") == 0)
		name = "captured_bytes"; /* the unit last, as Prometheus names go */
	snprintf(out, cap, PREFIX "%s", name);
}

static int one(struct prom_writer *w, const char *name, enum prom_type type, const char *help,
	       uint64_t v)
{
	int err = prom__family(w, name, type, help);

	return err ? err : prom__sample_u64(w, NULL, 0, v);
}

static int render_drops(struct prom_writer *w, const struct selfmetrics_input *in)
{
	struct prom_label l = {"reason", NULL};
	char buf[64], reason[80];
	int err = prom__family(w, PREFIX "drops", PROM_COUNTER, drops_help);

#define X(name, desc)                                                                              \
	if (!err && (l.value = drop_reason(#name, buf, sizeof(buf))))                              \
		err = prom__sample_u64(w, &l, 1, in->stats->name);
	STATS_LIST(X)
#undef X
	for (int i = 0; in->bpf && i < HT_STAT__COUNT && !err; i++) {
		const char *name = loader__stat_name(i);

		if (strncmp(name, "bpf_drop_", 9) != 0)
			continue;
		snprintf(reason, sizeof(reason), "bpf_%s", name + 9);
		l.value = reason;
		err = prom__sample_u64(w, &l, 1, in->bpf[i]);
	}
	if (!err && in->output_drops) {
		l.value = "output_buffer_full";
		err = prom__sample_u64(w, &l, 1, *in->output_drops);
	}
	return err;
}

static int render_stats(struct prom_writer *w, const struct selfmetrics_input *in)
{
	char fam[128], buf[64];
	bool gauge;
	int err = 0;

#define X(name, desc)                                                                              \
	if (!err && !drop_reason(#name, buf, sizeof(buf))) {                                       \
		stat_family(#name, fam, sizeof(fam), &gauge);                                      \
		err = one(w, fam, gauge ? PROM_GAUGE : PROM_COUNTER, desc, in->stats->name);       \
	}
	STATS_LIST(X)
#undef X
	return err;
}

static int render_bpf(struct prom_writer *w, const struct selfmetrics_input *in)
{
	char fam[128];
	int err = 0;

	for (int i = 0; in->bpf && i < HT_STAT__COUNT && !err; i++) {
		const char *name = loader__stat_name(i);

		if (strncmp(name, "bpf_drop_", 9) == 0)
			continue; /* in hoptrace_drops_total */
		snprintf(fam, sizeof(fam), PREFIX "%s", name);
		err = one(w, fam, PROM_COUNTER, bpf_help[i] ? bpf_help[i] : "BPF-side counter",
			  in->bpf[i]);
	}
	return err;
}

static int render_export(struct prom_writer *w, const struct sink_otlp_stats *o)
{
	const struct {
		const char *result;
		uint64_t v;
	} results[] = {
	    {"exported", o->exported},
	    {"rejected", o->rejected},
	    {"failed", o->failed},
	    {"dropped_queue_full", o->dropped_queue_full},
	    {"dropped_shutdown", o->dropped_shutdown},
	};
	struct prom_label l = {"result", NULL};
	int err = prom__family(w, PREFIX "export_spans", PROM_COUNTER,
			       "Spans handed to the OTLP exporter, by result: exported (accepted), "
			       "rejected (partial success), failed (permanent failure), "
			       "dropped_queue_full, dropped_shutdown");

	for (size_t i = 0; i < sizeof(results) / sizeof(results[0]) && !err; i++) {
		l.value = results[i].result;
		err = prom__sample_u64(w, &l, 1, results[i].v);
	}
	if (!err)
		err = one(w, PREFIX "export_requests", PROM_COUNTER,
			  "OTLP export requests sent (retries included)", o->requests);
	if (!err)
		err = one(w, PREFIX "export_retries", PROM_COUNTER,
			  "OTLP export requests sent again after a transient failure", o->retried);
	if (!err)
		err = one(w, PREFIX "export_sent_bytes", PROM_COUNTER,
			  "OTLP request bytes sent (after compression)", o->bytes_sent);
	if (!err)
		err = one(w, PREFIX "export_queue_spans", PROM_GAUGE,
			  "Spans waiting in the OTLP export queue", o->queued);
	return err;
}

static int render_rings(struct prom_writer *w, const struct selfmetrics_input *in)
{
	struct prom_label l = {"ring", NULL};
	char idx[16];
	int err = prom__family(w, PREFIX "ring_used_bytes", PROM_GAUGE,
			       "Bytes of each ring buffer (one per CPU) written by the kernel and "
			       "not yet consumed");

	l.value = idx;
	for (unsigned i = 0; i < in->nrings && !err; i++) {
		snprintf(idx, sizeof(idx), "%u", i);
		err = prom__sample_u64(w, &l, 1, in->ring_used[i]);
	}
	if (!err)
		err = prom__family(w, PREFIX "ring_size_bytes", PROM_GAUGE,
				   "Size of each ring buffer (one per CPU)");
	for (unsigned i = 0; i < in->nrings && !err; i++) {
		snprintf(idx, sizeof(idx), "%u", i);
		err = prom__sample_u64(w, &l, 1, in->ring_bytes);
	}
	return err;
}

static int render_tables(struct prom_writer *w, const struct selfmetrics_input *in)
{
	int err = one(w, PREFIX "traced_processes", PROM_GAUGE,
		      "Processes seen doing HTTP whose resource the agent holds", in->processes);

	if (!err)
		err = one(w, PREFIX "connections", PROM_GAUGE, "HTTP connections followed now",
			  in->connections);
	if (!err)
		err = one(w, PREFIX "budget_used_bytes", PROM_GAUGE,
			  "Bytes of connection and request state held now (--memory-limit)",
			  in->budget_used_bytes);
	if (!err)
		err = one(w, PREFIX "budget_limit_bytes", PROM_GAUGE,
			  "--memory-limit in bytes (0: no limit)", in->budget_limit_bytes);
	return err;
}

static int render_progs(struct prom_writer *w, const struct selfmetrics_input *in)
{
	struct prom_label l = {"program", NULL};
	int err = one(w, PREFIX "bpf_stats_enabled", PROM_GAUGE,
		      "1 when kernel.bpf_stats_enabled is on and BPF run time is reported",
		      in->bpf_stats_enabled);

	if (err || !in->bpf_stats_enabled)
		return err;
	err = prom__family(w, PREFIX "bpf_program_run_seconds", PROM_COUNTER,
			   "Time spent running each BPF program (while kernel.bpf_stats_enabled)");
	for (size_t i = 0; i < in->nprogs && !err; i++) {
		l.value = in->progs[i].name;
		err = prom__sample(w, &l, 1, (double)in->progs[i].run_time_ns / 1e9);
	}
	if (!err)
		err = prom__family(w, PREFIX "bpf_program_runs", PROM_COUNTER,
				   "Runs of each BPF program (while kernel.bpf_stats_enabled)");
	for (size_t i = 0; i < in->nprogs && !err; i++) {
		l.value = in->progs[i].name;
		err = prom__sample_u64(w, &l, 1, in->progs[i].run_cnt);
	}
	return err;
}

static int render_http(struct prom_writer *w, const struct httpd_stats *h)
{
	const struct {
		const char *path;
		uint64_t v;
	} paths[] = {
	    {"/metrics", h->requests_metrics}, {"/healthz", h->requests_healthz},
	    {"/readyz", h->requests_readyz},   {"/status", h->requests_status},
	    {"other", h->requests_other},
	};
	struct prom_label l = {"path", NULL};
	int err = prom__family(w, PREFIX "http_requests", PROM_COUNTER,
			       "Requests to this endpoint, by path (other: 404 and 405)");

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]) && !err; i++) {
		l.value = paths[i].path;
		err = prom__sample_u64(w, &l, 1, paths[i].v);
	}
	if (!err)
		err = one(w, PREFIX "http_busy", PROM_COUNTER,
			  "Scrapes refused (503): slow readers hold too many older snapshots",
			  h->requests_busy);
	if (!err)
		err =
		    one(w, PREFIX "http_connections", PROM_COUNTER,
			"Connections to this endpoint accepted within its limits", h->connections);
	if (!err)
		err = one(w, PREFIX "http_open_connections", PROM_GAUGE,
			  "Connections to this endpoint open now", h->connections_open);
	if (!err)
		err = one(w, PREFIX "http_retained_bytes", PROM_GAUGE,
			  "Bytes of older snapshots still being sent to slow readers",
			  h->retained_bytes);
	if (!err)
		err = one(w, PREFIX "metrics_snapshot_bytes", PROM_GAUGE,
			  "Size of the previous rendering of this page", h->snapshot_bytes);
	return err;
}

static int render_info(struct prom_writer *w, const struct selfmetrics_input *in)
{
	struct prom_label l[] = {{"version", in->version}, {"capture", in->capture}};
	int err;

	/* first: a rendering cut at the size limit still shows that it was */
	err = one(w, PREFIX "metrics_truncated", PROM_COUNTER,
		  "Renderings of this page cut at its size limit (the families after the cut "
		  "missing)",
		  in->renders_truncated);
	if (!err)
		err = prom__family(w, PREFIX "build_info", PROM_GAUGE,
				   "Always 1: the agent's version and capture backend as labels");
	if (!err)
		err = prom__sample_u64(w, l, 2, 1);
	if (!err)
		err = one(w, PREFIX "start_time_seconds", PROM_GAUGE,
			  "When the agent started, in seconds since the Unix epoch",
			  in->start_time_unix_s);
	return err;
}

int selfmetrics_render(struct prom_writer *w, const struct selfmetrics_input *in)
{
	int err = render_info(w, in);

	if (!err && in->stats)
		err = render_drops(w, in);
	if (!err && in->stats)
		err = render_stats(w, in);
	if (!err)
		err = render_bpf(w, in);
	if (!err && in->otlp)
		err = render_export(w, in->otlp);
	if (!err && in->ring_used)
		err = render_rings(w, in);
	if (!err)
		err = render_tables(w, in);
	if (!err)
		err = render_progs(w, in);
	if (!err && in->http)
		err = render_http(w, in->http);
	return err;
}

bool selfmetrics_bpf_stats_enabled(void)
{
	char c = '0';
	int fd = open("/proc/sys/kernel/bpf_stats_enabled", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (read(fd, &c, 1) != 1)
		c = '0';
	close(fd);
	return c == '1';
}

size_t selfmetrics_read_progs(const struct loader *ld, struct selfmetrics_prog *out, size_t max)
{
	struct bpf_program *prog;
	size_t n = 0;

	if (!ld->skel)
		return 0;
	bpf_object__for_each_program(prog, ld->skel->obj)
	{
		struct bpf_prog_info info = {0};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);

		if (n == max)
			break;
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
			continue; /* not loaded (a backend or feature not chosen) */
		snprintf(out[n].name, sizeof(out[n].name), "%s", bpf_program__name(prog));
		out[n].run_time_ns = info.run_time_ns;
		out[n].run_cnt = info.run_cnt;
		n++;
	}
	return n;
}

int metrics_page__init(struct metrics_page *p, struct httpd *h)
{
	*p = (struct metrics_page){.httpd = h, .start_unix_s = (uint64_t)time(NULL)};
	p->writer = malloc(sizeof(*p->writer));
	if (!p->writer)
		return -ENOMEM;
	prom_writer__init(p->writer, HTTPD_SNAPSHOT_MAX);
	p->ring_watch = calloc(1, sizeof(*p->ring_watch));
	if (!p->ring_watch) {
		metrics_page__free(p);
		return -ENOMEM;
	}
	return 0;
}

void metrics_page__free(struct metrics_page *p)
{
	if (p->writer)
		prom_writer__free(p->writer);
	free(p->writer);
	p->writer = NULL;
	free(p->ring_watch);
	p->ring_watch = NULL;
}

/* What the loader knows: BPF counters, ring fill, programs' run time. */
struct bpf_view {
	uint64_t stats[HT_STAT__COUNT];
	uint64_t ring_used[SELFMETRICS_RINGS_MAX];
	struct selfmetrics_prog progs[SELFMETRICS_PROGS_MAX];
};

static void gather_bpf(const struct metrics_page *p, const struct ringmerge *rings,
		       struct bpf_view *v, struct selfmetrics_input *in)
{
	const struct loader *ld = p->ld;

	if (!ld)
		return;
	in->capture = loader__capture_name(ld->plan.capture);
	if (loader__read_stats(ld, v->stats) == 0)
		in->bpf = v->stats;
	if (rings) {
		in->nrings =
		    ld->nrings < SELFMETRICS_RINGS_MAX ? ld->nrings : SELFMETRICS_RINGS_MAX;
		for (unsigned i = 0; i < in->nrings; i++)
			v->ring_used[i] = ringmerge__used_bytes(rings, i);
		in->ring_used = v->ring_used;
		in->ring_bytes = ld->ring_bytes;
	}
	in->bpf_stats_enabled = selfmetrics_bpf_stats_enabled();
	if (in->bpf_stats_enabled) {
		in->nprogs = selfmetrics_read_progs(ld, v->progs, SELFMETRICS_PROGS_MAX);
		in->progs = v->progs;
	}
}

/* Whether each ring drains (health.h), for /healthz on the HTTP thread. */
static void watch_rings(struct metrics_page *p, const struct ringmerge *rings, uint64_t now_ns)
{
	unsigned n = p->ld ? p->ld->nrings : 0, which = 0;
	uint64_t since;

	if (!rings)
		return;
	for (unsigned i = 0; i < n && i < HEALTH_RINGS_MAX; i++)
		ring_watch__observe(p->ring_watch, i, ringmerge__consumer_pos(rings, i),
				    ringmerge__used_bytes(rings, i), now_ns);
	since = ring_watch__stalled_since(p->ring_watch, &which);
	__atomic_store_n(&p->ring_stalled, which, __ATOMIC_RELAXED);
	__atomic_store_n(&p->ring_stalled_since_ns, since, __ATOMIC_RELEASE);
}

void metrics_page__health_sample(void *ctx, struct health_sample *s)
{
	struct metrics_page *p = ctx;
	struct sink_otlp_health eh;

	s->ring_stalled_since_ns = __atomic_load_n(&p->ring_stalled_since_ns, __ATOMIC_ACQUIRE);
	s->ring_stalled = __atomic_load_n(&p->ring_stalled, __ATOMIC_RELAXED);
	if (p->otlp) {
		sink_otlp_get_health(p->otlp, &eh);
		s->exporting = true;
		s->export_pending = eh.pending;
		s->export_waiting_since_ns = eh.waiting_since_ns;
	}
}

/* Room for every counter of the summary in /status. */
#define STATUS_COUNTERS_MAX 256

/* The summary's counters (stats.h, BPF, OTLP sink, output) as name/value pairs. */
static size_t status_counters(const struct selfmetrics_input *in, struct status_counter *c)
{
	size_t n = 0;

#define X(name, desc) c[n++] = (struct status_counter){#name, in->stats->name};
	STATS_LIST(X)
#undef X
	for (int i = 0; in->bpf && i < HT_STAT__COUNT; i++)
		c[n++] = (struct status_counter){loader__stat_name(i), in->bpf[i]};
	if (in->otlp) {
		c[n++] = (struct status_counter){"export_spans_exported", in->otlp->exported};
		c[n++] = (struct status_counter){"export_spans_rejected", in->otlp->rejected};
		c[n++] = (struct status_counter){"export_spans_failed", in->otlp->failed};
		c[n++] = (struct status_counter){"export_spans_dropped_queue_full",
						 in->otlp->dropped_queue_full};
		c[n++] = (struct status_counter){"export_requests", in->otlp->requests};
		c[n++] = (struct status_counter){"export_retries", in->otlp->retried};
		c[n++] = (struct status_counter){"export_queue_spans", in->otlp->queued};
	}
	if (in->output_drops)
		c[n++] = (struct status_counter){"output_drops", *in->output_drops};
	return n;
}

_Static_assert(STATUS_COUNTERS_MAX >= HT_STAT__COUNT + 8 + sizeof(struct agent_stats) / 8,
	       "room for every counter in /status");

/* Render /status (status.h) and publish it. */
static void publish_status(struct metrics_page *p, const struct selfmetrics_input *in)
{
	static struct status_counter counters[STATUS_COUNTERS_MAX]; /* the loop thread's */
	static struct status_proc procs[STATUS_PROCS_MAX];
	struct status_input st = {.version = in->version,
				  .capture = in->capture,
				  .pid = (uint64_t)getpid(),
				  .start_unix_s = p->start_unix_s,
				  .now_unix_s = (uint64_t)time(NULL),
				  .ready = p->ld != NULL,
				  .counters = counters,
				  .ncounters = status_counters(in, counters),
				  .procs = procs};
	char *text = NULL;
	size_t len = 0;

	if (p->tracker)
		st.nprocs = status_top_procs(&p->tracker->procs, procs, STATUS_PROCS_MAX,
					     &st.processes_total);
	if (status_render(&st, &text, &len) == 0)
		httpd__publish_status(p->httpd, text, len);
}

void metrics_page__on_second(void *ctx, uint64_t now_ns, const struct ringmerge *rings)
{
	struct metrics_page *p = ctx;
	struct selfmetrics_input in = {.version = HOPTRACE_VERSION,
				       .capture = "none",
				       .start_time_unix_s = p->start_unix_s,
				       .stats = &g_stats,
				       .renders_truncated = p->truncated};
	static struct bpf_view bpf; /* the loop thread's alone; 14 KiB off its stack */
	struct sink_otlp_stats otlp;
	struct httpd_stats http;
	uint64_t output_drops;
	char *text;
	size_t len;

	gather_bpf(p, rings, &bpf, &in);
	if (p->otlp) {
		sink_otlp_get_stats(p->otlp, &otlp);
		in.otlp = &otlp;
	}
	if (p->output) {
		output_drops = outbuf__drops(p->output);
		in.output_drops = &output_drops;
	}
	if (p->tracker) {
		in.processes = p->tracker->procs.by_tgid.count - p->tracker->procs.n_exited;
		in.connections = tracker__conn_count(p->tracker);
		in.budget_used_bytes = tracker__budget_used(p->tracker);
		in.budget_limit_bytes = p->tracker->budget.limit;
	}
	httpd__get_stats(p->httpd, &http);
	in.http = &http;
	watch_rings(p, rings, now_ns);
	publish_status(p, &in);
	if (selfmetrics_render(p->writer, &in) == 0 && p->render_more)
		p->render_more(p->render_more_ctx, p->writer);
	if (p->writer->truncated)
		p->truncated++;
	text = prom_writer__take(p->writer, &len);
	httpd__publish(p->httpd, text, len, now_ns);
	if (!p->published) {
		httpd__set_ready(p->httpd, true);
		p->published = true;
	}
}
