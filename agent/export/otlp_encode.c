// SPDX-License-Identifier: BSD-2-Clause
/*
 * A direct protobuf writer for ExportTraceServiceRequest.
 *
 * Why not protobuf-c's pack: building protobuf-c message trees and packing them measured
 * 0.51 M spans/s per core before gzip (tests/bench/otlp_bench.c): pack sizes every nested
 * message once per enclosing level and strlen()s every string each time. This writer sizes
 * each span once, from lengths the span already holds, and writes it in one pass; it emits
 * the canonical encoding protobuf-c would (fields in number order, proto3 zero values left
 * out), which tests/unit/test_otlp.c checks by decoding with the protobuf-c code generated
 * from proto/, asserting every field, and packing the result again to compare the bytes.
 * The field numbers below are those of proto/: that test fails if they ever differ.
 */
#include "otlp_encode.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resource.h"
#include "span.h"
#include "text.h"

#ifndef HOPTRACE_VERSION
#define HOPTRACE_VERSION "0.0.0"
#endif

/* Wire types (protobuf encoding spec). */
#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5

/* Field numbers, as in proto/opentelemetry/proto/... */
#define F_REQUEST_RESOURCE_SPANS 1
#define F_RS_RESOURCE 1
#define F_RS_SCOPE_SPANS 2
#define F_RESOURCE_ATTRIBUTES 1
#define F_SS_SCOPE 1
#define F_SS_SPANS 2
#define F_SCOPE_NAME 1
#define F_SCOPE_VERSION 2
#define F_KV_KEY 1
#define F_KV_VALUE 2
#define F_ANY_STRING 1
#define F_ANY_BOOL 2
#define F_ANY_INT 3
#define F_SPAN_TRACE_ID 1
#define F_SPAN_SPAN_ID 2
#define F_SPAN_TRACE_STATE 3
#define F_SPAN_PARENT_SPAN_ID 4
#define F_SPAN_NAME 5
#define F_SPAN_KIND 6
#define F_SPAN_START 7
#define F_SPAN_END 8
#define F_SPAN_ATTRIBUTES 9
#define F_SPAN_DROPPED_ATTRIBUTES 10
#define F_SPAN_EVENTS 11
#define F_SPAN_DROPPED_EVENTS 12
#define F_SPAN_LINKS 13
#define F_EVENT_TIME 1
#define F_EVENT_NAME 2
#define F_EVENT_ATTRIBUTES 3
#define F_SPAN_STATUS 15
#define F_SPAN_FLAGS 16
#define F_LINK_TRACE_ID 1
#define F_LINK_SPAN_ID 2
#define F_LINK_ATTRIBUTES 4
#define F_STATUS_MESSAGE 2
#define F_STATUS_CODE 3

/* Span.flags bits 8 and 9 (SpanFlags in trace.proto): whether the parent is remote. */
#define FLAG_HAS_IS_REMOTE 0x100u
#define FLAG_IS_REMOTE 0x200u

/* Most bytes a varint of 32 bits takes: the reserve for a length not yet known. */
#define VARINT32_MAX 5

int otlp_buf_reserve(struct otlp_buf *b, size_t cap)
{
	uint8_t *d;
	size_t ncap;

	if (b->data && b->cap >= cap)
		return 0;
	ncap = b->cap ? b->cap : 4096;
	while (ncap < cap)
		ncap *= 2;
	d = realloc(b->data, ncap + OTLP_HEADROOM);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = ncap;
	return 0;
}

