// SPDX-License-Identifier: BSD-2-Clause
/*
 * `hoptrace audit [--json] SOURCE...`: the propagation audit of a finished run, from the JSON
 * span lines `hoptrace -o json` wrote, or from another tracer's spans (tsource.h). Each client span
 * carries its classification as attributes (hoptrace.propagation and friends, see exchange.c), so
 * the offline report is the same count the live --audit makes, and audit__print prints it the same
 * way.
 *
 * Client spans whose callee is on another host wait until every source is read, then take
 * the service of the server span whose parent they are (README "Traces from elsewhere").
 *
 * Lines are read strictly: a line that is not a JSON object with the span fields of the
 * schema in sink_json.c is skipped and counted, never guessed at.
 */
#include <argp.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "hashmap.h"
#include "json_read.h"
#include "text.h"
#include "tsource.h"

#define AUDIT_CLI_MAX_REASONS 3 /* malformed lines described one by one; the rest counted */
/* Server spans remembered for the cross-host join, and client spans waiting for it. */
#define AUDIT_CLI_MAX_SERVERS (1u << 20)
#define AUDIT_CLI_MAX_PENDING (1u << 20)

/* A server span with a parent: who served the call its parent made. */
struct server_ref {
	uint8_t trace_id[16], parent_id[8];
	char service[];
};

/* A client span whose callee only a server span elsewhere in the sources can name. */
struct pending_call {
	uint8_t trace_id[16], span_id[8];
	bool foreign; /* no hoptrace classification: an SDK's span */
	bool tracestate;
	enum propagation_result result;
	char trace_hex[33];
	char confidence[16];
	char *caller;
	char *fallback_callee; /* address:port, as audit__observe_client names an unknown callee */
};

struct audit_cli {
	bool json;
	char **files;
	int nfiles;
	struct audit audit;
	struct json_doc doc;
	const char *name;	 /* the source being read */
	bool converted;		 /* ... is another tracer's (tsource_spec_converted) */
	uint64_t source_lines;	 /* lines of every source, blank ones included */
	struct tsource_stats st; /* its reading so far (st.lines: the line being taken) */
	uint64_t lines, spans, malformed;
	struct u64map servers;	      /* hash(trace id, parent id) -> struct server_ref */
	struct pending_call *pending; /* client calls joined after every source is read */
	size_t npending, pending_cap;
	uint64_t not_joined; /* past the bounds above: counted without the join */
};

static const char doc[] =
    "Print the propagation audit from span sources: per caller -> callee edge, how the "
    "trace context was passed on (ok, forwarded, restarted, dropped, invalid). With the "
    "spans of several hosts, the hops between them are audited too.\n"
    "SOURCE: FILE (JSON span lines as `hoptrace -o json` writes them; - is standard input), "
    "otlp:FILE (OTLP JSON, one export request a line, as the OpenTelemetry Collector's file "
    "exporter writes it), jaeger:URL (a Jaeger query API), tempo:URL (a Tempo API). "
    "HOPTRACE_SOURCE_TOKEN: a bearer token for the APIs.\n"
    "\n"
    "EXAMPLES:\n"
    "  hoptrace -o json -O spans.jsonl -d 60 && hoptrace audit spans.jsonl\n"
    "  hoptrace audit --json monday.jsonl tuesday.jsonl | jq '.edges[]'\n"
    "  hoptrace -o json | hoptrace audit -\n"
    "  hoptrace audit jaeger:http://jaeger:16686\n"
    "  hoptrace audit otlp:/var/lib/otelcol/traces.jsonl tempo:http://tempo:3200";

static const struct argp_option options[] = {
    {"json", 'j', NULL, 0, "The report as one JSON document (as --audit-json)", 0},
    {0},
};

static error_t parse_opt(int key, char *arg, struct argp_state *state)
{
	struct audit_cli *cli = state->input;

	switch (key) {
	case 'j':
		cli->json = true;
		return 0;
	case ARGP_KEY_ARGS:
		cli->files = state->argv + state->next;
		cli->nfiles = state->argc - state->next;
		state->next = state->argc;
		return 0;
	case ARGP_KEY_NO_ARGS:
		argp_error(state, "no SOURCE given (a JSON span file, - for standard input, "
				  "otlp:FILE, jaeger:URL or tempo:URL)");
		return 0;
	}
	(void)arg;
	return ARGP_ERR_UNKNOWN;
}

