// SPDX-License-Identifier: BSD-2-Clause
/*
 * `hoptrace query`: find traces in the embedded store (or in any span source, read into an
 * in-memory store first) by service, operation, duration, error, attribute, time range or
 * trace id, and print them as a table, as JSON lines (one trace a line, its spans in the
 * JSON span schema) or as terminal waterfalls (the -o waterfall renderer, sink_waterfall.c).
 */
#include <argp.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "json_read.h"
#include "resource.h"
#include "sink.h"
#include "span.h"
#include "store.h"
#include "text.h"
#include "tsource.h"

#define QUERY_DEFAULT_LIMIT 20
#define QUERY_MAX_LIMIT 10000
#define QUERY_SOURCE_BATCH 1024 /* span lines per transaction when filling from --source */

enum query_format { FORMAT_TABLE, FORMAT_JSON, FORMAT_WATERFALL };

struct query_cli {
	const char *store_path, *source;
	struct store_filter f;
	enum query_format format;
	bool no_color;
	bool dependencies; /* --dependencies: the service edges instead of traces */
	uint64_t since_ns;
};

enum {
	OPT_STORE = 1000,
	OPT_SOURCE,
	OPT_SERVICE,
	OPT_OPERATION,
	OPT_MIN_DURATION,
	OPT_MAX_DURATION,
	OPT_ERROR,
	OPT_NO_ERROR,
	OPT_TAG,
	OPT_SINCE,
	OPT_FROM,
	OPT_TO,
	OPT_TRACE_ID,
	OPT_LIMIT,
	OPT_FORMAT,
	OPT_NO_COLOR,
	OPT_DEPENDENCIES,
};

static const char doc[] =
    "Find traces in hoptrace's store (written by the agent, `-o store`, its default without "
    "a collector) or in any span source, and print them. Filters combine (all must hold).\n"
    "\n"
    "EXAMPLES:\n"
    "  hoptrace query                                  # the 20 newest traces\n"
    "  hoptrace query --service api --min-duration 250ms --since 1h\n"
    "  hoptrace query --operation /users/{id} --error --format waterfall\n"
    "  hoptrace query --tag http.response.status_code=503 --format json | jq .\n"
    "  hoptrace query --trace-id 4bf92f3577b34da6a3ce929d0e0e4736 --format waterfall\n"
    "  hoptrace query --source spans.jsonl --service cart   # a JSON span file\n"
    "  hoptrace query --dependencies --since 1h    # caller -> callee, with propagation\n";

static const struct argp_option options[] = {
    {"store", OPT_STORE, "PATH", 0, "The store (default " STORE_DEFAULT_PATH ", or HOPTRACE_STORE)",
     0},
    {"source", OPT_SOURCE, "SPEC", 0,
     "Read spans from SPEC instead (a JSON span file, - for stdin, store:PATH, and the other "
     "kinds of `hoptrace audit`)",
     0},
    {"service", OPT_SERVICE, "NAME", 0, "A span of this service.name", 1},
    {"operation", OPT_OPERATION, "NAME", 0,
     "... whose name or http.route is NAME (\"GET /users/{id}\", \"/users/{id}\")", 1},
    {"min-duration", OPT_MIN_DURATION, "DURATION", 0,
     "... lasting at least this (250ms, 1.5s, 800us); without --service/--operation, the "
     "trace's root span",
     1},
    {"max-duration", OPT_MAX_DURATION, "DURATION", 0, "... at most this", 1},
    {"error", OPT_ERROR, NULL, 0, "Traces with a span in error", 1},
    {"no-error", OPT_NO_ERROR, NULL, 0, "Traces without any", 1},
    {"tag", OPT_TAG, "KEY=VALUE", 0,
     "A span with this attribute (string or integer; repeatable, up to 8)", 1},
    {"since", OPT_SINCE, "DURATION", 0, "Traces that started in the last DURATION (1h, 30m)", 1},
    {"from", OPT_FROM, "TIME", 0,
     "Traces that started at or after TIME (RFC 3339, e.g. 2026-12-06T10:00:00Z, or unix "
     "seconds)",
     1},
    {"to", OPT_TO, "TIME", 0, "... and at or before TIME", 1},
    {"trace-id", OPT_TRACE_ID, "HEX", 0, "This trace (32 hex digits)", 1},
    {"limit", OPT_LIMIT, "N", 0, "At most N traces, newest first (default 20)", 1},
    {"format", OPT_FORMAT, "FORMAT", 0,
     "table (default), json (one trace a line, with its spans) or waterfall", 2},
    {"no-color", OPT_NO_COLOR, NULL, 0, "No colors in the waterfall", 2},
    {"dependencies", OPT_DEPENDENCIES, NULL, 0,
     "Print the dependency edges between services instead (caller -> callee: calls, errors "
     "and the propagation verdicts of the calls; --since/--from/--to apply), as a table or "
     "JSON lines",
     2},
    {0},
};