void otlp_buf_free(struct otlp_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---- wire primitives ------------------------------------------------------------------- */

static inline size_t varint_len(uint64_t v)
{
	return (size_t)(64 - __builtin_clzll(v | 1) + 6) / 7;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static inline size_t tag_len(unsigned field)
{
	return varint_len((uint64_t)field << 3);
}

static inline uint8_t *put_tag(uint8_t *p, unsigned field, unsigned wt)
{
	return put_varint(p, (uint64_t)field << 3 | wt);
}

/* Size of a length-delimited field whose payload is len bytes. */
static inline size_t len_field(unsigned field, size_t len)
{
	return tag_len(field) + varint_len(len) + len;
}

static inline uint8_t *put_len_hdr(uint8_t *p, unsigned field, size_t len)
{
	return put_varint(put_tag(p, field, WT_LEN), len);
}

static inline uint8_t *put_bytes(uint8_t *p, unsigned field, const void *data, size_t len)
{
	p = put_len_hdr(p, field, len);
	memcpy(p, data, len);
	return p + len;
}

static inline uint8_t *put_fixed64(uint8_t *p, unsigned field, uint64_t v)
{
	p = put_tag(p, field, WT_I64);
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

static inline uint8_t *put_fixed32(uint8_t *p, unsigned field, uint32_t v)
{
	p = put_tag(p, field, WT_I32);
	for (int i = 0; i < 4; i++)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

/* ---- strings: proto3 strings must be UTF-8 ---------------------------------------------- */

/*
 * A string planned for output: its bytes, and the length it takes once invalid UTF-8 is
 * replaced by U+FFFD. Receivers written in Go (the Collector) reject a whole request whose
 * string fields are not UTF-8, and captured URLs and headers can hold any byte.
 */
struct str {
	const char *p;
	uint32_t len;
	uint32_t out;
	bool dirty;
};

bool otlp_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

size_t otlp_utf8_seq(const unsigned char *s, size_t left)
{
	return utf8_sequence_len(s, left);
}

static bool is_ascii(const char *s, size_t len)
{
	uint64_t acc = 0;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, s + i, 8);
		acc |= w;
	}
	for (; i < len; i++)
		acc |= (unsigned char)s[i];
	return !(acc & 0x8080808080808080ull);
}

static void str_plan(struct str *s, const char *p, size_t len)
{
	size_t out = 0;

	s->p = p;
	s->len = (uint32_t)len;
	s->out = (uint32_t)len;
	s->dirty = false;
	if (is_ascii(p, len))
		return;
	for (size_t i = 0; i < len;) {
		size_t n = otlp_utf8_seq((const unsigned char *)p + i, len - i);

		if (n) {
			out += n;
			i += n;
		} else {
			out += 3;
			i++;
			s->dirty = true;
		}
	}
	s->out = (uint32_t)out;
}

/* A C string, or a fixed char array that a producer may have filled to the last byte. */
static void str_plan_c(struct str *s, const char *p, size_t max)
{
	const char *nul = memchr(p, '\0', max);

	str_plan(s, p, nul ? (size_t)(nul - p) : max);
}

static uint8_t *put_str_bytes(uint8_t *o, const struct str *s)
{
	if (!s->dirty) {
		memcpy(o, s->p, s->len);
		return o + s->len;
	}
	for (size_t i = 0; i < s->len;) {
		size_t n = otlp_utf8_seq((const unsigned char *)s->p + i, s->len - i);

		if (n) {
			memcpy(o, s->p + i, n);
			o += n;
			i += n;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	return o;
}

static inline uint8_t *put_str(uint8_t *p, unsigned field, const struct str *s)
{
	return put_str_bytes(put_len_hdr(p, field, s->out), s);
}

/* ---- KeyValue -------------------------------------------------------------------------- */

/* An attribute value planned for output (AnyValue oneof). */
struct anyval {
	uint8_t type; /* enum span_attr_type */
	int64_t ival;
	struct str s;
};

static size_t any_len(const struct anyval *v)
{
	switch (v->type) {
	case SPAN_ATTR_INT:
		return tag_len(F_ANY_INT) + varint_len((uint64_t)v->ival);
	case SPAN_ATTR_BOOL:
		return tag_len(F_ANY_BOOL) + 1;
	default:
		return len_field(F_ANY_STRING, v->s.out);
	}
}

static uint8_t *put_any(uint8_t *p, const struct anyval *v)
{
	switch (v->type) {
	case SPAN_ATTR_INT:
		/* int64: negative values take ten bytes, two's complement (encoding spec) */
		return put_varint(put_tag(p, F_ANY_INT, WT_VARINT), (uint64_t)v->ival);
	case SPAN_ATTR_BOOL:
		return put_varint(put_tag(p, F_ANY_BOOL, WT_VARINT), v->ival ? 1 : 0);
	default:
		return put_str(p, F_ANY_STRING, &v->s);
	}
}

/* Payload length of a KeyValue. */
static size_t kv_len(const struct str *key, const struct anyval *v)
{
	return (key->out ? len_field(F_KV_KEY, key->out) : 0) + len_field(F_KV_VALUE, any_len(v));
}

/* A whole KeyValue field (tag, length, payload) given its payload length. */
static uint8_t *put_kv(uint8_t *p, unsigned field, size_t len, const struct str *key,
		       const struct anyval *v)
{
	p = put_len_hdr(p, field, len);
	if (key->out)
		p = put_str(p, F_KV_KEY, key);
	p = put_len_hdr(p, F_KV_VALUE, any_len(v));
	return put_any(p, v);
}

/* ---- encoder state --------------------------------------------------------------------- */

struct otlp_encoder {
	/* agent-level resource attributes, pre-encoded as Resource.attributes fields */
	unsigned nagent;
	struct otlp_kv *agent;
	size_t *agent_off; /* nagent + 1 offsets into agent_blob */
	uint8_t *agent_blob;
	/* ScopeSpans.scope field, pre-encoded */
	uint8_t scope[64 + sizeof(HOPTRACE_VERSION)];
	size_t scope_len;
	/* Resource payload of the group being written */
	struct otlp_buf res;
	/* grouping scratch, grown to the largest batch */
	size_t scratch_n;
	size_t nslots;
	uint32_t *slots; /* resource hash: group index + 1, 0 empty */
	uint32_t *order; /* span indices, grouped */
	uint32_t *which; /* group of each span */
	struct group {
		const struct resource *res;
		uint32_t count;
		uint32_t start;
	} * groups;
};

static int agent_add(struct otlp_kv *kv, unsigned *n, const char *key, const char *val)
{
	for (unsigned i = 0; i < *n; i++)
		if (!strcmp(kv[i].key, key))
			return 0; /* set by the user: theirs wins */
	kv[*n].key = strdup(key);
	kv[*n].value = strdup(val);
	if (!kv[*n].key || !kv[*n].value) {
		free(kv[*n].key);
		free(kv[*n].value);
		return -ENOMEM;
	}
	(*n)++;
	return 0;
}

/*
 * The agent's attributes: the user's OTEL_RESOURCE_ATTRIBUTES first, then the host defaults
 * they did not set. telemetry.sdk.language is left out: its values name the language of the
 * instrumented code, which hoptrace does not know (it traces any process from outside).
 */
static int agent_attrs_collect(struct otlp_encoder *enc, const struct otlp_kv *attrs,
			       unsigned nattrs)
{
	static const char *const defaults[][2] = {
	    {"os.type", "linux"},
	    {"telemetry.sdk.name", "hoptrace"},
	    {"telemetry.sdk.version", HOPTRACE_VERSION},
	    {"telemetry.distro.name", "hoptrace"},
	    {"telemetry.distro.version", HOPTRACE_VERSION},
	};
	char host[256] = "";
	unsigned n = 0;
	int err = 0;

	enc->agent =
	    calloc(nattrs + 1 + sizeof(defaults) / sizeof(defaults[0]), sizeof(*enc->agent));
	if (!enc->agent)
		return -ENOMEM;
	for (unsigned i = 0; i < nattrs && !err; i++)
		err = agent_add(enc->agent, &n, attrs[i].key, attrs[i].value);
	if (gethostname(host, sizeof(host) - 1) || !host[0])
		strcpy(host, "localhost");
	if (!err)
		err = agent_add(enc->agent, &n, "host.name", host);
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]) && !err; i++)
		err = agent_add(enc->agent, &n, defaults[i][0], defaults[i][1]);
	enc->nagent = n;
	return err;
}

static int agent_attrs_encode(struct otlp_encoder *enc)
{
	size_t total = 0, off = 0;

	enc->agent_off = calloc(enc->nagent + 1, sizeof(*enc->agent_off));
	if (!enc->agent_off)
		return -ENOMEM;
	for (unsigned pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < enc->nagent; i++) {
			struct anyval v = {.type = SPAN_ATTR_STR};
			struct str k;
			size_t len;

			str_plan(&k, enc->agent[i].key, strlen(enc->agent[i].key));
			str_plan(&v.s, enc->agent[i].value, strlen(enc->agent[i].value));
			len = kv_len(&k, &v);
			if (pass == 0) {
				total += len_field(F_RESOURCE_ATTRIBUTES, len);
				continue;
			}
			enc->agent_off[i] = off;
			off = (size_t)(put_kv(enc->agent_blob + off, F_RESOURCE_ATTRIBUTES, len, &k,
					      &v) -
				       enc->agent_blob);
		}
		if (pass == 0) {
			enc->agent_blob = malloc(total ? total : 1);
			if (!enc->agent_blob)
				return -ENOMEM;
		}
	}
	enc->agent_off[enc->nagent] = off;
	return 0;
}

