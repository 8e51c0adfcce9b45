/*
 * test_sf.c - the RFC 9651 parser and serializer (include/sluice/sf.h)
 * against the official httpwg structured-field-tests vectors, read at run
 * time from tests/vectors/structured-field-tests (vendored, with their
 * LICENSE.md and SOURCE, which names the upstream commit), plus edge cases
 * of the API (truncation, offsets, duplicate keys, decoding).
 *
 * Vector rules: a must_fail case must fail; any other case must parse to the
 * expected value (types and values compared) and serialize to its canonical
 * form; a can_fail case may fail instead. The serialisation-tests directory
 * is run through the writer primitives (JSON value -> sluice_sf_write_*).
 */
#include <criterion/criterion.h>
#include <sluice.h> /* without SLUICE_EXPERIMENTAL_API: sf.h declares nothing */

#ifdef SLUICE_SF_NODES_MAX
#error "sluice/sf.h declared its API without SLUICE_EXPERIMENTAL_API"
#endif

/* The experimental fence: a later include with the macro declares it. */
#define SLUICE_EXPERIMENTAL_API
#include <sluice/sf.h>

#include <errno.h>

#include "json_mini.h"

/*
 * The vectors directory, inside the source tree. A missing directory fails
 * the tests (every file is opened and counted): they never pass vacuously.
 */
static const char *vectors_dir(void)
{
	return SLUICE_SOURCE_DIR "/tests/vectors/structured-field-tests/";
}

struct tally {
	unsigned cases, passed, failed, skipped;
};

/* ---- expected-value comparison ----------------------------------------- */