static uint64_t now_unix_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Digits with an optional fraction: unix seconds. */
static int parse_unix_seconds(const char *s, uint64_t *out)
{
	uint64_t whole = 0, frac = 0, scale = 1000000000ull;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > UINT64_MAX / 10 / 1000000000ull)
			return -EINVAL;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (p == s)
		return -EINVAL;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*p - '0') * scale;
			}
	if (*p)
		return -EINVAL;
	/* past 2554 in ns: the end of time (the multiplication would wrap to long ago) */
	*out =
	    whole > (UINT64_MAX - frac) / 1000000000ull ? UINT64_MAX : whole * 1000000000ull + frac;
	return 0;
}

/* RFC 3339: 2026-12-06T10:00:00[.frac](Z|+hh:mm|-hh:mm); 't', 'z' and ' ' accepted too. */
static int parse_rfc3339(const char *s, uint64_t *out)
{
	struct tm tm = {0};
	int n = 0, oh = 0, om = 0;
	uint64_t frac = 0, scale = 1000000000ull;
	const char *p;
	char sep;
	time_t t;
	int64_t offset = 0;

	if (sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &sep,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 7 ||
	    n != 19 || (sep != 'T' && sep != 't' && sep != ' '))
		return -EINVAL;
	p = s + n;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -EINVAL;
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*p - '0') * scale;
			}
	}
	if ((*p == 'Z' || *p == 'z') && !p[1]) {
		offset = 0;
	} else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
		   n == 5 && !p[6] && oh < 24 && om < 60) {
		offset = (*p == '+' ? 1 : -1) * (int64_t)(oh * 3600 + om * 60);
	} else {
		return -EINVAL;
	}
	if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970)
		return -EINVAL;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = timegm(&tm);
	if (t == (time_t)-1 || (int64_t)t - offset < 0)
		return -EINVAL;
	/* past 2554 in ns: the end of time (the multiplication would wrap to long ago) */
	*out = (uint64_t)((int64_t)t - offset) > (UINT64_MAX - frac) / 1000000000ull
		   ? UINT64_MAX
		   : (uint64_t)((int64_t)t - offset) * 1000000000ull + frac;
	return 0;
}

static int parse_time(const char *s, uint64_t *out)
{
	return parse_unix_seconds(s, out) == 0 ? 0 : parse_rfc3339(s, out);
}

static void __attribute__((noreturn))
usage_error(struct argp_state *state, const char *what, const char *arg)
{
	char shown[256];

	text_escape_terminal(shown, sizeof(shown), arg, strnlen(arg, 60), 0);
	argp_error(state, "invalid %s '%s'", what, shown);
	exit(2); /* argp_error exits; for the compiler */
}

static error_t parse_filter(struct query_cli *q, int key, char *arg, struct argp_state *state)
{
	struct store_filter *f = &q->f;
	char *eq;

	switch (key) {
	case OPT_SERVICE:
		f->service = arg;
		return 0;
	case OPT_OPERATION:
		f->operation = arg;
		return 0;
	case OPT_MIN_DURATION:
	case OPT_MAX_DURATION:
		if (text_parse_duration_ns(arg, key == OPT_MIN_DURATION ? &f->min_duration_ns
									: &f->max_duration_ns))
			usage_error(state, "duration (e.g. 250ms, 1.5s, 800us)", arg);
		return 0;
	case OPT_ERROR:
	case OPT_NO_ERROR:
		f->error = key == OPT_ERROR ? 1 : 0;
		return 0;
	case OPT_TAG:
		eq = strchr(arg, '=');
		if (!eq || eq == arg || f->nattrs == STORE_MAX_ATTR_FILTERS)
			usage_error(state, "--tag (KEY=VALUE, at most 8)", arg);
		*eq = '\0';
		f->attr_key[f->nattrs] = arg;
		f->attr_value[f->nattrs++] = eq + 1;
		return 0;
	case OPT_SINCE:
		if (text_parse_duration_ns(arg, &q->since_ns))
			usage_error(state, "--since (e.g. 1h, 30m)", arg);
		return 0;
	case OPT_FROM:
	case OPT_TO:
		if (parse_time(arg, key == OPT_FROM ? &f->from_unix_ns : &f->to_unix_ns))
			usage_error(state, "time (RFC 3339, or unix seconds)", arg);
		return 0;
	case OPT_TRACE_ID:
		if (!store_parse_hex_id(arg, f->trace_id, 16))
			usage_error(state, "--trace-id (32 hex digits)", arg);
		f->has_trace_id = true;
		return 0;
	}
	return ARGP_ERR_UNKNOWN;
}