static void scope_encode(struct otlp_encoder *enc)
{
	struct str name, version;
	uint8_t *p = enc->scope;

	str_plan(&name, OTLP_SCOPE_NAME, strlen(OTLP_SCOPE_NAME));
	str_plan(&version, HOPTRACE_VERSION, strlen(HOPTRACE_VERSION));
	p = put_len_hdr(p, F_SS_SCOPE,
			len_field(F_SCOPE_NAME, name.out) +
			    len_field(F_SCOPE_VERSION, version.out));
	p = put_str(p, F_SCOPE_NAME, &name);
	p = put_str(p, F_SCOPE_VERSION, &version);
	enc->scope_len = (size_t)(p - enc->scope);
}

struct otlp_encoder *otlp_encoder_new(const struct otlp_kv *attrs, unsigned nattrs)
{
	struct otlp_encoder *enc = calloc(1, sizeof(*enc));

	if (!enc)
		return NULL;
	if (agent_attrs_collect(enc, attrs, nattrs) || agent_attrs_encode(enc)) {
		otlp_encoder_free(enc);
		return NULL;
	}
	scope_encode(enc);
	return enc;
}

static void scratch_free(struct otlp_encoder *enc)
{
	free(enc->slots);
	free(enc->order);
	free(enc->which);
	free(enc->groups);
	enc->slots = enc->order = enc->which = NULL;
	enc->groups = NULL;
	enc->scratch_n = enc->nslots = 0;
}

