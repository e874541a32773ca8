// SPDX-License-Identifier: BSD-2-Clause
/* OTLP metrics export (metrics_otlp.h): protobuf-c messages built from a registry snapshot,
 * one ResourceMetrics per process resource (plus the agent's own for the service graph and
 * the overflow series), and one thread that sends what the loop hands it. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "metrics_otlp.h"
#include "otlp_gzip.h"
#include "otlp_transport.h"
#include "resource.h"
#include "text.h"

#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"

typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics ResourceMetrics;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics ScopeMetrics;
typedef Opentelemetry__Proto__Metrics__V1__Metric Metric;
typedef Opentelemetry__Proto__Metrics__V1__Histogram Histogram;
typedef Opentelemetry__Proto__Metrics__V1__Sum Sum;
typedef Opentelemetry__Proto__Metrics__V1__HistogramDataPoint HistPoint;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint NumPoint;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest Request;

#define CUMULATIVE                                                                                 \
	OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE

/* ---- encoding -------------------------------------------------------------------------- */

/* Everything one snapshot allocates, freed together after packing. */
struct snap {
	size_t n; /* series */
	const struct metrics_series **sorted;
	KeyValue *kv;
	AnyValue *av;
	KeyValue **kvp;
	HistPoint *hp;
	NumPoint *np;
	void **pp; /* data point pointers */
	Metric *metric;
	Metric **metricp;
	Histogram *hist;
	Sum *sum;
	ResourceMetrics *rm;
	ResourceMetrics **rmp;
	ScopeMetrics *sm;
	ScopeMetrics **smp;
	Resource **res; /* unpacked (process) or built (agent) */
	bool *res_unpacked;
	size_t nres;
	/* the agent's resource */
	Resource agent_res;
	KeyValue *agent_kv;
	AnyValue *agent_av;
	KeyValue **agent_kvp;
};

static int key_cmp(const struct metrics_series *a, const struct metrics_series *b)
{
	bool an = a->resource == NULL, bn = b->resource == NULL;

	if (an != bn)
		return an ? 1 : -1; /* processes first, the agent last */
	if (a->res_pid != b->res_pid)
		return a->res_pid < b->res_pid ? -1 : 1;
	if (a->res_start_ns != b->res_start_ns)
		return a->res_start_ns < b->res_start_ns ? -1 : 1;
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return 0;
}

static int series_cmp(const void *x, const void *y)
{
	const struct metrics_series *a = *(const struct metrics_series *const *)x;
	const struct metrics_series *b = *(const struct metrics_series *const *)y;
	int c = key_cmp(a, b);

	/* creation order within a metric: stable output from one export to the next */
	return c ? c : (a < b ? -1 : a > b);
}

static void snap_free(struct snap *s)
{
	for (size_t i = 0; i < s->nres; i++)
		if (s->res_unpacked[i])
			opentelemetry__proto__resource__v1__resource__free_unpacked(s->res[i],
										    NULL);
	free(s->sorted);
	free(s->kv);
	free(s->av);
	free(s->kvp);
	free(s->hp);
	free(s->np);
	free(s->pp);
	free(s->metric);
	free(s->metricp);
	free(s->hist);
	free(s->sum);
	free(s->rm);
	free(s->rmp);
	free(s->sm);
	free(s->smp);
	free(s->res);
	free(s->res_unpacked);
	free(s->agent_kv);
	free(s->agent_av);
	free(s->agent_kvp);
}

static int snap_alloc(struct snap *s, size_t n)
{
	size_t na = n * METRICS_MAX_ATTRS + 1;

	s->n = n;
	n = n ? n : 1;
	s->sorted = calloc(n, sizeof(*s->sorted));
	s->kv = calloc(na, sizeof(*s->kv));
	s->av = calloc(na, sizeof(*s->av));
	s->kvp = calloc(na, sizeof(*s->kvp));
	s->hp = calloc(n, sizeof(*s->hp));
	s->np = calloc(n, sizeof(*s->np));
	s->pp = calloc(n, sizeof(*s->pp));
	s->metric = calloc(n, sizeof(*s->metric));
	s->metricp = calloc(n, sizeof(*s->metricp));
	s->hist = calloc(n, sizeof(*s->hist));
	s->sum = calloc(n, sizeof(*s->sum));
	s->rm = calloc(n, sizeof(*s->rm));
	s->rmp = calloc(n, sizeof(*s->rmp));
	s->sm = calloc(n, sizeof(*s->sm));
	s->smp = calloc(n, sizeof(*s->smp));
	s->res = calloc(n, sizeof(*s->res));
	s->res_unpacked = calloc(n, sizeof(*s->res_unpacked));
	if (!s->sorted || !s->kv || !s->av || !s->kvp || !s->hp || !s->np || !s->pp || !s->metric ||
	    !s->metricp || !s->hist || !s->sum || !s->rm || !s->rmp || !s->sm || !s->smp ||
	    !s->res || !s->res_unpacked)
		return -ENOMEM;
	return 0;
}