static error_t parse_opt(int key, char *arg, struct argp_state *state)
{
	struct query_cli *q = state->input;
	unsigned long v;
	char *end;

	switch (key) {
	case OPT_STORE:
		q->store_path = arg;
		return 0;
	case OPT_SOURCE:
		q->source = arg;
		return 0;
	case OPT_LIMIT:
		errno = 0;
		v = strtoul(arg, &end, 10);
		if (errno || end == arg || *end || !v || v > QUERY_MAX_LIMIT || *arg == '-')
			usage_error(state, "--limit (1..10000)", arg);
		q->f.limit = (unsigned)v;
		return 0;
	case OPT_FORMAT:
		if (strcmp(arg, "table") == 0)
			q->format = FORMAT_TABLE;
		else if (strcmp(arg, "json") == 0)
			q->format = FORMAT_JSON;
		else if (strcmp(arg, "waterfall") == 0)
			q->format = FORMAT_WATERFALL;
		else
			usage_error(state, "--format (table, json or waterfall)", arg);
		return 0;
	case OPT_NO_COLOR:
		q->no_color = true;
		return 0;
	case OPT_DEPENDENCIES:
		q->dependencies = true;
		return 0;
	case ARGP_KEY_ARG:
		argp_error(state, "unexpected argument; filters are options (see --help)");
		return 0;
	}
	return parse_filter(q, key, arg, state);
}

/* ---- --source: spans read into an in-memory store ---------------------------------------- */

struct filler {
	struct store *st;
	char *lines[QUERY_SOURCE_BATCH];
	size_t lens[QUERY_SOURCE_BATCH];
	size_t n;
	uint64_t malformed;
	int err;
};

static int filler_commit(struct filler *fl)
{
	int added = store_add_lines(fl->st, (const char *const *)fl->lines, fl->lens, fl->n,
				    &fl->malformed);

	for (size_t i = 0; i < fl->n; i++)
		free(fl->lines[i]);
	fl->n = 0;
	return added < 0 ? added : 0;
}

static int filler_take(void *ctx, const char *line, size_t len)
{
	struct filler *fl = ctx;

	fl->lines[fl->n] = malloc(len ? len : 1);
	if (!fl->lines[fl->n])
		return -ENOMEM;
	memcpy(fl->lines[fl->n], line, len);
	fl->lens[fl->n++] = len;
	return fl->n == QUERY_SOURCE_BATCH ? filler_commit(fl) : 0;
}

static struct store *store_from_source(const struct query_cli *q)
{
	struct tsource_opts opts = {.from_unix_ns = q->f.from_unix_ns,
				    .to_unix_ns = q->f.to_unix_ns,
				    .service = q->f.service};
	struct filler *fl = calloc(1, sizeof(*fl));
	char err[256];
	int e;

	if (!fl)
		return NULL;
	fl->st = store_open(":memory:", STORE_READ_WRITE, err, sizeof(err));
	if (!fl->st) {
		fprintf(stderr, "hoptrace query: %s\n", err);
		free(fl);
		return NULL;
	}
	e = tsource_read("hoptrace query", q->source, &opts, filler_take, fl, NULL);
	if (!e && fl->n)
		e = filler_commit(fl);
	for (size_t i = 0; i < fl->n; i++)
		free(fl->lines[i]);
	if (fl->malformed)
		fprintf(stderr, "hoptrace query: %" PRIu64 " lines skipped: not spans\n",
			fl->malformed);
	if (e) {
		if (e != -EIO && e != -ENOENT) /* the source said why already */
			fprintf(stderr, "hoptrace query: cannot read %s: %s\n", q->source,
				store_strerror(e));
		store_close(fl->st);
		free(fl);
		return NULL;
	}
	struct store *st = fl->st;
	free(fl);
	return st;
}

