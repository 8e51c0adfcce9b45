/*
 * server_http.c - HTTP/1.1 request heads in, responses out (RFC 9112).
 *
 * The parser takes the bytes received so far and either finds a complete,
 * valid request head (request line, fields, empty line) or says which answer
 * a bad one gets:
 *   400  malformed request line or field, missing Host in HTTP/1.1, bad or
 *        conflicting Content-Length, whitespace before a colon, obs-fold;
 *   413  Content-Length above the configured maximum body;
 *   431  head larger than SERVER_MAX_HEAD, or more than SERVER_MAX_HEADERS
 *        fields;
 *   501  a Transfer-Encoding (this server reads only Content-Length bodies);
 *   505  an HTTP version other than 1.0 and 1.1.
 * Lines end in CRLF; a bare LF is accepted as a line end too (RFC 9112 2.2).
 * Nothing is copied: the request points into the caller's buffer.
 */
#include "server.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool server_ascii_ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y)
			return false;
	}
	return true;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && server_ascii_ieq(a, b, alen);
}

const struct server_header *server_request_header(const struct server_request *req,
						  const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (ieq(req->headers[i].name, req->headers[i].name_len, name))
			return &req->headers[i];
	return NULL;
}

/* Does the comma-separated list value contain `token` (case-insensitive)? */
static bool list_has(const char *v, size_t n, const char *token)
{
	size_t i = 0;

	while (i < n) {
		size_t start, end;
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		start = i;
		while (i < n && v[i] != ',')
			i++;
		end = i;
		while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
			end--;
		if (end > start && ieq(v + start, end - start, token))
			return true;
	}
	return false;
}

/* Next line of buf[*pos..len): sets *line and *line_len (no line end).
 * false when no line end is in the buffer yet. */
static bool next_line(const char *buf, size_t len, size_t *pos, const char **line,
		      size_t *line_len)
{
	const char *nl = memchr(buf + *pos, '\n', len - *pos);

	if (nl == NULL)
		return false;
	*line = buf + *pos;
	*line_len = (size_t)(nl - *line);
	if (*line_len > 0 && (*line)[*line_len - 1] == '\r')
		(*line_len)--;
	*pos = (size_t)(nl - buf) + 1;
	return true;
}

static enum server_parse_result fail(int *status, int code)
{
	*status = code;
	return SERVER_PARSE_ERROR;
}

