// SPDX-License-Identifier: BSD-2-Clause
/*
 * `hoptrace analyze [options] SOURCE...`: the trace analysis (analyze.h) of spans read
 * through tsource_read, whatever the source kind: per trace the critical path and slowest
 * hop, self and child time, sequential calls that could run in parallel, N+1 calls and
 * error origins, then the aggregate over every trace read.
 */
#include <argp.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyze.h"
#include "tsource.h"

#define ANALYZE_CLI_MAX_REASONS 3 /* malformed lines described one by one; the rest counted */

enum {
	OPT_FROM = 0x100,
	OPT_TO,
	OPT_SINCE,
	OPT_NPLUS1,
	OPT_MAX_TRACES,
	OPT_MAX_SPANS,
	OPT_MIN_SAVED,
};

struct analyze_cli {
	bool json;
	char **sources;
	int nsources;
	char trace_id[33];
	struct analyze_opts opts;
	struct analyze an;
	const char *name;	 /* the source being read */
	struct tsource_stats st; /* its reading so far */
	uint64_t reported;
};

static const char doc[] =
    "Analyse traces: per trace the critical path and its slowest hop, self time against "
    "child time per span, sequential calls that could run in parallel, N+1 calls (many "
    "calls to one endpoint from one request) and where each error originated; then the "
    "aggregate over every trace read. SOURCE is a JSON span file of `hoptrace -o json` (- "
    "for standard input) or another source kind (see README \"Trace analysis\").\n"
    "\n"
    "Times (--from, --to): seconds since the epoch or UTC as 2026-12-06T03:00:00Z. "
    "Durations (--since, --min-saved): a number with ms, s, m, h or d.\n"
    "\n"
    "EXAMPLES:\n"
    "  hoptrace -o json -O spans.jsonl -d 60 && hoptrace analyze spans.jsonl\n"
    "  hoptrace analyze --trace-id 4bf92f3577b34da6a3ce929d0e0e4736 spans.jsonl\n"
    "  hoptrace analyze --json --since 1h --n-plus-one 10 spans.jsonl | jq .aggregate";

static const struct argp_option options[] = {
    {"json", 'j', NULL, 0, "The report as one JSON document", 0},
    {"trace-id", 't', "ID", 0, "Only this trace (32 hex digits)", 0},
    {"aggregate-only", 'a', NULL, 0, "Only the aggregate, not each trace", 0},
    {"from", OPT_FROM, "TIME", 0, "Only spans that started at or after TIME", 0},
    {"to", OPT_TO, "TIME", 0, "Only spans that started before TIME", 0},
    {"since", OPT_SINCE, "DURATION", 0, "Only spans that started in the last DURATION", 0},
    {"n-plus-one", OPT_NPLUS1, "N", 0,
     "Calls to one endpoint from one span that make N+1 "
     "(default 5, at least 2)",
     0},
    {"min-saved", OPT_MIN_SAVED, "DURATION", 0,
     "Sequential calls are reported when parallelism would save this much (default 1ms)", 0},
    {"max-traces", OPT_MAX_TRACES, "N", 0, "Traces held (default 10000; more are counted)", 0},
    {"max-spans", OPT_MAX_SPANS, "N", 0,
     "Spans held (default 200000; more are counted; 10000 per trace)", 0},
    {0},
};

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

/* "250ms", "30s", "15m", "1h", "2d" in nanoseconds. */
static int parse_duration(const char *s, uint64_t *ns)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = {{"ms", 1000000ull},
		     {"s", 1000000000ull},
		     {"m", 60ull * 1000000000ull},
		     {"h", 3600ull * 1000000000ull},
		     {"d", 86400ull * 1000000000ull}};
	char *end;
	uint64_t v;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].unit) == 0) {
			if (v > UINT64_MAX / units[i].ns)
				return -ERANGE;
			*ns = v * units[i].ns;
			return 0;
		}
	return -EINVAL;
}

/* Seconds since the epoch, or UTC as YYYY-MM-DDTHH:MM:SSZ, in nanoseconds. */
static int parse_time(const char *s, uint64_t *ns)
{
	struct tm tm = {0};
	uint64_t secs;
	const char *end;
	time_t t;

	if (!parse_u64(s, &secs)) {
		if (secs > UINT64_MAX / 1000000000ull)
			return -ERANGE;
		*ns = secs * 1000000000ull;
		return 0;
	}
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end || strcmp(end, "Z") != 0)
		return -EINVAL;
	t = timegm(&tm);
	if (t < 0)
		return -ERANGE;
	*ns = (uint64_t)t * 1000000000ull;
	return 0;
}