void otlp_encoder_free(struct otlp_encoder *enc)
{
	if (!enc)
		return;
	otlp_kv_free(enc->agent, enc->nagent);
	free(enc->agent_off);
	free(enc->agent_blob);
	otlp_buf_free(&enc->res);
	scratch_free(enc);
	free(enc);
}

unsigned otlp_encoder__agent_attrs(const struct otlp_encoder *enc, const struct otlp_kv **kv)
{
	*kv = enc->agent;
	return enc->nagent;
}

/* ---- resource -------------------------------------------------------------------------- */

#define RES_FIXED 6 /* service.name, process.pid, exe name and path, container, pod */
#define RES_KEYS_MAX (RES_FIXED + RESOURCE_MAX_K8S + RESOURCE_MAX_EXTRA)

/* Append one Resource.attributes entry to enc->res. */
static int res_put(struct otlp_encoder *enc, const char *key, const struct anyval *v)
{
	struct str k;
	size_t len, need;

	str_plan(&k, key, strlen(key));
	len = kv_len(&k, v);
	need = enc->res.len + len_field(F_RESOURCE_ATTRIBUTES, len);
	if (otlp_buf_reserve(&enc->res, need))
		return -ENOMEM;
	put_kv(otlp_buf_payload(&enc->res) + enc->res.len, F_RESOURCE_ATTRIBUTES, len, &k, v);
	enc->res.len = need;
	return 0;
}

static int res_put_str(struct otlp_encoder *enc, const char *key, const char *val)
{
	struct anyval v = {.type = SPAN_ATTR_STR};

	str_plan(&v.s, val, strlen(val));
	return res_put(enc, key, &v);
}

static bool key_in(const char *const *keys, unsigned n, const char *key)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(keys[i], key))
			return true;
	return false;
}

static bool agent_has_key(const struct otlp_encoder *enc, const char *key)
{
	for (unsigned i = 0; i < enc->nagent; i++)
		if (!strcmp(enc->agent[i].key, key))
			return true;
	return false;
}

/*
 * The Resource payload of one traced process into enc->res. When keys collide, what hoptrace
 * observed of the process wins, then the agent's list (host.name, its own
 * OTEL_RESOURCE_ATTRIBUTES: host-level, set by whoever runs the agent), then the process's
 * own OTEL_RESOURCE_ATTRIBUTES: a process must not pass for another host or node.
 */
