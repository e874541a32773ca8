// SPDX-License-Identifier: BSD-2-Clause
#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "resource.h"
#include "span.h"
#include "traceparent.h"
#include "text.h"

static const char *const result_names[PROP__COUNT] = {
    [PROP_NONE] = "unclassified",   [PROP_OK] = "ok",		[PROP_FORWARDED] = "forwarded",
    [PROP_RESTARTED] = "restarted", [PROP_DROPPED] = "dropped", [PROP_INVALID] = "invalid",
};

const char *propagation_result_name(enum propagation_result r)
{
	return r < PROP__COUNT ? result_names[r] : "?";
}

enum propagation_result propagation_result_parse(const char *name)
{
	for (int r = PROP_OK; r < PROP__COUNT; r++)
		if (strcmp(name, result_names[r]) == 0)
			return (enum propagation_result)r;
	return PROP_NONE;
}

enum propagation_result audit_classify(const struct audit_input *in, bool *tracestate_dropped)
{
	*tracestate_dropped = false;
	if (!in->served_valid)
		return PROP_NONE;
	if (in->sent_count == 0)
		return PROP_DROPPED;
	if (in->sent_count > 1 || !in->sent_valid)
		return PROP_INVALID;
	if (memcmp(in->sent->trace_id, in->served_trace_id, 16) != 0)
		return PROP_RESTARTED;
	*tracestate_dropped = in->served_tracestate && !in->sent_tracestate;
	if (memcmp(in->sent->parent_id, in->served_parent_id, 8) == 0)
		return PROP_FORWARDED;
	return PROP_OK;
}

/* ---- per-edge counters ------------------------------------------------------------- */

static uint64_t edge_key(const char *caller, const char *callee)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a over "caller\0callee" */

	for (const char *p = caller; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const char *p = callee; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	return h;
}

static uint64_t caller_key(const char *caller)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (const char *p = caller; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	return h;
}

int audit__init_sized(struct audit *a, size_t max_edges, size_t max_per_caller)
{
	int err;

	memset(a, 0, sizeof(*a));
	a->max_per_caller = max_per_caller;
	err = u64map_init(&a->edges, max_edges);
	if (err)
		return err;
	err = u64map_init(&a->callers, max_edges);
	if (err)
		u64map_free(&a->edges);
	return err;
}

int audit__init(struct audit *a)
{
	return audit__init_sized(a, AUDIT_MAX_EDGES, AUDIT_MAX_EDGES_PER_CALLER);
}

static void edge_free(struct audit_edge *e)
{
	free(e->caller);
	free(e->callee);
	free(e);
}

void audit__free(struct audit *a)
{
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&a->edges, &it, &k, &v);)
		edge_free(v);
	u64map_free(&a->edges);
	u64map_free(&a->callers);
}

static struct audit_edge *edge_find(const struct audit *a, const char *caller, const char *callee,
				    uint64_t *key)
{
	struct audit_edge *e;

	*key = edge_key(caller, callee);
	e = u64map_get(&a->edges, *key);
	/* a hash collision between two edges is astronomically rare: probe linearly */
	while (e && (strcmp(e->caller, caller) != 0 || strcmp(e->callee, callee) != 0))
		e = u64map_get(&a->edges, ++*key);
	return e;
}

/* The edge of a call; a caller past its share of edges gets its "other callees" edge. NULL
 * when the table is full (the caller counts the call as lost). */
static struct audit_edge *edge_get(struct audit *a, const char *caller, const char *callee)
{
	uintptr_t nedges = (uintptr_t)u64map_get(&a->callers, caller_key(caller));
	struct audit_edge *e;
	uint64_t key;