static bool is_trace_id(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 32;
}

/* n bytes from 2n lowercase hex digits (already checked by the caller or here). */
static bool hex_bytes(const char *s, uint8_t *out, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit_value((unsigned char)s[2 * i]);
		int lo = hex_digit_value((unsigned char)s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static uint64_t call_key(const uint8_t trace_id[16], const uint8_t span_id[8])
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a over the trace id and the span id */

	for (int i = 0; i < 16; i++)
		h = (h ^ trace_id[i]) * 1099511628211ULL;
	for (int i = 0; i < 8; i++)
		h = (h ^ span_id[i]) * 1099511628211ULL;
	return h;
}

/* The server span whose parent is the call (trace_id, span_id), or NULL. */
static const struct server_ref *server_of(const struct audit_cli *cli, const uint8_t *trace_id,
					  const uint8_t *span_id)
{
	uint64_t k = call_key(trace_id, span_id);
	const struct server_ref *r;

	/* a hash collision is astronomically rare: probe linearly */
	while ((r = u64map_get(&cli->servers, k)) &&
	       (memcmp(r->trace_id, trace_id, 16) || memcmp(r->parent_id, span_id, 8)))
		k++;
	return r;
}

/* Remember a server span with a parent, for the join. The first of two with the same parent
 * is kept (a retried call served twice names the same callee anyway). */
static void remember_server(struct audit_cli *cli, const struct json_value *root,
			    const char *service)
{
	const struct json_doc *d = &cli->doc;
	uint8_t trace_id[16], parent[8];
	struct server_ref *r;
	uint64_t k;

	if (!hex_bytes(json_value_cstr(json_doc__member(d, root, "trace_id")), trace_id, 16) ||
	    !hex_bytes(json_value_cstr(json_doc__member(d, root, "parent_span_id")), parent, 8))
		return; /* a root span (no parent) has nothing to join */
	if (server_of(cli, trace_id, parent))
		return;
	if (cli->servers.count >= AUDIT_CLI_MAX_SERVERS) {
		cli->not_joined++;
		return;
	}
	r = malloc(sizeof(*r) + strlen(service) + 1);
	if (!r)
		return;
	memcpy(r->trace_id, trace_id, 16);
	memcpy(r->parent_id, parent, 8);
	strcpy(r->service, service);
	k = call_key(trace_id, parent);
	while (u64map_get(&cli->servers, k))
		k++;
	if (u64map_put(&cli->servers, k, r)) {
		cli->not_joined++;
		free(r);
	}
}

/*
 * A client span the audit counts only once every source is read: one with a classification
 * but no callee service (the callee is on another host, whose server span may be in another
 * source), or an SDK's client span (no classification at all: a server span child in the same
 * trace means the context went on). False when it cannot wait (then it is counted now).
 */
static bool defer_call(struct audit_cli *cli, const struct json_value *root,
		       const struct audit_client_span *c, bool foreign)
{
	struct pending_call *p;
	uint8_t span_id[8];
	char addr[300];

	if (!hex_bytes(json_value_cstr(json_doc__member(&cli->doc, root, "span_id")), span_id, 8))
		return false;
	if (cli->npending == cli->pending_cap) {
		size_t cap = cli->pending_cap ? cli->pending_cap * 2 : 256;
		struct pending_call *np;

		if (cap > AUDIT_CLI_MAX_PENDING ||
		    !(np = realloc(cli->pending, cap * sizeof(*np)))) {
			cli->not_joined++;
			return false;
		}
		cli->pending = np;
		cli->pending_cap = cap;
	}
	p = &cli->pending[cli->npending];
	memset(p, 0, sizeof(*p));
	hex_bytes(c->trace_id_hex, p->trace_id, 16);
	memcpy(p->span_id, span_id, 8);
	p->foreign = foreign;
	p->tracestate = c->tracestate != NULL;
	p->result = foreign ? PROP_OK : propagation_result_parse(c->propagation);
	snprintf(p->trace_hex, sizeof(p->trace_hex), "%s", c->trace_id_hex);
	snprintf(p->confidence, sizeof(p->confidence), "%s",
		 foreign	 ? "server_span"
		 : c->confidence ? c->confidence
				 : "");
	snprintf(addr, sizeof(addr), "%s:%" PRId64, c->server_address ? c->server_address : "?",
		 c->has_port ? c->server_port : 0);
	p->caller = strdup(c->service);
	p->fallback_callee = strdup(addr);
	if (!p->caller || !p->fallback_callee) {
		free(p->caller);
		free(p->fallback_callee);
		return false;
	}
	cli->npending++;
	return true;
}

/* Count the calls that waited for every source: their callee is the service of the server
 * span whose parent they are, when the sources hold it. */
static void join_pending(struct audit_cli *cli)
{
	for (size_t i = 0; i < cli->npending; i++) {
		struct pending_call *p = &cli->pending[i];
		const struct server_ref *r = server_of(cli, p->trace_id, p->span_id);

		if (r)
			audit__record(&cli->audit, p->caller, r->service, p->result, p->tracestate,
				      p->trace_hex, p->confidence);
		else if (p->foreign)
			cli->audit.calls_unmatched++;
		else
			audit__record(&cli->audit, p->caller, p->fallback_callee, p->result,
				      p->tracestate, p->trace_hex, p->confidence);
		free(p->caller);
		free(p->fallback_callee);
	}
	cli->npending = 0;
}

static void free_servers(struct audit_cli *cli)
{
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&cli->servers, &it, &k, &v);)
		free(v);
	u64map_free(&cli->servers);
}

