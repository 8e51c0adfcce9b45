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
	return 0;
}