	e = edge_find(a, caller, callee, &key);
	if (e)
		return e;
	if (nedges >= a->max_per_caller) {
		a->calls_merged++;
		callee = AUDIT_OTHER_CALLEE;
		e = edge_find(a, caller, callee, &key);
		if (e)
			return e;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->caller = strdup(caller);
	e->callee = strdup(callee);
	if (!e->caller || !e->callee || u64map_put(&a->edges, key, e)) {
		edge_free(e);
		return NULL;
	}
	/* a caller the callers table has no room for is bounded by the edge table alone */
	u64map_put(&a->callers, caller_key(caller), (void *)(nedges + 1));
	return e;
}

/* Copy s as valid UTF-8, each invalid byte replaced by U+FFFD, as the JSON sink writes it:
 * names come from traced processes (OTEL_SERVICE_NAME, Host headers) and live and offline
 * reports must agree. */
static void utf8_sanitise(const char *s, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, left = strlen(s);

	while (left && o + 4 < outlen) {
		size_t n = utf8_sequence_len(p, left);

		if (n) {
			memcpy(out + o, p, n);
			o += n;
		} else {
			n = 1;
			memcpy(out + o, "\xef\xbf\xbd", 3); /* U+FFFD */
			o += 3;
		}
		p += n;
		left -= n;
	}
	out[o] = '\0';
}

static void count_reason(struct audit *a, const char *reason)
{
	unsigned i;

	for (i = 0; i < a->nreasons; i++)
		if (strcmp(a->reasons[i].name, reason) == 0)
			break;
	if (i == a->nreasons) {
		if (a->nreasons == AUDIT_MAX_REASONS - 1)
			reason = "other"; /* the last slot */
		for (i = 0; i < a->nreasons; i++)
			if (strcmp(a->reasons[i].name, reason) == 0)
				break;
		if (i == a->nreasons) {
			utf8_sanitise(reason, a->reasons[i].name, sizeof(a->reasons[i].name));
			a->nreasons++;
		}
	}
	a->reasons[i].calls++;
}

void audit__record_unclassified(struct audit *a, const char *reason)
{
	a->calls_seen++;
	a->calls_unclassified++;
	if (!reason || !*reason)
		reason = "unknown";
	if (strcmp(reason, AUDIT_REASON_WITHOUT_CONTEXT) == 0)
		a->calls_without_context++;
	else if (strcmp(reason, "no_request_in_flight") == 0 ||
		 strcmp(reason, "after_response") == 0)
		a->calls_not_serving++;
	else
		a->calls_unsound++;
	count_reason(a, reason);
}

void audit__record(struct audit *a, const char *caller, const char *callee,
		   enum propagation_result r, bool tracestate_dropped, const char *trace_id_hex,
		   const char *confidence)
{
	char caller_ok[256], callee_ok[512];
	struct audit_edge *e;

	if (r == PROP_NONE || r >= PROP__COUNT) {
		audit__record_unclassified(a, AUDIT_REASON_WITHOUT_CONTEXT);
		return;
	}
	a->calls_seen++;
	utf8_sanitise(caller, caller_ok, sizeof(caller_ok));
	utf8_sanitise(callee, callee_ok, sizeof(callee_ok));
	e = edge_get(a, caller_ok, callee_ok);
	if (!e) {
		a->calls_lost++;
		return;
	}
	e->counts[r]++;
	e->tracestate_dropped += tracestate_dropped;
	if (!e->example_trace[r][0]) {
		snprintf(e->example_trace[r], sizeof(e->example_trace[r]), "%s", trace_id_hex);
		snprintf(e->confidence[r], sizeof(e->confidence[r]), "%s",
			 confidence ? confidence : "");
	}
}

static const char *attr_str(const struct span *s, const char *key)
{
	const struct span_attr *a = span_find_attr(s, key);

	return a && a->type == SPAN_ATTR_STR ? span_attr_str(s, a) : NULL;
}

void audit__observe_span(struct audit *a, const struct span *s)
{
	const struct span_attr *port = span_find_attr(s, "server.port");
	struct audit_client_span c = {0};
	char trace[33];

	if (s->kind != SPAN_KIND_CLIENT)
		return;
	hex_encode(s->trace_id, 16, trace);
	/* the same names the JSON sink writes, so the offline report reads the same */
	c.service = s->resource && s->resource->service_name ? s->resource->service_name
							     : "unknown_service";
	c.trace_id_hex = trace;
	c.propagation = attr_str(s, "hoptrace.propagation");
	c.confidence = attr_str(s, "hoptrace.propagation.confidence");
	c.tracestate = attr_str(s, "hoptrace.propagation.tracestate");
	c.unclassified = attr_str(s, "hoptrace.propagation.unclassified");
	c.callee_service = attr_str(s, "hoptrace.callee.service");
	c.parent_confidence = attr_str(s, "hoptrace.parent.confidence");
	c.server_address = attr_str(s, "server.address");
	c.has_port = port && port->type == SPAN_ATTR_INT;
	c.server_port = c.has_port ? port->ival : 0;
	audit__observe_client(a, &c);
}

void audit__observe_client(struct audit *a, const struct audit_client_span *c)
{
	const char *callee = c->callee_service;
	char addr[300];

	/* the same callee and caller fallbacks as audit__observe_span */
	if (!callee) {
		snprintf(addr, sizeof(addr), "%s:%" PRId64,
			 c->server_address ? c->server_address : "?",
			 c->has_port ? c->server_port : 0);
		callee = addr;
	}
	if (!c->propagation) {
		const char *why = c->unclassified;

		/* files written before the reason was recorded: what the parent says */
		if (!why)
			why = c->parent_confidence && strcmp(c->parent_confidence, "none") != 0
				  ? AUDIT_REASON_WITHOUT_CONTEXT
				  : "no_request_in_flight";
		audit__record_unclassified(a, why);
		return;
	}
	audit__record(a, c->service ? c->service : "unknown_service", callee,
		      propagation_result_parse(c->propagation), c->tracestate != NULL,
		      c->trace_id_hex ? c->trace_id_hex : "", c->confidence);
}

/* ---- report ------------------------------------------------------------------------ */

static uint64_t edge_calls(const struct audit_edge *e)
{
	uint64_t n = 0;

	for (int r = PROP_OK; r < PROP__COUNT; r++)
		n += e->counts[r];
	return n;
}

/* The finding that matters most on an edge: any broken propagation outranks ok. */
static enum propagation_result edge_verdict(const struct audit_edge *e)
{
	static const enum propagation_result order[] = {PROP_DROPPED, PROP_INVALID, PROP_RESTARTED,
							PROP_FORWARDED, PROP_OK};

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (e->counts[order[i]])
			return order[i];
	return PROP_NONE;
}

static int cmp_edges(const void *x, const void *y)
{
	const struct audit_edge *a = *(const struct audit_edge *const *)x;
	const struct audit_edge *b = *(const struct audit_edge *const *)y;
	int c = strcmp(a->caller, b->caller);

	return c ? c : strcmp(a->callee, b->callee);
}

static struct audit_edge **sorted_edges(const struct audit *a, size_t *n)
{
	struct audit_edge **list = calloc(a->edges.count + 1, sizeof(*list));
	uint64_t k;
	void *v;

