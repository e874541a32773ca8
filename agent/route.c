// SPDX-License-Identifier: BSD-2-Clause
#include "route.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- output ------------------------------------------------------------------------ */

/* Bytes appended to a fixed buffer, cut to fit, always NUL-terminated. */
struct route_out {
	char *buf;
	size_t cap; /* including the NUL */
	size_t len;
};

static void put(struct route_out *o, const char *s, size_t n)
{
	size_t room = o->cap - 1 - o->len;

	if (n > room)
		n = room;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void put_str(struct route_out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* ---- character classes (ASCII only: the path is bytes from traffic) ---------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_lower(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_upper(char c)
{
	return c >= 'A' && c <= 'Z';
}

static bool is_alpha(char c)
{
	return is_lower(c) || is_upper(c);
}

static bool is_alnum(char c)
{
	return is_alpha(c) || is_digit(c);
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* c is one of set (never the NUL, which strchr would find) */
static bool in_set(char c, const char *set)
{
	return c && strchr(set, c);
}

static bool all_of(const char *s, size_t n, bool (*pred)(char))
{
	for (size_t i = 0; i < n; i++)
		if (!pred(s[i]))
			return false;
	return n > 0;
}

/* ---- segment classes --------------------------------------------------------------- */

enum seg_class {
	SEG_KEEP = 0,
	SEG_ID,
	SEG_UUID,
	SEG_HEX,
	SEG_TOKEN,
	SEG_DATE,
	SEG_EMAIL,
};

static const char *const placeholder[] = {
    [SEG_KEEP] = "",	     [SEG_ID] = "{id}",	    [SEG_UUID] = "{uuid}",   [SEG_HEX] = "{hex}",
    [SEG_TOKEN] = "{token}", [SEG_DATE] = "{date}", [SEG_EMAIL] = "{email}",
};

/* A segment as written out: seg[0..prefix) + placeholder + seg[suffix..len). */
struct seg_rewrite {
	enum seg_class cls;
	size_t prefix;
	size_t suffix;
};

static bool is_uuid(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !is_hex(s[i]))
			return false;
	}
	return true;
}

/* Hexadecimal ids: a digit and a letter from 7 characters (a short git hash), anything
 * hexadecimal from 16 (hashes, object ids). Digits alone are {id}, checked before. */
static bool is_hex_id(const char *s, size_t n)
{
	bool digit = false, letter = false;

	if (n < 7 || !all_of(s, n, is_hex))
		return false;
	for (size_t i = 0; i < n; i++) {
		digit |= is_digit(s[i]);
		letter |= !is_digit(s[i]);
	}
	return n >= 16 || (digit && letter);
}

static bool two_digits_in(const char *s, int lo, int hi)
{
	int v;

	if (!is_digit(s[0]) || !is_digit(s[1]))
		return false;
	v = (s[0] - '0') * 10 + (s[1] - '0');
	return v >= lo && v <= hi;
}

/* "%3A" (':') or "%2B" ('+'), either case */
static bool is_encoded_time_char(const char *s, size_t n)
{
	return n >= 3 && s[0] == '%' &&
	       ((s[1] == '3' && (s[2] == 'A' || s[2] == 'a')) ||
		(s[1] == '2' && (s[2] == 'B' || s[2] == 'b')));
}

/* What may follow a date's 'T': a time and a zone, ':' and '+' possibly percent-encoded. */
static bool is_time_tail(const char *s, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (is_encoded_time_char(s + i, n - i)) {
			i += 2;
			continue;
		}
		if (!is_digit(s[i]) && !in_set(s[i], ":.+-Zz"))
			return false;
	}
	return true;
}

/* YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mm:ss... */
static bool is_date(const char *s, size_t n)
{
	if (n < 7 || !all_of(s, 4, is_digit) || s[4] != '-' || !two_digits_in(s + 5, 1, 12))
		return false;
	if (n == 7)
		return true;
	if (n < 10 || s[7] != '-' || !two_digits_in(s + 8, 1, 31))
		return false;
	if (n == 10)
		return true;
	return (s[10] == 'T' || s[10] == 't' || s[10] == '_') && is_time_tail(s + 11, n - 11);
}

static bool is_email_local(char c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '+' || c == '-';
}

static bool is_domain_char(char c)
{
	return is_alnum(c) || c == '.' || c == '-';
}

/* local@domain.tld, the '@' as is or as %40 */
static bool is_email(const char *s, size_t n)
{
	size_t at = 0, dlen, dot;
	const char *d;

	while (at < n && is_email_local(s[at]))
		at++;
	if (!at || at == n)
		return false;
	if (s[at] == '@')
		d = s + at + 1;
	else if (n - at >= 3 && memcmp(s + at, "%40", 3) == 0)
		d = s + at + 3;
	else
		return false;
	dlen = (size_t)(s + n - d);
	if (!all_of(d, dlen, is_domain_char))
		return false;
	for (dot = dlen; dot > 0 && d[dot - 1] != '.'; dot--)
		;
	/* a dot inside the domain, and a top-level domain of two letters or more */
	return dot > 1 && dlen - dot >= 2 && all_of(d + dot, dlen - dot, is_alpha);
}

enum char_kind { CK_SEP = 0, CK_LOWER, CK_UPPER, CK_DIGIT };

static enum char_kind char_kind(char c)
{
	return is_lower(c) ? CK_LOWER : is_upper(c) ? CK_UPPER : is_digit(c) ? CK_DIGIT : CK_SEP;
}

/*
 * Random ids (base62, base64url, base32): 10 characters or more, digits and letters, and
 * "surprising" neighbours often: a digit next to a letter, or a capital after a small
 * letter. Random base62 has them between ~45% of neighbours, lower-case or upper-case with
 * digits ~40%; words have few (a camelCase word one per word, "user_preferences_v2" one in
 * 18). The line is drawn at 30%. Separators ('-', '_', '.', '~', '=', '+', '%') break pairs.
 */
static bool is_token(const char *s, size_t n)
{
	unsigned digits = 0, letters = 0, pairs = 0, odd = 0;
	enum char_kind prev = CK_SEP;

	if (n < 10)
		return false;
	for (size_t i = 0; i < n; i++) {
		enum char_kind k = char_kind(s[i]);

		if (k == CK_SEP && !in_set(s[i], "-_.~=+%"))
			return false;
		digits += k == CK_DIGIT;
		letters += k == CK_LOWER || k == CK_UPPER;
		if (prev != CK_SEP && k != CK_SEP) {
			pairs++;
			odd += (prev == CK_DIGIT) != (k == CK_DIGIT) ||
			       (prev == CK_LOWER && k == CK_UPPER);
		}
		prev = k;
	}
	return digits && letters && odd * 10 >= pairs * 3;
}

/*
 * A word ending in a number: "order-12345", "INV_0042" (two digits or more after '-' or
 * '_'), "user123456" (four or more right after a letter). The word is letters, '-' and
 * '_' only. *prefix: where the number starts.
 */
static bool is_prefixed_number(const char *s, size_t n, size_t *prefix)
{
	size_t d = n;
	bool letter = false;

	while (d > 0 && is_digit(s[d - 1]))
		d--;
	if (d == 0 || d == n)
		return false;
	if (s[d - 1] == '-' || s[d - 1] == '_') {
		if (n - d < 2)
			return false;
	} else if (!is_alpha(s[d - 1]) || n - d < 4) {
		return false;
	}
	for (size_t i = 0; i < d; i++) {
		if (!is_alpha(s[i]) && s[i] != '-' && s[i] != '_')
			return false;
		letter |= is_alpha(s[i]);
	}
	*prefix = d;
	return letter;
}

/* A file name: a stem before the first '.', and a last extension of 1..5 letters and
 * digits starting with a letter ("png", "tar.gz", "mp4"). *stem: the stem's length. */
static bool has_extension(const char *s, size_t n, size_t *stem)
{
	const char *first = memchr(s, '.', n);
	size_t last = n;

	if (!first || first == s)
		return false;
	while (last > 0 && s[last - 1] != '.')
		last--;
	if (n - last < 1 || n - last > 5 || !is_alpha(s[last]) ||
	    !all_of(s + last, n - last, is_alnum))
		return false;
	*stem = (size_t)(first - s);
	return true;
}

/* The class of a whole segment (or stem); tokens only where allowed (a file name's dots
 * would read as token separators). */
static enum seg_class class_of(const char *s, size_t n, bool token_allowed)
{
	if (all_of(s, n, is_digit))
		return SEG_ID;
	if (is_uuid(s, n))
		return SEG_UUID;
	if (is_date(s, n))
		return SEG_DATE;
	if (is_hex_id(s, n))
		return SEG_HEX;
	if (token_allowed && is_token(s, n))
		return SEG_TOKEN;
	return SEG_KEEP;
}

/* How one segment is written: whole, as a prefixed number, or as a file name's stem. */
static struct seg_rewrite rewrite_of(const char *s, size_t n)
{
	struct seg_rewrite r = {.cls = SEG_KEEP, .prefix = 0, .suffix = n};
	size_t stem = 0, p;
	bool file;

	if (!n)
		return r;
	if (is_email(s, n)) {
		r.cls = SEG_EMAIL;
		return r;
	}
	file = has_extension(s, n, &stem);
	r.cls = class_of(s, n, !file);
	if (r.cls != SEG_KEEP)
		return r;
	if (is_prefixed_number(s, n, &p)) {
		r.cls = SEG_ID;
		r.prefix = p;
		return r;
	}
	if (!file)
		return r;
	r.suffix = stem;
	r.cls = class_of(s, stem, true);
	if (r.cls == SEG_KEEP && is_prefixed_number(s, stem, &p)) {
		r.cls = SEG_ID;
		r.prefix = p;
	}
	if (r.cls == SEG_KEEP)
		r.suffix = n;
	return r;
}

static void put_rewritten(struct route_out *o, const char *s, size_t n, struct seg_rewrite r)
{
	if (r.cls == SEG_KEEP) {
		put(o, s, n);
		return;
	}
	put(o, s, r.prefix);
	put_str(o, placeholder[r.cls]);
	put(o, s + r.suffix, n - r.suffix);
}

/* Write path with each segment rewritten (rewrite_of) unless keep() says its class stays
 * as it is; the '/' between segments are copied. */
static void rewrite_path(const char *path, size_t len, struct route_out *o,
			 bool (*keep)(enum seg_class))
{
	const char *p = path, *end = path + len;

	while (p < end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *seg_end = slash ? slash : end;
		size_t n = (size_t)(seg_end - p);
		struct seg_rewrite r = rewrite_of(p, n);

		if (keep(r.cls))
			r.cls = SEG_KEEP;
		put_rewritten(o, p, n, r);
		if (!slash)
			break;
		put(o, "/", 1);
		p = slash + 1;
	}
}

/* ---- explicit patterns ------------------------------------------------------------- */

static bool is_name_char(char c)
{
	return is_alnum(c) || c == '_';
}

/* "{name}" or "{name...}" (*tail set), the whole segment s[0..n). */
static bool is_placeholder(const char *s, size_t n, bool *tail)
{
	size_t name;

	*tail = false;
	if (n < 3 || s[0] != '{' || s[n - 1] != '}')
		return false;
	name = n - 2;
	if (name > 3 && memcmp(s + n - 4, "...", 3) == 0) {
		*tail = true;
		name -= 3;
	}
	return name >= 1 && name <= 32 && all_of(s + 1, name, is_name_char);
}

static bool pattern_char_ok(char c)
{
	return (unsigned char)c > 0x20 && c != 0x7f && !in_set(c, ",?#;");
}

static int pattern_check(const char *pat, size_t len)
{
	const char *p = pat, *end = pat + len;

	if (!len || len > ROUTE_PATTERN_MAX || pat[0] != '/')
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!pattern_char_ok(pat[i]))
			return -EINVAL;
	while (p < end) {
		const char *seg = p + 1, *seg_end = memchr(seg, '/', (size_t)(end - seg));
		bool tail;

		if (!seg_end)
			seg_end = end;
		if (is_placeholder(seg, (size_t)(seg_end - seg), &tail)) {
			if (tail && seg_end != end)
				return -EINVAL; /* "{rest...}" only last */
		} else if (memchr(seg, '{', (size_t)(seg_end - seg)) ||
			   memchr(seg, '}', (size_t)(seg_end - seg))) {
			return -EINVAL; /* braces only as a whole placeholder segment */
		}
		p = seg_end;
	}
	return 0;
}

