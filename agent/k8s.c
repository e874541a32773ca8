// SPDX-License-Identifier: BSD-2-Clause
#include "k8s.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hashmap.h"
#include "json_read.h"
#include "k8s_parse.h"
#include "log.h"
#include "privilege.h"
#include "resource.h"
#include "stats.h"

#define K8S_CONNECT_TIMEOUT_MS 5000L
#define K8S_LIST_TIMEOUT_MS 30000L
#define K8S_BACKOFF_MIN_MS 250U
#define K8S_DEFAULT_BACKOFF_MAX_MS 30000U
#define K8S_DEFAULT_LIST_PAGE 100U
#define K8S_DEFAULT_WATCH_TIMEOUT_S 300U
/* a LIST longer than this many pages is a server's fault (at most 8192 pods a node) */
#define K8S_LIST_PAGES_MAX 10000U
/* a WATCH (or a LIST-WATCH round ended by 410) shorter than this is paused after */
#define K8S_SHORT_ROUND_MS 500U
#define K8S_TOKEN_MAX 16384
/* One LIST page or one WATCH event: what the JSON reader takes at once. A LIST page over it
 * is asked again with half the pods. */
#define K8S_RESPONSE_MAX JSON_READ_MAX_LEN

/* Counters the worker updates: g_stats is the loop's, so these are atomic. */
#define K8S_STAT_INC(name) __atomic_add_fetch(&g_stats.name, 1, __ATOMIC_RELAXED)

struct pod_slot {
	struct k8s_pod pod;
	bool used;
	bool seen; /* listed by the LIST in progress (worker only) */
};

enum availability { K8S_STARTING = 0, K8S_AVAILABLE, K8S_UNAVAILABLE };

struct k8s {
	/* configuration, resolved and owned */
	char *api, *token_file, *ca_file, *node;
	unsigned max_pods, backoff_max_ms, watch_timeout_s;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	int stopping; /* atomic; under stop_mu for the condition */

	/* the cache: slots, the two indexes and nused under mu; gen atomic */
	pthread_mutex_t mu;
	struct pod_slot *slots;
	unsigned *free_slots, nfree;
	unsigned nused;
	struct u64map by_uid; /* fnv64(uid) -> slot */
	struct u64map by_cid; /* first 16 hex digits of a container id -> slot */
	uint64_t gen;

	/* the worker's alone */
	CURL *easy;
	char errbuf[CURL_ERROR_SIZE];
	char rv[64];   /* the resourceVersion to WATCH from */
	unsigned page; /* pods per LIST page */
	struct json_doc doc;
	enum availability state;
};

/* ---- configuration ---------------------------------------------------------------------- */

enum {
	OPT_K8S_META = 2000,
	OPT_K8S_API,
	OPT_K8S_TOKEN_FILE,
	OPT_K8S_CA_FILE,
	OPT_K8S_NODE_NAME,
	OPT_K8S_MAX_PODS,
	OPT_K8S_BACKOFF_MAX,
	OPT_K8S_LIST_PAGE,
	OPT_K8S_WATCH_TIMEOUT,
};

static const struct argp_option k8s_options[] = {
    {"k8s-meta", OPT_K8S_META, "MODE", 0,
     "Kubernetes pod metadata on spans and metrics: auto (default: on inside a cluster, "
     "i.e. KUBERNETES_SERVICE_HOST set and the service-account token readable), on or off "
     "(overrides HOPTRACE_K8S_META)",
     0},
    {"k8s-api", OPT_K8S_API, "URL", 0,
     "API server URL (default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; "
     "overrides HOPTRACE_K8S_API)",
     0},
    {"k8s-token-file", OPT_K8S_TOKEN_FILE, "FILE", 0,
     "Bearer token, read again at each request (default " K8S_SA_DIR "/token; overrides "
     "HOPTRACE_K8S_TOKEN_FILE)",
     0},
    {"k8s-ca-file", OPT_K8S_CA_FILE, "FILE", 0,
     "CA bundle of the API server (default " K8S_SA_DIR "/ca.crt; overrides "
     "HOPTRACE_K8S_CA_FILE)",
     0},
    {"k8s-node-name", OPT_K8S_NODE_NAME, "NAME", 0,
     "This node's name: only its pods are listed (overrides K8S_NODE_NAME, which the "
     "DaemonSet sets from spec.nodeName)",
     0},
    {"k8s-max-pods", OPT_K8S_MAX_PODS, "N", 0,
     "Pods kept in the metadata cache, 1..8192 (default 512; overrides "
     "HOPTRACE_K8S_MAX_PODS); past it pods are counted in drop_k8s_cache_full",
     0},
    {"k8s-backoff-max-ms", OPT_K8S_BACKOFF_MAX, "MS", 0,
     "Longest wait between retries when the API server is down, 250..600000 (default 30000)", 0},
    {"k8s-list-page", OPT_K8S_LIST_PAGE, "N", 0, "Pods per LIST page, 1..500 (default 100)", 0},
    {"k8s-watch-timeout", OPT_K8S_WATCH_TIMEOUT, "SECONDS", 0,
     "Length of one WATCH request, 1..3600 (default 300)", 0},
    {0},
};