static int parse_trace_id(const char *s, char out[33])
{
	size_t i;

	for (i = 0; s[i] && i < 32; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return -EINVAL;
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[i] = '\0';
	return i == 32 && !s[i] ? 0 : -EINVAL;
}

static error_t parse_opt(int key, char *arg, struct argp_state *state)
{
	struct analyze_cli *cli = state->input;
	struct analyze_opts *o = &cli->opts;
	uint64_t v;
	struct timespec now;

	switch (key) {
	case 'j':
		cli->json = true;
		return 0;
	case 'a':
		o->aggregate_only = true;
		return 0;
	case 't':
		if (parse_trace_id(arg, cli->trace_id))
			argp_error(state, "--trace-id: not a trace id of 32 hex digits");
		o->trace_id = cli->trace_id;
		return 0;
	case OPT_FROM:
	case OPT_TO:
		if (parse_time(arg, key == OPT_FROM ? &o->from_unix_ns : &o->to_unix_ns))
			argp_error(state,
				   "%s: not a time (seconds since the epoch, or "
				   "2026-12-06T03:00:00Z)",
				   key == OPT_FROM ? "--from" : "--to");
		return 0;
	case OPT_SINCE:
		if (parse_duration(arg, &v))
			argp_error(state, "--since: not a duration (e.g. 30s, 15m, 1h, 2d)");
		clock_gettime(CLOCK_REALTIME, &now);
		v = v < (uint64_t)now.tv_sec * 1000000000ull ? v : 0;
		o->from_unix_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec - v;
		return 0;
	case OPT_NPLUS1:
		if (parse_u64(arg, &v) || v < 2 || v > 1000000)
			argp_error(state, "--n-plus-one: a number of calls from 2 to 1000000");
		o->n_plus_one = (unsigned)v;
		return 0;
	case OPT_MIN_SAVED:
		if (parse_duration(arg, &o->parallel_min_saved_ns))
			argp_error(state, "--min-saved: not a duration (e.g. 1ms, 2s)");
		return 0;
	case OPT_MAX_TRACES:
	case OPT_MAX_SPANS:
		if (parse_u64(arg, &v) || v < 1 || v > 100000000)
			argp_error(state, "%s: a number from 1 to 100000000",
				   key == OPT_MAX_TRACES ? "--max-traces" : "--max-spans");
		if (key == OPT_MAX_TRACES)
			o->max_traces = v;
		else
			o->max_spans = v;
		return 0;
	case ARGP_KEY_ARGS:
		cli->sources = state->argv + state->next;
		cli->nsources = state->argc - state->next;
		state->next = state->argc;
		return 0;
	case ARGP_KEY_NO_ARGS:
		argp_error(state, "no SOURCE given (a JSON span file, or - for standard input)");
		return 0;
	case ARGP_KEY_END:
		if (o->from_unix_ns && o->to_unix_ns && o->from_unix_ns >= o->to_unix_ns)
			argp_error(state, "the time range is empty (--from/--since is not before "
					  "--to)");
		return 0;
	}
	return ARGP_ERR_UNKNOWN;
}

static int take_line(void *ctx, const char *line, size_t len)
{
	struct analyze_cli *cli = ctx;
	const char *why;
	int err = analyze__add_line(&cli->an, line, len, &why);

	if (err == -EINVAL) {
		if (cli->reported++ < ANALYZE_CLI_MAX_REASONS)
			fprintf(stderr, "hoptrace analyze: %s:%" PRIu64 ": %s\n", cli->name,
				cli->st.lines, why);
		return 0;
	}
	if (err)
		fprintf(stderr, "hoptrace analyze: %s\n", strerror(-err));
	return err;
}

int analyze_cli_main(int argc, char **argv)
{
	static char name[] = "hoptrace analyze";
	struct argp argp = {options, parse_opt, "SOURCE...", doc, NULL, NULL, NULL};
	struct analyze_cli *cli = calloc(1, sizeof(*cli));
	struct tsource_opts topts = {0};
	int err = 0;

	if (!cli)
		return 1;
	argv[0] = name;
	analyze_opts__default(&cli->opts);
	if (argp_parse(&argp, argc, argv, 0, NULL, cli)) {
		free(cli);
		return 64;
	}
	for (int i = 0; i < cli->nsources; i++)
		if (!tsource_spec_known(cli->sources[i])) {
			fprintf(stderr, "hoptrace analyze: unknown source \"%s\"\n",
				cli->sources[i]);
			free(cli);
			return 64;
		}
	err = analyze__init(&cli->an, &cli->opts);
	topts.from_unix_ns = cli->opts.from_unix_ns;
	topts.to_unix_ns = cli->opts.to_unix_ns;
	for (int i = 0; i < cli->nsources && !err; i++) {
		cli->name = cli->sources[i];
		memset(&cli->st, 0, sizeof(cli->st));
		err = tsource_read("hoptrace analyze", cli->sources[i], &topts, take_line, cli,
				   &cli->st);
		cli->an.malformed += cli->st.malformed;
	}
	if (!err) {
		if (cli->an.malformed)
			fprintf(stderr,
				"hoptrace analyze: skipped %" PRIu64
				" malformed line(s) of %" PRIu64
				" (not span objects as `hoptrace -o json` writes them)\n",
				cli->an.malformed, cli->an.lines);
		if (cli->an.skipped_spans || cli->an.skipped_traces)
			fprintf(stderr,
				"hoptrace analyze: %" PRIu64 " span(s) not held past the limits "
				"(--max-traces, --max-spans): their traces are reported incomplete "
				"or not at all\n",
				cli->an.skipped_spans + cli->an.skipped_traces);
		if (!cli->an.spans)
			fprintf(stderr, "hoptrace analyze: no spans found\n");
		err = analyze__report(&cli->an, stdout, cli->json);
		if (!err && fflush(stdout))
			err = -EIO;
		if (err)
			fprintf(stderr, "hoptrace analyze: cannot write the report: %s\n",
				strerror(-err));
	}
	analyze__free(&cli->an);
	free(cli);
	return err ? 1 : 0;
}
