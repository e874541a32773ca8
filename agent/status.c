// SPDX-License-Identifier: BSD-2-Clause
#include "status.h"

#include <argp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "httpd.h"
#include "json_read.h"
#include "log.h"
#include "proc.h"
#include "resource.h"
#include "text.h"

/* ---- the document (agent side, loop thread) ----------------------------------------- */

/* s (cut to STATUS_NAME_MAX bytes) as a JSON string. */
static void put_string(FILE *f, const char *s)
{
	char esc[STATUS_NAME_MAX * LOG_JSON_ESC_MAX_PER_BYTE + 1];
	size_t n = s ? strnlen(s, STATUS_NAME_MAX) : 0;

	log_json_escape(esc, sizeof(esc), s ? s : "", n);
	fprintf(f, "\"%s\"", esc);
}

static void put_procs(FILE *f, const struct status_input *in)
{
	fputs(",\"processes\":[", f);
	for (size_t i = 0; i < in->nprocs; i++) {
		const struct status_proc *p = &in->procs[i];

		fprintf(f, "%s{\"pid\":%" PRIu32 ",\"exe\":", i ? "," : "", p->pid);
		put_string(f, p->exe);
		fputs(",\"service\":", f);
		put_string(f, p->service);
		fprintf(f, ",\"spans\":%" PRIu64 ",\"exited\":%s}", p->spans,
			p->exited ? "true" : "false");
	}
	fputs("]", f);
}