static int parse_mode(const char *s, enum k8s_mode *out)
{
	if (!strcmp(s, "auto"))
		*out = K8S_AUTO;
	else if (!strcmp(s, "on"))
		*out = K8S_ON;
	else if (!strcmp(s, "off"))
		*out = K8S_OFF;
	else
		return -EINVAL;
	return 0;
}

static int parse_range(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static error_t k8s_parse_opt(int key, char *arg, struct argp_state *state)
{
	struct k8s_config *c = state->input;

	switch (key) {
	case OPT_K8S_META:
		if (parse_mode(arg, &c->mode))
			argp_error(state, "invalid --k8s-meta '%s' (auto, on or off)", arg);
		return 0;
	case OPT_K8S_API:
		c->api = arg;
		return 0;
	case OPT_K8S_TOKEN_FILE:
		c->token_file = arg;
		return 0;
	case OPT_K8S_CA_FILE:
		c->ca_file = arg;
		return 0;
	case OPT_K8S_NODE_NAME:
		c->node = arg;
		return 0;
	case OPT_K8S_MAX_PODS:
		if (parse_range(arg, 1, 8192, &c->max_pods))
			argp_error(state, "invalid --k8s-max-pods '%s' (1..8192)", arg);
		return 0;
	case OPT_K8S_BACKOFF_MAX:
		if (parse_range(arg, K8S_BACKOFF_MIN_MS, 600000, &c->backoff_max_ms))
			argp_error(state, "invalid --k8s-backoff-max-ms '%s' (250..600000)", arg);
		return 0;
	case OPT_K8S_LIST_PAGE:
		if (parse_range(arg, 1, 500, &c->list_page))
			argp_error(state, "invalid --k8s-list-page '%s' (1..500)", arg);
		return 0;
	case OPT_K8S_WATCH_TIMEOUT:
		if (parse_range(arg, 1, 3600, &c->watch_timeout_s))
			argp_error(state, "invalid --k8s-watch-timeout '%s' (1..3600)", arg);
		return 0;
	}
	return ARGP_ERR_UNKNOWN;
}

const struct argp k8s_argp = {k8s_options, k8s_parse_opt, NULL, NULL, NULL, NULL, NULL};

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v && *v ? v : dflt;
}

void k8s_config_init(struct k8s_config *c)
{
	const char *v;

	*c = (struct k8s_config){
	    .mode = K8S_AUTO,
	    .api = env_or("HOPTRACE_K8S_API", NULL),
	    .token_file = env_or("HOPTRACE_K8S_TOKEN_FILE", K8S_SA_DIR "/token"),
	    .ca_file = env_or("HOPTRACE_K8S_CA_FILE", K8S_SA_DIR "/ca.crt"),
	    .node = env_or("K8S_NODE_NAME", NULL),
	    .max_pods = K8S_DEFAULT_MAX_PODS,
	    .backoff_max_ms = K8S_DEFAULT_BACKOFF_MAX_MS,
	    .list_page = K8S_DEFAULT_LIST_PAGE,
	    .watch_timeout_s = K8S_DEFAULT_WATCH_TIMEOUT_S,
	};
	/* an invalid value is reported and left at its default: the flag may still fix it */
	v = env_or("HOPTRACE_K8S_META", NULL);
	if (v && parse_mode(v, &c->mode))
		log_warn("invalid HOPTRACE_K8S_META (auto, on or off): ignored");
	v = env_or("HOPTRACE_K8S_MAX_PODS", NULL);
	if (v && parse_range(v, 1, 8192, &c->max_pods))
		log_warn("invalid HOPTRACE_K8S_MAX_PODS (1..8192): ignored");
}

/* ---- the cache -------------------------------------------------------------------------- */

static uint64_t uid_key(const char *uid)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *uid; uid++)
		h = (h ^ (unsigned char)*uid) * 0x100000001b3ULL;
	return h;
}