static bool milli_of(const char *text, int64_t *out)
{
	/* exact decimal text -> thousandths; false if more than 3 fraction digits */
	int64_t sign = 1, v = 0;
	int frac = -1;
	const char *s = text;
	if (*s == '-') {
		sign = -1;
		s++;
	}
	for (; *s; s++) {
		if (*s == '.') {
			frac = 0;
			continue;
		}
		if (*s < '0' || *s > '9')
			return false;
		if (frac >= 0 && ++frac > 3)
			return false;
		if (v > INT64_MAX / 10 - 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	for (int i = frac < 0 ? 0 : frac; i < 3; i++)
		v *= 10;
	*out = sign * v;
	return true;
}

static size_t base32_decode(const char *s, uint8_t *out)
{
	uint64_t acc = 0;
	int bits = 0;
	size_t k = 0;
	for (; *s && *s != '='; s++) {
		int v = *s >= 'A' && *s <= 'Z' ? *s - 'A' : *s - '2' + 26;
		acc = acc << 5 | (uint64_t)v;
		bits += 5;
		if (bits >= 8) {
			out[k++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	return k;
}

static bool bytes_eq(const struct sluice_sf_node *n, const void *want, size_t want_len)
{
	static uint8_t buf[32768];
	size_t len;
	if (sluice_sf_decode(n, buf, sizeof(buf), &len) != 0)
		return false;
	return len == want_len && memcmp(buf, want, len) == 0;
}

static bool bare_eq(const struct sluice_sf_node *n, const struct json *e)
{
	switch (e->type) {
	case JSON_NUMBER: {
		if (strchr(e->text, '.') != NULL) {
			int64_t m;
			return milli_of(e->text, &m) && n->type == SLUICE_SF_DECIMAL && n->value == m;
		}
		return n->type == SLUICE_SF_INTEGER && n->value == strtoll(e->text, NULL, 10);
	}
	case JSON_STRING:
		return n->type == SLUICE_SF_STRING && bytes_eq(n, e->text, e->len);
	case JSON_BOOL:
		return n->type == SLUICE_SF_BOOLEAN && n->value == e->boolean;
	case JSON_OBJECT: {
		const struct json *t = json_get(e, "__type"), *v = json_get(e, "value");
		if (t == NULL || v == NULL)
			return false;
		if (strcmp(t->text, "token") == 0)
			return n->type == SLUICE_SF_TOKEN && bytes_eq(n, v->text, v->len);
		if (strcmp(t->text, "displaystring") == 0)
			return n->type == SLUICE_SF_DISPLAY && bytes_eq(n, v->text, v->len);
		if (strcmp(t->text, "date") == 0)
			return n->type == SLUICE_SF_DATE && n->value == strtoll(v->text, NULL, 10);
		if (strcmp(t->text, "binary") == 0) {
			static uint8_t raw[32768];
			size_t len = base32_decode(v->text, raw);
			return n->type == SLUICE_SF_BINARY && bytes_eq(n, raw, len);
		}
		return false;
	}
	default:
		return false;
	}
}

static bool params_eq(const struct sluice_sf_node *p, uint32_t np, const struct json *e)
{
	if (e->type != JSON_ARRAY || e->len != np)
		return false;
	for (uint32_t i = 0; i < np; i++) {
		const struct json *kv = &e->items[i];
		if (p[i].key_len != strlen(kv->items[0].text) ||
		    memcmp(p[i].key, kv->items[0].text, p[i].key_len) != 0)
			return false;
		if (!bare_eq(&p[i], &kv->items[1]))
			return false;
	}
	return true;
}

/* A member: [bare, params] or [[items...], params]. */
static bool member_eq(const struct sluice_sf_node *n, const struct json *e)
{
	if (e->type != JSON_ARRAY || e->len != 2)
		return false;
	const struct json *params = &e->items[1];
	if (e->items[0].type == JSON_ARRAY) {
		const struct json *items = &e->items[0];
		if (n->type != SLUICE_SF_INNER_LIST || n->nitems != items->len)
			return false;
		size_t at = 1;
		for (size_t i = 0; i < items->len; i++) {
			const struct json *it = &items->items[i];
			if (!bare_eq(&n[at], &it->items[0]) ||
			    !params_eq(&n[at + 1], n[at].nparams, &it->items[1]))
				return false;
			at += 1 + n[at].nparams;
		}
		return params_eq(&n[at], n->nparams, params);
	}
	return n->type != SLUICE_SF_INNER_LIST && bare_eq(n, &e->items[0]) &&
	       params_eq(n + 1, n->nparams, params);
}

static bool value_eq(enum sluice_sf_kind kind, const struct sluice_sf_node *nodes,
		     const struct sluice_sf_result *res, const struct json *e)
{
	if (kind == SLUICE_SF_KIND_ITEM)
		return res->members == 1 && member_eq(nodes, e);
	if (e->type != JSON_ARRAY || e->len != res->members)
		return false;
	size_t at = 0;
	for (size_t m = 0; m < e->len; m++) {
		const struct json *em = &e->items[m];
		if (kind == SLUICE_SF_KIND_DICT) {
			const char *k = em->items[0].text;
			if (nodes[at].key_len != strlen(k) || memcmp(nodes[at].key, k, nodes[at].key_len) != 0)
				return false;
			em = &em->items[1];
		}
		if (!member_eq(&nodes[at], em))
			return false;
		at += sluice_sf_member_span(&nodes[at]);
	}
	return at == res->nodes;
}

/* ---- JSON value -> writer primitives (serialisation tests) -------------- */

/* false: the value is not representable by this API (a decimal with more
 * than three fraction digits, which the serializer never emits) */
static bool write_bare_json(struct sluice_sf_writer *w, const struct json *e)
{
	switch (e->type) {
	case JSON_NUMBER: {
		if (strchr(e->text, '.') != NULL) {
			int64_t m;
			if (!milli_of(e->text, &m))
				return false;
			sluice_sf_write_decimal_milli(w, m);
			return true;
		}
		errno = 0;
		long long v = strtoll(e->text, NULL, 10);
		sluice_sf_write_integer(w, errno == ERANGE ? INT64_MAX : v);
		return true;
	}
	case JSON_STRING:
		sluice_sf_write_string(w, e->text, e->len);
		return true;
	case JSON_BOOL:
		sluice_sf_write_boolean(w, e->boolean);
		return true;
	case JSON_OBJECT: {
		const struct json *t = json_get(e, "__type"), *v = json_get(e, "value");
		if (strcmp(t->text, "token") == 0) {
			sluice_sf_write_token(w, v->text, v->len);
		} else if (strcmp(t->text, "displaystring") == 0) {
			sluice_sf_write_display(w, (const uint8_t *)v->text, v->len);
		} else if (strcmp(t->text, "date") == 0) {
			sluice_sf_write_date(w, strtoll(v->text, NULL, 10));
		} else {
			static uint8_t raw[32768];
			size_t len = base32_decode(v->text, raw);
			sluice_sf_write_binary(w, raw, len);
		}
		return true;
	}
	default:
		return false;
	}
}

static bool write_params_json(struct sluice_sf_writer *w, const struct json *ps)
{
	for (size_t i = 0; i < ps->len; i++) {
		const struct json *kv = &ps->items[i];
		sluice_sf_write_raw(w, ";", 1);
		sluice_sf_write_key(w, kv->items[0].text, kv->items[0].len);
		if (kv->items[1].type == JSON_BOOL && kv->items[1].boolean)
			continue;
		sluice_sf_write_raw(w, "=", 1);
		if (!write_bare_json(w, &kv->items[1]))
			return false;
	}
	return true;
}

static bool write_member_json(struct sluice_sf_writer *w, const struct json *e)
{
	if (e->items[0].type == JSON_ARRAY) {
		const struct json *items = &e->items[0];
		sluice_sf_write_raw(w, "(", 1);
		for (size_t i = 0; i < items->len; i++) {
			if (i > 0)
				sluice_sf_write_raw(w, " ", 1);
			if (!write_bare_json(w, &items->items[i].items[0]) ||
			    !write_params_json(w, &items->items[i].items[1]))
				return false;
		}
		sluice_sf_write_raw(w, ")", 1);
	} else if (!write_bare_json(w, &e->items[0])) {
		return false;
	}
	return write_params_json(w, &e->items[1]);
}

static bool write_json(struct sluice_sf_writer *w, enum sluice_sf_kind kind, const struct json *e)
{
	if (kind == SLUICE_SF_KIND_ITEM)
		return write_member_json(w, e);
	for (size_t m = 0; m < e->len; m++) {
		const struct json *em = &e->items[m];
		if (m > 0)
			sluice_sf_write_raw(w, ", ", 2);
		if (kind == SLUICE_SF_KIND_DICT) {
			sluice_sf_write_key(w, em->items[0].text, em->items[0].len);
			em = &em->items[1];
			if (em->items[0].type == JSON_BOOL && em->items[0].boolean) {
				if (!write_params_json(w, &em->items[1]))
					return false;
				continue;
			}
			sluice_sf_write_raw(w, "=", 1);
		}
		if (!write_member_json(w, em))
			return false;
	}
	return true;
}

/* ---- drivers ---------------------------------------------------------------- */

static enum sluice_sf_kind kind_of(const struct json *tc)
{
	const char *t = json_get(tc, "header_type")->text;
	return strcmp(t, "item") == 0 ? SLUICE_SF_KIND_ITEM
	       : strcmp(t, "list") == 0 ? SLUICE_SF_KIND_LIST
					: SLUICE_SF_KIND_DICT;
}

static bool flag(const struct json *tc, const char *name)
{
	const struct json *f = json_get(tc, name);
	return f != NULL && f->type == JSON_BOOL && f->boolean;
}

/* Join an array of strings with ", " (field-line combination). */
static char *join(const struct json *arr, size_t *len)
{
	size_t total = 1;
	for (size_t i = 0; i < arr->len; i++)
		total += arr->items[i].len + 2;
	char *s = malloc(total);
	size_t k = 0;
	for (size_t i = 0; i < arr->len; i++) {
		if (i > 0) {
			memcpy(s + k, ", ", 2);
			k += 2;
		}
		memcpy(s + k, arr->items[i].text, arr->items[i].len);
		k += arr->items[i].len;
	}
	s[k] = '\0';
	*len = k;
	return s;
}

static bool run_parse_case(const struct json *tc, const char **why)
{
	enum sluice_sf_kind kind = kind_of(tc);
	bool must_fail = flag(tc, "must_fail"), can_fail = flag(tc, "can_fail");
	size_t len;
	char *raw = join(json_get(tc, "raw"), &len);
	size_t cap = SLUICE_SF_NODES_MAX(len);
	struct sluice_sf_node *nodes = malloc(cap * sizeof(*nodes));
	struct sluice_sf_result res;
	int rc = sluice_sf_parse(kind, raw, len, nodes, cap, &res);
	bool ok;

	*why = "";
	if (must_fail) {
		ok = rc == SLUICE_ESYNTAX;
		*why = "parsed but must fail";
	} else if (rc != 0) {
		ok = can_fail;
		*why = "failed to parse";
	} else if (!value_eq(kind, nodes, &res, json_get(tc, "expected"))) {
		ok = false;
		*why = "parsed to a different value";
	} else {
		/* canonical serialization, from the nodes and from the JSON value */
		const struct json *canon = json_get(tc, "canonical");
		size_t clen;
		char *want = canon != NULL ? join(canon, &clen) : join(json_get(tc, "raw"), &clen);
		char out[65536];
		struct sluice_sf_writer w;
		sluice_sf_writer_init(&w, out, sizeof(out));
		sluice_sf_write_nodes(&w, kind, nodes, res.members);
		ok = sluice_sf_writer_finish(&w, NULL) == 0 && strcmp(out, want) == 0;
		*why = "serialized nodes differ from canonical";
		if (ok) {
			sluice_sf_writer_init(&w, out, sizeof(out));
			/* every value the parser accepts is representable (at
			 * most three fraction digits), so none is skipped here */
			bool repr = write_json(&w, kind, json_get(tc, "expected"));
			ok = repr && sluice_sf_writer_finish(&w, NULL) == 0 && strcmp(out, want) == 0;
			*why = "serialized expected value differs from canonical";
		}
		free(want);
	}
	free(nodes);
	free(raw);
	return ok;
}

static struct tally run_file(const char *name)
{
	char path[2048];
	struct json doc;
	struct tally t = {0, 0, 0, 0};

	snprintf(path, sizeof(path), "%s%s", vectors_dir(), name);
	cr_assert(json_load(path, &doc), "cannot read %s", path);
	for (size_t i = 0; i < doc.len; i++) {
		const struct json *tc = &doc.items[i];
		const char *why;
		t.cases++;
		if (run_parse_case(tc, &why)) {
			t.passed++;
		} else {
			t.failed++;
			cr_log_error("%s: \"%s\": %s", name, json_get(tc, "name")->text, why);
		}
	}
	json_free(&doc);
	cr_log_info("%s: %u cases, %u passed, %u failed", name, t.cases, t.passed, t.failed);
	return t;
}

#define VECTOR_FILE(id, file)                                                          \
	Test(sf_vectors, id)                                                           \
	{                                                                              \
		struct tally t = run_file(file);                                       \
		cr_expect_gt(t.cases, 0);                                              \
		cr_expect_eq(t.failed, 0, "%s: %u of %u failed", file, t.failed, t.cases); \
	}

VECTOR_FILE(binary, "binary.json")
VECTOR_FILE(boolean, "boolean.json")
VECTOR_FILE(date, "date.json")
VECTOR_FILE(dictionary, "dictionary.json")
VECTOR_FILE(display_string, "display-string.json")
VECTOR_FILE(examples, "examples.json")
VECTOR_FILE(item, "item.json")
VECTOR_FILE(key_generated, "key-generated.json")
VECTOR_FILE(large_generated, "large-generated.json")
VECTOR_FILE(list, "list.json")
VECTOR_FILE(listlist, "listlist.json")
VECTOR_FILE(number_generated, "number-generated.json")
VECTOR_FILE(number, "number.json")
VECTOR_FILE(param_dict, "param-dict.json")
VECTOR_FILE(param_list, "param-list.json")
VECTOR_FILE(param_listlist, "param-listlist.json")
VECTOR_FILE(string_generated, "string-generated.json")
VECTOR_FILE(string, "string.json")
VECTOR_FILE(token_generated, "token-generated.json")
VECTOR_FILE(token, "token.json")

static struct tally run_serialisation_file(const char *name)
{
	char path[2048];
	struct json doc;
	struct tally t = {0, 0, 0, 0};

	snprintf(path, sizeof(path), "%sserialisation-tests/%s", vectors_dir(), name);
	cr_assert(json_load(path, &doc), "cannot read %s", path);
	for (size_t i = 0; i < doc.len; i++) {
		const struct json *tc = &doc.items[i];
		char out[4096];
		struct sluice_sf_writer w;
		t.cases++;
		sluice_sf_writer_init(&w, out, sizeof(out));
		if (!write_json(&w, kind_of(tc), json_get(tc, "expected"))) {
			t.skipped++;
			continue;
		}
		int rc = sluice_sf_writer_finish(&w, NULL);
		bool ok;
		if (flag(tc, "must_fail")) {
			ok = rc == SLUICE_EINVAL || rc == SLUICE_ERANGE;
		} else {
			size_t clen;
			char *want = join(json_get(tc, "canonical"), &clen);
			ok = rc == 0 && strcmp(out, want) == 0;
			free(want);
		}
		if (ok) {
			t.passed++;
		} else {
			t.failed++;
			cr_log_error("%s: \"%s\" failed", name, json_get(tc, "name")->text);
		}
	}
	json_free(&doc);
	cr_log_info("serialisation-tests/%s: %u cases, %u passed, %u failed, %u not applicable",
		    name, t.cases, t.passed, t.failed, t.skipped);
	return t;
}

/*
 * not_applicable: the cases this API cannot be asked to serialize, pinned
 * so that a change cannot quietly skip more. In number.json these are the
 * five decimals with more than three fraction digits (0.0015, 0.0025,
 * -0.0015, -0.0025, 9.9995: RFC 9651 4.1.5's rounding). The serializer takes
 * thousandths (sluice_sf_write_decimal_milli) and the parser refuses a
 * fourth fraction digit, so no value that needs that rounding can reach it.
 */
#define SERIAL_FILE(id, file, not_applicable)                                          \
	Test(sf_serialisation, id)                                                     \
	{                                                                              \
		struct tally t = run_serialisation_file(file);                         \
		cr_expect_gt(t.passed, 0);                                             \
		cr_expect_eq(t.failed, 0, "%s: %u of %u failed", file, t.failed, t.cases); \
		cr_expect_eq(t.skipped, not_applicable, "%s: %u not applicable", file, t.skipped); \
		cr_expect_eq(t.passed + t.skipped, t.cases);                           \
	}

SERIAL_FILE(key_generated, "key-generated.json", 0)
SERIAL_FILE(number, "number.json", 5)
SERIAL_FILE(string_generated, "string-generated.json", 0)
SERIAL_FILE(token_generated, "token-generated.json", 0)

/* ---- API edge cases ------------------------------------------------------- */

static int parse(enum sluice_sf_kind kind, const char *s, struct sluice_sf_node *n, size_t cap,
		 struct sluice_sf_result *res)
{
	return sluice_sf_parse(kind, s, strlen(s), n, cap, res);
}

Test(sf, syntax_error_reports_offset)
{
	struct sluice_sf_node n[16];
	struct sluice_sf_result res;

	cr_assert_eq(parse(SLUICE_SF_KIND_LIST, "\"d\";r=5,", n, 16, &res), SLUICE_ESYNTAX);
	cr_assert_eq(res.error_offset, 8);
	cr_assert_eq(parse(SLUICE_SF_KIND_LIST, "\"d\" ;r=1", n, 16, &res), SLUICE_ESYNTAX);
	cr_assert_eq(res.error_offset, 4);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, "1234567890123456", n, 16, &res), SLUICE_ESYNTAX);
	cr_assert_eq(res.error_offset, 15);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, "", n, 16, &res), SLUICE_ESYNTAX);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, "a\x80", n, 16, &res), SLUICE_ESYNTAX);
	cr_assert_eq(res.error_offset, 1);
}