int route_patterns_add(struct route_patterns *p, const char *pattern)
{
	size_t len = strlen(pattern);
	int err;

	/* "/users/{id}/" is "/users/{id}", as a path's trailing '/' is ignored */
	if (len > 1 && pattern[len - 1] == '/')
		len--;
	if (len > 1 && pattern[len - 1] == '/')
		return -EINVAL;
	err = pattern_check(pattern, len);
	if (err)
		return err;
	if (p->n == ROUTE_PATTERNS_MAX)
		return -ENOSPC;
	memcpy(p->pattern[p->n], pattern, len);
	p->pattern[p->n][len] = '\0';
	p->n++;
	return 0;
}

int route_patterns_parse(struct route_patterns *p, const char *list)
{
	char one[ROUTE_PATTERN_MAX + 1];
	const char *s = list;
	int err;

	do {
		size_t n = strcspn(s, ",");

		if (n > ROUTE_PATTERN_MAX)
			return -EINVAL;
		memcpy(one, s, n);
		one[n] = '\0';
		err = route_patterns_add(p, one);
		if (err)
			return err;
		s += n;
	} while (*s++ == ',');
	return 0;
}

/* Does path[0..len) match pattern pat (checked by pattern_check)? */
static bool pattern_matches(const char *pat, const char *path, size_t len)
{
	const char *pp = pat, *p = path, *end;

	if (len > 1 && path[len - 1] == '/')
		len--; /* "/users/42/" is "/users/42" */
	end = path + len;
	while (*pp) {
		const char *pseg, *pseg_end, *seg_end;
		size_t plen, slen;
		bool tail;

		if (p >= end || *p != '/')
			return false;
		pseg = ++pp;
		p++;
		pseg_end = pseg + strcspn(pseg, "/");
		seg_end = memchr(p, '/', (size_t)(end - p));
		if (!seg_end)
			seg_end = end;
		plen = (size_t)(pseg_end - pseg);
		slen = (size_t)(seg_end - p);
		if (is_placeholder(pseg, plen, &tail)) {
			if (tail)
				return p < end;
			if (!slen)
				return false;
		} else if (plen != slen || memcmp(pseg, p, plen) != 0) {
			return false;
		}
		pp = pseg_end;
		p = seg_end;
	}
	return p == end;
}

