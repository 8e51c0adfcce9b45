/*
 * fuzz_server_http.c - the example server's HTTP/1.1 request-head parser
 * (src/server/server_http.c, compiled into this target: the server is an
 * executable, not part of the library).
 *
 * Input: two bytes choosing --max-body (0 .. 65535), then the bytes
 * received. Properties checked:
 *   - the parser never reads outside the input (ASan) or crashes;
 *   - INCOMPLETE only while no head fits: input shorter than
 *     SERVER_MAX_HEAD; ERROR only with a status the server sends for bad
 *     requests (400, 413, 431, 501, 505);
 *   - OK: head_len <= min(len, SERVER_MAX_HEAD); the method is a non-empty
 *     token, the target starts with '/', every pointer lies in the head, the
 *     field count is within SERVER_MAX_HEADERS, Content-Length <= max-body;
 *   - framing: the head alone parses to the same result (bytes after it do
 *     not matter), and every proper prefix of it is INCOMPLETE.
 * Then the same bytes drive a generator (a reference model of the parser's
 * contract, written from server_http.c's header comment and RFC 9112): a
 * request head built from them (method, target, version, CRLF or bare LF
 * line ends, fields with OWS around their values, Host, Content-Length,
 * Connection), with at most one injected fault (whitespace before a colon,
 * obs-fold, a bad or conflicting Content-Length, Transfer-Encoding, HTTP/2.0,
 * HTTP/1.2, a bare CR or another control byte in a value, an empty field
 * name, a body above the maximum, a missing Host). The parser must answer
 * exactly what the model says: OK with every field (name, value without its
 * OWS), head length, Content-Length and keep-alive as generated, or the
 * status of the first bad line.
 */
#include "../src/server/server_http.c"

#include <stdlib.h>

#include "fuzz.h"

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

/* ---- the generator ---------------------------------------------------------- */

struct gen_field {
	char name[12];
	size_t name_len;
	const char *value; /* in the head being built, without OWS */
	size_t value_len;
};

struct builder {
	char buf[2048];
	size_t len;
};

static void put(struct builder *b, const char *s, size_t n)
{
	check(b->len + n <= sizeof(b->buf));
	memcpy(b->buf + b->len, s, n);
	b->len += n;
}

static void puts_(struct builder *b, const char *s)
{
	put(b, s, strlen(s));
}

static bool ieq_ref(const char *a, size_t n, const char *lit)
{
	if (n != strlen(lit))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = a[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if (c != lit[i])
			return false;
	}
	return true;
}

enum fault {
	F_SPACE_BEFORE_COLON,
	F_OBS_FOLD,
	F_BAD_LENGTH,
	F_TWO_LENGTHS,
	F_TRANSFER_ENCODING,
	F_VERSION_2,
	F_VERSION_1_2,
	F_BARE_CR,
	F_CONTROL_BYTE,
	F_EMPTY_NAME,
	F_BODY_TOO_LARGE,
	F_NO_HOST,
	F_NONE
};