int status_render(const struct status_input *in, char **out, size_t *len)
{
	FILE *f = open_memstream(out, len);
	uint64_t up = in->now_unix_s > in->start_unix_s ? in->now_unix_s - in->start_unix_s : 0;

	if (!f)
		return -ENOMEM;
	fputs("{\"version\":", f);
	put_string(f, in->version);
	fprintf(f, ",\"pid\":%" PRIu64 ",\"start_time_unix_s\":%" PRIu64 ",\"uptime_s\":%" PRIu64,
		in->pid, in->start_unix_s, up);
	fputs(",\"capture\":", f);
	put_string(f, in->capture);
	fprintf(f, ",\"ready\":%s,\"counters\":{", in->ready ? "true" : "false");
	for (size_t i = 0; i < in->ncounters; i++) {
		fputs(i ? "," : "", f);
		put_string(f, in->counters[i].name);
		fprintf(f, ":%" PRIu64, in->counters[i].value);
	}
	fprintf(f, "},\"processes_total\":%" PRIu64, in->processes_total);
	put_procs(f, in);
	fputs("}\n", f);
	if (fclose(f)) {
		free(*out);
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

struct top {
	struct status_proc *out;
	size_t max, n;
	uint64_t total;
};

/* Keep the max processes with the most spans: insert in order, the last one falls off. */
static void top_add(void *ctx, const struct resource *r, bool exited)
{
	struct top *t = ctx;
	size_t i;

	t->total++;
	if (t->n == t->max && (!t->max || t->out[t->n - 1].spans >= r->spans))
		return;
	i = t->n < t->max ? t->n++ : t->n - 1;
	for (; i > 0 && t->out[i - 1].spans < r->spans; i--)
		t->out[i] = t->out[i - 1];
	t->out[i] = (struct status_proc){.pid = r->pid,
					 .exited = exited,
					 .spans = r->spans,
					 .exe = r->exe_name,
					 .service = r->service_name};
}

size_t status_top_procs(const struct proc_table *pt, struct status_proc *out, size_t max,
			uint64_t *total)
{
	struct top t = {.out = out, .max = max};

	proc_table__each(pt, top_add, &t);
	*total = t.total;
	return t.n;
}

/* ---- the subcommand ------------------------------------------------------------------- */

struct status_opts {
	const char *endpoint;
	int json;
};

struct body {
	char *data;
	size_t len;
	bool too_big;
};

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	struct body *b = ctx;
	size_t add = size * n;
	char *grown;

	if (b->len + add > STATUS_BODY_MAX) {
		b->too_big = true;
		return 0; /* libcurl stops with CURLE_WRITE_ERROR */
	}
	grown = realloc(b->data, b->len + add + 1);
	if (!grown)
		return 0;
	memcpy(grown + b->len, p, add);
	b->data = grown;
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

/* GET base+path into b; the HTTP status, or -1 with why in err (CURL_ERROR_SIZE). */
static long fetch(const char *base, const char *path, struct body *b, char *err)
{
	char url[HTTPD_ADDR_LEN + 32];
	CURL *c = curl_easy_init();
	long code = -1;
	CURLcode rc;

	*b = (struct body){0};
	err[0] = '\0';
	if (!c) {
		snprintf(err, CURL_ERROR_SIZE, "cannot start libcurl");
		return -1;
	}
	snprintf(url, sizeof(url), "http://%s%s", base, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* a local endpoint, never through a proxy */
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	else if (b->too_big)
		snprintf(err, CURL_ERROR_SIZE, "answer over %u bytes", STATUS_BODY_MAX);
	else if (!err[0])
		snprintf(err, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
	curl_easy_cleanup(c);
	return code;
}

/* The endpoint to connect to: ADDR:PORT as --metrics-listen takes it, a wildcard address
 * (the agent listens on every address) meaning this host's loopback. */
static int resolve_endpoint(const char *s, char *out)
{
	struct sockaddr_storage a;
	socklen_t len;

	if (httpd_parse_listen(s, &a, &len))
		return -EINVAL;
	if (a.ss_family == AF_INET) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&a;

		if (v4->sin_addr.s_addr == htonl(INADDR_ANY))
			v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a;

		if (IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr))
			v6->sin6_addr = in6addr_loopback;
	}
	httpd_format_addr(&a, out);
	return 0;
}

/* A text of the answer, made safe for the terminal and cut to one short line. */
static void shown(char *out, size_t cap, const char *s, size_t len)
{
	const char *nl = memchr(s, '\n', len);

	if (nl)
		len = (size_t)(nl - s);
	if (len > 120)
		len = 120;
	text_escape_terminal(out, cap, s, len, 0);
}

static const char *str_member(const struct json_doc *d, const struct json_value *o, const char *key)
{
	const char *s = json_value_cstr(json_doc__member(d, o, key));

	return s ? s : "?";
}

static int64_t int_member(const struct json_doc *d, const struct json_value *o, const char *key)
{
	int64_t v = -1;

	json_value_int(json_doc__member(d, o, key), &v);
	return v;
}

/* One line for /healthz or /readyz: "ok", or the reason it fails. */
static void print_probe(const char *base, const char *path, const char *label)
{
	char err[CURL_ERROR_SIZE], text[128 * TEXT_ESC_MAX_PER_BYTE + 1];
	struct body b;
	long code = fetch(base, path, &b, err);

	if (code < 0)
		shown(text, sizeof(text), err, strlen(err));
	else
		shown(text, sizeof(text), b.data ? b.data : "", b.len);
	printf("%-8s %s (%s%ld)\n", label, code == 200 ? "ok" : "FAILING", code < 0 ? "" : "HTTP ",
	       code);
	if (code != 200)
		printf("         %s\n", text);
	free(b.data);
}

/* A name from the document for a column: escaped, cut to width. */
static void column(char *out, size_t cap, const char *s, size_t width)
{
	size_t n = text_escape_terminal(out, cap, s, strlen(s), TEXT_ESC_ASCII);

	if (n > width)
		out[width] = '\0';
}

static void print_procs(const struct json_doc *d, const struct json_value *root)
{
	const struct json_value *procs = json_doc__member(d, root, "processes");
	char exe[64], svc[128];
	size_t shown_n = 0;

	printf("\n%-8s %-16s %-32s %10s\n", "PID", "EXE", "SERVICE", "SPANS");
	for (const struct json_value *p = json_doc__first(d, procs); p; p = json_doc__next(d, p)) {
		column(exe, sizeof(exe), str_member(d, p, "exe"), 16);
		column(svc, sizeof(svc), str_member(d, p, "service"), 32);
		printf("%-8" PRId64 " %-16s %-32s %10" PRId64 "%s\n", int_member(d, p, "pid"), exe,
		       svc, int_member(d, p, "spans"),
		       json_doc__member(d, p, "exited") &&
			       json_doc__member(d, p, "exited")->type == JSON_TRUE
			   ? "  (exited)"
			   : "");
		shown_n++;
	}
	if ((int64_t)shown_n < int_member(d, root, "processes_total"))
		printf("... and %" PRId64 " more processes\n",
		       int_member(d, root, "processes_total") - (int64_t)shown_n);
}

static void print_counters(const struct json_doc *d, const struct json_value *root)
{
	const struct json_value *counters = json_doc__member(d, root, "counters");
	char name[64];
	int64_t v;

	printf("\n%-32s %14s\n", "COUNTER (non-zero)", "VALUE");
	for (const struct json_value *c = json_doc__first(d, counters); c;
	     c = json_doc__next(d, c)) {
		if (!json_value_int(c, &v) || !v)
			continue;
		text_escape_terminal(name, sizeof(name), c->key, c->key_len, TEXT_ESC_ASCII);
		printf("%-32s %14" PRId64 "\n", name, v);
	}
}

static void print_table(const char *base, const struct json_doc *d)
{
	const struct json_value *root = json_doc__root(d);
	char version[64], capture[64];
	int64_t up = int_member(d, root, "uptime_s");

	column(version, sizeof(version), str_member(d, root, "version"), 32);
	column(capture, sizeof(capture), str_member(d, root, "capture"), 32);
	printf("hoptrace %s at %s: pid %" PRId64 ", up %" PRId64 "h%02" PRId64 "m%02" PRId64
	       "s, capture %s\n",
	       version, base, int_member(d, root, "pid"), up / 3600, up / 60 % 60, up % 60,
	       capture);
	print_probe(base, "/healthz", "health:");
	print_probe(base, "/readyz", "ready:");
	print_procs(d, root);
	print_counters(d, root);
}

/* JSON allows raw C1 controls and U+2028/9 in strings; the agent escapes them, so a
 * document that has them did not come from it, and --json must not send them to a terminal. */
static bool has_raw_controls(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] == 0xc2 && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
			return true;
		if (i + 2 < len && s[i] == 0xe2 && s[i + 1] == 0x80 &&
		    (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
			return true;
	}
	return false;
}

static int check_document(const struct body *b, struct json_doc *d)
{
	const struct json_value *root;

	if (!b->data || json_doc__parse(d, b->data, b->len) ||
	    has_raw_controls((const unsigned char *)b->data, b->len))
		return -EINVAL;
	root = json_doc__root(d);
	if (root->type != JSON_OBJECT || !json_value_cstr(json_doc__member(d, root, "version")) ||
	    !json_doc__member(d, root, "counters") || !json_doc__member(d, root, "processes"))
		return -EINVAL;
	return 0;
}

static int report(const struct status_opts *o, const char *base)
{
	char err[CURL_ERROR_SIZE], text[128 * TEXT_ESC_MAX_PER_BYTE + 1];
	struct json_doc d;
	struct body b;
	long code = fetch(base, "/status", &b, err);
	int ret = 1;

	json_doc__init(&d);
	if (code < 0) {
		shown(text, sizeof(text), err, strlen(err));
		fprintf(stderr,
			"hoptrace status: no agent answers at http://%s: %s (start the agent with "
			"--metrics-listen %s, or give --endpoint ADDR:PORT)\n",
			base, text, base);
	} else if (code != 200) {
		shown(text, sizeof(text), b.data ? b.data : "", b.len);
		fprintf(stderr, "hoptrace status: http://%s/status answered HTTP %ld: %s\n", base,
			code, text);
	} else if (check_document(&b, &d)) {
		fprintf(stderr,
			"hoptrace status: http://%s/status is not a hoptrace status document "
			"(another program listens there?)\n",
			base);
	} else {
		if (o->json)
			fwrite(b.data, 1, b.len, stdout);
		else
			print_table(base, &d);
		ret = 0;
	}
	json_doc__free(&d);
	free(b.data);
	return ret;
}

static const struct argp_option status_options[] = {
    {"endpoint", 'e', "ADDR:PORT", 0,
     "The agent's --metrics-listen address (default " STATUS_DEFAULT_ENDPOINT
     "; a wildcard address means loopback)",
     0},
    {"json", 'j', NULL, 0, "Print the agent's /status document as it is (JSON)", 0},
    {0},
};

static error_t status_parse(int key, char *arg, struct argp_state *state)
{
	struct status_opts *o = state->input;

	switch (key) {
	case 'e':
		o->endpoint = arg;
		return 0;
	case 'j':
		o->json = 1;
		return 0;
	case ARGP_KEY_ARG:
		argp_error(state, "unexpected argument");
		return 0;
	}
	return ARGP_ERR_UNKNOWN;
}

int status_cli_main(int argc, char **argv)
{
	static const char doc[] =
	    "hoptrace status: the counters and traced processes of a running agent, read from "
	    "its endpoint (--metrics-listen): /status, /healthz and /readyz.\n"
	    "Exit status: 0 when the agent answered, 1 when none did.\n"
	    "\n"
	    "EXAMPLES:\n"
	    "  hoptrace status              # an agent run with --metrics-listen 9464\n"
	    "  hoptrace status --endpoint 127.0.0.1:9100 --json\n";
	struct argp argp = {status_options, status_parse, NULL, doc, NULL, NULL, NULL};
	struct status_opts o = {.endpoint = STATUS_DEFAULT_ENDPOINT};
	char base[HTTPD_ADDR_LEN];
	int ret;

	argv[0] = "hoptrace status"; /* how usage messages name it */
	argp_err_exit_status = 2;
	if (argp_parse(&argp, argc, argv, 0, NULL, &o))
		return 2;
	if (resolve_endpoint(o.endpoint, base)) {
		fprintf(stderr, "hoptrace status: invalid --endpoint (PORT, :PORT, IPV4:PORT or "
				"[IPV6]:PORT, numeric)\n");
		return 2;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		fprintf(stderr, "hoptrace status: cannot start libcurl\n");
		return 1;
	}
	ret = report(&o, base);
	curl_global_cleanup();
	return ret;
}