/* ---- templating and masking -------------------------------------------------------- */

static bool keep_none(enum seg_class c)
{
	(void)c;
	return false;
}

size_t route_template(const struct route_patterns *pats, const char *path, size_t len, char *out,
		      size_t cap)
{
	struct route_out o = {.buf = out, .cap = cap, .len = 0};

	if (!cap)
		return 0;
	out[0] = '\0';
	for (unsigned i = 0; pats && i < pats->n; i++) {
		if (pattern_matches(pats->pattern[i], path, len)) {
			put_str(&o, pats->pattern[i]);
			return o.len;
		}
	}
	rewrite_path(path, len, &o, keep_none);
	return o.len;
}

/* url.path keeps identifiers; only what may be a credential or a person goes. */
static bool keep_unless_secret(enum seg_class c)
{
	return c != SEG_TOKEN && c != SEG_HEX && c != SEG_EMAIL;
}

size_t route_mask_path(char *path, size_t len, size_t cap)
{
	char tmp[ROUTE_PATH_MAX + 1];
	struct route_out o = {.buf = tmp, .cap = sizeof(tmp), .len = 0};

	if (!cap)
		return 0;
	if (len > ROUTE_PATH_MAX)
		len = ROUTE_PATH_MAX;
	tmp[0] = '\0';
	rewrite_path(path, len, &o, keep_unless_secret);
	if (o.len > cap - 1)
		o.len = cap - 1;
	memcpy(path, tmp, o.len);
	path[o.len] = '\0';
	return o.len;
}

