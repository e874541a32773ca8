/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The agent's own metrics for the Prometheus endpoint: every counter of the exit summary
 * (stats.h, the BPF-side counters, the OTLP sink's, the output's), the rings' fill, the
 * tables' sizes, the endpoint's own counters and, when kernel.bpf_stats_enabled is 1, the
 * BPF programs' run time. What to render is gathered into a selfmetrics_input by the loop
 * thread (the owner of the counters), then rendered by a pure function.
 *
 * Naming (README "Prometheus endpoint"): hoptrace_<counter>_total with the summary's
 * description as HELP; every loss in one family, hoptrace_drops_total{reason}, whose reason
 * is the summary name without its "drop_" (budget_drops: "budget"); peaks and sizes are
 * gauges in base units (_bytes, _seconds).
 */
#ifndef HOPTRACE_SELFMETRICS_H
#define HOPTRACE_SELFMETRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hoptrace/events.h"

struct prom_writer;
struct agent_stats;
struct sink_otlp_stats;
struct httpd_stats;
struct loader;

/* Longest BPF program name kept (libbpf's, not the kernel's 15 bytes). */
#define SELFMETRICS_PROG_NAME 64
/* Programs reported at most. */
#define SELFMETRICS_PROGS_MAX 64
/* Rings reported at most (one per CPU). */
#define SELFMETRICS_RINGS_MAX 1024

struct selfmetrics_prog {
	char name[SELFMETRICS_PROG_NAME];
	uint64_t run_time_ns;
	uint64_t run_cnt;
};

/* Everything the rendering reads; NULL pointers: that part is absent. */
struct selfmetrics_input {
	const char *version;
	const char *capture; /* the capture backend's name */
	uint64_t start_time_unix_s;
	const struct agent_stats *stats;
	const uint64_t *bpf;		    /* [HT_STAT__COUNT] */
	const struct sink_otlp_stats *otlp; /* when exporting OTLP */
	const uint64_t *output_drops;	    /* lines of -o json/waterfall dropped */
	const uint64_t *ring_used;	    /* [nrings] */
	unsigned nrings;
	uint64_t ring_bytes; /* size of each ring */
	uint64_t processes;  /* processes whose resource the agent holds (live ones) */
	uint64_t connections;
	uint64_t budget_used_bytes;
	uint64_t budget_limit_bytes; /* 0: no limit */
	bool bpf_stats_enabled;
	const struct selfmetrics_prog *progs; /* [nprogs], read with bpf_stats_enabled */
	size_t nprogs;
	const struct httpd_stats *http;
	uint64_t renders_truncated; /* renderings cut at the size limit so far */
};

/* Render in as Prometheus families. Returns 0, or the first error of the writer. */
int selfmetrics_render(struct prom_writer *w, const struct selfmetrics_input *in);

struct tracker;
struct sink;
struct outbuf;
struct ringmerge;
struct httpd;

/* The /metrics page: gathered and rendered by the loop thread once a second
 * (metrics_page__on_second, struct loop's on_second), then published to the endpoint. */
struct metrics_page {
	struct httpd *httpd;
	const struct loader *ld; /* set once loaded: BPF counters, rings, programs */
	struct tracker *tracker;
	struct sink *otlp;     /* the OTLP sink (sink_otlp_new), or NULL */
	struct outbuf *output; /* the json/waterfall output, or NULL */
	uint64_t start_unix_s;
	/* Families rendered after the agent's own (the RED and service-graph metrics); NULL:
	 * none. Returns 0 or the writer's error. */
	int (*render_more)(void *ctx, struct prom_writer *w);
	void *render_more_ctx;
	/* the page's own state */
	struct prom_writer *writer;
	uint64_t truncated; /* renderings cut at HTTPD_SNAPSHOT_MAX */
	bool published;
	/* /status and /healthz (status.h, health.h): whether the rings drain, watched here */
	struct ring_watch *ring_watch;
	uint64_t ring_stalled_since_ns; /* atomic: read by the HTTP thread */
	unsigned ring_stalled;		/* atomic */
};

struct health_sample;

/* /healthz's sample function (httpd__set_health_source; ctx: the page): the rings' and the
 * OTLP exporter's state. */
void metrics_page__health_sample(void *ctx, struct health_sample *s);

/* A page for the endpoint h (the other sources are set by the caller). 0 or -ENOMEM. */
int metrics_page__init(struct metrics_page *p, struct httpd *h);
/* Gather, render and publish; the first call makes the endpoint ready. ctx: the page. */
void metrics_page__on_second(void *ctx, uint64_t now_ns, const struct ringmerge *rings);
void metrics_page__free(struct metrics_page *p);

/* kernel.bpf_stats_enabled is 1 (run time is being counted). */
bool selfmetrics_bpf_stats_enabled(void);
/* Run time and count of each loaded program of ld into out[max]; returns how many. */
size_t selfmetrics_read_progs(const struct loader *ld, struct selfmetrics_prog *out, size_t max);

#endif
