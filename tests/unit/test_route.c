// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for route templating (agent/route.c): a corpus of real-world-shaped paths,
 * explicit patterns, url.path masking and the per-service cap. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

struct route_case {
	const char *path;
	const char *route;
};

/* Paths as REST APIs, object stores, web apps and static servers send them. */
static const struct route_case corpus[] = {
    /* kept: static names, versions, words */
    {"/", "/"},
    {"/healthz", "/healthz"},
    {"/v1/", "/v1/"},
    {"/api/v2", "/api/v2"},
    {"/api/v2/users", "/api/v2/users"},
    {"/apis/apps/v1beta1/namespaces", "/apis/apps/v1beta1/namespaces"},
    {"/v2.1/servers", "/v2.1/servers"},
    {"/oauth2/token", "/oauth2/token"},
    {"/auth/2fa", "/auth/2fa"},
    {"/static/app.3f9a1c.js", "/static/app.3f9a1c.js"},
    {"/static/js/main.8f3b2c1d9e0a4f56.chunk.js", "/static/js/main.8f3b2c1d9e0a4f56.chunk.js"},
    {"/assets/jquery-3.6.0.min.js", "/assets/jquery-3.6.0.min.js"},
    {"/favicon.ico", "/favicon.ico"},
    {"/robots.txt", "/robots.txt"},
    {"/.well-known/openid-configuration", "/.well-known/openid-configuration"},
    {"/graphql", "/graphql"},
    {"/getUserProfileSettings", "/getUserProfileSettings"},
    {"/settings/user_preferences_v2", "/settings/user_preferences_v2"},
    {"/codecs/h264/x86_64", "/codecs/h264/x86_64"},
    {"/hash/sha256", "/hash/sha256"},
    {"/charset/utf-8", "/charset/utf-8"},
    {"/en-US/docs/Web/HTTP", "/en-US/docs/Web/HTTP"},
    {"/blog/how-to-trace-http", "/blog/how-to-trace-http"},
    {"/cafe", "/cafe"},
    {"/feed/deadbeef", "/feed/deadbeef"},
    {"/a//b/", "/a//b/"},
    {"/webhooks/stripe", "/webhooks/stripe"},
    {"/api/v1/namespaces/default/pods", "/api/v1/namespaces/default/pods"},
    /* numbers */
    {"/users/42", "/users/{id}"},
    {"/users/42/orders/1001", "/users/{id}/orders/{id}"},
    {"/repos/torvalds/linux/issues/1234/comments", "/repos/torvalds/linux/issues/{id}/comments"},
    {"/api/v2/items/0", "/api/v2/items/{id}"},
    {"/archive/2024/05/06", "/archive/{id}/{id}/{id}"},
    /* uuids */
    {"/orders/123e4567-e89b-12d3-a456-426614174000", "/orders/{uuid}"},
    {"/t/550E8400-E29B-41D4-A716-446655440000/items", "/t/{uuid}/items"},
    /* hexadecimal: git hashes, object ids, digests */
    {"/repos/o/r/commits/3f9a1c2", "/repos/o/r/commits/{hex}"},
    {"/repos/o/r/git/commits/7638417db6d59f3c431d3e1f261cc637155684cd",
     "/repos/o/r/git/commits/{hex}"},
    {"/objects/507f1f77bcf86cd799439011", "/objects/{hex}"},
    {"/v2/library/nginx/blobs/sha256:abc", "/v2/library/nginx/blobs/sha256:abc"},
    {"/blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "/blobs/{hex}"},
    {"/files/5f4dcc3b5aa765d61d8327deb882cf99.pdf", "/files/{hex}.pdf"},
    /* random ids: Stripe, nanoid, ULID, KSUID, YouTube, base64, JWT */
    {"/v1/customers/cus_9s6XKzkNRiz8i3", "/v1/customers/{token}"},
    {"/v1/charges/ch_3MmlLrLkdIwHu7ix0snN0B15/refunds", "/v1/charges/{token}/refunds"},
    {"/s/V1StGXR8_Z5jdHi6B-myT", "/s/{token}"},
    {"/events/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/events/{token}"},
    {"/k/0ujtsYcgvSTl8PAuAdqWYSMnLOv", "/k/{token}"},
    {"/watch/dQw4w9WgXcQ", "/watch/{token}"},
    {"/reset/aGVsbG8gd29ybGQ=", "/reset/{token}"},
    {"/magic/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
     "/magic/{token}"},
    {"/services/T024BE7LD/B024BE7LH/bvEcBKbHT1CPRAXjYwAZnNQ8",
     "/services/T024BE7LD/B024BE7LH/{token}"},
    /* mixed ids: a word and a number */
    {"/orders/order-12345", "/orders/order-{id}"},
    {"/invoices/INV_0042", "/invoices/INV_{id}"},
    {"/u/user123456/profile", "/u/user{id}/profile"},
    {"/bucket/photos/2024/IMG_1234.jpg", "/bucket/photos/{id}/IMG_{id}.jpg"},
    {"/page-2", "/page-2"},
    {"/item123", "/item123"},
    /* dates */
    {"/reports/2024-05-06", "/reports/{date}"},
    {"/reports/2024-05", "/reports/{date}"},
    {"/logs/2024-05-06T10:20:30Z", "/logs/{date}"},
    {"/logs/2024-05-06T10%3A20%3A30.123%2B02%3A00", "/logs/{date}"},
    {"/logs/2024-05-06Tnoon", "/logs/2024-05-06Tnoon"},
    {"/logs/2024-05-06T10%3A20%3A30.123Z", "/logs/{date}"},
    {"/daily/2024-05-06.json", "/daily/{date}.json"},
    {"/bad/2024-13-01", "/bad/2024-13-01"},
    /* emails */
    {"/users/john.doe@example.com", "/users/{email}"},
    {"/users/jane%40example.org/settings", "/users/{email}/settings"},
    {"/users/@handle", "/users/@handle"},
    /* S3-style keys and images */
    {"/my-bucket/uploads/123e4567-e89b-12d3-a456-426614174000/avatar.png",
     "/my-bucket/uploads/{uuid}/avatar.png"},
    {"/avatars/12345.png", "/avatars/{id}.png"},
    {"/img/2024/05/06/8f14e45fceea167a5a36dedd4bea2543.webp", "/img/{id}/{id}/{id}/{hex}.webp"},
};

static void test_corpus(void **state)
{
	char out[ROUTE_MAX + 1];
	int bad = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		route_template(NULL, corpus[i].path, strlen(corpus[i].path), out, sizeof(out));
		if (strcmp(out, corpus[i].route) != 0) {
			fprintf(stderr, "%s: got %s, want %s\n", corpus[i].path, out,
				corpus[i].route);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

static void test_patterns(void **state)
{
	struct route_patterns p = {0};
	char out[ROUTE_MAX + 1];
	static const struct route_case cases[] = {
	    {"/users/alice/orders", "/users/{user}/orders"},
	    {"/users/42/orders/", "/users/{user}/orders"},
	    {"/users/42/orders/7", "/users/{id}/orders/{id}"}, /* no pattern: templated */
	    {"/users//orders", "/users//orders"},	       /* {user} needs a segment */
	    {"/files/a/b/c.txt", "/files/{path...}"},
	    {"/files/x", "/files/{path...}"},
	    {"/files/", "/files/"},
	    {"/files", "/files"},
	    {"/", "/"},
	    {"/exact", "/exact"},
	    {"/exact/", "/exact"},
	    {"/exact/9", "/exact/{id}"},
	};

	(void)state;
	assert_int_equal(route_patterns_parse(&p, "/users/{user}/orders,/files/{path...}"), 0);
	assert_int_equal(route_patterns_add(&p, "/"), 0);
	assert_int_equal(route_patterns_add(&p, "/exact/"), 0); /* stored as "/exact" */
	assert_int_equal(p.n, 4);
	assert_string_equal(p.pattern[3], "/exact");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		route_template(&p, cases[i].path, strlen(cases[i].path), out, sizeof(out));
		assert_string_equal(out, cases[i].route);
	}
}

static void test_pattern_errors(void **state)
{
	static const char *const bad[] = {
	    "",	    "users/{id}", "/a/{id", "/a/{}",	     "/a/x{id}", "/a/{rest...}/b", "/a?q",
	    "/a;p", "/a#f",	  "/a b",   "/a/{bad-name}", "/a/{...}", "/a/\x01",	   "/a//",
	};
	struct route_patterns p = {0};
	char big[ROUTE_PATTERN_MAX + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(route_patterns_add(&p, bad[i]), -EINVAL);
	assert_int_equal(route_patterns_parse(&p, "/a,"), -EINVAL);
	assert_int_equal(route_patterns_parse(&p, ",/a"), -EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(route_patterns_add(&p, big), -EINVAL);
	big[ROUTE_PATTERN_MAX] = '\0';
	p.n = 0;
	assert_int_equal(route_patterns_add(&p, big), 0);
	for (unsigned i = 1; i < ROUTE_PATTERNS_MAX; i++)
		assert_int_equal(route_patterns_add(&p, "/x"), 0);
	assert_int_equal(route_patterns_add(&p, "/x"), -ENOSPC);
}

static void test_mask(void **state)
{
	static const struct route_case cases[] = {
	    {"/users/42/orders/123e4567-e89b-12d3-a456-426614174000",
	     "/users/42/orders/123e4567-e89b-12d3-a456-426614174000"},
	    {"/reset/5f4dcc3b5aa765d61d8327deb882cf99", "/reset/{hex}"},
	    {"/services/T0/B0/xoxbA1b2C3d4E5f6G7h8", "/services/T0/B0/{token}"},
	    {"/users/john.doe@example.com/x", "/users/{email}/x"},
	    {"/a@b.co", "/{email}"},
	    {"/reports/2024-05-06", "/reports/2024-05-06"},
	    {"/static/app.3f9a1c.js", "/static/app.3f9a1c.js"},
	    {"/dl/8f14e45fceea167a5a36dedd4bea2543.zip", "/dl/{hex}.zip"},
	    {"/orders/order-12345", "/orders/order-12345"},
	};
	char path[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;

		strcpy(path, cases[i].path);
		n = route_mask_path(path, strlen(path), sizeof(path));
		assert_string_equal(path, cases[i].route);
		assert_int_equal(n, strlen(cases[i].route));
	}
	/* the placeholder is longer than the segment, and the buffer is full: cut, terminated */
	strcpy(path, "/a@b.co");
	assert_int_equal(route_mask_path(path, 7, 8), 7);
	assert_string_equal(path, "/{email");
}

static void test_cut_to_fit(void **state)
{
	char path[600], out[ROUTE_MAX + 1], tiny[6];
	size_t n;

	(void)state;
	memset(path, 'a', sizeof(path));
	for (size_t i = 0; i < sizeof(path); i += 10)
		path[i] = '/';
	n = route_template(NULL, path, sizeof(path), out, sizeof(out));
	assert_int_equal(n, ROUTE_MAX);
	assert_int_equal(strlen(out), ROUTE_MAX);
	n = route_template(NULL, "/users/42", 9, tiny, sizeof(tiny));
	assert_int_equal(n, 5);
	assert_string_equal(tiny, "/user");
	assert_int_equal(route_template(NULL, "/x", 2, tiny, 0), 0);
}

static const uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static enum route_admit resolve(struct route_table *t, const char *svc, bool client,
				const char *path, char *out)
{
	return route_table__resolve(t, svc, client, path, strlen(path), out, ROUTE_MAX + 1);
}

/* "/b", "/c", ...: n in base 26 as letters, a path that templating keeps */
static void letters_path(char *path, unsigned n)
{
	char *p = path;

	*p++ = '/';
	do {
		*p++ = (char)('a' + n % 26);
		n /= 26;
	} while (n);
	*p = '\0';
}

static void test_cap(void **state)
{
	struct route_table t;
	char out[ROUTE_MAX + 1], path[64];

	(void)state;
	assert_int_equal(route_table__init(&t, 3, NULL, key), 0);
	/* ids collapse: one route however many users */
	assert_int_equal(resolve(&t, "api", false, "/users/1", out), ROUTE_NEW);
	assert_int_equal(resolve(&t, "api", false, "/users/2", out), ROUTE_KNOWN);
	assert_string_equal(out, "/users/{id}");
	assert_int_equal(resolve(&t, "api", false, "/a", out), ROUTE_NEW);
	assert_int_equal(resolve(&t, "api", false, "/b", out), ROUTE_NEW);
	assert_int_equal(resolve(&t, "api", false, "/c", out), ROUTE_OVER_CAP);
	assert_string_equal(out, ROUTE_OVERFLOW);
	assert_int_equal(resolve(&t, "api", false, "/c", out), ROUTE_OVER_CAP);
	/* known routes still resolve at the cap */
	assert_int_equal(resolve(&t, "api", false, "/users/9", out), ROUTE_KNOWN);
	assert_string_equal(out, "/users/{id}");
	/* another service, and the client side, have caps of their own */
	assert_int_equal(resolve(&t, "web", false, "/c", out), ROUTE_NEW);
	assert_int_equal(resolve(&t, "api", true, "/c", out), ROUTE_NEW);
	assert_string_equal(out, "/c");
	assert_int_equal(resolve(&t, NULL, false, "/c", out), ROUTE_NEW);
	route_table__free(&t);

	/* the whole table is bounded */
	assert_int_equal(route_table__init(&t, ROUTE_PER_SERVICE_MAX, NULL, key), 0);
	for (unsigned i = 0; i < ROUTE_TOTAL_MAX; i++) {
		letters_path(path, i); /* kept, distinct */
		assert_int_equal(resolve(&t, i & 1 ? "a" : "b", false, path, out), ROUTE_NEW);
	}
	assert_int_equal(resolve(&t, "a", false, "/one-more", out), ROUTE_TABLE_FULL);
	assert_string_equal(out, ROUTE_OVERFLOW);
	route_table__free(&t);
	assert_int_equal(route_table__init(&t, ROUTE_PER_SERVICE_MAX + 1, NULL, key), -EINVAL);
}

static void test_services_bounded(void **state)
{
	struct route_table t;
	char out[ROUTE_MAX + 1], svc[32];
	unsigned full = 0;

	(void)state;
	assert_int_equal(route_table__init(&t, 0, NULL, key), 0);
	assert_int_equal(t.per_service, ROUTE_PER_SERVICE_DEFAULT);
	for (unsigned i = 0; i < 3 * ROUTE_SERVICES_MAX; i++) {
		snprintf(svc, sizeof(svc), "svc%u", i);
		full += resolve(&t, svc, false, "/x", out) == ROUTE_TABLE_FULL;
	}
	assert_int_equal(t.nservices, 2 * ROUTE_SERVICES_MAX);
	assert_int_equal(full, ROUTE_SERVICES_MAX);
	route_table__free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corpus),	     cmocka_unit_test(test_patterns),
	    cmocka_unit_test(test_pattern_errors),   cmocka_unit_test(test_mask),
	    cmocka_unit_test(test_cut_to_fit),	     cmocka_unit_test(test_cap),
	    cmocka_unit_test(test_services_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