static void generated(struct fuzz_input *in, uint64_t max_body)
{
	static const char tchars[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	static struct builder b;
	static struct server_request req;
	struct gen_field f[16];
	size_t nf = 0;
	uint8_t flags = fuzz_u8(in);
	uint8_t fb = fuzz_u8(in);
	enum fault fault = fb < 16 * F_NONE ? (enum fault)(fb % F_NONE) : F_NONE;
	const char *eol = (flags & 1) ? "\n" : "\r\n";
	bool minor1 = (flags & 2) != 0;
	int want_status = 0; /* 0: OK */

	b.len = 0;
	if (flags & 4)
		puts_(&b, eol); /* an empty line before the request line is ignored */
	size_t mlen = 1 + fuzz_u8(in) % 8;
	for (size_t i = 0; i < mlen; i++)
		put(&b, &tchars[fuzz_u8(in) % (sizeof(tchars) - 1)], 1);
	puts_(&b, " /");
	size_t plen = fuzz_u8(in) % 16;
	for (size_t i = 0; i < plen; i++) {
		char c = (char)(0x21 + fuzz_u8(in) % 94); /* visible ASCII */
		put(&b, &c, 1);
	}
	if (fault == F_VERSION_2)
		puts_(&b, " HTTP/2.0");
	else if (fault == F_VERSION_1_2)
		puts_(&b, " HTTP/1.2");
	else
		puts_(&b, minor1 ? " HTTP/1.1" : " HTTP/1.0");
	puts_(&b, eol);
	if (fault == F_VERSION_2 || fault == F_VERSION_1_2)
		want_status = 505;

	/* fields: random names, and Host / Content-Length / Connection */
	size_t nrandom = fuzz_u8(in) % 8;
	bool want_host = fault != F_NO_HOST && (minor1 || (flags & 8));
	uint8_t conn = (flags >> 4) & 3; /* 0 none, 1 close, 2 keep-alive, 3 "foo, Close" */
	bool with_length = (flags & 0x40) != 0 || fault == F_BODY_TOO_LARGE || fault == F_BAD_LENGTH ||
			   fault == F_TWO_LENGTHS;
	uint64_t length = fuzz_u64(in, 2);
	if (fault == F_BODY_TOO_LARGE) {
		length = max_body + 1 + length;
		if (length <= max_body)
			length = max_body + 1;
	} else if (length > max_body) {
		length = max_body;
	}
	size_t fault_at = nrandom == 0 ? 0 : fuzz_u8(in) % nrandom;
	bool has_host = false, has_length = false, close = false, keep = false;
	uint64_t have_length = 0;

	for (size_t k = 0; k < nrandom + 4; k++) {
		char value[40];
		size_t vlen = 0;
		struct gen_field *g = &f[nf];
		bool faulty = k == fault_at && fault != F_NONE && want_status == 0;
		if (k < nrandom) {
			/* 1..8 bytes: only "Host" among the names the parser
			 * treats specially is that short */
			g->name_len = 1 + fuzz_u8(in) % 8;
			for (size_t i = 0; i < g->name_len; i++)
				g->name[i] = tchars[fuzz_u8(in) % (sizeof(tchars) - 1)];
			size_t n = fuzz_u8(in) % 12;
			for (size_t i = 0; i < n; i++) {
				uint8_t c = fuzz_u8(in);
				value[vlen++] = (char)(c % 3 == 0 ? "\t "[c % 2] : 0x21 + c % 94);
			}
		} else if (k == nrandom && want_host) {
			memcpy(g->name, "Host", 4);
			g->name_len = 4;
			memcpy(value, "example.test", 12);
			vlen = 12;
		} else if (k == nrandom + 1 && with_length) {
			g->name_len = 14; /* "Content-Length", spelled below */
			vlen = (size_t)snprintf(value, sizeof(value), "%llu", (unsigned long long)length);
			if (fault == F_BAD_LENGTH)
				value[vlen++] = 'x';
		} else if (k == nrandom + 2 && conn != 0) {
			memcpy(g->name, "Connection", 10);
			g->name_len = 10;
			const char *v = conn == 1 ? "close" : conn == 2 ? "keep-alive" : "foo, Close";
			vlen = strlen(v);
			memcpy(value, v, vlen);
		} else if (k == nrandom + 3 && fault == F_TWO_LENGTHS) {
			g->name_len = 14;
			vlen = (size_t)snprintf(value, sizeof(value), "%llu", (unsigned long long)length + 1);
		} else if (k == nrandom + 3 && fault == F_TRANSFER_ENCODING) {
			g->name_len = 17; /* "Transfer-Encoding", spelled below */
			memcpy(value, "chunked", 7);
			vlen = 7;
		} else {
			continue;
		}
		bool is_length = g->name_len == 14;
		bool is_te = g->name_len == 17;
		const char *name = is_length ? "Content-Length" : is_te ? "Transfer-Encoding" : g->name;

		/* the line: name [fault] ":" OWS value OWS eol */
		if (faulty && fault == F_EMPTY_NAME && k < nrandom)
			g->name_len = 0;
		put(&b, name, g->name_len);
		if (faulty && fault == F_SPACE_BEFORE_COLON && k < nrandom)
			puts_(&b, " ");
		puts_(&b, ":");
		uint8_t ows = fuzz_u8(in);
		for (unsigned i = 0; i < (ows & 3u); i++)
			puts_(&b, (ows & 4) ? "\t" : " ");
		if (faulty && fault == F_BARE_CR && k < nrandom && vlen + 1 < sizeof(value))
			value[vlen++] = '\r', value[vlen++] = 'a';
		if (faulty && fault == F_CONTROL_BYTE && k < nrandom && vlen + 1 < sizeof(value))
			value[vlen++] = '\x01', value[vlen++] = 'a';
		size_t vstart = b.len;
		put(&b, value, vlen);
		for (unsigned i = 0; i < ((ows >> 3) & 3u); i++)
			puts_(&b, (ows & 32) ? "\t" : " ");
		puts_(&b, eol);
		if (faulty && fault == F_OBS_FOLD && k < nrandom)
			puts_(&b, " folded"), puts_(&b, eol);

		/* the model's reading of this line */
		const char *v = b.buf + vstart;
		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (want_status != 0)
			continue;
		if (faulty && k < nrandom &&
		    (fault == F_EMPTY_NAME || fault == F_SPACE_BEFORE_COLON || fault == F_BARE_CR ||
		     fault == F_CONTROL_BYTE)) {
			want_status = 400;
			continue;
		}
		g->value = v;
		g->value_len = vlen;
		if (is_length) {
			bool digits = vlen > 0;
			uint64_t x = 0;
			for (size_t i = 0; i < vlen; i++) {
				digits = digits && v[i] >= '0' && v[i] <= '9';
				if (digits)
					x = x * 10 + (uint64_t)(v[i] - '0'); /* <= 65536: no overflow */
			}
			if (!digits || (has_length && x != have_length))
				want_status = 400;
			has_length = true;
			have_length = x;
		} else if (is_te) {
			want_status = 501;
		} else if (ieq_ref(name, g->name_len, "host")) {
			if (has_host)
				want_status = 400;
			has_host = true;
		} else if (ieq_ref(name, g->name_len, "connection")) {
			/* comma-separated tokens, case-insensitive */
			for (size_t i = 0; i < vlen;) {
				while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
					i++;
				size_t st = i;
				while (i < vlen && v[i] != ',')
					i++;
				size_t en = i;
				while (en > st && (v[en - 1] == ' ' || v[en - 1] == '\t'))
					en--;
				close = close || ieq_ref(v + st, en - st, "close");
				keep = keep || ieq_ref(v + st, en - st, "keep-alive");
			}
		}
		if (faulty && fault == F_OBS_FOLD && k < nrandom && want_status == 0)
			want_status = 400;
		if (want_status == 0)
			nf++;
	}
	puts_(&b, eol);
	if (want_status == 0 && minor1 && !has_host)
		want_status = 400;
	if (want_status == 0 && have_length > max_body)
		want_status = 413;

	size_t head_len = 0;
	uint64_t cl = 0;
	bool ka = false;
	int status = 0;
	/* a private copy of exactly the head, so ASan sees reads past it */
	char *copy = malloc(b.len);
	if (copy == NULL)
		return;
	memcpy(copy, b.buf, b.len);
	enum server_parse_result r = server_parse_request(copy, b.len, max_body, &req, &head_len, &cl, &ka,
							  &status);
	if (want_status != 0) {
		check(r == SERVER_PARSE_ERROR && status == want_status);
		free(copy);
		return;
	}
	check(r == SERVER_PARSE_OK);
	check(head_len == b.len && cl == have_length);
	check(ka == (!close && (minor1 || keep)));
	check(req.minor_version == (minor1 ? 1 : 0));
	check(req.method_len == mlen && req.path_len == plen + 1 && req.path[0] == '/');
	check(req.nheaders == nf);
	for (size_t i = 0; i < nf; i++) {
		const struct server_header *h = &req.headers[i];
		const char *name = f[i].name_len == 14 ? "Content-Length"
				   : f[i].name_len == 17 ? "Transfer-Encoding"
							  : f[i].name;
		check(h->name_len == f[i].name_len && memcmp(h->name, name, h->name_len) == 0);
		check(h->value_len == f[i].value_len &&
		      memcmp(h->value, copy + (f[i].value - b.buf), h->value_len) == 0);
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint64_t max_body = fuzz_u64(&in, 2);
	/* A private copy, so that ASan sees reads past the end. */
	char *buf = malloc(in.size ? in.size : 1);
	static struct server_request req, req2;
	size_t head_len = 0, head_len2 = 0;
	uint64_t cl = 0, cl2 = 0;
	bool ka = false, ka2 = false;
	int status = 0, status2 = 0;

	if (buf == NULL)
		return 0;
	memcpy(buf, in.data, in.size);
	size_t len = in.size;
	enum server_parse_result r = server_parse_request(buf, len, max_body, &req, &head_len, &cl,
							  &ka, &status);
	switch (r) {
	case SERVER_PARSE_INCOMPLETE:
		check(len < SERVER_MAX_HEAD);
		break;
	case SERVER_PARSE_ERROR:
		check(status == 400 || status == 413 || status == 431 || status == 501 ||
		      status == 505);
		break;
	case SERVER_PARSE_OK:
		check(head_len <= len && head_len <= SERVER_MAX_HEAD);
		check(req.method_len > 0 && inside(req.method, req.method_len, buf, head_len));
		for (size_t i = 0; i < req.method_len; i++)
			check(is_tchar((unsigned char)req.method[i]));
		check(req.path_len > 0 && req.path[0] == '/' &&
		      inside(req.path, req.path_len, buf, head_len));
		check(req.minor_version == 0 || req.minor_version == 1);
		check(req.nheaders <= SERVER_MAX_HEADERS);
		for (size_t i = 0; i < req.nheaders; i++) {
			check(req.headers[i].name_len > 0);
			check(inside(req.headers[i].name, req.headers[i].name_len, buf, head_len));
			check(inside(req.headers[i].value, req.headers[i].value_len, buf, head_len));
		}
		check(cl <= max_body);
		/* The head alone: same answer. */
		check(server_parse_request(buf, head_len, max_body, &req2, &head_len2, &cl2, &ka2,
					   &status2) == SERVER_PARSE_OK);
		check(head_len2 == head_len && cl2 == cl && ka2 == ka &&
		      req2.nheaders == req.nheaders && req2.path == req.path &&
		      req2.path_len == req.path_len);
		/* Any proper prefix: not yet a request. */
		for (size_t cut = 0; cut < head_len; cut += 1 + cut / 8)
			check(server_parse_request(buf, cut, max_body, &req2, &head_len2, &cl2, &ka2,
						   &status2) == SERVER_PARSE_INCOMPLETE);
		check(server_parse_request(buf, head_len - 1, max_body, &req2, &head_len2, &cl2,
					   &ka2, &status2) == SERVER_PARSE_INCOMPLETE);
		break;
	default:
		check(false);
	}
	free(buf);

	in.data = data + (size >= 2 ? 2 : size);
	in.size = size >= 2 ? size - 2 : 0;
	generated(&in, max_body);
	return 0;
}