/* ---- the table --------------------------------------------------------------------- */

/* SipHash-1-3 (Aumasson and Bernstein): a keyed hash, so that the traffic cannot pick
 * routes that collide in the table. */
static uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = rotl(v[1], 13) ^ v[0];
	v[0] = rotl(v[0], 32);
	v[2] += v[3];
	v[3] = rotl(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = rotl(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = rotl(v[1], 17) ^ v[2];
	v[2] = rotl(v[2], 32);
}

static uint64_t load_le64(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint64_t siphash13(const uint64_t k[2], const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t v[4] = {k[0] ^ 0x736f6d6570736575ULL, k[1] ^ 0x646f72616e646f6dULL,
			 k[0] ^ 0x6c7967656e657261ULL, k[1] ^ 0x7465646279746573ULL};
	uint64_t m;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		m = load_le64(p + i, 8);
		v[3] ^= m;
		sip_round(v);
		v[0] ^= m;
	}
	m = load_le64(p + i, len - i) | ((uint64_t)len << 56);
	v[3] ^= m;
	sip_round(v);
	v[0] ^= m;
	v[2] ^= 0xff;
	for (int r = 0; r < 3; r++)
		sip_round(v);
	return (v[0] ^ v[1] ^ v[2] ^ v[3]) ?: 1; /* 0 marks an empty slot */
}

struct route_service {
	uint64_t h; /* keyed hash of (service, side); 0: empty slot */
	uint32_t routes;
};

#define SERVICE_SLOTS (4 * ROUTE_SERVICES_MAX) /* two sides each, at most half full */
#define ROUTE_SLOTS (2 * ROUTE_TOTAL_MAX)

int route_table__init(struct route_table *t, unsigned per_service,
		      const struct route_patterns *patterns, const uint8_t key[16])
{
	memset(t, 0, sizeof(*t));
	if (per_service > ROUTE_PER_SERVICE_MAX)
		return -EINVAL;
	t->per_service = per_service ? per_service : ROUTE_PER_SERVICE_DEFAULT;
	t->patterns = patterns;
	t->key[0] = load_le64(key, 8);
	t->key[1] = load_le64(key + 8, 8);
	/* calloc: the pages are touched only as routes arrive */
	t->services = calloc(SERVICE_SLOTS, sizeof(*t->services));
	t->routes = calloc(ROUTE_SLOTS, sizeof(*t->routes));
	if (!t->services || !t->routes) {
		route_table__free(t);
		return -ENOMEM;
	}
	return 0;
}

void route_table__free(struct route_table *t)
{
	free(t->services);
	free(t->routes);
	t->services = NULL;
	t->routes = NULL;
}

/* The service's slot (found, or the empty one where it goes); NULL when absent and the
 * table holds its maximum. */
static struct route_service *service_slot(struct route_table *t, uint64_t h)
{
	size_t i = h & (SERVICE_SLOTS - 1);

	while (t->services[i].h && t->services[i].h != h)
		i = (i + 1) & (SERVICE_SLOTS - 1);
	if (!t->services[i].h && t->nservices >= 2 * ROUTE_SERVICES_MAX)
		return NULL;
	return &t->services[i];
}

static uint64_t *route_slot(struct route_table *t, uint64_t h)
{
	size_t i = h & (ROUTE_SLOTS - 1);

	while (t->routes[i] && t->routes[i] != h)
		i = (i + 1) & (ROUTE_SLOTS - 1);
	return &t->routes[i];
}

static enum route_admit admit(struct route_table *t, const char *service, bool client,
			      const char *route, size_t len)
{
	uint64_t hs = siphash13(t->key, service, strlen(service)) ^ (client ? 0x5bd1e995ULL : 0);
	/* the route's hash is keyed by its service: equal routes of two services differ */
	uint64_t rkey[2] = {t->key[0] ^ hs, t->key[1] + hs};
	uint64_t h = siphash13(rkey, route, len);
	uint64_t *slot = route_slot(t, h);
	struct route_service *svc;

	if (*slot)
		return ROUTE_KNOWN;
	svc = service_slot(t, hs ?: 1);
	if (!svc || t->nroutes >= ROUTE_TOTAL_MAX)
		return ROUTE_TABLE_FULL;
	if (svc->routes >= t->per_service)
		return ROUTE_OVER_CAP;
	if (!svc->h) {
		svc->h = hs ?: 1;
		t->nservices++;
	}
	svc->routes++;
	*slot = h;
	t->nroutes++;
	return ROUTE_NEW;
}

enum route_admit route_table__resolve(struct route_table *t, const char *service, bool client,
				      const char *path, size_t len, char *out, size_t cap)
{
	size_t n = route_template(t->patterns, path, len, out, cap);
	enum route_admit a = admit(t, service ? service : "", client, out, n);

	if (a == ROUTE_OVER_CAP || a == ROUTE_TABLE_FULL) {
		struct route_out o = {.buf = out, .cap = cap, .len = 0};

		if (cap)
			put_str(&o, ROUTE_OVERFLOW);
	}
	return a;
}