/* An optional string attribute: absent is fine (*out = NULL), another type is not. */
static int attr_str(const struct json_doc *d, const struct json_value *attrs, const char *key,
		    const char **out)
{
	const struct json_value *v = json_doc__member(d, attrs, key);

	*out = NULL;
	if (!v)
		return 0;
	*out = json_value_cstr(v);
	return *out ? 0 : -EINVAL;
}

/* The audit fields of a client span's attributes; the reason when they are not right. */
static const char *client_fields(const struct json_doc *d, const struct json_value *attrs,
				 struct audit_client_span *c)
{
	const struct json_value *port;

	if (attr_str(d, attrs, "hoptrace.propagation", &c->propagation))
		return "attribute hoptrace.propagation is not a string";
	if (c->propagation && propagation_result_parse(c->propagation) == PROP_NONE)
		return "unknown hoptrace.propagation value";
	if (attr_str(d, attrs, "hoptrace.propagation.confidence", &c->confidence))
		return "attribute hoptrace.propagation.confidence is not a string";
	if (attr_str(d, attrs, "hoptrace.propagation.tracestate", &c->tracestate))
		return "attribute hoptrace.propagation.tracestate is not a string";
	if (attr_str(d, attrs, "hoptrace.propagation.unclassified", &c->unclassified))
		return "attribute hoptrace.propagation.unclassified is not a string";
	if (attr_str(d, attrs, "hoptrace.parent.confidence", &c->parent_confidence))
		return "attribute hoptrace.parent.confidence is not a string";
	if (attr_str(d, attrs, "hoptrace.callee.service", &c->callee_service))
		return "attribute hoptrace.callee.service is not a string";
	if (attr_str(d, attrs, "server.address", &c->server_address))
		return "attribute server.address is not a string";
	port = json_doc__member(d, attrs, "server.port");
	c->has_port = port != NULL;
	if (port && !json_value_int(port, &c->server_port))
		return "attribute server.port is not an integer";
	return NULL;
}

/* Count one span line; NULL, or why the line is not a span. */
static const char *take_span(struct audit_cli *cli)
{
	const struct json_doc *d = &cli->doc;
	const struct json_value *root = json_doc__root(d), *attrs;
	struct audit_client_span c = {0};
	const char *kind, *why;

	if (!root || root->type != JSON_OBJECT)
		return "not a JSON object";
	kind = json_value_cstr(json_doc__member(d, root, "kind"));
	c.trace_id_hex = json_value_cstr(json_doc__member(d, root, "trace_id"));
	c.service = json_value_cstr(json_doc__member(d, root, "service.name"));
	attrs = json_doc__member(d, root, "attributes");
	if (!kind)
		return "no \"kind\" string";
	if (!c.trace_id_hex || !is_trace_id(c.trace_id_hex))
		return "no \"trace_id\" of 32 lowercase hex digits";
	if (!c.service)
		return "no \"service.name\" string";
	if (!attrs || attrs->type != JSON_OBJECT)
		return "no \"attributes\" object";
	if (strcmp(kind, "CLIENT") == 0) {
		bool foreign;

		why = client_fields(d, attrs, &c);
		if (why)
			return why;
		/* from another tracer's model, with no classification, reason or parent
		 * evidence: an SDK's span, not hoptrace's (a span of an old hoptrace file
		 * without the reason is counted as before) */
		foreign =
		    cli->converted && !c.propagation && !c.unclassified && !c.parent_confidence;
		if (!(foreign || (c.propagation && !c.callee_service)) ||
		    !defer_call(cli, root, &c, foreign))
			audit__observe_client(&cli->audit, &c);
	} else if (strcmp(kind, "SERVER") == 0) {
		remember_server(cli, root, c.service);
	}
	cli->spans++;
	return NULL;
}

