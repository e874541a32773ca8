/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The request-target of an HTTP/1.x request, split into what spans may carry: the form
 * (RFC 9112 3.2), an absolute-form's scheme and host, and a path with no userinfo, no query,
 * no fragment and no path parameters except those allowed. Pure functions: the target comes
 * from untrusted traffic.
 */
#ifndef HOPTRACE_TARGET_H
#define HOPTRACE_TARGET_H

#include <stdbool.h>
#include <stddef.h>

/* Longest path kept (url.path's cap); longer paths are cut. */
#define TARGET_PATH_MAX 512
/* Path parameter names that may be kept (--keep-path-params), each at most this long. */
#define TARGET_KEEP_PARAMS_MAX 16
#define TARGET_PARAM_NAME_MAX 32

/* Path parameters (";name=value" in a segment, RFC 3986 3.3) that are kept; all others are
 * dropped with their ';'. Names match exactly (case matters). */
struct path_param_allow {
	unsigned n;
	char names[TARGET_KEEP_PARAMS_MAX][TARGET_PARAM_NAME_MAX + 1];
};

enum target_form {
	TARGET_ORIGIN,	  /* /path?query */
	TARGET_ABSOLUTE,  /* scheme://[userinfo@]host[:port]/path?query (to proxies) */
	TARGET_AUTHORITY, /* host:port (CONNECT) */
	TARGET_ASTERISK,  /* * (OPTIONS) */
	TARGET_OTHER,	  /* anything else: nothing of it is exported */
};

struct target_parts {
	enum target_form form;
	char scheme[16];  /* absolute-form: the scheme in lower case, else "" */
	const char *host; /* absolute- and authority-form: host, no userinfo, no port, no [] */
	size_t host_len;
	int port;			/* from the target, 0 when absent or invalid */
	char path[TARGET_PATH_MAX + 1]; /* origin- and absolute-form, redacted; else "" */
	size_t path_len;
};

/*
 * Split target[0..len) (is_connect: the method is CONNECT, so authority-form is expected).
 * allow: the path parameters kept, or NULL for none. host points into target.
 */
void target_split(const char *target, size_t len, bool is_connect,
		  const struct path_param_allow *allow, struct target_parts *out);

/* An authority (a Host value, or an absolute-form's) without its userinfo: what follows the
 * last '@'. RFC 9110 4.2.4: userinfo is deprecated and must not be sent on; it is a password. */
void authority_strip_userinfo(const char **p, size_t *len);

/* Split an authority into host (no [] around an IPv6 literal) and port (0 when absent or
 * invalid), without its userinfo. host points into p. */
void authority_split(const char *p, size_t len, const char **host, size_t *host_len, int *port);

/*
 * Parse a comma-separated list of parameter names into allow (appending). 0, or -EINVAL for
 * an empty or too long name, or more than TARGET_KEEP_PARAMS_MAX names.
 */
int path_param_allow_parse(struct path_param_allow *allow, const char *list);

#endif
