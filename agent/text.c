// SPDX-License-Identifier: BSD-2-Clause
#include "text.h"

#include <errno.h>
#include <string.h>

int hex_digit_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t utf8_sequence_len(const unsigned char *p, size_t avail)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	/* the second byte's range excludes overlongs (e0, f0), surrogates (ed) and > U+10FFFF
	 * (f4) */
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (avail < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324"
				  "25262728293031323334353637383940414243444546474849"
				  "50515253545556575859606162636465666768697071727374"
				  "75767778798081828384858687888990919293949596979899";

char *text_put_u64(char *out, uint64_t v)
{
	char tmp[TEXT_U64_DIGITS_MAX];
	char *t = tmp + sizeof(tmp);
	size_t n;

	while (v >= 100) {
		t -= 2;
		memcpy(t, digit_pairs + 2 * (v % 100), 2);
		v /= 100;
	}
	if (v >= 10) {
		t -= 2;
		memcpy(t, digit_pairs + 2 * v, 2);
	} else {
		*--t = (char)('0' + v);
	}
	n = (size_t)(tmp + sizeof(tmp) - t);
	memcpy(out, t, n);
	return out + n;
}

/* "\xNN" at out; returns the end. */
static char *put_hex_escape(char *out, unsigned char c)
{
	static const char digits[] = "0123456789abcdef";

	*out++ = '\\';
	*out++ = 'x';
	*out++ = digits[c >> 4];
	*out++ = digits[c & 15];
	return out;
}

size_t text_escape_terminal(char *out, size_t cap, const char *in, size_t len, unsigned flags)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + len;
	char *o = out, *last;

	if (!cap)
		return 0;
	last = out + cap - 1; /* room for the NUL */
	while (p < end) {
		size_t n = 1;

		if ((*p >= 0x20 && *p < 0x7f) || (*p == '\n' && (flags & TEXT_ESC_KEEP_LF))) {
			if (o == last)
				break;
			*o++ = (char)*p++;
			continue;
		}
		if (*p >= 0x80 && !(flags & TEXT_ESC_ASCII)) {
			n = utf8_sequence_len(p, (size_t)(end - p));
			/* U+0080..U+009F: C2 80..C2 9F */
			if (n > 1 && !(p[0] == 0xc2 && p[1] <= 0x9f)) {
				if ((size_t)(last - o) < n)
					break;
				memcpy(o, p, n);
				o += n;
				p += n;
				continue;
			}
			n = n ? n : 1;
		}
		/* escape each byte of what is not shown (a C1 control: both of its bytes) */
		if ((size_t)(last - o) < 4 * n)
			break;
		for (size_t i = 0; i < n; i++)
			o = put_hex_escape(o, p[i]);
		p += n;
	}
	*o = '\0';
	return (size_t)(o - out);
}

void text_url_for_log(char *out, size_t cap, const char *url)
{
	const char *auth, *aend, *at = NULL, *pend;
	size_t used = 0;

	if (!cap)
		return;
	if (!url)
		url = "(none)";
	auth = strstr(url, "://");
	auth = auth ? auth + 3 : url;
	aend = auth + strcspn(auth, "/?#");
	for (const char *p = auth; p < aend; p++)
		if (*p == '@')
			at = p;
	pend = aend + strcspn(aend, "?#");
#define PUT(s, n)                                                                                  \
	do {                                                                                       \
		size_t m_ = (n) < cap - 1 - used ? (n) : cap - 1 - used;                           \
		memcpy(out + used, (s), m_);                                                       \
		used += m_;                                                                        \
	} while (0)
	PUT(url, (size_t)(auth - url));
	if (at)
		auth = at + 1;
	PUT(auth, (size_t)(pend - auth));
#undef PUT
	out[used] = '\0';
}

int text_parse_duration_ns(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = {{"ns", 1},
		     {"us", 1000},
		     {"ms", 1000000},
		     {"s", 1000000000ull},
		     {"m", 60000000000ull},
		     {"h", 3600000000000ull},
		     {"d", 86400000000000ull}};
	uint64_t whole = 0, frac = 0, frac_scale = 1;
	const char *p = s;

	if (!s || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -EINVAL;
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (frac_scale >= 1000000000ull)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
			frac_scale *= 10;
		}
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		uint64_t u = units[i].ns;

		if (strcmp(p, units[i].unit) != 0)
			continue;
		if (whole > (uint64_t)INT64_MAX / u)
			return -EINVAL;
		/* every unit of a second or more is a whole number of the finest fraction */
		*out =
		    whole * u + (u >= frac_scale ? frac * (u / frac_scale) : frac * u / frac_scale);
		return *out > (uint64_t)INT64_MAX ? -EINVAL : 0;
	}
	return -EINVAL;
}