/* The agent's own resource: its attributes (host.name, telemetry.sdk.*, its
 * OTEL_RESOURCE_ATTRIBUTES) and service.name hoptrace unless those name one. */
static int agent_resource(struct snap *s, struct otlp_encoder *enc)
{
	const struct otlp_kv *kv;
	unsigned n = otlp_encoder__agent_attrs(enc, &kv), k = 0;
	bool named = false;

	s->agent_kv = calloc(n + 1, sizeof(*s->agent_kv));
	s->agent_av = calloc(n + 1, sizeof(*s->agent_av));
	s->agent_kvp = calloc(n + 1, sizeof(*s->agent_kvp));
	if (!s->agent_kv || !s->agent_av || !s->agent_kvp)
		return -ENOMEM;
	for (unsigned i = 0; i <= n; i++) {
		const char *key = i < n ? kv[i].key : "service.name";
		const char *val = i < n ? kv[i].value : "hoptrace";

		if (i < n && !strcmp(key, "service.name"))
			named = true;
		if (i == n && named)
			break;
		opentelemetry__proto__common__v1__key_value__init(&s->agent_kv[k]);
		opentelemetry__proto__common__v1__any_value__init(&s->agent_av[k]);
		s->agent_av[k].value_case =
		    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
		s->agent_av[k].string_value = (char *)val;
		s->agent_kv[k].key = (char *)key;
		s->agent_kv[k].value = &s->agent_av[k];
		s->agent_kvp[k] = &s->agent_kv[k];
		k++;
	}
	opentelemetry__proto__resource__v1__resource__init(&s->agent_res);
	s->agent_res.n_attributes = k;
	s->agent_res.attributes = s->agent_kvp;
	return 0;
}

static Resource *group_resource(struct snap *s, struct otlp_encoder *enc,
				const struct metrics_series *ser)
{
	const uint8_t *p;
	size_t len;
	Resource *r;

	if (!ser->resource)
		return &s->agent_res;
	if (otlp_encoder__resource(enc, ser->resource, &p, &len))
		return NULL;
	r = opentelemetry__proto__resource__v1__resource__unpack(NULL, len, p);
	if (r) {
		s->res[s->nres] = r;
		s->res_unpacked[s->nres++] = true;
	}
	return r;
}

/* The attributes of one series into s->kv from *next on. */
static KeyValue **put_attrs(struct snap *s, const struct metrics_series *ser, size_t *next,
			    size_t *n)
{
	KeyValue **first = &s->kvp[*next];

	for (unsigned i = 0; i < ser->nattrs; i++) {
		const struct metrics_attr *a = &ser->attrs[i];
		size_t k = (*next)++;

		opentelemetry__proto__common__v1__key_value__init(&s->kv[k]);
		opentelemetry__proto__common__v1__any_value__init(&s->av[k]);
		if (a->type == METRICS_ATTR_STR) {
			s->av[k].value_case =
			    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
			s->av[k].string_value = (char *)a->str;
		} else if (a->type == METRICS_ATTR_BOOL) {
			s->av[k].value_case =
			    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
			s->av[k].bool_value = a->ival != 0;
		} else {
			s->av[k].value_case =
			    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
			s->av[k].int_value = a->ival;
		}
		s->kv[k].key = (char *)a->key;
		s->kv[k].value = &s->av[k];
		s->kvp[k] = &s->kv[k];
	}
	*n = ser->nattrs;
	return first;
}

static void put_point(struct snap *s, size_t i, const struct metrics_series *ser, uint64_t start,
		      uint64_t now, size_t *next_kv)
{
	if (metrics_family(ser->family)->kind == METRIC_HISTOGRAM) {
		HistPoint *p = &s->hp[i];

		opentelemetry__proto__metrics__v1__histogram_data_point__init(p);
		p->attributes = put_attrs(s, ser, next_kv, &p->n_attributes);
		p->start_time_unix_nano = start;
		p->time_unix_nano = now;
		p->count = ser->count;
		p->sum_present_case =
		    OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT__SUM_PRESENT_SUM;
		p->sum = ser->sum;
		p->n_bucket_counts = METRICS_NBUCKETS;
		p->bucket_counts = (uint64_t *)ser->buckets;
		p->n_explicit_bounds = METRICS_NBOUNDS;
		p->explicit_bounds = (double *)metrics_bounds_s;
		s->pp[i] = p;
	} else {
		NumPoint *p = &s->np[i];

		opentelemetry__proto__metrics__v1__number_data_point__init(p);
		p->attributes = put_attrs(s, ser, next_kv, &p->n_attributes);
		p->start_time_unix_nano = start;
		p->time_unix_nano = now;
		p->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
		p->as_int = (int64_t)ser->count;
		s->pp[i] = p;
	}
}