/* ---- output ------------------------------------------------------------------------ */

static void hex(char *out, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void format_duration(char *out, size_t cap, uint64_t ns)
{
	if (ns >= 1000000000ull)
		snprintf(out, cap, "%.2f s", (double)ns / 1e9);
	else if (ns >= 1000000ull)
		snprintf(out, cap, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(out, cap, "%.2f us", (double)ns / 1e3);
}

static void format_time(char *out, size_t cap, uint64_t unix_ns)
{
	time_t t = (time_t)(unix_ns / 1000000000ull);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(unix_ns / 1000000ull % 1000));
}

static void print_table(const struct store_trace_summary *sum, int n)
{
	char id[33], when[64], dur[32], service[sizeof(sum->root_service) * 4],
	    name[sizeof(sum->root_name) * 4];

	printf("%-32s  %-24s  %11s  %5s  %6s  %8s  %s\n", "TRACE ID", "START (UTC)", "DURATION",
	       "SPANS", "ERRORS", "SERVICES", "ROOT");
	for (int i = 0; i < n; i++) {
		hex(id, sum[i].trace_id, 16);
		format_time(when, sizeof(when), sum[i].start_unix_ns);
		format_duration(dur, sizeof(dur), sum[i].duration_ns);
		/* names come from traced processes and traffic: nothing raw to the terminal */
		text_escape_terminal(service, sizeof(service), sum[i].root_service,
				     strlen(sum[i].root_service), 0);
		text_escape_terminal(name, sizeof(name), sum[i].root_name, strlen(sum[i].root_name),
				     0);
		printf("%-32s  %-24s  %11s  %5u  %6u  %8u  %s %s\n", id, when, dur, sum[i].nspans,
		       sum[i].nerrors, sum[i].nservices, service, name);
	}
}

/* s as a JSON string, with what a terminal would obey escaped as sink_json.c does (C0, DEL,
 * the C1 controls) and bytes that are not UTF-8 as \ufffd: a store file may come from
 * anywhere. */
static void put_json_string(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);

	fputc('"', out);
	while (p < end) {
		size_t n = *p < 0x80 ? 1 : utf8_sequence_len(p, (size_t)(end - p));

		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else if (n == 0)
			fputs("\\ufffd", out);
		else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
			fprintf(out, "\\u%04x", p[1]);
		else
			fwrite(p, 1, n, out);
		p += n ? n : 1;
	}
	fputc('"', out);
}

struct json_spans {
	FILE *out;
	bool first;
	struct json_doc doc;
	uint64_t skipped;
};

/* A span line as it is into the output: strict JSON (no raw control byte) without a C1
 * control, as sink_json.c writes them; a line that is not is skipped and counted. */
static bool line_is_clean_json(struct json_doc *d, const char *line, size_t len)
{
	const unsigned char *p = (const unsigned char *)line;

	if (json_doc__parse(d, line, len) != 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] == 0x7f || (p[i] == 0xc2 && i + 1 < len && p[i + 1] < 0xa0))
			return false;
	return true;
}

static int put_json_span(void *ctx, const char *line, size_t len)
{
	struct json_spans *js = ctx;

	if (!line_is_clean_json(&js->doc, line, len)) {
		js->skipped++;
		return 0;
	}
	if (!js->first)
		fputc(',', js->out);
	js->first = false;
	fwrite(line, 1, len, js->out);
	return 0;
}

static int print_json(struct store *st, const struct store_trace_summary *sum, int n)
{
	struct json_spans js = {.out = stdout};
	char id[33];
	int err = 0;

	json_doc__init(&js.doc);
	for (int i = 0; i < n && (!err || err == -ENOENT); i++) {
		js.first = true;

		hex(id, sum[i].trace_id, 16);
		printf("{\"trace_id\":\"%s\",\"start_unix_ns\":%" PRIu64 ",\"duration_ns\":%" PRIu64
		       ",\"nspans\":%u,\"nerrors\":%u,\"nservices\":%u,\"root_service\":",
		       id, sum[i].start_unix_ns, sum[i].duration_ns, sum[i].nspans, sum[i].nerrors,
		       sum[i].nservices);
		put_json_string(stdout, sum[i].root_service);
		fputs(",\"root_name\":", stdout);
		put_json_string(stdout, sum[i].root_name);
		fputs(",\"spans\":[", stdout);
		err = store_trace_lines(st, sum[i].trace_id, put_json_span, &js);
		fputs("]}\n", stdout);
	}
	json_doc__free(&js.doc);
	if (js.skipped)
		fprintf(stderr, "hoptrace query: %" PRIu64 " span lines left out: not clean JSON\n",
			js.skipped);
	return err == -ENOENT ? 0 : err;
}