static void malformed(struct audit_cli *cli, const char *why, long off)
{
	if (cli->malformed++ >= AUDIT_CLI_MAX_REASONS)
		return;
	if (off >= 0)
		fprintf(stderr, "hoptrace audit: %s:%" PRIu64 ": %s (at byte %ld)\n", cli->name,
			cli->st.lines, why, off + 1);
	else
		fprintf(stderr, "hoptrace audit: %s:%" PRIu64 ": %s\n", cli->name, cli->st.lines,
			why);
}

/* One span line of a source: counted into the audit, or as malformed. */
static int take_line(void *ctx, const char *line, size_t len)
{
	struct audit_cli *cli = ctx;
	const char *why;

	cli->lines++;
	if (json_doc__parse(&cli->doc, line, len)) {
		malformed(cli, cli->doc.err, (long)cli->doc.err_off);
		return 0;
	}
	why = take_span(cli);
	if (why)
		malformed(cli, why, -1);
	return 0;
}

/* One source: every span counted into the audit or as malformed. 0 or -errno. */
static int read_source(struct audit_cli *cli, const char *spec)
{
	int err;

	cli->name = spec;
	cli->converted = tsource_spec_converted(spec);
	memset(&cli->st, 0, sizeof(cli->st));
	err = tsource_read("hoptrace audit", spec, NULL, take_line, cli, &cli->st);
	cli->malformed += cli->st.malformed;
	/* a file's lines, blank ones included; a converted source's spans (handed over or not) */
	cli->source_lines += cli->st.lines > cli->st.spans + cli->st.malformed
				 ? cli->st.lines
				 : cli->st.spans + cli->st.malformed;
	return err;
}

int audit_cli_main(int argc, char **argv)
{
	static char name[] = "hoptrace audit";
	struct argp argp = {options, parse_opt, "SOURCE...", doc, NULL, NULL, NULL};
	struct audit_cli cli = {0};
	int err;

	/* argp names the program after argv[0] in its messages */
	argv[0] = name;
	if (argp_parse(&argp, argc, argv, 0, NULL, &cli))
		return 64;
	err = audit__init(&cli.audit);
	if (err) {
		fprintf(stderr, "hoptrace audit: %s\n", strerror(-err));
		return 1;
	}
	json_doc__init(&cli.doc);
	err = u64map_init(&cli.servers, AUDIT_CLI_MAX_SERVERS);
	for (int i = 0; i < cli.nfiles && !err; i++)
		err = read_source(&cli, cli.files[i]);
	join_pending(&cli);
	if (!err) {
		if (cli.not_joined)
			fprintf(
			    stderr,
			    "hoptrace audit: %" PRIu64
			    " span(s) past the cross-host join's bounds: their calls are counted "
			    "without it\n",
			    cli.not_joined);
		if (cli.malformed)
			fprintf(stderr,
				"hoptrace audit: skipped %" PRIu64 " malformed line(s) of %" PRIu64
				" (not span objects as `hoptrace -o json` writes them)\n",
				cli.malformed, cli.source_lines);
		if (!cli.spans)
			fprintf(stderr, "hoptrace audit: no spans found\n");
		audit__print(&cli.audit, stdout, cli.json);
		if (fflush(stdout)) {
			fprintf(stderr, "hoptrace audit: cannot write the report: %s\n",
				strerror(errno));
			err = -EIO;
		}
	}
	json_doc__free(&cli.doc);
	free(cli.pending);
	free_servers(&cli);
	audit__free(&cli.audit);
	return err ? 1 : 0;
}
