/*
 * curl_fields.h - libcurl's CURLOPT_HEADERFUNCTION lines into the field
 * array that sluice_client_parse() reads.
 *
 * libcurl calls the header callback once per line, for every response it
 * reads on the way to the final one: 1xx interim answers (100 Continue),
 * redirects followed with CURLOPT_FOLLOWLOCATION, proxy CONNECT answers.
 * Only the final response's fields describe the request's limits, so a
 * new status line ("HTTP/...") resets the set. Each line is copied (libcurl
 * reuses its buffer) into a fixed buffer: no allocation, and lines beyond
 * the buffer are dropped and counted in .dropped rather than truncated.
 *
 * Use:
 *   struct curl_fields h;
 *   curl_fields_reset(&h);
 *   curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, curl_fields_cb);
 *   curl_easy_setopt(curl, CURLOPT_HEADERDATA, &h);
 *   curl_easy_perform(curl);
 *   sluice_client_parse(h.f, h.n, sluice_realtime_ns(), &limits);
 *
 * A copy of this file is all a program needs; sluice itself does not link
 * libcurl (docs/http.md, "libcurl").
 */
#ifndef SLUICE_CURL_FIELDS_H
#define SLUICE_CURL_FIELDS_H

#include <sluice/client.h>

#include <stddef.h>
#include <string.h>

#define CURL_FIELDS_MAX 64
#define CURL_FIELDS_BYTES 8192

struct curl_fields {
	int status;       /* of the last status line; 0 before one */
	size_t n;         /* fields in f */
	size_t used;      /* bytes of buf in use */
	size_t dropped;   /* lines that did not fit (or had no colon) */
	struct sluice_http_field f[CURL_FIELDS_MAX];
	char buf[CURL_FIELDS_BYTES];
};

static inline void curl_fields_reset(struct curl_fields *h)
{
	h->status = 0;
	h->n = h->used = h->dropped = 0;
}

/* "HTTP/1.1 429 Too Many Requests" or "HTTP/2 200": the code, or 0. */
static inline int curl_fields_status(const char *line, size_t len)
{
	size_t i = 5;
	int code = 0, digits = 0;

	while (i < len && line[i] != ' ')
		i++;
	while (i < len && line[i] == ' ')
		i++;
	for (; i < len && digits < 3 && line[i] >= '0' && line[i] <= '9'; i++, digits++)
		code = code * 10 + (line[i] - '0');
	return digits == 3 ? code : 0;
}

/* The CURLOPT_HEADERFUNCTION callback; userdata is a struct curl_fields. */
static inline size_t curl_fields_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct curl_fields *h = (struct curl_fields *)userdata;
	size_t len = size * nmemb, n = len;

	while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
		n--;
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) { /* a new response begins */
		curl_fields_reset(h);
		h->status = curl_fields_status(data, n);
		return len;
	}
	if (n == 0) /* the blank line that ends a header block */
		return len;
	const char *colon = (const char *)memchr(data, ':', n);
	if (colon == NULL || colon == data || data[0] == ' ' || data[0] == '\t' ||
	    h->n == CURL_FIELDS_MAX || h->used + n > CURL_FIELDS_BYTES) {
		h->dropped++; /* obsolete line folding, garbage, or no room */
		return len;
	}
	size_t name_len = (size_t)(colon - data);
	const char *v = colon + 1, *end = data + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	char *copy = h->buf + h->used;
	memcpy(copy, data, name_len);
	memcpy(copy + name_len, v, (size_t)(end - v));
	h->used += name_len + (size_t)(end - v);
	struct sluice_http_field *f = &h->f[h->n++];
	f->name = copy;
	f->name_len = name_len;
	f->value = copy + name_len;
	f->value_len = (size_t)(end - v);
	return len;
}

#endif /* SLUICE_CURL_FIELDS_H */