/* One Metric for the run sorted[first..end) of one family and resource. */
static Metric *put_metric(struct snap *s, size_t nm, size_t first, size_t end)
{
	const struct metric_desc *d = metrics_family(s->sorted[first]->family);
	Metric *mt = &s->metric[nm];

	opentelemetry__proto__metrics__v1__metric__init(mt);
	mt->name = (char *)d->name;
	mt->unit = (char *)d->unit;
	mt->description = (char *)d->description;
	if (d->kind == METRIC_HISTOGRAM) {
		opentelemetry__proto__metrics__v1__histogram__init(&s->hist[nm]);
		s->hist[nm].aggregation_temporality = CUMULATIVE;
		s->hist[nm].n_data_points = end - first;
		s->hist[nm].data_points = (HistPoint **)&s->pp[first];
		mt->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM;
		mt->histogram = &s->hist[nm];
	} else {
		opentelemetry__proto__metrics__v1__sum__init(&s->sum[nm]);
		s->sum[nm].aggregation_temporality = CUMULATIVE;
		s->sum[nm].is_monotonic = true;
		s->sum[nm].n_data_points = end - first;
		s->sum[nm].data_points = (NumPoint **)&s->pp[first];
		mt->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
		mt->sum = &s->sum[nm];
	}
	return mt;
}

static int build(struct snap *s, struct otlp_encoder *enc, const struct metrics *m, uint64_t now,
		 Request *req, Opentelemetry__Proto__Common__V1__InstrumentationScope *scope)
{
	uint64_t start = metrics__start_unix_ns(m);
	size_t next_kv = 0, nm = 0, nrm = 0;

	for (size_t i = 0; i < s->n; i++)
		s->sorted[i] = metrics__series_at(m, i);
	qsort(s->sorted, s->n, sizeof(*s->sorted), series_cmp);
	for (size_t i = 0; i < s->n; i++)
		put_point(s, i, s->sorted[i], start, now, &next_kv);
	for (size_t g = 0; g < s->n;) {
		size_t gend = g;
		ResourceMetrics *rm = &s->rm[nrm];
		ScopeMetrics *sm = &s->sm[nrm];

		/* a resource group: series with the same process (or the agent) */
		while (gend < s->n &&
		       (s->sorted[gend]->resource == NULL) == (s->sorted[g]->resource == NULL) &&
		       s->sorted[gend]->res_pid == s->sorted[g]->res_pid &&
		       s->sorted[gend]->res_start_ns == s->sorted[g]->res_start_ns)
			gend++;
		opentelemetry__proto__metrics__v1__resource_metrics__init(rm);
		opentelemetry__proto__metrics__v1__scope_metrics__init(sm);
		rm->resource = group_resource(s, enc, s->sorted[g]);
		if (!rm->resource)
			return -ENOMEM;
		sm->scope = scope;
		sm->metrics = &s->metricp[nm];
		for (size_t f = g; f < gend;) {
			size_t fend = f;

			while (fend < gend && s->sorted[fend]->family == s->sorted[f]->family)
				fend++;
			s->metricp[nm] = put_metric(s, nm, f, fend);
			nm++;
			sm->n_metrics++;
			f = fend;
		}
		s->smp[nrm] = sm;
		rm->n_scope_metrics = 1;
		rm->scope_metrics = &s->smp[nrm];
		s->rmp[nrm++] = rm;
		g = gend;
	}
	req->n_resource_metrics = nrm;
	req->resource_metrics = s->rmp;
	return 0;
}

int metrics_otlp_encode(struct otlp_encoder *enc, const struct metrics *m, uint64_t now_unix_ns,
			struct otlp_buf *out)
{
	Opentelemetry__Proto__Common__V1__InstrumentationScope scope;
	Request req;
	struct snap s = {0};
	size_t len;
	int err;

	opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__init(&req);
	opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
	scope.name = (char *)OTLP_SCOPE_NAME;
	scope.version = (char *)HOPTRACE_VERSION;
	err = snap_alloc(&s, metrics__nseries(m));
	err = err ?: agent_resource(&s, enc);
	err = err ?: build(&s, enc, m, now_unix_ns, &req, &scope);
	if (!err) {
		len =
		    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__get_packed_size(
			&req);
		err = otlp_buf_reserve(out, len ? len : 1);
	}
	if (!err)
		out->len =
		    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__pack(
			&req, otlp_buf_payload(out));
	snap_free(&s);
	return err;
}

/* ---- the metrics URL ------------------------------------------------------------------- */

static bool has_scheme(const char *ep)
{
	return !strncasecmp(ep, "http://", 7) || !strncasecmp(ep, "https://", 8);
}

int metrics_otlp_url(const struct otlp_config *cfg, const char *metrics_endpoint, char **url,
		     char *msg, size_t msglen)
{
	bool grpc = cfg->protocol == OTLP_PROTOCOL_GRPC;
	const char *ep =
	    metrics_endpoint && *metrics_endpoint ? metrics_endpoint : cfg->base_endpoint;
	const char *auth, *slash;
	size_t baselen;
	int n;

	*url = NULL;
	if (!ep)
		ep = grpc ? OTLP_DEFAULT_GRPC_ENDPOINT : OTLP_DEFAULT_HTTP_ENDPOINT;
	if (!grpc && ep == metrics_endpoint) {
		if (!has_scheme(ep)) {
			snprintf(msg, msglen,
				 "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: an OTLP/HTTP endpoint must "
				 "start with http:// or https://");
			return -EINVAL;
		}
		*url = strdup(ep); /* a signal-specific endpoint is used as is */
		return *url ? 0 : -ENOMEM;
	}
	if (grpc) {
		if (has_scheme(ep)) {
			auth = strstr(ep, "://") + 3;
			slash = strchr(auth, '/');
			baselen = slash ? (size_t)(slash - ep) : strlen(ep);
			n = asprintf(url, "%.*s%s", (int)baselen, ep, OTLP_GRPC_METRICS_PATH);
		} else {
			slash = strchr(ep, '/');
			baselen = slash ? (size_t)(slash - ep) : strlen(ep);
			n = asprintf(url, "%s://%.*s%s", cfg->insecure ? "http" : "https",
				     (int)baselen, ep, OTLP_GRPC_METRICS_PATH);
		}
		return n < 0 ? -ENOMEM : 0;
	}
	baselen = strlen(ep);
	while (baselen && ep[baselen - 1] == '/')
		baselen--;
	n = asprintf(url, "%.*s%s", (int)baselen, ep, OTLP_HTTP_METRICS_PATH);
	return n < 0 ? -ENOMEM : 0;
}

/* ---- the export thread ----------------------------------------------------------------- */

struct metrics_exporter {
	struct otlp_transport *transport;
	struct otlp_encoder *enc;
	struct otlp_gzip *gz;
	bool gzip;
	uint64_t interval_ns;
	uint64_t next_ns; /* CLOCK_MONOTONIC: the next snapshot */
	struct otlp_buf raw;
	struct otlp_buf packed; /* gzipped raw */

	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct otlp_buf pending; /* under mu: the snapshot waiting for the thread */
	bool have_pending;
	bool stop;
	uint64_t deadline_ns; /* the final export's, 0: the request timeout only */
	/* counters, under mu */
	uint64_t exported, failed, replaced, encode_failed;
	char url_shown[256];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *export_thread(void *arg)
{
	struct metrics_exporter *e = arg;
	struct otlp_buf body = {0};
	struct otlp_result res;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct otlp_buf t;

		while (!e->have_pending && !e->stop)
			pthread_cond_wait(&e->cv, &e->mu);
		if (!e->have_pending)
			break;
		t = body; /* swap: the loop's buffer comes here, ours goes back for reuse */
		body = e->pending;
		e->pending = t;
		e->have_pending = false;
		pthread_mutex_unlock(&e->mu);
		memset(&res, 0, sizeof(res));
		/* no retry: the next snapshot holds everything this one did */
		otlp_transport__send(e->transport, &body, e->deadline_ns, &res);
		pthread_mutex_lock(&e->mu);
		if (res.outcome == OTLP_OK) {
			e->exported++;
		} else {
			e->failed++;
			log_debug("otlp metrics: export failed (http %ld, grpc %d): %s",
				  res.http_status, res.grpc_status, res.message);
		}
	}
	pthread_mutex_unlock(&e->mu);
	otlp_buf_free(&body);
	return NULL;
}