/* A span line back into a struct span, with what the waterfall draws: ids, name, kind,
 * times, status, service and the HTTP status code. NULL for a line that is not a span. */
static struct span *span_from_line(struct json_doc *d, const char *line, size_t len)
{
	const struct json_value *root, *attrs;
	const char *s, *kind, *status;
	struct span *sp;
	int64_t v;

	if (json_doc__parse(d, line, len) || !(root = json_doc__root(d)) ||
	    root->type != JSON_OBJECT || !(sp = span_new()))
		return NULL;
	store_parse_hex_id(json_value_cstr(json_doc__member(d, root, "trace_id")), sp->trace_id,
			   16);
	store_parse_hex_id(json_value_cstr(json_doc__member(d, root, "span_id")), sp->span_id, 8);
	s = json_value_cstr(json_doc__member(d, root, "parent_span_id"));
	if (s && *s)
		store_parse_hex_id(s, sp->parent_span_id, 8);
	s = json_value_cstr(json_doc__member(d, root, "name"));
	snprintf(sp->name, sizeof(sp->name), "%s", s ? s : "");
	kind = json_value_cstr(json_doc__member(d, root, "kind"));
	sp->kind = kind && !strcmp(kind, "SERVER")   ? SPAN_KIND_SERVER
		   : kind && !strcmp(kind, "CLIENT") ? SPAN_KIND_CLIENT
						     : 0;
	status = json_value_cstr(json_doc__member(d, root, "status"));
	sp->status = status && !strcmp(status, "ERROR") ? SPAN_STATUS_ERROR
		     : status && !strcmp(status, "OK")	? SPAN_STATUS_OK
							: SPAN_STATUS_UNSET;
	if (json_value_int(json_doc__member(d, root, "start_unix_ns"), &v) && v >= 0)
		sp->start_unix_ns = (uint64_t)v;
	if (json_value_int(json_doc__member(d, root, "end_unix_ns"), &v) && v >= 0)
		sp->end_unix_ns = (uint64_t)v;
	attrs = json_doc__member(d, root, "attributes");
	if (json_value_int(json_doc__member(d, attrs, "http.response.status_code"), &v))
		span_set_int(sp, "http.response.status_code", v);
	s = json_value_cstr(json_doc__member(d, root, "service.name"));
	sp->resource = resource_new(0, 0);
	if (sp->resource && s)
		sp->resource->service_name = strdup(s);
	return sp;
}

struct waterfall_feed {
	struct sink *wf;
	struct json_doc doc;
};

static int feed_waterfall(void *ctx, const char *line, size_t len)
{
	struct waterfall_feed *f = ctx;
	struct span *sp = span_from_line(&f->doc, line, len);

	if (!sp)
		return -ENOMEM;
	f->wf->emit(f->wf, sp);
	return 0;
}

static int print_waterfalls(const struct query_cli *q, struct store *st,
			    const struct store_trace_summary *sum, int n)
{
	struct waterfall_feed f;
	int err = 0;

	f.wf = sink_waterfall_new(stdout, 0, !q->no_color && isatty(STDOUT_FILENO));
	if (!f.wf)
		return -ENOMEM;
	json_doc__init(&f.doc);
	for (int i = 0; i < n && !err; i++) {
		err = store_trace_lines(st, sum[i].trace_id, feed_waterfall, &f);
		if (err == -ENOENT)
			err = 0;
		/* one trace at a time: printed in the order found */
		f.wf->flush(f.wf, 0);
	}
	json_doc__free(&f.doc);
	f.wf->destroy(f.wf);
	return err;
}

/* ---- --dependencies ---------------------------------------------------------------------- */

static const enum propagation_result verdicts[] = {PROP_OK, PROP_FORWARDED, PROP_RESTARTED,
						   PROP_DROPPED, PROP_INVALID};
#define NVERDICTS (sizeof(verdicts) / sizeof(verdicts[0]))

struct edges {
	bool json;
	unsigned n;
};