static int resource_encode(struct otlp_encoder *enc, const struct resource *r)
{
	const char *keys[RES_KEYS_MAX];
	unsigned nkeys = 0;
	int err = 0;

	enc->res.len = 0;
#define PUT_STR(k, val)                                                                            \
	do {                                                                                       \
		if (!err) {                                                                        \
			err = res_put_str(enc, (k), (val));                                        \
			keys[nkeys++] = (k);                                                       \
		}                                                                                  \
	} while (0)
	if (!r) {
		PUT_STR("service.name", "unknown_service");
	} else {
		struct anyval pid = {.type = SPAN_ATTR_INT, .ival = r->pid};
		const char *svc = r->service_name ? r->service_name : r->exe_name;

		PUT_STR("service.name", svc ? svc : "unknown_service");
		if (!err) {
			err = res_put(enc, "process.pid", &pid);
			keys[nkeys++] = "process.pid";
		}
		if (r->exe_name)
			PUT_STR("process.executable.name", r->exe_name);
		if (r->exe_path)
			PUT_STR("process.executable.path", r->exe_path);
		if (r->container_id)
			PUT_STR("container.id", r->container_id);
		if (r->pod_uid)
			PUT_STR("k8s.pod.uid", r->pod_uid);
		for (unsigned i = 0; i < r->nk8s && i < RESOURCE_MAX_K8S; i++)
			PUT_STR(r->k8s[i].key, r->k8s[i].value);
		for (unsigned i = 0; i < r->nextra && i < RESOURCE_MAX_EXTRA; i++) {
			const struct resource_kv *x = &r->extra[i];

			if (x->key && x->value && *x->key && !key_in(keys, nkeys, x->key) &&
			    !agent_has_key(enc, x->key))
				PUT_STR(x->key, x->value);
		}
	}
#undef PUT_STR
	for (unsigned i = 0; i < enc->nagent && !err; i++) {
		size_t len = enc->agent_off[i + 1] - enc->agent_off[i];

		if (key_in(keys, nkeys, enc->agent[i].key))
			continue;
		err = otlp_buf_reserve(&enc->res, enc->res.len + len);
		if (err)
			break;
		memcpy(otlp_buf_payload(&enc->res) + enc->res.len,
		       enc->agent_blob + enc->agent_off[i], len);
		enc->res.len += len;
	}
	return err;
}

/* ---- span ------------------------------------------------------------------------------ */

/* Everything about one span that sizing needs and writing reuses. */
struct span_plan {
	struct str name;
	struct str tracestate;
	struct str status_msg;
	struct str keys[SPAN_MAX_ATTRS];
	struct anyval vals[SPAN_MAX_ATTRS];
	uint32_t kvlen[SPAN_MAX_ATTRS];
	uint32_t linklen[SPAN_MAX_LINKS];
	struct str reasons[SPAN_MAX_LINKS];
	uint32_t reason_kvlen[SPAN_MAX_LINKS];
	unsigned nattrs;
	unsigned nlinks;
	bool has_parent;
	uint32_t flags;
	uint32_t status_len;
	uint32_t dropped;
	size_t size;
};

static bool id_is_zero(const uint8_t *id, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (id[i])
			return false;
	return true;
}

static size_t plan_attrs(struct span_plan *pl, const struct span *s)
{
	size_t size = 0;

	pl->nattrs = s->nattrs < SPAN_MAX_ATTRS ? s->nattrs : SPAN_MAX_ATTRS;
	pl->dropped = s->dropped_attrs + (s->nattrs - pl->nattrs);
	for (unsigned i = 0; i < pl->nattrs; i++) {
		const struct span_attr *a = &s->attrs[i];
		struct anyval *v = &pl->vals[i];

		str_plan(&pl->keys[i], a->key, strlen(a->key));
		v->type = a->type;
		v->ival = a->ival;
		if (a->type != SPAN_ATTR_INT && a->type != SPAN_ATTR_BOOL)
			str_plan(&v->s, span_attr_str(s, a), a->len);
		pl->kvlen[i] = (uint32_t)kv_len(&pl->keys[i], v);
		size += len_field(F_SPAN_ATTRIBUTES, pl->kvlen[i]);
	}
	return size;
}

static size_t plan_links(struct span_plan *pl, const struct span *s)
{
	size_t size = 0;

	pl->nlinks = s->nlinks < SPAN_MAX_LINKS ? s->nlinks : SPAN_MAX_LINKS;
	for (unsigned i = 0; i < pl->nlinks; i++) {
		const char *reason = s->links[i].reason;
		size_t len = len_field(F_LINK_TRACE_ID, 16) + len_field(F_LINK_SPAN_ID, 8);

		pl->reason_kvlen[i] = 0;
		if (reason) {
			struct anyval v = {.type = SPAN_ATTR_STR};
			struct str k;

			str_plan(&k, OTLP_LINK_REASON_KEY, strlen(OTLP_LINK_REASON_KEY));
			str_plan(&pl->reasons[i], reason, strlen(reason));
			v.s = pl->reasons[i];
			pl->reason_kvlen[i] = (uint32_t)kv_len(&k, &v);
			len += len_field(F_LINK_ATTRIBUTES, pl->reason_kvlen[i]);
		}
		pl->linklen[i] = (uint32_t)len;
		size += len_field(F_SPAN_LINKS, len);
	}
	return size;
}

/* ---- span events: log lines (--capture-logs) ---- */

/* An event's attributes planned: the line, its stream or file, whether it was cut. */
struct event_plan {
	struct str keys[3];
	struct anyval vals[3];
	uint32_t kvlen[3];
	unsigned n;
	struct str name;
	size_t len; /* the Event message's payload */
};

