// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the request-target splitter: hostile targets lose their userinfo, query,
 * fragment and path parameters before anything reaches a span. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "target.h"

struct target_case {
	const char *target;
	bool connect;
	enum target_form form;
	const char *path;   /* redacted path ("" when the form has none) */
	const char *scheme; /* "" unless absolute-form */
	const char *host;   /* "" unless absolute- or authority-form */
	int port;
};

static const struct target_case cases[] = {
    /* origin-form */
    {"/", false, TARGET_ORIGIN, "/", "", "", 0},
    {"/a/b?token=secret", false, TARGET_ORIGIN, "/a/b", "", "", 0},
    {"/a#frag", false, TARGET_ORIGIN, "/a", "", "", 0},
    {"/a?x=1#y", false, TARGET_ORIGIN, "/a", "", "", 0},
    {"/login;jsessionid=SECRET", false, TARGET_ORIGIN, "/login", "", "", 0},
    {"/a;jsessionid=SECRET/b", false, TARGET_ORIGIN, "/a/b", "", "", 0},
    {"/a;x=1;y=2/b;z/c;", false, TARGET_ORIGIN, "/a/b/c", "", "", 0},
    {"/;s=1", false, TARGET_ORIGIN, "/", "", "", 0},
    {"/a;s=1?q=2;t=3", false, TARGET_ORIGIN, "/a", "", "", 0},
    {"/a%3Bnot=param", false, TARGET_ORIGIN, "/a%3Bnot=param", "", "", 0},
    {"//user:pass@evil.example/x", false, TARGET_ORIGIN, "//evil.example/x", "", "", 0},
    {"//user@host", false, TARGET_ORIGIN, "//host", "", "", 0},
    {"//a@b@host/p;k=v", false, TARGET_ORIGIN, "//host/p", "", "", 0},
    /* absolute-form, any scheme, any case */
    {"http://example.com/x/y?q=1", false, TARGET_ABSOLUTE, "/x/y", "http", "example.com", 0},
    {"https://example.com", false, TARGET_ABSOLUTE, "/", "https", "example.com", 0},
    {"HTTP://user:pass@host/", false, TARGET_ABSOLUTE, "/", "http", "host", 0},
    {"HtTpS://user:pass@host:8443/p;jsessionid=S?x", false, TARGET_ABSOLUTE, "/p", "https", "host",
     8443},
    {"ftp://u:p@files.example/pub/f.txt", false, TARGET_ABSOLUTE, "/pub/f.txt", "ftp",
     "files.example", 0},
    {"http://u:p@host?q=secret", false, TARGET_ABSOLUTE, "/", "http", "host", 0},
    {"http://u:p@host#frag", false, TARGET_ABSOLUTE, "/", "http", "host", 0},
    {"http://u:p@[::1]:81/x", false, TARGET_ABSOLUTE, "/x", "http", "::1", 81},
    {"http://a@b:c@host:1/", false, TARGET_ABSOLUTE, "/", "http", "host", 1},
    {"svn+ssh://tok@h/r", false, TARGET_ABSOLUTE, "/r", "svn+ssh", "h", 0},
    {"http://", false, TARGET_ABSOLUTE, "/", "http", "", 0},
    {"http://user:pass@", false, TARGET_ABSOLUTE, "/", "http", "", 0},
    /* asterisk and authority forms: no path */
    {"*", false, TARGET_ASTERISK, "", "", "", 0},
    {"example.com:443", true, TARGET_AUTHORITY, "", "", "example.com", 443},
    {"user:pass@example.com:443", true, TARGET_AUTHORITY, "", "", "example.com", 443},
    {"[::1]:8443", true, TARGET_AUTHORITY, "", "", "::1", 8443},
    {"", true, TARGET_AUTHORITY, "", "", "", 0},
    /* unrecognised: nothing of it */
    {"", false, TARGET_OTHER, "", "", "", 0},
    {"?only=query", false, TARGET_OTHER, "", "", "", 0},
    {"user:pass@host/x", false, TARGET_OTHER, "", "", "", 0},
    {"mailto:someone@example.com", false, TARGET_OTHER, "", "", "", 0},
    {"**", false, TARGET_OTHER, "", "", "", 0},
    {"1http://h/", false, TARGET_OTHER, "", "", "", 0},
    {"averyveryverylongscheme://u:p@h/", false, TARGET_OTHER, "", "", "", 0},
};