static int print_edge(void *ctx, const struct store_edge *e)
{
	struct edges *ed = ctx;
	char caller[64 * 4], callee[64 * 4];

	if (ed->json) {
		fputs("{\"parent\":", stdout);
		put_json_string(stdout, e->parent);
		fputs(",\"child\":", stdout);
		put_json_string(stdout, e->child);
		printf(",\"calls\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"propagation\":{", e->calls,
		       e->errors);
		for (size_t i = 0; i < NVERDICTS; i++)
			printf("%s\"%s\":%" PRIu64, i ? "," : "",
			       propagation_result_name(verdicts[i]),
			       e->by_propagation[verdicts[i]]);
		fputs("}}\n", stdout);
	} else {
		if (!ed->n)
			printf("%-24s  %-24s  %8s  %7s  %6s  %9s  %9s  %7s  %7s\n", "CALLER",
			       "CALLEE", "CALLS", "ERRORS", "OK", "FORWARDED", "RESTARTED",
			       "DROPPED", "INVALID");
		text_escape_terminal(caller, sizeof(caller), e->parent, strnlen(e->parent, 64), 0);
		text_escape_terminal(callee, sizeof(callee), e->child, strnlen(e->child, 64), 0);
		printf("%-24s  %-24s  %8" PRIu64 "  %7" PRIu64, caller, callee, e->calls,
		       e->errors);
		printf("  %6" PRIu64 "  %9" PRIu64 "  %9" PRIu64 "  %7" PRIu64 "  %7" PRIu64 "\n",
		       e->by_propagation[PROP_OK], e->by_propagation[PROP_FORWARDED],
		       e->by_propagation[PROP_RESTARTED], e->by_propagation[PROP_DROPPED],
		       e->by_propagation[PROP_INVALID]);
	}
	ed->n++;
	return 0;
}

static int print_dependencies(const struct query_cli *q, struct store *st)
{
	struct edges ed = {.json = q->format == FORMAT_JSON};
	int err = store_dependencies(st, q->f.from_unix_ns, q->f.to_unix_ns, print_edge, &ed);

	if (err)
		fprintf(stderr, "hoptrace query: cannot read the dependencies: %s\n",
			store_strerror(err));
	else if (!ed.n)
		fprintf(stderr, "hoptrace query: no dependency between services\n");
	return err;
}

int query_cli_main(int argc, char **argv)
{
	struct argp argp = {options, parse_opt, NULL, doc, NULL, NULL, NULL};
	struct query_cli q = {.f = {.error = -1, .limit = QUERY_DEFAULT_LIMIT}};
	struct store_trace_summary *sum;
	struct store *st;
	char err[PATH_MAX + 128];
	int n, e = 0;

	argv[0] = (char *)"hoptrace query"; /* argp names the program in its messages */
	if (argp_parse(&argp, argc, argv, 0, NULL, &q))
		return 2;
	if (q.since_ns) {
		uint64_t now = now_unix_ns();

		q.f.from_unix_ns = now > q.since_ns ? now - q.since_ns : 1;
	}
	if (!q.store_path)
		q.store_path = getenv("HOPTRACE_STORE") && *getenv("HOPTRACE_STORE")
				   ? getenv("HOPTRACE_STORE")
				   : STORE_DEFAULT_PATH;
	if (q.source) {
		st = store_from_source(&q);
	} else {
		st = store_open(q.store_path, STORE_READ_ONLY, err, sizeof(err));
		if (!st)
			fprintf(stderr, "hoptrace query: %s\n", err);
	}
	if (!st)
		return 1;
	if (q.dependencies) {
		e = print_dependencies(&q, st);
		store_close(st);
		return e || fflush(stdout) != 0 ? 1 : 0;
	}
	sum = calloc(q.f.limit, sizeof(*sum));
	n = sum ? store_find_traces(st, &q.f, sum, q.f.limit) : -ENOMEM;
	if (n < 0) {
		fprintf(stderr, "hoptrace query: cannot search: %s\n", store_strerror(n));
		e = n;
	} else if (n == 0) {
		fprintf(stderr, "hoptrace query: no trace matches\n");
	} else if (q.format == FORMAT_TABLE) {
		print_table(sum, n);
	} else if (q.format == FORMAT_JSON) {
		e = print_json(st, sum, n);
	} else {
		e = print_waterfalls(&q, st, sum, n);
	}
	if (e && n > 0)
		fprintf(stderr, "hoptrace query: cannot read a trace: %s\n", store_strerror(e));
	free(sum);
	store_close(st);
	if (fflush(stdout) != 0 || ferror(stdout))
		return 1;
	return e ? 1 : 0;
}