Test(sf, truncation_is_reported_and_len_nodes_suffice)
{
	const char *s = "a;b;c, (1 2 3);x, \"s\"";
	struct sluice_sf_node n[64];
	struct sluice_sf_result res;

	for (size_t cap = 0; cap < 9; cap++)
		cr_assert_eq(parse(SLUICE_SF_KIND_LIST, s, n, cap, &res), SLUICE_ETRUNC, "cap %zu", cap);
	cr_assert_eq(parse(SLUICE_SF_KIND_LIST, s, n, 9, &res), 0);
	cr_assert_eq(res.nodes, 9);
	cr_assert_eq(res.members, 3);
	/* densest input: one node per byte */
	cr_assert_eq(parse(SLUICE_SF_KIND_LIST, "(1 2 3)", n, SLUICE_SF_NODES_MAX(7), &res), 0);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, "a;b;c;d", n, SLUICE_SF_NODES_MAX(7), &res), 0);
	cr_assert_eq(res.nodes, 4);
}

Test(sf, null_arguments)
{
	struct sluice_sf_node n[4];
	struct sluice_sf_result res;

	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_LIST, NULL, 3, n, 4, &res), SLUICE_EINVAL);
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_LIST, "1", 1, n, 4, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_sf_parse((enum sluice_sf_kind)7, "1", 1, n, 4, &res), SLUICE_EINVAL);
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_LIST, NULL, 0, NULL, 0, &res), 0);
	cr_assert_eq(res.members, 0);
}

