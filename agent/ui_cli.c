// SPDX-License-Identifier: BSD-2-Clause
/*
 * `hoptrace ui [--store PATH | --source SPEC] [--listen ADDR:PORT]`: the web UI and the
 * Jaeger-compatible API (ui_api.h) without an agent, over a store file (read-only), or over
 * any span source (tsource.h) read into a store in memory first.
 */
#include <argp.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "log.h"
#include "store.h"
#include "tsource.h"
#include "ui_api.h"

#define UI_DEFAULT_LISTEN "127.0.0.1:16686" /* Jaeger's query port: its clients' default */
#define UI_LOAD_BATCH 512

struct ui_cli {
	const char *store_path, *source, *listen;
};

static const char doc[] =
    "Serve the web UI and a Jaeger-compatible query API (/api/services, /api/traces, "
    "/api/dependencies, ...) over hoptrace's store, or over spans read from SPEC (a JSON span "
    "file, otlp:FILE, jaeger:URL, tempo:URL, store:PATH) into memory. Point a browser, the "
    "Jaeger UI or Grafana's Jaeger data source at it. Loopback only unless --listen names "
    "another address: it has no authentication.\n"
    "\n"
    "EXAMPLES:\n"
    "  hoptrace ui                      # the local store\n"
    "  hoptrace ui --store /tmp/t.db --listen 127.0.0.1:8080\n"
    "  hoptrace ui --source spans.jsonl # spans of a file, in memory";

static const struct argp_option options[] = {
    {"store", 's', "PATH", 0, "The store to read (read-only; default " STORE_DEFAULT_PATH ")", 0},
    {"source", 'S', "SPEC", 0, "Read the spans of SPEC into memory and serve those instead", 0},
    {"listen", 'l', "ADDR:PORT", 0, "Where to listen (default " UI_DEFAULT_LISTEN ")", 0},
    {0},
};

static error_t parse_opt(int key, char *arg, struct argp_state *state)
{
	struct ui_cli *cli = state->input;

	switch (key) {
	case 's':
		cli->store_path = arg;
		return 0;
	case 'S':
		if (!tsource_spec_known(arg))
			argp_error(state, "unknown --source kind '%s'", arg);
		cli->source = arg;
		return 0;
	case 'l':
		cli->listen = arg;
		return 0;
	case ARGP_KEY_ARG:
		argp_error(state, "unexpected argument");
		return 0;
	case ARGP_KEY_END:
		if (cli->store_path && cli->source)
			argp_error(state, "--store and --source exclude each other");
		return 0;
	}
	return ARGP_ERR_UNKNOWN;
}

/* ---- --source: spans into a store in memory ---------------------------------------------- */

struct loader {
	struct store *st;
	char *line[UI_LOAD_BATCH];
	size_t len[UI_LOAD_BATCH], n;
	uint64_t added, malformed;
	int err;
};

static int load_flush(struct loader *l)
{
	int n = store_add_lines(l->st, (const char *const *)l->line, l->len, l->n, &l->malformed);

	for (size_t i = 0; i < l->n; i++)
		free(l->line[i]);
	l->n = 0;
	if (n < 0)
		return l->err = n;
	l->added += (uint64_t)n;
	return 0;
}

static int load_line(void *ctx, const char *line, size_t len)
{
	struct loader *l = ctx;
	char *copy = malloc(len + 1);

	if (!copy)
		return l->err = -ENOMEM;
	memcpy(copy, line, len);
	copy[len] = '\0';
	l->line[l->n] = copy;
	l->len[l->n++] = len;
	return l->n == UI_LOAD_BATCH ? load_flush(l) : 0;
}

static struct store *load_source(const char *spec)
{
	struct tsource_opts opts = {0};
	struct tsource_stats ts = {0};
	struct loader l = {0};
	char err[256] = "";
	int rc;