	*n = 0;
	if (!list)
		return NULL;
	for (size_t it = 0; u64map_next(&a->edges, &it, &k, &v);)
		list[(*n)++] = v;
	qsort(list, *n, sizeof(*list), cmp_edges);
	return list;
}

/* For the terminal: control characters (C0, DEL, C1) from traced processes are shown escaped, so
 * no process can drive the operator's terminal through its service name. */
static void terminal_safe(const char *s, char *out, size_t outlen)
{
	text_escape_terminal(out, outlen, s, strlen(s), 0);
}

static void print_table_row(FILE *out, const struct audit_edge *e)
{
	enum propagation_result v = edge_verdict(e);
	uint64_t calls = edge_calls(e);
	char cells[128] = "", caller[256], callee[512];
	size_t used = 0;

	terminal_safe(e->caller, caller, sizeof(caller));
	terminal_safe(e->callee, callee, sizeof(callee));

	for (int r = PROP_OK; r < PROP__COUNT; r++) {
		if (!e->counts[r])
			continue;
		used += (size_t)snprintf(cells + used, sizeof(cells) - used, "%s%s %.0f%%",
					 used ? ", " : "", result_names[r],
					 100.0 * (double)e->counts[r] / (double)calls);
		if (used >= sizeof(cells))
			break;
	}
	fprintf(out, "%-20.20s %-28.28s %7" PRIu64 "  %-10s %-34s %s (%s)\n", caller, callee, calls,
		result_names[v], cells, e->example_trace[v], e->confidence[v]);
	if (e->tracestate_dropped)
		fprintf(out, "%-20s %-28s %7s  tracestate dropped on %" PRIu64 " call(s)\n", "", "",
			"", e->tracestate_dropped);
}

static void print_table(const struct audit *a, FILE *out, struct audit_edge **list, size_t n)
{
	fprintf(out,
		"propagation audit: %" PRIu64 " outgoing calls; not classified: %" PRIu64
		" made outside any request seen, %" PRIu64
		" serving a request without a valid traceparent, %" PRIu64
		" whose request is not known by sound evidence\n",
		a->calls_seen, a->calls_not_serving, a->calls_without_context, a->calls_unsound);
	if (a->nreasons) {
		fprintf(out, "not classified, by reason:");
		for (unsigned i = 0; i < a->nreasons; i++)
			fprintf(out, "%s %s %" PRIu64, i ? "," : "", a->reasons[i].name,
				a->reasons[i].calls);
		fputc('\n', out);
	}
	if (a->calls_unmatched)
		fprintf(
		    out,
		    "not joined: %" PRIu64
		    " client call(s) without hoptrace's classification and no server span child "
		    "in the sources (callee not traced or not in the sources, or its context was "
		    "dropped: that leaves two traces, never joined by guess)\n",
		    a->calls_unmatched);
	if (a->calls_merged || a->calls_lost)
		fprintf(out,
			"edge limits: %" PRIu64 " call(s) counted under \"" AUDIT_OTHER_CALLEE
			"\" (over %zu callees for one caller), %" PRIu64
			" call(s) on no edge (edge table full)\n",
			a->calls_merged, a->max_per_caller, a->calls_lost);
	if (!n) {
		fprintf(out, "no classified calls\n");
		return;
	}
	fprintf(out, "%-20s %-28s %7s  %-10s %-34s %s\n", "CALLER", "CALLEE", "CALLS", "VERDICT",
		"RESULTS", "EXAMPLE TRACE (evidence)");
	for (size_t i = 0; i < n; i++)
		print_table_row(out, list[i]);
}

/* Names come from traced processes' environments: escape what JSON needs. */
static void print_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(out, "\\u%04x", *s);
		else
			fputc(*s, out);
	}
	fputc('"', out);
}