Test(sf, duplicate_dictionary_key_keeps_first_position)
{
	struct sluice_sf_node n[32];
	struct sluice_sf_result res;
	char out[128];
	struct sluice_sf_writer w;

	/* the replacement has another subtree size than the replaced member */
	cr_assert_eq(parse(SLUICE_SF_KIND_DICT, "a=(1 2;x);p, b=2, c, a=3;q=?0, d=(4)", n, 32, &res), 0);
	cr_assert_eq(res.members, 4);
	sluice_sf_writer_init(&w, out, sizeof(out));
	sluice_sf_write_nodes(&w, SLUICE_SF_KIND_DICT, n, res.members);
	cr_assert_eq(sluice_sf_writer_finish(&w, NULL), 0);
	cr_assert_str_eq(out, "a=3;q=?0, b=2, c, d=(4)");
	cr_assert_eq(parse(SLUICE_SF_KIND_DICT, "a=1, b=(1 2 3), a=(5 6);z", n, 32, &res), 0);
	sluice_sf_writer_init(&w, out, sizeof(out));
	sluice_sf_write_nodes(&w, SLUICE_SF_KIND_DICT, n, res.members);
	cr_assert_eq(sluice_sf_writer_finish(&w, NULL), 0);
	cr_assert_str_eq(out, "a=(5 6);z, b=(1 2 3)");
}

