// SPDX-License-Identifier: BSD-2-Clause
#include "otlp_config.h"
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <curl/curl.h>

extern char **environ;

enum opt_id {
	OPT_ENDPOINT,
	OPT_TRACES_ENDPOINT,
	OPT_PROTOCOL,
	OPT_HEADERS,
	OPT_COMPRESSION,
	OPT_TIMEOUT,
	OPT_CERTIFICATE,
	OPT_CLIENT_CERTIFICATE,
	OPT_CLIENT_KEY,
	OPT_INSECURE,
	OPT_QUEUE_SIZE,
	OPT_QUEUE_BYTES,
	OPT_SCHEDULE_DELAY,
	OPT_BATCH_SIZE,
	OPT_EXPORT_TIMEOUT,
	OPT_EXPORTERS,
	OPT_RESOURCE,
};

/*
 * One row per setting: the general variable, the _TRACES_ variable that overrides it (the
 * OTLP exporter spec gives signal-specific variables precedence), and the flag.
 */
static const struct opt {
	enum opt_id id;
	const char *env;
	const char *env_traces;
	const char *flag; /* "--name" */
} opts[] = {
    {OPT_ENDPOINT, "OTEL_EXPORTER_OTLP_ENDPOINT", NULL, "--otlp-endpoint"},
    {OPT_TRACES_ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", NULL, "--otlp-traces-endpoint"},
    {OPT_PROTOCOL, "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
     "--otlp-protocol"},
    {OPT_HEADERS, "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
     "--otlp-headers"},
    {OPT_COMPRESSION, "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
     "--otlp-compression"},
    {OPT_TIMEOUT, "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
     "--otlp-timeout"},
    {OPT_CERTIFICATE, "OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
     "--otlp-certificate"},
    {OPT_CLIENT_CERTIFICATE, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
     "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "--otlp-client-certificate"},
    {OPT_CLIENT_KEY, "OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
     "--otlp-client-key"},
    {OPT_INSECURE, "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
     "--otlp-insecure"},
    {OPT_QUEUE_SIZE, "OTEL_BSP_MAX_QUEUE_SIZE", NULL, "--otlp-queue-size"},
    {OPT_QUEUE_BYTES, NULL, NULL, "--otlp-queue-bytes"},
    {OPT_SCHEDULE_DELAY, "OTEL_BSP_SCHEDULE_DELAY", NULL, "--otlp-schedule-delay"},
    {OPT_BATCH_SIZE, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", NULL, "--otlp-batch-size"},
    {OPT_EXPORT_TIMEOUT, "OTEL_BSP_EXPORT_TIMEOUT", NULL, "--otlp-export-timeout"},
    {OPT_EXPORTERS, "HOPTRACE_OTLP_EXPORTERS", NULL, "--otlp-exporters"},
    {OPT_RESOURCE, "OTEL_RESOURCE_ATTRIBUTES", NULL, "--resource-attributes"},
};

#define MS_MAX (3600 * 1000) /* an hour: anything longer is a typo */

static int fail(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (msg && msglen) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

void otlp_config_init(struct otlp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->protocol = OTLP_PROTOCOL_HTTP_PROTOBUF;
	cfg->gzip = false; /* the spec's default is none */
	cfg->timeout_ms = OTLP_DEFAULT_TIMEOUT_MS;
	cfg->max_queue_size = OTLP_DEFAULT_QUEUE_SIZE;
	cfg->max_queue_bytes = OTLP_DEFAULT_QUEUE_BYTES;
	cfg->schedule_delay_ms = OTLP_DEFAULT_SCHEDULE_DELAY_MS;
	cfg->max_batch_size = OTLP_DEFAULT_BATCH_SIZE;
	cfg->export_timeout_ms = OTLP_DEFAULT_EXPORT_TIMEOUT_MS;
	cfg->exporters = OTLP_DEFAULT_EXPORTERS;
}

void otlp_kv_free(struct otlp_kv *kv, unsigned n)
{
	if (!kv)
		return;
	for (unsigned i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

void otlp_config_free(struct otlp_config *cfg)
{
	free(cfg->url);
	free(cfg->ca_file);
	free(cfg->client_cert);
	free(cfg->client_key);
	free(cfg->base_endpoint);
	free(cfg->traces_endpoint);
	otlp_kv_free(cfg->headers, cfg->nheaders);
	otlp_kv_free(cfg->resource, cfg->nresource);
	memset(cfg, 0, sizeof(*cfg));
}

const char *otlp_protocol_name(enum otlp_protocol p)
{
	return p == OTLP_PROTOCOL_GRPC ? "grpc" : "http/protobuf";
}

/* Copy [s, s+len) trimmed of blanks and percent-decoded. NULL on a bad escape or ENOMEM. */
static char *decode_part(const char *s, size_t len, bool *bad)
{
	char *out, *o;

	while (len && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	out = malloc(len + 1);
	if (!out)
		return NULL;
	o = out;
	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		hi = i + 1 < len ? hex_digit_value(s[i + 1]) : -1;
		lo = i + 2 < len ? hex_digit_value(s[i + 2]) : -1;
		if (hi < 0 || lo < 0) {
			*bad = true;
			free(out);
			return NULL;
		}
		*o++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*o = '\0';
	return out;
}

/* A key as an error message may show it: token characters (RFC 9110), others as '?', at
 * most 64. Values never appear in messages: in OTEL_EXPORTER_OTLP_HEADERS they are tokens. */
static void key_for_msg(char *out, size_t cap, const char *p, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 1 < cap && o < 64; i++)
		out[o++] =
		    isalnum((unsigned char)p[i]) || strchr("!#$%&'*+-.^_`|~", p[i]) ? p[i] : '?';
	out[o] = '\0';
}

int otlp_kv_parse(const char *list, const char *what, struct otlp_kv **out, unsigned *n, char *msg,
		  size_t msglen)
{
	struct otlp_kv *kv = NULL;
	unsigned cnt = 0, cap = 0, member = 0;
	char shown[72];
	const char *p = list;
	int err;

	while (*p) {
		const char *end = strchr(p, ','), *eq;
		size_t len;
		bool bad = false;
		char *key, *val;

		if (!end)
			end = p + strlen(p);
		len = (size_t)(end - p);
		member++;
		eq = memchr(p, '=', len);
		if (!eq) {
			/* an empty member (",," or a trailing comma) is tolerated, as in baggage */
			bool blank = true;

			for (size_t i = 0; i < len; i++)
				blank = blank && isspace((unsigned char)p[i]);
			if (!blank) {
				err = fail(msg, msglen, "%s: member %u is not key=value", what,
					   member);
				goto err_free;
			}
			p = *end ? end + 1 : end;
			continue;
		}
		key_for_msg(shown, sizeof(shown), p, (size_t)(eq - p));
		key = decode_part(p, (size_t)(eq - p), &bad);
		val = key ? decode_part(eq + 1, (size_t)(end - eq - 1), &bad) : NULL;
		if (!key || !val) {
			free(key);
			err = bad ? fail(msg, msglen,
					 "%s: bad percent-escape in member %u (key '%s')", what,
					 member, shown)
				  : -ENOMEM;
			goto err_free;
		}
		if (!*key) {
			free(key);
			free(val);
			err = fail(msg, msglen, "%s: member %u has an empty key", what, member);
			goto err_free;
		}
		if (cnt == cap) {
			struct otlp_kv *nkv;

			cap = cap ? cap * 2 : 8;
			nkv = realloc(kv, cap * sizeof(*kv));
			if (!nkv) {
				free(key);
				free(val);
				err = -ENOMEM;
				goto err_free;
			}
			kv = nkv;
		}
		kv[cnt].key = key;
		kv[cnt].value = val;
		cnt++;
		p = *end ? end + 1 : end;
	}
	*out = kv;
	*n = cnt;
	return 0;

err_free:
	otlp_kv_free(kv, cnt);
	return err;
}

/* RFC 9110 token characters: what a header name may be made of. */
static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

static int parse_headers(struct otlp_config *cfg, const char *src, const char *v, char *msg,
			 size_t msglen)
{
	struct otlp_kv *kv;
	unsigned n;
	int err;

	err = otlp_kv_parse(v, src, &kv, &n, msg, msglen);
	if (err)
		return err;
	for (unsigned i = 0; i < n; i++) {
		/* a decoded CR or LF would let a value smuggle in another header */
		if (!is_token(kv[i].key) || strpbrk(kv[i].value, "\r\n")) {
			char shown[72];

			key_for_msg(shown, sizeof(shown), kv[i].key, strlen(kv[i].key));
			err = fail(msg, msglen,
				   "%s: header '%s' is not valid (name must be a token, value "
				   "without line breaks)",
				   src, shown);
			otlp_kv_free(kv, n);
			return err;
		}
	}
	otlp_kv_free(cfg->headers, cfg->nheaders);
	cfg->headers = kv;
	cfg->nheaders = n;
	return 0;
}

static int parse_resource(struct otlp_config *cfg, const char *src, const char *v, char *msg,
			  size_t msglen)
{
	struct otlp_kv *kv;
	unsigned n;
	int err;

	err = otlp_kv_parse(v, src, &kv, &n, msg, msglen);
	if (err)
		return err;
	otlp_kv_free(cfg->resource, cfg->nresource);
	cfg->resource = kv;
	cfg->nresource = n;
	return 0;
}

static int parse_long(const char *src, const char *v, long min, long max, const char *unit,
		      long *out, char *msg, size_t msglen)
{
	char *end;
	long x;

	errno = 0;
	x = strtol(v, &end, 10);
	while (*end && isspace((unsigned char)*end))
		end++;
	if (errno || end == v || *end || x < min || x > max)
		return fail(msg, msglen, "%s=%s: expected %s from %ld to %ld", src, v, unit, min,
			    max);
	*out = x;
	return 0;
}

static int parse_bytes(const char *src, const char *v, size_t *out, char *msg, size_t msglen)
{
	unsigned long long x;
	char *end;
	int shift = 0;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (end != v && *end && !end[1]) {
		switch (toupper((unsigned char)*end)) {
		case 'K':
			shift = 10;
			end++;
			break;
		case 'M':
			shift = 20;
			end++;
			break;
		case 'G':
			shift = 30;
			end++;
			break;
		}
	}
	if (errno || end == v || *end || *v == '-' || x == 0 || x > (SIZE_MAX >> 31))
		return fail(msg, msglen, "%s=%s: expected a size in bytes (suffix K, M or G)", src,
			    v);
	*out = (size_t)x << shift;
	return 0;
}

static int parse_bool(const char *src, const char *v, bool *out, char *msg, size_t msglen)
{
	if (!strcasecmp(v, "true")) {
		*out = true;
		return 0;
	}
	if (!strcasecmp(v, "false")) {
		*out = false;
		return 0;
	}
	return fail(msg, msglen, "%s=%s: expected true or false", src, v);
}

static int set_str(char **field, const char *v)
{
	char *copy = strdup(v);

	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

static int set_file(char **field, const char *src, const char *v, char *msg, size_t msglen)
{
	/* checked now so that a typo is reported at start-up, not at the first export */
	if (access(v, R_OK))
		return fail(msg, msglen, "%s=%s: cannot read the file: %s", src, v,
			    strerror(errno));
	return set_str(field, v);
}

static int parse_protocol(struct otlp_config *cfg, const char *src, const char *v, char *msg,
			  size_t msglen)
{
	if (!strcmp(v, "http/protobuf")) {
		cfg->protocol = OTLP_PROTOCOL_HTTP_PROTOBUF;
		return 0;
	}
	if (!strcmp(v, "grpc")) {
		cfg->protocol = OTLP_PROTOCOL_GRPC;
		return 0;
	}
	if (!strcmp(v, "http/json"))
		return fail(msg, msglen,
			    "%s=http/json is not supported by hoptrace: use http/protobuf or grpc",
			    src);
	return fail(msg, msglen, "%s=%s: unknown protocol (use http/protobuf or grpc)", src, v);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);

	return ls >= lx && !strcmp(s + ls - lx, suffix);
}

static int apply(struct otlp_config *cfg, const struct opt *o, const char *src, const char *v,
		 bool from_flag, char *msg, size_t msglen)
{
	long x;
	int err;

	switch (o->id) {
	case OPT_ENDPOINT:
		cfg->endpoint_set = true;
		/* a flag outranks every variable, including the signal-specific endpoint */
		if (from_flag && ends_with(v, OTLP_HTTP_TRACES_PATH)) {
			cfg->traces_endpoint_src = src;
			return set_str(&cfg->traces_endpoint, v);
		}
		if (from_flag) {
			free(cfg->traces_endpoint);
			cfg->traces_endpoint = NULL;
		}
		cfg->base_endpoint_src = src;
		return set_str(&cfg->base_endpoint, v);
	case OPT_TRACES_ENDPOINT:
		cfg->endpoint_set = true;
		cfg->traces_endpoint_src = src;
		return set_str(&cfg->traces_endpoint, v);
	case OPT_PROTOCOL:
		return parse_protocol(cfg, src, v, msg, msglen);
	case OPT_HEADERS:
		return parse_headers(cfg, src, v, msg, msglen);
	case OPT_COMPRESSION:
		if (!strcasecmp(v, "gzip"))
			cfg->gzip = true;
		else if (!strcasecmp(v, "none"))
			cfg->gzip = false;
		else
			return fail(msg, msglen, "%s=%s: expected gzip or none", src, v);
		return 0;
	case OPT_TIMEOUT:
		err = parse_long(src, v, 0, MS_MAX, "milliseconds", &x, msg, msglen);
		if (!err)
			cfg->timeout_ms = (int)x;
		return err;
	case OPT_CERTIFICATE:
		return set_file(&cfg->ca_file, src, v, msg, msglen);
	case OPT_CLIENT_CERTIFICATE:
		return set_file(&cfg->client_cert, src, v, msg, msglen);
	case OPT_CLIENT_KEY:
		return set_file(&cfg->client_key, src, v, msg, msglen);
	case OPT_INSECURE:
		return parse_bool(src, v, &cfg->insecure, msg, msglen);
	case OPT_QUEUE_SIZE:
		err = parse_long(src, v, 1, 1 << 24, "a number of spans", &x, msg, msglen);
		if (!err)
			cfg->max_queue_size = (int)x;
		return err;
	case OPT_QUEUE_BYTES:
		return parse_bytes(src, v, &cfg->max_queue_bytes, msg, msglen);
	case OPT_SCHEDULE_DELAY:
		err = parse_long(src, v, 1, MS_MAX, "milliseconds", &x, msg, msglen);
		if (!err)
			cfg->schedule_delay_ms = (int)x;
		return err;
	case OPT_BATCH_SIZE:
		err = parse_long(src, v, 1, 1 << 20, "a number of spans", &x, msg, msglen);
		if (!err)
			cfg->max_batch_size = (int)x;
		return err;
	case OPT_EXPORT_TIMEOUT:
		err = parse_long(src, v, 1, MS_MAX, "milliseconds", &x, msg, msglen);
		if (!err)
			cfg->export_timeout_ms = (int)x;
		return err;
	case OPT_EXPORTERS:
		err = parse_long(src, v, 1, OTLP_MAX_EXPORTERS, "a number of export workers", &x,
				 msg, msglen);
		if (!err)
			cfg->exporters = (int)x;
		return err;
	case OPT_RESOURCE:
		return parse_resource(cfg, src, v, msg, msglen);
	}
	return -EINVAL;
}

static const char *env_lookup(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; *envp; envp++)
		if (!strncmp(*envp, name, len) && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

int otlp_config_from_env(struct otlp_config *cfg, char *const *envp, char *msg, size_t msglen)
{
	if (!envp)
		envp = environ;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		const char *names[2] = {opts[i].env, opts[i].env_traces};

		for (int j = 0; j < 2; j++) {
			const char *v;
			int err;

			if (!names[j])
				continue;
			v = env_lookup(envp, names[j]);
			/* SDKs treat an empty variable as unset */
			if (!v || !*v)
				continue;
			err = apply(cfg, &opts[i], names[j], v, false, msg, msglen);
			if (err)
				return err;
		}
	}
	return 0;
}

int otlp_config_set(struct otlp_config *cfg, const char *name, const char *value, char *msg,
		    size_t msglen)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (!strcmp(opts[i].flag + 2, name))
			return apply(cfg, &opts[i], opts[i].flag, value, true, msg, msglen);
	fail(msg, msglen, "unknown OTLP option --%s", name);
	return -ENOENT;
}

static bool has_scheme(const char *url)
{
	return !strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8);
}

static int url_join(char **out, const char *base, size_t baselen, const char *path)
{
	size_t plen = strlen(path);
	char *u;

	while (baselen && base[baselen - 1] == '/')
		baselen--;
	u = malloc(baselen + plen + 1);
	if (!u)
		return -ENOMEM;
	memcpy(u, base, baselen);
	memcpy(u + baselen, path, plen + 1);
	free(*out);
	*out = u;
	return 0;
}

static int resolve_http(struct otlp_config *cfg, char *msg, size_t msglen)
{
	const char *src = cfg->traces_endpoint ? cfg->traces_endpoint_src : cfg->base_endpoint_src;
	const char *ep = cfg->traces_endpoint ? cfg->traces_endpoint : cfg->base_endpoint;

	if (!ep)
		return url_join(&cfg->url, OTLP_DEFAULT_HTTP_ENDPOINT,
				strlen(OTLP_DEFAULT_HTTP_ENDPOINT), OTLP_HTTP_TRACES_PATH);
	if (!has_scheme(ep)) {
		char shown[512];

		text_url_for_log(shown, sizeof(shown), ep);
		return fail(msg, msglen,
			    "%s=%s: an OTLP/HTTP endpoint must start with http:// or https://", src,
			    shown);
	}
	if (cfg->traces_endpoint)
		return set_str(&cfg->url, ep);
	/* the spec appends the signal path to the base endpoint, whatever path it has */
	return url_join(&cfg->url, ep, strlen(ep), OTLP_HTTP_TRACES_PATH);
}

/*
 * gRPC calls a fixed method path on an authority, so only scheme and host:port of the
 * endpoint matter. Without a scheme, OTEL_EXPORTER_OTLP_INSECURE picks h2c or TLS.
 */
static int resolve_grpc(struct otlp_config *cfg, char *msg, size_t msglen)
{
	const char *src = cfg->traces_endpoint ? cfg->traces_endpoint_src : cfg->base_endpoint_src;
	const char *ep = cfg->traces_endpoint ? cfg->traces_endpoint : cfg->base_endpoint;
	const char *auth, *slash;
	char *full, shown[512];
	int err;

	if (!ep)
		ep = OTLP_DEFAULT_GRPC_ENDPOINT;
	text_url_for_log(shown, sizeof(shown), ep);
	if (!has_scheme(ep)) {
		if (strstr(ep, "://"))
			return fail(msg, msglen, "%s=%s: unsupported scheme (use http or https)",
				    src, shown);
		if (asprintf(&full, "%s://%s", cfg->insecure ? "http" : "https", ep) < 0)
			return -ENOMEM;
	} else {
		full = strdup(ep);
		if (!full)
			return -ENOMEM;
	}
	auth = strstr(full, "://") + 3;
	if (!*auth || *auth == '/') {
		free(full);
		return fail(msg, msglen, "%s=%s: no host in the endpoint", src, shown);
	}
	slash = strchr(auth, '/');
	err = url_join(&cfg->url, full, slash ? (size_t)(slash - full) : strlen(full),
		       OTLP_GRPC_EXPORT_PATH);
	free(full);
	return err;
}

/* The endpoint as libcurl will parse it at the first export: a malformed one (no host, a
 * bad port, an unclosed IPv6 bracket) is refused at start-up, not retried forever. */
static int check_url(const struct otlp_config *cfg, char *msg, size_t msglen)
{
	const char *src = cfg->traces_endpoint ? cfg->traces_endpoint_src : cfg->base_endpoint_src;
	const char *ep = cfg->traces_endpoint ? cfg->traces_endpoint : cfg->base_endpoint;
	const char *auth = ep ? strstr(ep, "://") : NULL;
	CURLU *u;
	CURLUcode rc;

	/* "http:///v1/traces" parses, with the path's first segment as the host */
	if (auth && (auth[3] == '\0' || auth[3] == '/'))
		return fail(msg, msglen, "%s=%s: no host in the endpoint", src, ep);
	u = curl_url();
	if (!u)
		return -ENOMEM;
	rc = curl_url_set(u, CURLUPART_URL, cfg->url, 0);
	curl_url_cleanup(u);
	if (rc == CURLUE_OK)
		return 0;
	return fail(msg, msglen, "%s=%s: not a valid URL (%s)", src ? src : "endpoint",
		    ep ? ep : cfg->url, curl_url_strerror(rc));
}

int otlp_config_finish(struct otlp_config *cfg, char *msg, size_t msglen)
{
	int err;

	if (cfg->protocol == OTLP_PROTOCOL_GRPC)
		err = resolve_grpc(cfg, msg, msglen);
	else
		err = resolve_http(cfg, msg, msglen);
	if (!err)
		err = check_url(cfg, msg, msglen);
	if (err)
		return err;
	if (cfg->client_key && !cfg->client_cert)
		return fail(msg, msglen,
			    "a client key (OTEL_EXPORTER_OTLP_CLIENT_KEY, --otlp-client-key) needs "
			    "its certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, "
			    "--otlp-client-certificate) for mutual TLS");
	/* the BSP spec requires batch <= queue; SDKs clamp rather than refuse */
	if (cfg->max_batch_size > cfg->max_queue_size)
		cfg->max_batch_size = cfg->max_queue_size;
	return 0;
}