/* Encode now (in the loop) and hand the bytes over without waiting for the thread. */
static void snapshot(struct metrics_exporter *e, struct metrics *m)
{
	struct otlp_buf *body = &e->raw, t;
	int err = metrics_otlp_encode(e->enc, m, real_ns(), &e->raw);

	if (!err && e->gzip) {
		err = otlp_gzip__compress(e->gz, otlp_buf_payload(&e->raw), e->raw.len, &e->packed);
		body = &e->packed;
	}
	pthread_mutex_lock(&e->mu);
	if (err) {
		e->encode_failed++;
		pthread_mutex_unlock(&e->mu);
		return;
	}
	if (e->have_pending)
		e->replaced++;
	t = e->pending;
	e->pending = *body;
	*body = t;
	e->have_pending = true;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	metrics__end_epoch(m);
}

void metrics_exporter__tick(struct metrics_exporter *e, struct metrics *m, uint64_t now_ns)
{
	if (!e->next_ns)
		e->next_ns = now_ns + e->interval_ns;
	if (now_ns < e->next_ns)
		return;
	e->next_ns = now_ns + e->interval_ns;
	snapshot(e, m);
}

void metrics_exporter__final(struct metrics_exporter *e, struct metrics *m, int deadline_ms)
{
	if (!e->started)
		return;
	pthread_mutex_lock(&e->mu);
	e->deadline_ns = mono_ns() + (uint64_t)(deadline_ms > 0 ? deadline_ms : 1) * 1000000ULL;
	pthread_mutex_unlock(&e->mu);
	snapshot(e, m);
	pthread_mutex_lock(&e->mu);
	e->stop = true;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->thread, NULL);
	e->started = false;
}

void metrics_exporter__print_stats(struct metrics_exporter *e, FILE *out)
{
	pthread_mutex_lock(&e->mu);
	fprintf(out, "hoptrace: otlp metrics export to %s\n", e->url_shown);
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "metric_exports", e->exported,
		"metric snapshots the receiver accepted");
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "metric_exports_failed", e->failed,
		"metric snapshots not delivered (the next one carries their counts)");
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "metric_snapshots_replaced", e->replaced,
		"metric snapshots replaced by a newer one before they were sent");
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "metric_encode_failed", e->encode_failed,
		"metric snapshots not encoded: out of memory");
	pthread_mutex_unlock(&e->mu);
}

void metrics_exporter_free(struct metrics_exporter *e)
{
	if (!e)
		return;
	if (e->started) {
		pthread_mutex_lock(&e->mu);
		e->stop = true;
		e->have_pending = false;
		pthread_cond_signal(&e->cv);
		pthread_mutex_unlock(&e->mu);
		otlp_transport__abort(e->transport, true);
		pthread_join(e->thread, NULL);
	}
	otlp_transport_free(e->transport);
	otlp_encoder_free(e->enc);
	otlp_gzip_free(e->gz);
	otlp_buf_free(&e->raw);
	otlp_buf_free(&e->packed);
	otlp_buf_free(&e->pending);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	free(e);
}

struct metrics_exporter *metrics_exporter_new(const struct otlp_config *cfg, const char *url,
					      int interval_ms)
{
	struct metrics_exporter *e = calloc(1, sizeof(*e));
	struct otlp_config mcfg = *cfg; /* the transport copies what it keeps */
	char msg[256] = "";
	sigset_t all, old;
	int err;

	if (!e)
		return NULL;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	mcfg.url = (char *)url;
	e->interval_ns =
	    (uint64_t)(interval_ms > 0 ? interval_ms : METRICS_DEFAULT_INTERVAL_MS) * 1000000ULL;
	e->gzip = cfg->gzip;
	text_url_for_log(e->url_shown, sizeof(e->url_shown), url);
	e->transport = otlp_transport_new(&mcfg, msg, sizeof(msg));
	e->enc = otlp_encoder_new(cfg->resource, cfg->nresource);
	e->gz = cfg->gzip ? otlp_gzip_new(6) : NULL;
	if (!e->transport || !e->enc || (cfg->gzip && !e->gz)) {
		log_error("otlp metrics: %s", msg[0] ? msg : "out of memory");
		metrics_exporter_free(e);
		return NULL;
	}
	/* every signal blocked in the thread: the stop signals are the loop's (signalfd) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&e->thread, NULL, export_thread, e);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		log_error("otlp metrics: cannot start the export thread");
		metrics_exporter_free(e);
		return NULL;
	}
	e->started = true;
	return e;
}