static void plan_event(struct event_plan *e, const struct span_events *evs, unsigned i)
{
	const struct span_event *ev = &evs->ev[i];
	const char *stream = span_log_iostream(ev->source);
	const char *key;

	e->n = 0;
	str_plan(&e->keys[0], "log.record.original", strlen("log.record.original"));
	e->vals[0] = (struct anyval){.type = SPAN_ATTR_STR};
	str_plan(&e->vals[0].s, evs->text + ev->off, ev->len);
	key = stream ? "log.iostream" : "log.file.path";
	str_plan(&e->keys[1], key, strlen(key));
	e->vals[1] = (struct anyval){.type = SPAN_ATTR_STR};
	if (stream)
		str_plan(&e->vals[1].s, stream, strlen(stream));
	else
		str_plan(&e->vals[1].s, evs->text + ev->path_off, ev->path_len);
	e->n = 2;
	if (ev->truncated) {
		str_plan(&e->keys[2], "hoptrace.log.truncated", strlen("hoptrace.log.truncated"));
		e->vals[2] = (struct anyval){.type = SPAN_ATTR_BOOL, .ival = 1};
		e->n = 3;
	}
	str_plan(&e->name, "log", 3);
	e->len = tag_len(F_EVENT_TIME) + 8 + len_field(F_EVENT_NAME, e->name.out);
	for (unsigned k = 0; k < e->n; k++) {
		e->kvlen[k] = (uint32_t)kv_len(&e->keys[k], &e->vals[k]);
		e->len += len_field(F_EVENT_ATTRIBUTES, e->kvlen[k]);
	}
}

static size_t plan_events(const struct span *s)
{
	size_t size = 0;
	struct event_plan e;

	for (unsigned i = 0; s->events && i < s->events->n; i++) {
		plan_event(&e, s->events, i);
		size += len_field(F_SPAN_EVENTS, e.len);
	}
	if (s->dropped_events)
		size += tag_len(F_SPAN_DROPPED_EVENTS) + varint_len(s->dropped_events);
	return size;
}

static uint8_t *put_events(uint8_t *p, const struct span *s)
{
	struct event_plan e;

	for (unsigned i = 0; s->events && i < s->events->n; i++) {
		plan_event(&e, s->events, i);
		p = put_len_hdr(p, F_SPAN_EVENTS, e.len);
		p = put_fixed64(p, F_EVENT_TIME, s->events->ev[i].time_unix_ns);
		p = put_str(p, F_EVENT_NAME, &e.name);
		for (unsigned k = 0; k < e.n; k++)
			p = put_kv(p, F_EVENT_ATTRIBUTES, e.kvlen[k], &e.keys[k], &e.vals[k]);
	}
	if (s->dropped_events)
		p = put_varint(put_tag(p, F_SPAN_DROPPED_EVENTS, WT_VARINT), s->dropped_events);
	return p;
}

static void plan_span(struct span_plan *pl, const struct span *s)
{
	size_t size = len_field(F_SPAN_TRACE_ID, 16) + len_field(F_SPAN_SPAN_ID, 8);

	str_plan_c(&pl->name, s->name, sizeof(s->name));
	str_plan_c(&pl->tracestate, s->tracestate, sizeof(s->tracestate));
	pl->has_parent = !id_is_zero(s->parent_span_id, sizeof(s->parent_span_id));
	/*
	 * A server span's parent came in a traceparent header: remote. A client span's parent
	 * is the server span of the same process: local. Roots have no parent to qualify.
	 */
	pl->flags = s->trace_flags;
	if (pl->has_parent)
		pl->flags |=
		    FLAG_HAS_IS_REMOTE | (s->kind == SPAN_KIND_SERVER ? FLAG_IS_REMOTE : 0);
	if (pl->tracestate.out)
		size += len_field(F_SPAN_TRACE_STATE, pl->tracestate.out);
	if (pl->has_parent)
		size += len_field(F_SPAN_PARENT_SPAN_ID, 8);
	if (pl->name.out)
		size += len_field(F_SPAN_NAME, pl->name.out);
	if (s->kind)
		size += tag_len(F_SPAN_KIND) + varint_len(s->kind);
	if (s->start_unix_ns)
		size += tag_len(F_SPAN_START) + 8;
	if (s->end_unix_ns)
		size += tag_len(F_SPAN_END) + 8;
	size += plan_attrs(pl, s);
	if (pl->dropped)
		size += tag_len(F_SPAN_DROPPED_ATTRIBUTES) + varint_len(pl->dropped);
	size += plan_events(s);
	size += plan_links(pl, s);
	pl->status_len = 0;
	if (s->status != SPAN_STATUS_UNSET) {
		size_t st = tag_len(F_STATUS_CODE) + varint_len(s->status);

		/* the API spec allows a description only with ERROR */
		pl->status_msg.out = 0;
		if (s->status == SPAN_STATUS_ERROR)
			str_plan_c(&pl->status_msg, s->status_message, sizeof(s->status_message));
		if (pl->status_msg.out)
			st += len_field(F_STATUS_MESSAGE, pl->status_msg.out);
		pl->status_len = (uint32_t)st;
		size += len_field(F_SPAN_STATUS, st);
	}
	if (pl->flags)
		size += tag_len(F_SPAN_FLAGS) + 4;
	pl->size = size;
}