Test(sf, param_lookup_and_duplicates)
{
	struct sluice_sf_node n[16];
	struct sluice_sf_result res;

	cr_assert_eq(parse(SLUICE_SF_KIND_LIST, "\"d\";r=1;t=2;r=7", n, 16, &res), 0);
	cr_assert_eq(n[0].nparams, 2);
	cr_assert_eq(sluice_sf_param(&n[0], "r")->value, 7);
	cr_assert_eq(sluice_sf_param(&n[0], "t")->value, 2);
	cr_assert_null(sluice_sf_param(&n[0], "q"));
	cr_assert_eq(parse(SLUICE_SF_KIND_LIST, "(1;a=2 3);b=4", n, 16, &res), 0);
	cr_assert_eq(sluice_sf_param(&n[0], "b")->value, 4);
	cr_assert_null(sluice_sf_param(&n[0], "a"));
}

Test(sf, decode_values_and_truncation)
{
	struct sluice_sf_node n[4];
	struct sluice_sf_result res;
	uint8_t buf[16];
	size_t len;

	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, "\"a\\\"b\\\\c\"", n, 4, &res), 0);
	cr_assert_eq(sluice_sf_decode(&n[0], buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(buf, "a\"b\\c", 5), 0);
	cr_assert_eq(sluice_sf_decode(&n[0], buf, 2, &len), SLUICE_ETRUNC);
	cr_assert_eq(len, 5);
	/* the draft-11 pk with non-zero pad bits decodes; missing padding too */
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, ":cHsdsRa894==:", n, 4, &res), 0);
	cr_assert_eq(sluice_sf_decode(&n[0], buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 7);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, ":cHsdsRa894:", n, 4, &res), 0);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, ":_-Ah:", n, 4, &res), SLUICE_ESYNTAX);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, ":a:", n, 4, &res), SLUICE_ESYNTAX);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, "%\"f%c3%bc\"", n, 4, &res), 0);
	cr_assert_eq(sluice_sf_decode(&n[0], buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(buf, "f\xc3\xbc", 3), 0);
	cr_assert_eq(parse(SLUICE_SF_KIND_ITEM, "42", n, 4, &res), 0);
	cr_assert_eq(sluice_sf_decode(&n[0], buf, sizeof(buf), &len), SLUICE_EINVAL);
}