static uint64_t cid_key(const char *id)
{
	uint64_t v = 0;

	for (int i = 0; i < 16 && id[i]; i++)
		v = v << 4 | (uint64_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
	return v;
}

static void bump_generation(struct k8s *k)
{
	__atomic_add_fetch(&k->gen, 1, __ATOMIC_RELEASE);
}

static void set_gauges(struct k8s *k)
{
	__atomic_store_n(&g_stats.k8s_pods_cached, k->nused, __ATOMIC_RELAXED);
}

/* Under mu: the slot of a pod uid, or NULL. */
static struct pod_slot *slot_by_uid(struct k8s *k, const char *uid)
{
	struct pod_slot *s = u64map_get(&k->by_uid, uid_key(uid));

	return s && strcmp(s->pod.uid, uid) == 0 ? s : NULL;
}

/* Under mu: remove the slot's containers from the container index. */
static void unindex_containers(struct k8s *k, struct pod_slot *s)
{
	for (unsigned i = 0; i < s->pod.ncontainers; i++) {
		const char *id = s->pod.containers[i].id;

		if (id[0] && u64map_get(&k->by_cid, cid_key(id)) == s)
			u64map_del(&k->by_cid, cid_key(id));
	}
}

static void index_containers(struct k8s *k, struct pod_slot *s)
{
	for (unsigned i = 0; i < s->pod.ncontainers; i++) {
		const char *id = s->pod.containers[i].id;

		if (id[0] && u64map_put(&k->by_cid, cid_key(id), s))
			K8S_STAT_INC(drop_k8s_cache_full);
	}
}

/* Add or replace a pod. seen: listed by the LIST in progress. */
static void store_upsert(struct k8s *k, const struct k8s_pod *p, bool seen)
{
	struct pod_slot *s;

	if (p->containers_dropped)
		__atomic_add_fetch(&g_stats.drop_k8s_containers, p->containers_dropped,
				   __ATOMIC_RELAXED);
	pthread_mutex_lock(&k->mu);
	s = slot_by_uid(k, p->uid);
	if (s) {
		unindex_containers(k, s);
	} else {
		if (!k->nfree || u64map_put(&k->by_uid, uid_key(p->uid),
					    &k->slots[k->free_slots[k->nfree - 1]])) {
			pthread_mutex_unlock(&k->mu);
			K8S_STAT_INC(drop_k8s_cache_full);
			return;
		}
		s = &k->slots[k->free_slots[--k->nfree]];
		s->used = true;
		k->nused++;
	}
	s->pod = *p;
	s->seen = seen;
	index_containers(k, s);
	pthread_mutex_unlock(&k->mu);
	bump_generation(k);
	set_gauges(k);
}

/* Under mu. */
static void slot_free(struct k8s *k, struct pod_slot *s)
{
	unindex_containers(k, s);
	if (u64map_get(&k->by_uid, uid_key(s->pod.uid)) == s)
		u64map_del(&k->by_uid, uid_key(s->pod.uid));
	s->used = false;
	k->nused--;
	k->free_slots[k->nfree++] = (unsigned)(s - k->slots);
}

static void store_delete(struct k8s *k, const char *uid)
{
	struct pod_slot *s;

	pthread_mutex_lock(&k->mu);
	s = slot_by_uid(k, uid);
	if (s)
		slot_free(k, s);
	pthread_mutex_unlock(&k->mu);
	if (s) {
		bump_generation(k);
		set_gauges(k);
	}
}

/* A LIST starts: every cached pod is unseen until the LIST names it. */
static void store_mark_unseen(struct k8s *k)
{
	pthread_mutex_lock(&k->mu);
	for (unsigned i = 0; i < k->max_pods; i++)
		k->slots[i].seen = false;
	pthread_mutex_unlock(&k->mu);
}

/* A LIST ended: pods it did not name were deleted while nobody watched. */
static void store_drop_unseen(struct k8s *k)
{
	bool changed = false;

	pthread_mutex_lock(&k->mu);
	for (unsigned i = 0; i < k->max_pods; i++) {
		if (k->slots[i].used && !k->slots[i].seen) {
			slot_free(k, &k->slots[i]);
			changed = true;
		}
	}
	pthread_mutex_unlock(&k->mu);
	if (changed)
		bump_generation(k);
	set_gauges(k);
}

/* ---- lookups (event loop) --------------------------------------------------------------- */

uint64_t k8s__generation(const struct k8s *k)
{
	return __atomic_load_n(&k->gen, __ATOMIC_ACQUIRE);
}

/* The service name a pod gives its processes: the app.kubernetes.io/name label, else the
 * top owner (a Deployment rather than its ReplicaSet, a CronJob rather than its Job). */
static const char *pod_service(const struct k8s_pod *p)
{
	if (p->app[0])
		return p->app;
	return p->nowners ? p->owners[p->nowners - 1].name : NULL;
}

static int add_pod_attrs(struct resource *r, const struct k8s_pod *p, const char *container)
{
	int err = resource_add_k8s(r, "k8s.pod.name", p->name)
		      ?: resource_add_k8s(r, "k8s.namespace.name", p->ns);

	if (!err && container)
		err = resource_add_k8s(r, "k8s.container.name", container);
	if (!err && p->node[0])
		err = resource_add_k8s(r, "k8s.node.name", p->node);
	for (unsigned i = 0; i < p->nowners && !err; i++)
		err = resource_add_k8s(r, p->owners[i].key, p->owners[i].name);
	if (!err && !r->pod_uid && !(r->pod_uid = strdup(p->uid)))
		err = -ENOMEM;
	return err;
}

bool k8s__enrich(struct k8s *k, struct resource *r)
{
	static struct k8s_pod pod; /* the loop thread's alone: 3 KiB off its stack */
	char container[K8S_LABEL_MAX] = "";
	struct pod_slot *s = NULL;
	const char *svc;
	char *name;

	pthread_mutex_lock(&k->mu);
	if (r->container_id && strlen(r->container_id) == K8S_ID_LEN) {
		s = u64map_get(&k->by_cid, cid_key(r->container_id));
		for (unsigned i = 0; s && i < s->pod.ncontainers && !container[0]; i++)
			if (strcmp(s->pod.containers[i].id, r->container_id) == 0)
				memcpy(container, s->pod.containers[i].name, sizeof(container));
		/* a container id of another pod than the cgroup's pod uid says: trust neither */
		if (!container[0] || (s && r->pod_uid && strcmp(s->pod.uid, r->pod_uid) != 0))
			s = NULL;
	}
	/* the runtime may not have reported the container id yet: the pod's uid still names
	 * the pod (not the container) */
	if (!s && r->pod_uid)
		s = slot_by_uid(k, r->pod_uid);
	if (s)
		pod = s->pod;
	pthread_mutex_unlock(&k->mu);
	if (!s) {
		STAT_INC(k8s_lookup_misses);
		return false;
	}
	STAT_INC(k8s_lookup_hits);
	if (add_pod_attrs(r, &pod, container[0] ? container : NULL))
		return false;
	svc = pod_service(&pod);
	if (svc && r->service_source != RESOURCE_SERVICE_PROCESS && (name = strdup(svc))) {
		free(r->service_name);
		r->service_name = name;
		r->service_source = RESOURCE_SERVICE_K8S;
	}
	return true;
}

/* ---- the worker ------------------------------------------------------------------------- */

static bool stopping(struct k8s *k)
{
	return __atomic_load_n(&k->stopping, __ATOMIC_ACQUIRE);
}

/* Wait ms, or less when asked to stop. */
static void pause_ms(struct k8s *k, unsigned ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&k->stop_mu);
	while (!k->stopping &&
	       pthread_cond_timedwait(&k->stop_cv, &k->stop_mu, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&k->stop_mu);
}

static void log_unavailable(struct k8s *k, const char *why)
{
	if (k->state == K8S_UNAVAILABLE)
		return;
	k->state = K8S_UNAVAILABLE;
	log_warn("kubernetes pod metadata unavailable: %s; spans go out without k8s.* attributes "
		 "until the API server answers (retrying with backoff up to %u ms)",
		 why, k->backoff_max_ms);
}

static void log_available(struct k8s *k)
{
	if (k->state == K8S_AVAILABLE)
		return;
	log_info("kubernetes pod metadata %s: %u pods on node %s",
		 k->state == K8S_UNAVAILABLE ? "available again" : "available", k->nused, k->node);
	k->state = K8S_AVAILABLE;
}

/* The bearer token (trailing whitespace cut) into buf[cap]: length, or 0 when there is none. */
static size_t read_token(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t got;

	if (fd < 0)
		return 0;
	while (n < cap - 1 && (got = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)got;
	close(fd);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return n;
}

/* One request's state, seen by the write callback. */
struct xfer {
	struct k8s *k;
	bool watch;
	char *buf;
	size_t len, cap;
	int err; /* set by the callback when it aborts the transfer */
};

static int apply_event(struct k8s *k, const char *line, size_t len);

static int xfer_append(struct xfer *x, const char *p, size_t n)
{
	if (x->len + n > K8S_RESPONSE_MAX)
		return -E2BIG;
	if (x->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 65536;
		char *b;

		while (cap < x->len + n + 1)
			cap *= 2;
		b = realloc(x->buf, cap);
		if (!b)
			return -ENOMEM;
		x->buf = b;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, p, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return 0;
}

/* WATCH: each complete line is one event, applied as it arrives. */
static int watch_lines(struct xfer *x)
{
	size_t start = 0;
	int err = 0;

	for (char *nl; !err && (nl = memchr(x->buf + start, '\n', x->len - start));) {
		size_t n = (size_t)(nl - (x->buf + start));

		if (n)
			err = apply_event(x->k, x->buf + start, n);
		start += n + 1;
	}
	memmove(x->buf, x->buf + start, x->len - start);
	x->len -= start;
	return err;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	long code = 0;

	x->err = xfer_append(x, p, n);
	if (!x->err && x->watch) {
		curl_easy_getinfo(x->k->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code == 200)
			x->err = watch_lines(x);
	}
	return x->err ? 0 : n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	return stopping(ud) ? 1 : 0;
}

/*
 * GET url into x (a WATCH applies its events as they come). Returns 0 with *code the HTTP
 * status, or -errno with *why saying what failed (no secret: never the token).
 */
static int http_get(struct k8s *k, const char *url, struct xfer *x, long timeout_ms, long *code,
		    char *why, size_t why_len)
{
	char token[K8S_TOKEN_MAX], auth[K8S_TOKEN_MAX + 32];
	struct curl_slist *headers = NULL, *h;
	size_t tlen;
	CURLcode rc;

	/* without its CA file, libcurl would trust the system's CAs, and the token would go to
	 * any server with a public certificate for the API's name */
	if (strncmp(k->api, "https:", 6) == 0 && k->ca_file && *k->ca_file &&
	    access(k->ca_file, R_OK) != 0) {
		snprintf(why, why_len, "the API server's CA file %s is not readable", k->ca_file);
		return -EACCES;
	}
	tlen = read_token(k->token_file, token, sizeof(token));

	headers = curl_slist_append(headers, "Accept: application/json");
	if (tlen) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		headers = curl_slist_append(headers, auth);
		explicit_bzero(auth, sizeof(auth));
	}
	explicit_bzero(token, sizeof(token));
	curl_easy_reset(k->easy);
	curl_easy_setopt(k->easy, CURLOPT_URL, url);
	curl_easy_setopt(k->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k->easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(k->easy, CURLOPT_USERAGENT, "hoptrace/" HOPTRACE_VERSION);
	curl_easy_setopt(k->easy, CURLOPT_CONNECTTIMEOUT_MS, K8S_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(k->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(k->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(k->easy, CURLOPT_ERRORBUFFER, k->errbuf);
	curl_easy_setopt(k->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(k->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(k->easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(k->easy, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(k->easy, CURLOPT_XFERINFODATA, k);
	curl_easy_setopt(k->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(k->easy, CURLOPT_ACCEPT_ENCODING, "");
	if (k->ca_file && *k->ca_file)
		curl_easy_setopt(k->easy, CURLOPT_CAINFO, k->ca_file);
	k->errbuf[0] = '\0';
	rc = curl_easy_perform(k->easy);
	/* libcurl copied the header: wipe its copy too before freeing it */
	for (h = headers; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(headers);
	*code = 0;
	curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, code);
	if (rc == CURLE_OK)
		return 0;
	if (x->err)
		return x->err;
	snprintf(why, why_len, "%s", k->errbuf[0] ? k->errbuf : curl_easy_strerror(rc));
	return rc == CURLE_ABORTED_BY_CALLBACK ? -ECANCELED : -EIO;
}

/* The reason of a non-200 answer, for the log. */
static void http_why(long code, char *why, size_t len)
{
	snprintf(why, len, "the API server answered HTTP %ld%s", code,
		 code == 401 || code == 403
		     ? " (check the service-account token and its RBAC: get, list, watch pods)"
		     : "");
}

/* "&name=<escaped value>" appended to url[cap]. */
static int url_param(struct k8s *k, char *url, size_t cap, const char *name, const char *value)
{
	char *esc = curl_easy_escape(k->easy, value, 0);
	size_t used = strlen(url);
	int n;

	if (!esc)
		return -ENOMEM;
	n = snprintf(url + used, cap - used, "&%s=%s", name, esc);
	curl_free(esc);
	return n < 0 || (size_t)n >= cap - used ? -E2BIG : 0;
}

#define URL_MAX 8192

static int pods_url(struct k8s *k, char *url, size_t cap)
{
	char selector[K8S_NAME_MAX + 16];

	snprintf(selector, sizeof(selector), "spec.nodeName=%s", k->node);
	snprintf(url, cap, "%s/api/v1/pods?", k->api);
	return url_param(k, url, cap, "fieldSelector", selector);
}

/* One LIST page: its pods into the cache, its continue token into cont[cap] ("" at the
 * end), the list's resourceVersion into k->rv. */
static int list_page(struct k8s *k, char *cont, size_t cont_cap, char *why, size_t why_len)
{
	static const char *const cont_path[] = {"metadata", "continue"};
	struct xfer x = {.k = k};
	const struct json_value *root, *items, *meta;
	char url[URL_MAX], limit[16];
	struct k8s_pod pod;
	const char *s;
	long code;
	int err;

	snprintf(limit, sizeof(limit), "%u", k->page);
	err = pods_url(k, url, sizeof(url)) ?: url_param(k, url, sizeof(url), "limit", limit);
	if (!err && cont[0])
		err = url_param(k, url, sizeof(url), "continue", cont);
	if (!err)
		err = http_get(k, url, &x, K8S_LIST_TIMEOUT_MS, &code, why, why_len);
	if (!err && code == 410) {
		err = -ESTALE; /* the continue token expired */
	} else if (!err && code != 200) {
		http_why(code, why, why_len);
		err = -EPROTO;
	} else if (!err && json_doc__parse(&k->doc, x.buf ? x.buf : "", x.len)) {
		snprintf(why, why_len, "a LIST answer that is not JSON (%s)",
			 k->doc.err ? k->doc.err : "empty");
		err = -EPROTO;
	}
	free(x.buf);
	if (err)
		return err;
	root = json_doc__root(&k->doc);
	meta = json_doc__member(&k->doc, root, "metadata");
	items = json_doc__member(&k->doc, root, "items");
	s = json_value_cstr(json_doc__member(&k->doc, meta, "resourceVersion"));
	if (!items || items->type != JSON_ARRAY || !s || strlen(s) >= sizeof(k->rv)) {
		snprintf(why, why_len, "a LIST answer without items or resourceVersion");
		return -EPROTO;
	}
	snprintf(k->rv, sizeof(k->rv), "%s", s);
	for (const struct json_value *it = json_doc__first(&k->doc, items); it;
	     it = json_doc__next(&k->doc, it))
		if (k8s_pod_from_json(&k->doc, it, &pod) == 0)
			store_upsert(k, &pod, true);
	s = json_value_cstr(json_doc__member(&k->doc, meta, cont_path[1]));
	snprintf(cont, cont_cap, "%s", s && strlen(s) < cont_cap ? s : "");
	K8S_STAT_INC(k8s_lists);
	return 0;
}

/* LIST every pod of the node, page by page; pods not listed leave the cache. */
static int list_all(struct k8s *k, char *why, size_t why_len)
{
	char cont[4096] = "";
	unsigned pages = 0;
	int err;

	store_mark_unseen(k);
	for (;;) {
		if (stopping(k))
			return -ECANCELED;
		err = list_page(k, cont, sizeof(cont), why, why_len);
		if (err == -E2BIG && k->page > 1) {
			/* a page over what the reader takes: start again with half the pods */
			K8S_STAT_INC(k8s_api_errors);
			k->page = (k->page + 1) / 2;
			cont[0] = '\0';
			pages = 0;
			store_mark_unseen(k);
			continue;
		}
		if (err || !cont[0])
			break;
		/* a server that always says "continue" must not keep the worker listing */
		if (++pages >= K8S_LIST_PAGES_MAX) {
			snprintf(why, why_len, "a LIST of more than %u pages", K8S_LIST_PAGES_MAX);
			err = -EOVERFLOW;
			break;
		}
	}
	if (err == -E2BIG)
		snprintf(why, why_len, "a LIST page of one pod over %u bytes", K8S_RESPONSE_MAX);
	if (!err)
		store_drop_unseen(k);
	return err;
}

/* An ERROR event's Status: 410 is an expired resourceVersion. */
static int event_error(struct k8s *k, const struct json_value *obj)
{
	int64_t code = 0;

	json_value_int(json_doc__member(&k->doc, obj, "code"), &code);
	return code == 410 ? -ESTALE : -EPROTO;
}

/* One WATCH event line: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR. */
static int apply_event(struct k8s *k, const char *line, size_t len)
{
	static struct k8s_pod pod; /* the worker's alone */
	const struct json_value *root, *obj, *meta;
	const char *type, *rv;

	if (json_doc__parse(&k->doc, line, len))
		return -EPROTO;
	root = json_doc__root(&k->doc);
	type = json_value_cstr(json_doc__member(&k->doc, root, "type"));
	obj = json_doc__member(&k->doc, root, "object");
	if (!type || !obj)
		return -EPROTO;
	K8S_STAT_INC(k8s_watch_events);
	if (!strcmp(type, "ERROR"))
		return event_error(k, obj);
	meta = json_doc__member(&k->doc, obj, "metadata");
	rv = json_value_cstr(json_doc__member(&k->doc, meta, "resourceVersion"));
	if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
		if (k8s_pod_from_json(&k->doc, obj, &pod) == 0)
			store_upsert(k, &pod, true);
	} else if (!strcmp(type, "DELETED")) {
		if (k8s_pod_from_json(&k->doc, obj, &pod) == 0)
			store_delete(k, pod.uid);
	} else if (strcmp(type, "BOOKMARK") != 0) {
		return 0; /* a type of a newer API: its resourceVersion is not ours to take */
	}
	if (rv && strlen(rv) < sizeof(k->rv))
		snprintf(k->rv, sizeof(k->rv), "%s", rv);
	return 0;
}

/* WATCH from k->rv until the server ends the request: 0, -ESTALE (410: LIST again) or an
 * error. */
static int watch(struct k8s *k, char *why, size_t why_len)
{
	struct xfer x = {.k = k, .watch = true};
	char url[URL_MAX], secs[16];
	long code;
	int err;

	snprintf(secs, sizeof(secs), "%u", k->watch_timeout_s);
	err = pods_url(k, url, sizeof(url)) ?: url_param(k, url, sizeof(url), "watch", "1") ?:
	      url_param(k, url, sizeof(url), "allowWatchBookmarks", "true") ?:
	      url_param(k, url, sizeof(url), "resourceVersion", k->rv) ?:
	      url_param(k, url, sizeof(url), "timeoutSeconds", secs);
	if (!err)
		err = http_get(k, url, &x, (long)(k->watch_timeout_s + 30) * 1000L, &code, why,
			       why_len);
	if (!err && code == 410)
		err = -ESTALE;
	else if (!err && code != 200)
		http_why(code, why, why_len);
	if (!err && code != 200)
		err = -EPROTO;
	if (err == -E2BIG)
		snprintf(why, why_len, "a WATCH event over %u bytes", K8S_RESPONSE_MAX);
	else if (err == -EPROTO && !why[0])
		snprintf(why, why_len, "a WATCH event that is not a pod event");
	free(x.buf);
	return err;
}

static void backoff_wait(struct k8s *k, unsigned *delay)
{
	*delay = *delay ? *delay * 2 : K8S_BACKOFF_MIN_MS;
	if (*delay > k->backoff_max_ms)
		*delay = k->backoff_max_ms;
	__atomic_store_n(&g_stats.k8s_api_unavailable, 1, __ATOMIC_RELAXED);
	pause_ms(k, *delay);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A server or proxy that ends every WATCH at once (an empty answer, or 410 after each LIST)
 * would make the worker spin, and every node's agent hammer the API server: a round that
 * ended within K8S_SHORT_ROUND_MS of its start is followed by a pause that doubles while
 * rounds stay short. */
static void pause_if_short(struct k8s *k, uint64_t started_ms, unsigned *delay)
{
	if (mono_ms() - started_ms >= K8S_SHORT_ROUND_MS) {
		*delay = 0;
		return;
	}
	*delay = *delay ? *delay * 2 : K8S_BACKOFF_MIN_MS;
	if (*delay > k->backoff_max_ms)
		*delay = k->backoff_max_ms;
	pause_ms(k, *delay);
}

static void *worker(void *arg)
{
	struct k8s *k = arg;
	unsigned delay = 0, short_delay = 0;
	char why[CURL_ERROR_SIZE + 128];

	privilege__restrict(0); /* HTTP and a token file readable by its owner need none */
	while (!stopping(k)) {
		uint64_t round_ms = mono_ms();
		int err;

		why[0] = '\0';
		err = list_all(k, why, sizeof(why));
		if (!err) {
			delay = 0;
			__atomic_store_n(&g_stats.k8s_api_unavailable, 0, __ATOMIC_RELAXED);
			log_available(k);
		}
		while (!err && !stopping(k)) {
			uint64_t watch_ms = mono_ms();

			err = watch(k, why, sizeof(why));
			if (!err)
				pause_if_short(k, watch_ms, &short_delay);
		}
		if (err == -ECANCELED || stopping(k))
			break;
		if (err == -ESTALE) {
			K8S_STAT_INC(k8s_relists_gone);
			log_debug("kubernetes: resourceVersion expired (410 Gone), listing again");
			pause_if_short(k, round_ms, &short_delay);
			continue;
		}
		K8S_STAT_INC(k8s_api_errors);
		log_unavailable(k, why[0] ? why : strerror(-err));
		backoff_wait(k, &delay);
	}
	return NULL;
}

/* ---- start and stop --------------------------------------------------------------------- */

/* The API URL when none is configured: the in-cluster service's. NULL outside a cluster. */
static char *in_cluster_api(void)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char *url;

	if (!host || !*host || !port || !*port)
		return NULL;
	if (asprintf(&url, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port) < 0)
		return NULL;
	return url;
}

static void k8s_free(struct k8s *k)
{
	if (!k)
		return;
	if (k->easy)
		curl_easy_cleanup(k->easy);
	json_doc__free(&k->doc);
	u64map_free(&k->by_uid);
	u64map_free(&k->by_cid);
	free(k->slots);
	free(k->free_slots);
	free(k->api);
	free(k->token_file);
	free(k->ca_file);
	free(k->node);
	pthread_mutex_destroy(&k->mu);
	pthread_mutex_destroy(&k->stop_mu);
	pthread_cond_destroy(&k->stop_cv);
	free(k);
}

static int k8s_alloc(const struct k8s_config *cfg, char *api, struct k8s **out)
{
	struct k8s *k = calloc(1, sizeof(*k));
	pthread_condattr_t ca;

	if (!k) {
		free(api);
		return -ENOMEM;
	}
	pthread_mutex_init(&k->mu, NULL);
	pthread_mutex_init(&k->stop_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->stop_cv, &ca);
	pthread_condattr_destroy(&ca);
	json_doc__init(&k->doc);
	k->api = api;
	/* a trailing '/' would make "//api/v1" */
	while (strlen(k->api) > 1 && k->api[strlen(k->api) - 1] == '/')
		k->api[strlen(k->api) - 1] = '\0';
	k->token_file = strdup(cfg->token_file ? cfg->token_file : "");
	k->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
	k->node = strdup(cfg->node);
	k->max_pods = cfg->max_pods ? cfg->max_pods : K8S_DEFAULT_MAX_PODS;
	k->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : K8S_DEFAULT_BACKOFF_MAX_MS;
	k->watch_timeout_s =
	    cfg->watch_timeout_s ? cfg->watch_timeout_s : K8S_DEFAULT_WATCH_TIMEOUT_S;
	k->page = cfg->list_page ? cfg->list_page : K8S_DEFAULT_LIST_PAGE;
	k->slots = calloc(k->max_pods, sizeof(*k->slots));
	k->free_slots = calloc(k->max_pods, sizeof(*k->free_slots));
	k->easy = curl_easy_init();
	if (!k->token_file || !k->node || (cfg->ca_file && !k->ca_file) || !k->slots ||
	    !k->free_slots || !k->easy || u64map_init(&k->by_uid, k->max_pods) ||
	    u64map_init(&k->by_cid, (size_t)k->max_pods * K8S_POD_CONTAINERS_MAX)) {
		k8s_free(k);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < k->max_pods; i++)
		k->free_slots[i] = k->max_pods - 1 - i;
	k->nfree = k->max_pods;
	*out = k;
	return 0;
}

int k8s__start(const struct k8s_config *cfg, struct k8s **out)
{
	bool token = cfg->token_file && access(cfg->token_file, R_OK) == 0;
	char *api = cfg->api ? strdup(cfg->api) : in_cluster_api();
	sigset_t all, old;
	struct k8s *k;
	int err;

	*out = NULL;
	if (cfg->mode == K8S_OFF || (cfg->mode == K8S_AUTO && (!api || !token))) {
		free(api);
		return 0;
	}
	if (!api || !cfg->node || !*cfg->node || strlen(cfg->node) >= K8S_NAME_MAX) {
		free(api);
		if (cfg->mode == K8S_AUTO) {
			log_warn("kubernetes pod metadata off: this node's name is unknown (set "
				 "K8S_NODE_NAME from the downward API, or --k8s-node-name)");
			return 0;
		}
		log_error("--k8s-meta=on needs %s", !api ? "--k8s-api (no KUBERNETES_SERVICE_HOST)"
							 : "this node's name (--k8s-node-name or "
							   "K8S_NODE_NAME)");
		return -EINVAL;
	}
	err = k8s_alloc(cfg, api, &k);
	if (err)
		return err;
	/* the stop signals belong to the loop's signalfd: the worker must never take one */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = -pthread_create(&k->thread, NULL, worker, k);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		log_error("cannot start the kubernetes metadata thread: %s", strerror(-err));
		k8s_free(k);
		return err;
	}
	k->thread_started = true;
	log_info("kubernetes pod metadata: watching the pods of node %s", k->node);
	*out = k;
	return 0;
}

void k8s__stop(struct k8s *k)
{
	if (!k)
		return;
	pthread_mutex_lock(&k->stop_mu);
	__atomic_store_n(&k->stopping, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&k->stop_cv);
	pthread_mutex_unlock(&k->stop_mu);
	if (k->thread_started)
		pthread_join(k->thread, NULL);
	k8s_free(k);
}
