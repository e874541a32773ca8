// SPDX-License-Identifier: BSD-2-Clause
/*
 * `hoptrace audit [--json] FILE...`: the propagation audit of a finished run, from the JSON
 * span lines `hoptrace -o json` wrote. Each client span carries its classification as
 * attributes (hoptrace.propagation and friends, see exchange.c), so the offline report is
 * the same count the live --audit makes, and audit__print prints it the same way.
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
#include "json_read.h"
#include "tsource.h"

#define AUDIT_CLI_MAX_REASONS 3 /* malformed lines described one by one; the rest counted */

struct audit_cli {
	bool json;
	char **files;
	int nfiles;
	struct audit audit;
	struct json_doc doc;
	const char *name;	 /* the source being read */
	struct tsource_stats st; /* its reading so far (st.lines: the line being taken) */
	uint64_t lines, spans, malformed;
};

static const char doc[] =
    "Print the propagation audit from JSON span files written by `hoptrace -o json`: per "
    "caller -> callee edge, how the trace context was passed on (ok, forwarded, "
    "restarted, dropped, invalid). FILE - is standard input.\n"
    "\n"
    "EXAMPLES:\n"
    "  hoptrace -o json -O spans.jsonl -d 60 && hoptrace audit spans.jsonl\n"
    "  hoptrace audit --json monday.jsonl tuesday.jsonl | jq '.edges[]'\n"
    "  hoptrace -o json | hoptrace audit -";

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
		argp_error(state, "no FILE given (a JSON span file, or - for standard input)");
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
		why = client_fields(d, attrs, &c);
		if (why)
			return why;
		audit__observe_client(&cli->audit, &c);
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
	memset(&cli->st, 0, sizeof(cli->st));
	err = tsource_read("hoptrace audit", spec, NULL, take_line, cli, &cli->st);
	cli->malformed += cli->st.malformed;
	return err;
}

int audit_cli_main(int argc, char **argv)
{
	static char name[] = "hoptrace audit";
	struct argp argp = {options, parse_opt, "FILE...", doc, NULL, NULL, NULL};
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
	for (int i = 0; i < cli.nfiles && !err; i++)
		err = read_source(&cli, cli.files[i]);
	if (!err) {
		if (cli.malformed)
			fprintf(stderr,
				"hoptrace audit: skipped %" PRIu64 " malformed line(s) of %" PRIu64
				" (not span objects as `hoptrace -o json` writes them)\n",
				cli.malformed, cli.lines);
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
	audit__free(&cli.audit);
	return err ? 1 : 0;
}