Test(sf, writer_truncation_counts_needed_bytes)
{
	char out[8];
	struct sluice_sf_writer w;
	size_t needed;

	sluice_sf_writer_init(&w, out, sizeof(out));
	sluice_sf_write_string(&w, "a\"b\\", 4);
	sluice_sf_write_raw(&w, ";q=", 3);
	sluice_sf_write_uint_clamped(&w, UINT64_MAX);
	cr_assert_eq(sluice_sf_writer_finish(&w, &needed), SLUICE_ETRUNC);
	cr_assert_eq(needed, strlen("\"a\\\"b\\\\\";q=999999999999999") + 1);
	cr_assert_eq(memcmp(out, "\"a\\\"b\\\\\"", 8), 0);
	sluice_sf_writer_init(&w, out, sizeof(out));
	sluice_sf_write_integer(&w, SLUICE_SF_INTEGER_MAX + 1);
	cr_assert_eq(sluice_sf_writer_finish(&w, NULL), SLUICE_ERANGE);
	sluice_sf_writer_init(&w, out, sizeof(out));
	sluice_sf_write_string(&w, "\x7f", 1);
	cr_assert_eq(sluice_sf_writer_finish(&w, NULL), SLUICE_EINVAL);
	sluice_sf_writer_init(&w, NULL, 0);
	sluice_sf_write_integer(&w, -12);
	cr_assert_eq(sluice_sf_writer_finish(&w, &needed), SLUICE_ETRUNC);
	cr_assert_eq(needed, 4);
}

