/*
 * json_mini.h - a small JSON reader for the tests (the structured-field test
 * vectors). Test code only: it allocates, aborts on malformed JSON, and
 * keeps numbers as their source text so that decimals compare exactly.
 */
#ifndef SLUICE_TESTS_JSON_MINI_H
#define SLUICE_TESTS_JSON_MINI_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
	enum json_type type;
	bool boolean;
	char *text; /* NUMBER: source text; STRING: UTF-8 bytes (may contain NUL) */
	size_t len; /* STRING: byte length; ARRAY/OBJECT: element count */
	struct json *items; /* ARRAY: elements; OBJECT: values */
	char **keys;        /* OBJECT: keys (NUL-terminated) */
};

struct json_src {
	const char *s;
	size_t n;
	size_t i;
};

static void json_die(const struct json_src *src, const char *what)
{
	fprintf(stderr, "json: %s at offset %zu\n", what, src->i);
	abort();
}

static void json_ws(struct json_src *src)
{
	while (src->i < src->n && strchr(" \t\r\n", src->s[src->i]) != NULL)
		src->i++;
}

static void json_put_utf8(char *out, size_t *k, unsigned long cp)
{
	if (cp < 0x80) {
		out[(*k)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*k)++] = (char)(0xc0 | cp >> 6);
		out[(*k)++] = (char)(0x80 | (cp & 63));
	} else if (cp < 0x10000) {
		out[(*k)++] = (char)(0xe0 | cp >> 12);
		out[(*k)++] = (char)(0x80 | (cp >> 6 & 63));
		out[(*k)++] = (char)(0x80 | (cp & 63));
	} else {
		out[(*k)++] = (char)(0xf0 | cp >> 18);
		out[(*k)++] = (char)(0x80 | (cp >> 12 & 63));
		out[(*k)++] = (char)(0x80 | (cp >> 6 & 63));
		out[(*k)++] = (char)(0x80 | (cp & 63));
	}
}

static unsigned long json_hex4(struct json_src *src)
{
	unsigned long v = 0;
	for (int j = 0; j < 4; j++) {
		char c = src->i < src->n ? src->s[src->i++] : 0;
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned long)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned long)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned long)(c - 'A' + 10);
		else
			json_die(src, "bad \\u escape");
	}
	return v;
}

static char *json_string(struct json_src *src, size_t *len)
{
	size_t end = src->i + 1; /* the closing quote bounds the decoded size */
	while (end < src->n && src->s[end] != '"')
		end += src->s[end] == '\\' ? 2 : 1;
	char *out = malloc(end - src->i + 1);
	size_t k = 0;

	src->i++; /* '"' */
	for (;;) {
		if (src->i >= src->n)
			json_die(src, "unterminated string");
		char c = src->s[src->i++];
		if (c == '"')
			break;
		if (c != '\\') {
			out[k++] = c;
			continue;
		}
		c = src->s[src->i++];
		switch (c) {
		case 'n': out[k++] = '\n'; break;
		case 't': out[k++] = '\t'; break;
		case 'r': out[k++] = '\r'; break;
		case 'b': out[k++] = '\b'; break;
		case 'f': out[k++] = '\f'; break;
		case 'u': {
			unsigned long cp = json_hex4(src);
			if (cp >= 0xd800 && cp < 0xdc00 && src->i + 1 < src->n && src->s[src->i] == '\\' &&
			    src->s[src->i + 1] == 'u') {
				src->i += 2;
				unsigned long lo = json_hex4(src);
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			json_put_utf8(out, &k, cp);
			break;
		}
		default: out[k++] = c;
		}
	}
	out[k] = '\0';
	*len = k;
	return out;
}

static void json_value(struct json_src *src, struct json *v);

static void json_push(struct json *v, size_t *cap)
{
	if (v->len == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		v->items = realloc(v->items, *cap * sizeof(*v->items));
		if (v->type == JSON_OBJECT)
			v->keys = realloc(v->keys, *cap * sizeof(*v->keys));
	}
}

static void json_value(struct json_src *src, struct json *v)
{
	memset(v, 0, sizeof(*v));
	json_ws(src);
	if (src->i >= src->n)
		json_die(src, "unexpected end");
	char c = src->s[src->i];
	size_t cap = 0;
	if (c == '[' || c == '{') {
		v->type = c == '[' ? JSON_ARRAY : JSON_OBJECT;
		src->i++;
		json_ws(src);
		if (src->s[src->i] == (c == '[' ? ']' : '}')) {
			src->i++;
			return;
		}
		for (;;) {
			json_push(v, &cap);
			if (v->type == JSON_OBJECT) {
				size_t kl;
				json_ws(src);
				v->keys[v->len] = json_string(src, &kl);
				json_ws(src);
				if (src->s[src->i++] != ':')
					json_die(src, "expected ':'");
			}
			json_value(src, &v->items[v->len++]);
			json_ws(src);
			c = src->s[src->i++];
			if (c == ',')
				continue;
			if (c == ']' || c == '}')
				return;
			json_die(src, "expected ',' or end");
		}
	}
	if (c == '"') {
		v->type = JSON_STRING;
		v->text = json_string(src, &v->len);
		return;
	}
	if (strncmp(src->s + src->i, "true", 4) == 0 || strncmp(src->s + src->i, "false", 5) == 0) {
		v->type = JSON_BOOL;
		v->boolean = c == 't';
		src->i += v->boolean ? 4 : 5;
		return;
	}
	if (strncmp(src->s + src->i, "null", 4) == 0) {
		v->type = JSON_NULL;
		src->i += 4;
		return;
	}
	size_t start = src->i;
	while (src->i < src->n && strchr("+-0123456789.eE", src->s[src->i]) != NULL)
		src->i++;
	if (src->i == start)
		json_die(src, "unexpected character");
	v->type = JSON_NUMBER;
	v->len = src->i - start;
	v->text = malloc(v->len + 1);
	memcpy(v->text, src->s + start, v->len);
	v->text[v->len] = '\0';
}

static void json_free(struct json *v)
{
	for (size_t i = 0; v->items != NULL && i < v->len; i++) {
		json_free(&v->items[i]);
		if (v->keys != NULL)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->text);
}

/* Parse a whole file; false if it cannot be read. */
static bool json_load(const char *path, struct json *out)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return false;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	rewind(f);
	char *buf = malloc((size_t)size + 1);
	size_t got = fread(buf, 1, (size_t)size, f);
	fclose(f);
	struct json_src src = {buf, got, 0};
	json_value(&src, out);
	free(buf);
	return true;
}

static const struct json *json_get(const struct json *obj, const char *key)
{
	if (obj->type != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < obj->len; i++) {
		if (strcmp(obj->keys[i], key) == 0)
			return &obj->items[i];
	}
	return NULL;
}

#endif /* SLUICE_TESTS_JSON_MINI_H */
