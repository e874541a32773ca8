/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Routes: the low-cardinality form of a request path that names a span ("GET /users/{id}")
 * and fills http.route (servers) or url.template (clients). The path comes from untrusted
 * traffic, already redacted by target.c (no query, fragment, userinfo or path parameters).
 *
 * 1. Explicit patterns (--route, HOPTRACE_ROUTES) are tried first, in order: a literal
 *    segment matches itself, "{name}" matches any one non-empty segment, and a last
 *    "{name...}" matches one or more remaining segments. A trailing '/' on the path or
 *    the pattern is ignored. The route is the pattern (without that '/').
 * 2. Otherwise each segment that looks like an identifier becomes a placeholder:
 *      {id}     digits only ("42"), or a word ending in a number: "order-12345" gives
 *               "order-{id}", "INV_0042" "INV_{id}", "user123456" "user{id}" (after '-' or
 *               '_' two digits or more, else four or more)
 *      {uuid}   8-4-4-4-12 hexadecimal
 *      {hex}    hexadecimal of 7+ characters with a digit and a letter ("3f9a1c2"), or of
 *               16+ characters (hashes, object ids)
 *      {token}  10+ characters of base64/base62 with digits and letters mixed as random
 *               ids are and words are not (Stripe, nanoid, ULID, JWT ...)
 *      {date}   YYYY-MM or YYYY-MM-DD, optionally with a time ("2024-05-06T10:00:00Z")
 *      {email}  local@domain.tld ('@' or "%40")
 *    A file name whose stem is such an id keeps its extension ("12345.png" gives
 *    "{id}.png"); other file names are kept ("app.3f9a1c.js"). Versions ("v1", "v2beta1")
 *    and words are kept.
 * 3. A table caps the distinct routes per service (and per side: server routes and client
 *    templates each): past the cap a request gets ROUTE_OVERFLOW. Memory is fixed: a
 *    keyed hash per route (SipHash-1-3, secret key), at most ROUTE_TOTAL_MAX of them.
 *
 * Pure functions and a table the caller owns: no I/O, no globals.
 */
#ifndef HOPTRACE_ROUTE_H
#define HOPTRACE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest route kept (http.route, url.template); longer ones are cut. */
#define ROUTE_MAX 255
/* Explicit patterns: how many, and how long each. */
#define ROUTE_PATTERNS_MAX 64
#define ROUTE_PATTERN_MAX 200
/* Longest path route_mask_path handles; the rest is cut (target.c keeps 512). */
#define ROUTE_PATH_MAX 1024
/* Distinct routes per service and side: default and largest value allowed. */
#define ROUTE_PER_SERVICE_DEFAULT 500
#define ROUTE_PER_SERVICE_MAX 65536
/* Services (times two sides) and routes the table holds in all. */
#define ROUTE_SERVICES_MAX 1024
#define ROUTE_TOTAL_MAX 65536
/* The route of a request past the cap. */
#define ROUTE_OVERFLOW "/{overflow}"

struct route_patterns {
	unsigned n;
	char pattern[ROUTE_PATTERNS_MAX][ROUTE_PATTERN_MAX + 1];
};

/*
 * Add one pattern (one trailing '/' dropped): starts with '/', ends with no '/' (but "/"),
 * at most ROUTE_PATTERN_MAX bytes, no ',', '?', '#', ';',
 * whitespace or control byte; each "{...}" is a whole segment named by 1..32 letters, digits
 * or '_', and "{name...}" only as the last. 0, -EINVAL, or -ENOSPC past ROUTE_PATTERNS_MAX.
 */
int route_patterns_add(struct route_patterns *p, const char *pattern);
/* Add each pattern of a comma-separated list (route_patterns_add). 0 or its error. */
int route_patterns_parse(struct route_patterns *p, const char *list);

/*
 * The route of path[0..len): the first matching pattern of pats (may be NULL), else the
 * templated path. Written to out (cap bytes, NUL-terminated, cut to fit); returns its length.
 */
size_t route_template(const struct route_patterns *pats, const char *path, size_t len, char *out,
		      size_t cap);

/*
 * url.path without what may be a credential or a person: segments (or file-name stems) that
 * template to {token}, {hex} or {email} are replaced by that placeholder, in place. Numbers,
 * uuids and dates stay: they identify a resource, and a reader debugging one request needs
 * them. path holds len bytes and room for cap (NUL included); returns the new length.
 */
size_t route_mask_path(char *path, size_t len, size_t cap);

/* The outcome of admitting a route into the table. */
enum route_admit {
	ROUTE_KNOWN,	  /* seen before */
	ROUTE_NEW,	  /* recorded now */
	ROUTE_OVER_CAP,	  /* the service has its cap of routes: ROUTE_OVERFLOW instead */
	ROUTE_TABLE_FULL, /* ROUTE_SERVICES_MAX or ROUTE_TOTAL_MAX reached: ROUTE_OVERFLOW */
};

struct route_service;

struct route_table {
	uint64_t key[2];      /* SipHash key: traffic cannot choose colliding routes */
	unsigned per_service; /* distinct routes per service and side */
	const struct route_patterns *patterns; /* may be NULL; outlives the table */
	struct route_service *services;	       /* open addressing, 2 * ROUTE_SERVICES_MAX */
	size_t nservices;
	uint64_t *routes; /* keyed hashes of (service, side, route); 0: empty slot */
	size_t nroutes;
};

/*
 * An empty table: per_service routes per service and side (0: ROUTE_PER_SERVICE_DEFAULT,
 * at most ROUTE_PER_SERVICE_MAX), patterns (may be NULL), and a random 16-byte key.
 * 0 or -ENOMEM (-EINVAL for per_service over the maximum).
 */
int route_table__init(struct route_table *t, unsigned per_service,
		      const struct route_patterns *patterns, const uint8_t key[16]);
void route_table__free(struct route_table *t);

/*
 * The route of a request of service (client: a request it sent, else one it served) for
 * path[0..len): route_template, then admitted against the cap. out (cap bytes) gets the
 * route, or ROUTE_OVERFLOW when not admitted.
 */
enum route_admit route_table__resolve(struct route_table *t, const char *service, bool client,
				      const char *path, size_t len, char *out, size_t cap);

#endif