Test(sf, writer_binary_pads_and_zeroes_pad_bits)
{
	char out[32];
	struct sluice_sf_writer w;

	sluice_sf_writer_init(&w, out, sizeof(out));
	sluice_sf_write_binary(&w, (const uint8_t *)"hello", 5);
	cr_assert_eq(sluice_sf_writer_finish(&w, NULL), 0);
	cr_assert_str_eq(out, ":aGVsbG8=:");
	sluice_sf_writer_init(&w, out, sizeof(out));
	sluice_sf_write_decimal_milli(&w, -1500);
	sluice_sf_write_raw(&w, " ", 1);
	sluice_sf_write_decimal_milli(&w, 10);
	cr_assert_eq(sluice_sf_writer_finish(&w, NULL), 0);
	cr_assert_str_eq(out, "-1.5 0.01");
}

Test(sf, ceilings_on_dictionary_members_and_parameters)
{
	static char in[16384];

	/* 2000 list members of at most 6 bytes each fit in 16384 */
	static struct sluice_sf_node n[16384];
	struct sluice_sf_result res;
	size_t k = 0;

	for (int i = 0; i < SLUICE_SF_DICT_MAX; i++)
		k += (size_t)sprintf(in + k, "%sk%d", i ? "," : "", i);
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_DICT, in, k, n, 16384, &res), 0);
	cr_assert_eq(res.members, SLUICE_SF_DICT_MAX);
	/* a duplicate is still fine at the ceiling, a new key is not */
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_DICT, in, k + (size_t)sprintf(in + k, ",k0=2"), n, 16384, &res), 0);
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_DICT, in, k + (size_t)sprintf(in + k, ",new"), n, 16384, &res),
		     SLUICE_ETOOBIG);
	cr_assert_eq(res.error_offset, k + 4);
	/* the same members as a List are not capped */
	k = 0;
	for (int i = 0; i < 2000; i++)
		k += (size_t)sprintf(in + k, "%sk%d", i ? "," : "", i);
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_LIST, in, k, n, 16384, &res), 0);
	cr_assert_eq(res.members, 2000);
	k = (size_t)sprintf(in, "x");
	for (int i = 0; i < SLUICE_SF_PARAMS_MAX; i++)
		k += (size_t)sprintf(in + k, ";p%d", i);
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_ITEM, in, k, n, 16384, &res), 0);
	cr_assert_eq(n[0].nparams, SLUICE_SF_PARAMS_MAX);
	k += (size_t)sprintf(in + k, ";p0=1"); /* duplicate: overwrites */
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_ITEM, in, k, n, 16384, &res), 0);
	k += (size_t)sprintf(in + k, ";q");
	cr_assert_eq(sluice_sf_parse(SLUICE_SF_KIND_ITEM, in, k, n, 16384, &res), SLUICE_ETOOBIG);
}