static void print_json_edge(FILE *out, const struct audit_edge *e, bool first)
{
	bool first_result = true;

	fprintf(out, "%s{\"caller\":", first ? "" : ",");
	print_json_string(out, e->caller);
	fprintf(out, ",\"callee\":");
	print_json_string(out, e->callee);
	fprintf(out,
		",\"calls\":%" PRIu64 ",\"verdict\":\"%s\",\"tracestate_dropped\":%" PRIu64
		",\"results\":{",
		edge_calls(e), result_names[edge_verdict(e)], e->tracestate_dropped);
	for (int r = PROP_OK; r < PROP__COUNT; r++) {
		if (!e->counts[r])
			continue;
		fprintf(out,
			"%s\"%s\":{\"calls\":%" PRIu64 ",\"example_trace_id\":\"%s\","
			"\"confidence\":\"%s\"}",
			first_result ? "" : ",", result_names[r], e->counts[r], e->example_trace[r],
			e->confidence[r]);
		first_result = false;
	}
	fprintf(out, "}}");
}

void audit__print(const struct audit *a, FILE *out, bool json)
{
	size_t n;
	struct audit_edge **list = sorted_edges(a, &n);

	if (!list)
		return;
	if (!json) {
		print_table(a, out, list, n);
	} else {
		fprintf(out,
			"{\"calls\":%" PRIu64 ",\"unclassified\":%" PRIu64
			",\"not_serving\":%" PRIu64 ",\"without_context\":%" PRIu64
			",\"unsound\":%" PRIu64 ",\"merged_into_other_callees\":%" PRIu64
			",\"lost_edge_table_full\":%" PRIu64 ",\"unclassified_reasons\":{",
			a->calls_seen, a->calls_unclassified, a->calls_not_serving,
			a->calls_without_context, a->calls_unsound, a->calls_merged, a->calls_lost);
		/* reason names are the agent's words or sanitised, and never hold quotes from
		 * the agent; a file read back may: escaped like service names */
		for (unsigned i = 0; i < a->nreasons; i++) {
			fprintf(out, "%s", i ? "," : "");
			print_json_string(out, a->reasons[i].name);
			fprintf(out, ":%" PRIu64, a->reasons[i].calls);
		}
		fprintf(out, "},\"edges\":[");
		for (size_t i = 0; i < n; i++)
			print_json_edge(out, list[i], i == 0);
		fprintf(out, "],\"unmatched_client_calls\":%" PRIu64 "}\n", a->calls_unmatched);
	}
	free(list);
}