	l.st = store_open(":memory:", STORE_READ_WRITE, err, sizeof(err));
	if (!l.st) {
		fprintf(stderr, "hoptrace ui: cannot make a store in memory: %s\n", err);
		return NULL;
	}
	rc = tsource_read("hoptrace ui", spec, &opts, load_line, &l, &ts);
	if (rc == 0 && l.n)
		rc = load_flush(&l);
	for (size_t i = 0; i < l.n; i++)
		free(l.line[i]);
	if (rc) {
		fprintf(stderr, "hoptrace ui: cannot read %s: %s\n", spec,
			strerror(rc < 0 ? -rc : EIO));
		store_close(l.st);
		return NULL;
	}
	fprintf(stderr, "hoptrace ui: %llu spans read from %s (%llu malformed lines skipped)\n",
		(unsigned long long)l.added, spec,
		(unsigned long long)(ts.malformed + l.malformed));
	return l.st;
}

/* ---- serving ------------------------------------------------------------------------------ */

int ui_cli_main(int argc, char **argv)
{
	struct argp argp = {options, parse_opt, NULL, doc, NULL, NULL, NULL};
	struct ui_cli cli = {.listen = UI_DEFAULT_LISTEN};
	struct sockaddr_storage addr;
	struct store *st = NULL;
	struct ui_api api;
	struct httpd *h = NULL;
	socklen_t alen;
	char err[256] = "";
	sigset_t stop;
	int sig;

	argv[0] = "hoptrace ui"; /* for --help and argp's messages */
	if (argp_parse(&argp, argc, argv, 0, NULL, &cli))
		return 2;
	if (httpd_parse_listen(cli.listen, &addr, &alen)) {
		fprintf(stderr,
			"hoptrace ui: invalid --listen '%s' (PORT, IPV4:PORT or [IPV6]:PORT)\n",
			cli.listen);
		return 2;
	}
	if (cli.source) {
		st = load_source(cli.source);
	} else {
		const char *path = cli.store_path ? cli.store_path : STORE_DEFAULT_PATH;

		st = store_open(path, STORE_READ_ONLY, err, sizeof(err));
		if (!st)
			fprintf(stderr, "hoptrace ui: %s\n", err);
	}
	if (!st)
		return 1;
	/* the stop signals are taken by sigwait below, never by a thread */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	if (ui_api_init(&api, NULL, st, &addr)) {
		store_close(st);
		return 1;
	}
	if (httpd__start_for(&h, &addr, alen, "hoptrace ui --listen",
			     &(struct httpd_app){ui_api_handle, &api})) {
		ui_api_free(&api);
		store_close(st);
		return 1;
	}
	/* from here the store is used by the HTTP thread only */
	fprintf(stderr, "hoptrace ui: http://%s/ (Ctrl-C to stop)\n", httpd__address(h));
	while (sigwait(&stop, &sig) != 0)
		;
	httpd__stop(h);
	ui_api_free(&api);
	store_close(st);
	return 0;
}

/* ---- the agent's --ui-listen ------------------------------------------------------------- */

static bool same_listen(const struct sockaddr_storage *a, socklen_t alen,
			const struct sockaddr_storage *b)
{
	return b && a->ss_family == b->ss_family && !memcmp(a, b, alen);
}

int ui_agent_start(struct ui_agent *u, const struct sockaddr_storage *addr, socklen_t len,
		   struct httpd *metrics, const struct sockaddr_storage *metrics_addr,
		   const char *store_path)
{
	bool shared = metrics && same_listen(addr, len, metrics_addr);
	int err;

	*u = (struct ui_agent){0};
	err = ui_api_init(&u->api, store_path, NULL, addr);
	if (err)
		return err;
	/* the store is opened, read-only, by the HTTP thread at the first API request */
	if (shared) {
		httpd__set_app(metrics, ui_api_handle, &u->api, false);
	} else {
		err = httpd__start_for(&u->own, addr, len, "--ui-listen",
				       &(struct httpd_app){ui_api_handle, &u->api});
		if (err) {
			ui_api_free(&u->api);
			return err;
		}
	}
	u->started = true;
	log_info("web UI on http://%s/ (store %s)", httpd__address(shared ? metrics : u->own),
		 u->api.store_path);
	return 0;
}

void ui_agent_stop(struct ui_agent *u)
{
	if (!u->started)
		return;
	httpd__stop(u->own);
	ui_api_free(&u->api);
	u->started = false;
}