enum server_parse_result server_parse_request(const char *buf, size_t len, uint64_t max_body,
					      struct server_request *req, size_t *head_len,
					      uint64_t *content_length, bool *keep_alive,
					      int *status)
{
	size_t pos = 0, n;
	const char *line;

	/* RFC 9112 2.2: ignore at least one empty line before the request line. */
	while (pos < len && (buf[pos] == '\r' || buf[pos] == '\n'))
		pos++;
	/* The whole head must be here, within bounds, before anything else: an
	 * incomplete head already beyond the bound is a 431. */
	{
		const char *end = NULL, *p = buf + pos;
		while ((p = memchr(p, '\n', (size_t)(buf + len - p))) != NULL) {
			const char *q = p + 1;
			if (q < buf + len && *q == '\r')
				q++;
			if (q >= buf + len)
				break;
			if (*q == '\n') {
				end = q + 1;
				break;
			}
			p++;
		}
		if (end == NULL)
			return len >= SERVER_MAX_HEAD ? fail(status, 431) : SERVER_PARSE_INCOMPLETE;
		if ((size_t)(end - buf) > SERVER_MAX_HEAD)
			return fail(status, 431);
	}
	if (!next_line(buf, len, &pos, &line, &n))
		return SERVER_PARSE_INCOMPLETE;

	/* request-line = method SP request-target SP HTTP-version */
	const char *sp1 = memchr(line, ' ', n);
	if (sp1 == NULL || sp1 == line)
		return fail(status, 400);
	const char *target = sp1 + 1;
	const char *sp2 = memchr(target, ' ', n - (size_t)(target - line));
	if (sp2 == NULL || sp2 == target)
		return fail(status, 400);
	const char *version = sp2 + 1;
	size_t version_len = n - (size_t)(version - line);
	req->method = line;
	req->method_len = (size_t)(sp1 - line);
	for (size_t i = 0; i < req->method_len; i++)
		if (!is_tchar((unsigned char)line[i]))
			return fail(status, 400);
	req->path = target;
	req->path_len = (size_t)(sp2 - target);
	for (size_t i = 0; i < req->path_len; i++)
		if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] == 0x7F)
			return fail(status, 400);
	if (target[0] != '/')
		return fail(status, 400); /* only origin-form (no proxying, no OPTIONS *) */
	if (version_len != 8 || memcmp(version, "HTTP/", 5) != 0 || version[6] != '.' ||
	    version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
		return fail(status, 400);
	if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
		return fail(status, 505);
	req->minor_version = version[7] - '0';

	/* field-line = field-name ":" OWS field-value OWS */
	req->nheaders = 0;
	bool have_length = false, have_host = false, close = false, ka = false;
	uint64_t length = 0;
	for (;;) {
		if (!next_line(buf, len, &pos, &line, &n))
			return SERVER_PARSE_INCOMPLETE;
		if (n == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t')
			return fail(status, 400); /* obs-fold */
		const char *colon = memchr(line, ':', n);
		if (colon == NULL || colon == line)
			return fail(status, 400);
		for (const char *c = line; c < colon; c++)
			if (!is_tchar((unsigned char)*c))
				return fail(status, 400); /* includes whitespace before ':' */
		const char *v = colon + 1;
		size_t vn = n - (size_t)(v - line);
		while (vn > 0 && (*v == ' ' || *v == '\t'))
			v++, vn--;
		while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
			vn--;
		for (size_t i = 0; i < vn; i++)
			if ((unsigned char)v[i] < 0x20 && v[i] != '\t')
				return fail(status, 400);
		if (req->nheaders == SERVER_MAX_HEADERS)
			return fail(status, 431);
		struct server_header *h = &req->headers[req->nheaders++];
		h->name = line;
		h->name_len = (size_t)(colon - line);
		h->value = v;
		h->value_len = vn;

		if (ieq(h->name, h->name_len, "Content-Length")) {
			uint64_t x = 0;
			if (vn == 0)
				return fail(status, 400);
			for (size_t i = 0; i < vn; i++) {
				if (v[i] < '0' || v[i] > '9')
					return fail(status, 400);
				if (x > (UINT64_MAX - 9) / 10)
					return fail(status, 413);
				x = x * 10 + (uint64_t)(v[i] - '0');
			}
			if (have_length && x != length)
				return fail(status, 400);
			have_length = true;
			length = x;
		} else if (ieq(h->name, h->name_len, "Transfer-Encoding")) {
			return fail(status, 501);
		} else if (ieq(h->name, h->name_len, "Host")) {
			if (have_host)
				return fail(status, 400);
			have_host = true;
		} else if (ieq(h->name, h->name_len, "Connection")) {
			close = close || list_has(v, vn, "close");
			ka = ka || list_has(v, vn, "keep-alive");
		}
	}
	if (req->minor_version == 1 && !have_host)
		return fail(status, 400);
	if (length > max_body)
		return fail(status, 413);
	*head_len = pos;
	*content_length = length;
	*keep_alive = !close && (req->minor_version == 1 || ka);
	return SERVER_PARSE_OK;
}

const char *server_reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

void server_format_date(uint64_t unix_s, char buf[30])
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)unix_s;
	struct tm tm;

	gmtime_r(&t, &tm);
	/* "Sun, 06 Nov 1994 08:49:37 GMT": fixed width; years past 9999 do
	 * not fit IMF-fixdate and are clamped. */
	unsigned year = tm.tm_year + 1900 > 9999 ? 9999u : (unsigned)(tm.tm_year + 1900);
	unsigned two[4] = { (unsigned)tm.tm_mday, (unsigned)tm.tm_hour, (unsigned)tm.tm_min,
			    (unsigned)tm.tm_sec };
	char *p = buf;
	memcpy(p, days[(unsigned)tm.tm_wday % 7], 3);
	p += 3;
	*p++ = ',';
	*p++ = ' ';
	*p++ = (char)('0' + two[0] / 10 % 10);
	*p++ = (char)('0' + two[0] % 10);
	*p++ = ' ';
	memcpy(p, months[(unsigned)tm.tm_mon % 12], 3);
	p += 3;
	*p++ = ' ';
	*p++ = (char)('0' + year / 1000);
	*p++ = (char)('0' + year / 100 % 10);
	*p++ = (char)('0' + year / 10 % 10);
	*p++ = (char)('0' + year % 10);
	for (int i = 1; i < 4; i++) {
		*p++ = i == 1 ? ' ' : ':';
		*p++ = (char)('0' + two[i] / 10 % 10);
		*p++ = (char)('0' + two[i] % 10);
	}
	memcpy(p, " GMT", 5);
}

size_t server_write_response(char *out, size_t cap, int status, const char *date,
			     bool keep_alive, const char *extra, size_t extra_len,
			     const char *content_type, const char *body, size_t body_len)
{
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: sluice-server\r\n%s%s%sContent-Length: %zu\r\n%s",
			 status, server_reason_phrase(status), date,
			 content_type ? "Content-Type: " : "", content_type ? content_type : "",
			 content_type ? "\r\n" : "", body_len,
			 keep_alive ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n >= cap)
		return 0;
	size_t len = (size_t)n;
	if (len + extra_len + 2 + body_len > cap)
		return 0;
	if (extra_len > 0)
		memcpy(out + len, extra, extra_len);
	len += extra_len;
	memcpy(out + len, "\r\n", 2);
	len += 2;
	if (body_len > 0)
		memcpy(out + len, body, body_len);
	return len + body_len;
}
