// SPDX-License-Identifier: BSD-2-Clause
#include "target.h"

#include <errno.h>
#include <string.h>

struct path_out {
	char *buf;
	size_t cap; /* excluding the NUL */
	size_t len;
};

static void path_put(struct path_out *o, const char *s, size_t n)
{
	if (n > o->cap - o->len)
		n = o->cap - o->len;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

/* A kept parameter goes whole or not at all (the path ends there): a cut one could read as
 * another name. */
static void path_put_whole(struct path_out *o, const char *s, size_t n)
{
	if (n > o->cap - o->len) {
		o->cap = o->len;
		return;
	}
	path_put(o, s, n);
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_scheme_char(char c)
{
	return is_alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

void authority_strip_userinfo(const char **p, size_t *len)
{
	for (size_t i = *len; i > 0; i--) {
		if ((*p)[i - 1] == '@') {
			*p += i;
			*len -= i;
			return;
		}
	}
}

void authority_split(const char *p, size_t len, const char **host, size_t *host_len, int *port)
{
	const char *end, *colon;

	*host = "";
	*host_len = 0;
	*port = 0;
	if (!len)
		return;
	authority_strip_userinfo(&p, &len);
	end = p + len;
	if (len && p[0] == '[') {
		const char *close = memchr(p, ']', len);

		*host = p + 1;
		*host_len = close ? (size_t)(close - p - 1) : len - 1;
		colon = close && close + 1 < end && close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = len ? memchr(p, ':', len) : NULL;
		*host = p;
		*host_len = colon ? (size_t)(colon - p) : len;
	}
	if (colon) {
		int v = 0;
		const char *d = colon + 1;

		for (; d < end && *d >= '0' && *d <= '9' && v <= 65535; d++)
			v = v * 10 + (*d - '0');
		if (d == end && d > colon + 1 && v <= 65535)
			*port = v;
	}
}

static bool param_allowed(const struct path_param_allow *allow, const char *name, size_t n)
{
	if (!allow)
		return false;
	for (unsigned i = 0; i < allow->n; i++)
		if (strlen(allow->names[i]) == n && memcmp(allow->names[i], name, n) == 0)
			return true;
	return false;
}

/*
 * Copy the path p[0..len) (query and fragment already cut) without its path parameters:
 * ";name[=value]" up to the next ';' or '/' goes unless name is allowed. Session ids
 * (;jsessionid=, ;sid=) travel this way.
 */
static void copy_redacted_path(const char *p, size_t len, const struct path_param_allow *allow,
			       struct path_out *o)
{
	const char *end = p + len;

	while (p < end) {
		const char *stop = p;

		while (stop < end && *stop != ';')
			stop++;
		path_put(o, p, (size_t)(stop - p));
		if (stop == end)
			return;
		/* a parameter: its name, then up to the next parameter or segment */
		const char *name = stop + 1, *pend = name, *nend;

		while (pend < end && *pend != ';' && *pend != '/')
			pend++;
		nend = memchr(name, '=', (size_t)(pend - name));
		if (!nend)
			nend = pend;
		if (param_allowed(allow, name, (size_t)(nend - name)))
			path_put_whole(o, stop, (size_t)(pend - stop));
		p = pend;
	}
}

/* The path part (from p): query and fragment cut; a leading "//authority" (a network-path
 * reference sent as a target) loses its userinfo. */
static void set_path(const char *p, const char *end, const struct path_param_allow *allow,
		     struct target_parts *out)
{
	struct path_out o = {.buf = out->path, .cap = TARGET_PATH_MAX};
	const char *q = p;

	while (q < end && *q != '?' && *q != '#')
		q++;
	end = q;
	if (end - p >= 2 && p[0] == '/' && p[1] == '/') {
		const char *auth = p + 2, *aend = auth;
		size_t alen;

		while (aend < end && *aend != '/')
			aend++;
		alen = (size_t)(aend - auth);
		authority_strip_userinfo(&auth, &alen);
		path_put(&o, "//", 2);
		copy_redacted_path(auth, alen, allow, &o);
		p = aend;
	}
	copy_redacted_path(p, (size_t)(end - p), allow, &o);
	out->path_len = o.len;
	out->path[o.len] = '\0';
}

/* scheme "://": its length, or 0 when target does not start with one. */
static size_t scheme_len(const char *t, size_t len)
{
	size_t i = 0;

	if (!len || !is_alpha(t[0]))
		return 0;
	while (i < len && is_scheme_char(t[i]))
		i++;
	if (len - i < 3 || memcmp(t + i, "://", 3) != 0)
		return 0;
	return i;
}

static void split_absolute(const char *t, size_t len, size_t slen,
			   const struct path_param_allow *allow, struct target_parts *out)
{
	const char *end = t + len, *auth = t + slen + 3, *aend = auth;
	size_t alen;

	out->form = TARGET_ABSOLUTE;
	for (size_t i = 0; i < slen; i++)
		out->scheme[i] = (char)(t[i] >= 'A' && t[i] <= 'Z' ? t[i] + 32 : t[i]);
	out->scheme[slen] = '\0';
	while (aend < end && *aend != '/' && *aend != '?' && *aend != '#')
		aend++;
	alen = (size_t)(aend - auth);
	authority_split(auth, alen, &out->host, &out->host_len, &out->port);
	if (aend == end || *aend != '/') {
		/* "http://host" or "http://host?q": the path is "/" (RFC 9112 3.2.2) */
		memcpy(out->path, "/", 2);
		out->path_len = 1;
		return;
	}
	set_path(aend, end, allow, out);
}

void target_split(const char *target, size_t len, bool is_connect,
		  const struct path_param_allow *allow, struct target_parts *out)
{
	size_t slen;

	if (!len)
		target = ""; /* no NULL arithmetic below */
	memset(out, 0, offsetof(struct target_parts, path));
	out->path[0] = '\0';
	out->path_len = 0;
	out->host = "";
	if (is_connect) {
		out->form = TARGET_AUTHORITY;
		authority_split(target, len, &out->host, &out->host_len, &out->port);
		return;
	}
	if (len && target[0] == '/') {
		out->form = TARGET_ORIGIN;
		set_path(target, target + len, allow, out);
		return;
	}
	if (len == 1 && target[0] == '*') {
		out->form = TARGET_ASTERISK;
		return;
	}
	slen = scheme_len(target, len);
	if (slen && slen < sizeof(out->scheme)) {
		split_absolute(target, len, slen, allow, out);
		return;
	}
	out->form = TARGET_OTHER;
}

int path_param_allow_parse(struct path_param_allow *allow, const char *list)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");

		if (!n || n > TARGET_PARAM_NAME_MAX || allow->n == TARGET_KEEP_PARAMS_MAX)
			return -EINVAL;
		memcpy(allow->names[allow->n], p, n);
		allow->names[allow->n][n] = '\0';
		allow->n++;
		p += n;
		if (*p == ',' && !*++p)
			return -EINVAL; /* trailing comma: an empty name */
	}
	return 0;
}