static void check_case(const struct target_case *c, const struct path_param_allow *allow,
		       const char *want_path)
{
	struct target_parts t;

	target_split(c->target, strlen(c->target), c->connect, allow, &t);
	if (t.form != c->form || strcmp(t.path, want_path) != 0 || t.path_len != strlen(t.path) ||
	    strcmp(t.scheme, c->scheme) != 0 || t.host_len != strlen(c->host) ||
	    memcmp(t.host, c->host, t.host_len) != 0 || t.port != c->port)
		fail_msg("target '%s': form %d path '%s' scheme '%s' host '%.*s' port %d",
			 c->target, t.form, t.path, t.scheme, (int)t.host_len, t.host, t.port);
	/* whatever the form, no secret of the table is in any output */
	assert_null(strstr(t.path, "pass"));
	assert_null(strstr(t.path, "SECRET"));
	assert_null(strstr(t.path, "secret"));
	assert_null(memchr(t.host, '@', t.host_len));
}

static void test_hostile_targets(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], NULL, cases[i].path);
}

static void test_keep_path_params(void **state)
{
	struct path_param_allow allow = {0};
	struct target_case c = {
	    "/a;v=2;jsessionid=S;lang=en/b;lang/c;langx=1", false, TARGET_ORIGIN, "", "", "", 0};

	(void)state;
	assert_int_equal(path_param_allow_parse(&allow, "lang,v"), 0);
	assert_int_equal(allow.n, 2);
	check_case(&c, &allow, "/a;v=2;lang=en/b;lang/c");
	c.target = "HTTP://u:p@h/x;lang=fr;sid=1?lang=de";
	c.form = TARGET_ABSOLUTE;
	c.scheme = "http";
	c.host = "h";
	check_case(&c, &allow, "/x;lang=fr");
}

static void test_allow_parse_errors(void **state)
{
	struct path_param_allow allow = {0};
	char many[2 * TARGET_KEEP_PARAMS_MAX + 2] = "";
	char longname[TARGET_PARAM_NAME_MAX + 2];

	(void)state;
	assert_int_equal(path_param_allow_parse(&allow, ""), 0);
	assert_int_equal(allow.n, 0);
	assert_int_equal(path_param_allow_parse(&allow, ","), -EINVAL);
	allow.n = 0;
	assert_int_equal(path_param_allow_parse(&allow, "a,,b"), -EINVAL);
	allow.n = 0;
	assert_int_equal(path_param_allow_parse(&allow, "a,"), -EINVAL);
	allow.n = 0;
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(path_param_allow_parse(&allow, longname), -EINVAL);
	allow.n = 0;
	longname[TARGET_PARAM_NAME_MAX] = '\0';
	assert_int_equal(path_param_allow_parse(&allow, longname), 0);
	allow.n = 0;
	for (int i = 0; i <= TARGET_KEEP_PARAMS_MAX; i++)
		strcat(many, i ? ",x" : "x");
	assert_int_equal(path_param_allow_parse(&allow, many), -EINVAL);
}

/* A path longer than the cap is cut, and what is cut cannot bring a parameter back. */
static void test_long_path(void **state)
{
	char target[4 * TARGET_PATH_MAX];
	struct target_parts t;

	(void)state;
	memset(target, 'a', sizeof(target));
	target[0] = '/';
	memcpy(target + TARGET_PATH_MAX - 3, ";jsessionid=SECRETSECRET/", 25);
	target_split(target, sizeof(target), false, NULL, &t);
	assert_int_equal(t.path_len, TARGET_PATH_MAX);
	assert_int_equal(strlen(t.path), TARGET_PATH_MAX);
	assert_null(strstr(t.path, "SECRET"));
	assert_null(strchr(t.path, ';'));
}

/* Every host-or-authority split drops userinfo, including the Host header's. */
static void test_authority_split(void **state)
{
	const char *h;
	size_t n;
	int port;

	(void)state;
	authority_split("user:pass@example.com:8080", 26, &h, &n, &port);
	assert_int_equal(n, 11);
	assert_memory_equal(h, "example.com", 11);
	assert_int_equal(port, 8080);
	authority_split("user:pass@", 10, &h, &n, &port);
	assert_int_equal(n, 0);
	assert_int_equal(port, 0);
	authority_split("[::1", 4, &h, &n, &port);
	assert_int_equal(n, 3);
	authority_split("h:99999", 7, &h, &n, &port);
	assert_int_equal(port, 0);
	authority_split("h:", 2, &h, &n, &port);
	assert_int_equal(port, 0);
	assert_int_equal(n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hostile_targets),    cmocka_unit_test(test_keep_path_params),
	    cmocka_unit_test(test_allow_parse_errors), cmocka_unit_test(test_long_path),
	    cmocka_unit_test(test_authority_split),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