static uint8_t *put_links(uint8_t *p, const struct span_plan *pl, const struct span *s)
{
	for (unsigned i = 0; i < pl->nlinks; i++) {
		const struct span_link *l = &s->links[i];

		p = put_len_hdr(p, F_SPAN_LINKS, pl->linklen[i]);
		p = put_bytes(p, F_LINK_TRACE_ID, l->trace_id, 16);
		p = put_bytes(p, F_LINK_SPAN_ID, l->span_id, 8);
		if (pl->reason_kvlen[i]) {
			struct anyval v = {.type = SPAN_ATTR_STR, .s = pl->reasons[i]};
			struct str k;

			str_plan(&k, OTLP_LINK_REASON_KEY, strlen(OTLP_LINK_REASON_KEY));
			p = put_kv(p, F_LINK_ATTRIBUTES, pl->reason_kvlen[i], &k, &v);
		}
	}
	return p;
}

/* Write the span's payload (fields in number order, zero values omitted). */
static uint8_t *put_span(uint8_t *p, const struct span_plan *pl, const struct span *s)
{
	p = put_bytes(p, F_SPAN_TRACE_ID, s->trace_id, 16);
	p = put_bytes(p, F_SPAN_SPAN_ID, s->span_id, 8);
	if (pl->tracestate.out)
		p = put_str(p, F_SPAN_TRACE_STATE, &pl->tracestate);
	if (pl->has_parent)
		p = put_bytes(p, F_SPAN_PARENT_SPAN_ID, s->parent_span_id, 8);
	if (pl->name.out)
		p = put_str(p, F_SPAN_NAME, &pl->name);
	if (s->kind)
		p = put_varint(put_tag(p, F_SPAN_KIND, WT_VARINT), s->kind);
	if (s->start_unix_ns)
		p = put_fixed64(p, F_SPAN_START, s->start_unix_ns);
	if (s->end_unix_ns)
		p = put_fixed64(p, F_SPAN_END, s->end_unix_ns);
	for (unsigned i = 0; i < pl->nattrs; i++)
		p = put_kv(p, F_SPAN_ATTRIBUTES, pl->kvlen[i], &pl->keys[i], &pl->vals[i]);
	if (pl->dropped)
		p = put_varint(put_tag(p, F_SPAN_DROPPED_ATTRIBUTES, WT_VARINT), pl->dropped);
	p = put_events(p, s);
	p = put_links(p, pl, s);
	if (s->status != SPAN_STATUS_UNSET) {
		p = put_len_hdr(p, F_SPAN_STATUS, pl->status_len);
		if (pl->status_msg.out)
			p = put_str(p, F_STATUS_MESSAGE, &pl->status_msg);
		p = put_varint(put_tag(p, F_STATUS_CODE, WT_VARINT), s->status);
	}
	if (pl->flags)
		p = put_fixed32(p, F_SPAN_FLAGS, pl->flags);
	return p;
}

/* ---- grouping and the request ---------------------------------------------------------- */

static int scratch_reserve(struct otlp_encoder *enc, size_t n)
{
	size_t nslots = 16;

	if (n <= enc->scratch_n)
		return 0;
	scratch_free(enc);
	while (nslots < n * 2)
		nslots *= 2;
	enc->slots = malloc(nslots * sizeof(*enc->slots));
	enc->order = malloc(n * sizeof(*enc->order));
	enc->which = malloc(n * sizeof(*enc->which));
	enc->groups = malloc(n * sizeof(*enc->groups));
	if (!enc->slots || !enc->order || !enc->which || !enc->groups) {
		scratch_free(enc);
		return -ENOMEM;
	}
	enc->scratch_n = n;
	enc->nslots = nslots;
	return 0;
}

static size_t ptr_hash(const void *p)
{
	uint64_t x = (uintptr_t)p;

	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 32;
	return (size_t)x;
}

/*
 * Group spans by resource, groups in order of first appearance and spans in batch order
 * within each: open addressing on the resource pointer, then a counting sort into order[].
 */
static size_t group_spans(struct otlp_encoder *enc, struct span *const *spans, size_t n)
{
	size_t mask = enc->nslots - 1, ng = 0;

	memset(enc->slots, 0, enc->nslots * sizeof(*enc->slots));
	for (size_t i = 0; i < n; i++) {
		const struct resource *r = spans[i]->resource;
		size_t h = ptr_hash(r) & mask;

		while (enc->slots[h] && enc->groups[enc->slots[h] - 1].res != r)
			h = (h + 1) & mask;
		if (!enc->slots[h]) {
			enc->groups[ng] = (struct group){.res = r};
			enc->slots[h] = (uint32_t)++ng;
		}
		enc->which[i] = enc->slots[h] - 1;
		enc->groups[enc->which[i]].count++;
	}
	for (size_t g = 0, start = 0; g < ng; g++) {
		enc->groups[g].start = (uint32_t)start;
		start += enc->groups[g].count;
		enc->groups[g].count = 0;
	}
	for (size_t i = 0; i < n; i++) {
		struct group *g = &enc->groups[enc->which[i]];

		enc->order[g->start + g->count++] = (uint32_t)i;
	}
	return ng;
}

/*
 * One ResourceSpans: [resource_spans hdr][resource][scope_spans hdr][scope][spans...]. The
 * spans' total is known only once they are written, so room for the largest header is left
 * in front of them, the exact header is written at the group's start, and the spans are
 * moved down onto it (one memmove per process per batch).
 */
static int put_group(struct otlp_encoder *enc, const struct group *g, struct span *const *spans,
		     struct otlp_buf *out)
{
	size_t start = out->len, hdr_max, pos, spans_len, ss_len, rs_len;
	struct span_plan pl;
	uint8_t *p;
	int err;

	err = resource_encode(enc, g->res);
	if (err)
		return err;
	hdr_max = 1 + VARINT32_MAX + len_field(F_RS_RESOURCE, enc->res.len) + 1 + VARINT32_MAX +
		  enc->scope_len;
	pos = start + hdr_max;
	err = otlp_buf_reserve(out, pos);
	if (err)
		return err;
	for (uint32_t k = 0; k < g->count; k++) {
		const struct span *s = spans[enc->order[g->start + k]];

		plan_span(&pl, s);
		err = otlp_buf_reserve(out, pos + 1 + VARINT32_MAX + pl.size);
		if (err)
			return err;
		p = put_len_hdr(otlp_buf_payload(out) + pos, F_SS_SPANS, pl.size);
		p = put_span(p, &pl, s);
		pos = (size_t)(p - otlp_buf_payload(out));
	}
	spans_len = pos - (start + hdr_max);
	ss_len = enc->scope_len + spans_len;
	rs_len = len_field(F_RS_RESOURCE, enc->res.len) + len_field(F_RS_SCOPE_SPANS, ss_len);
	p = put_len_hdr(otlp_buf_payload(out) + start, F_REQUEST_RESOURCE_SPANS, rs_len);
	p = put_bytes(p, F_RS_RESOURCE, otlp_buf_payload(&enc->res), enc->res.len);
	p = put_len_hdr(p, F_RS_SCOPE_SPANS, ss_len);
	memcpy(p, enc->scope, enc->scope_len);
	p += enc->scope_len;
	memmove(p, otlp_buf_payload(out) + start + hdr_max, spans_len);
	out->len = (size_t)(p - otlp_buf_payload(out)) + spans_len;
	return 0;
}

int otlp_encoder__encode(struct otlp_encoder *enc, struct span *const *spans, size_t n,
			 struct otlp_buf *out)
{
	size_t ng;
	int err;

	out->len = 0;
	err = otlp_buf_reserve(out, 0);
	if (err || !n)
		return err;
	err = scratch_reserve(enc, n);
	if (err)
		return err;
	ng = group_spans(enc, spans, n);
	for (size_t g = 0; g < ng; g++) {
		err = put_group(enc, &enc->groups[g], spans, out);
		if (err)
			return err;
	}
	return 0;
}

int otlp_encoder__resource(struct otlp_encoder *enc, const struct resource *r,
			   const uint8_t **payload, size_t *len)
{
	int err = resource_encode(enc, r);

	if (err)
		return err;
	*payload = otlp_buf_payload(&enc->res);
	*len = enc->res.len;
	return 0;
}
