/*
 * fuzz_sf.c - the RFC 9651 parser and serializer (include/sluice/sf.h).
 *
 * Input: one byte choosing the kind (Item, List, Dictionary; byte % 3) and
 * one choosing a node capacity, then the field value. Properties checked:
 *   - parsing never crashes; with SLUICE_SF_NODES_MAX(len) nodes it returns
 *     0, SLUICE_ESYNTAX or SLUICE_ETOOBIG, with fewer also SLUICE_ETRUNC;
 *   - a parse with a small capacity that succeeds equals the full parse;
 *   - round trip: serializing a successful parse gives a value that parses
 *     again to an equal structure and serializes to the same bytes;
 *   - duplicate keys are resolved (RFC 9651 4.2.2, 4.2.3.2): dictionary
 *     member keys, and the parameter keys of every item and inner list, are
 *     distinct in the result;
 *   - an Item is a one-member List: a value parses as a List of one member
 *     that is not an inner list exactly when, without its trailing SP/HTAB,
 *     it parses as an Item, and then to the same nodes (a List may end in
 *     OWS, an Item only in SP: RFC 9651 4.2 steps 6-7 and 4.2.1); and an
 *     Item is always such a List.
 */
#include <stdlib.h>
#include <string.h>

#define SLUICE_EXPERIMENTAL_API /* sf.h is fenced as experimental */
#include <sluice/sf.h>

#include "fuzz.h"

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static bool node_eq(const struct sluice_sf_node *a, const struct sluice_sf_node *b)
{
	static uint8_t da[65536], db[65536];
	size_t la, lb;

	if (a->type != b->type || a->nitems != b->nitems || a->nparams != b->nparams ||
	    a->key_len != b->key_len || (a->key_len && memcmp(a->key, b->key, a->key_len) != 0))
		return false;
	switch (a->type) {
	case SLUICE_SF_STRING:
	case SLUICE_SF_TOKEN:
	case SLUICE_SF_BINARY:
	case SLUICE_SF_DISPLAY:
		if (sluice_sf_decode(a, da, sizeof(da), &la) != 0 ||
		    sluice_sf_decode(b, db, sizeof(db), &lb) != 0)
			return false;
		return la == lb && memcmp(da, db, la) == 0;
	case SLUICE_SF_INNER_LIST:
		return true;
	default:
		return a->value == b->value;
	}
}

static bool tree_eq(const struct sluice_sf_node *a, const struct sluice_sf_result *ra,
		    const struct sluice_sf_node *b, const struct sluice_sf_result *rb)
{
	if (ra->nodes != rb->nodes || ra->members != rb->members)
		return false;
	for (size_t i = 0; i < ra->nodes; i++) {
		if (!node_eq(&a[i], &b[i]))
			return false;
	}
	return true;
}

static bool keys_distinct(const struct sluice_sf_node *n, size_t count)
{
	for (size_t i = 0; i < count; i++)
		for (size_t j = i + 1; j < count; j++)
			if (n[i].key_len == n[j].key_len && memcmp(n[i].key, n[j].key, n[i].key_len) == 0)
				return false;
	return true;
}

/* The parameters of every item and inner list in the member at m. */
static void check_member_params(const struct sluice_sf_node *m)
{
	const struct sluice_sf_node *p = m + 1;
	if (m->type == SLUICE_SF_INNER_LIST) {
		for (uint32_t i = 0; i < m->nitems; i++) {
			check(keys_distinct(p + 1, p->nparams));
			p += 1 + p->nparams;
		}
	}
	check(keys_distinct(p, m->nparams));
}

static void check_keys(enum sluice_sf_kind kind, const struct sluice_sf_node *nodes, size_t members)
{
	const struct sluice_sf_node *m = nodes;
	for (size_t i = 0; i < members; i++) {
		check_member_params(m);
		if (kind == SLUICE_SF_KIND_DICT) {
			const struct sluice_sf_node *o = nodes;
			for (size_t j = 0; j < i; j++) {
				check(o->key_len != m->key_len || memcmp(o->key, m->key, m->key_len) != 0);
				o += sluice_sf_member_span(o);
			}
		}
		m += sluice_sf_member_span(m);
	}
}

/* Item versus one-member List. */
static void check_item_list(const char *in, size_t len, size_t cap)
{
	struct sluice_sf_node *a = malloc(cap * sizeof(*a)), *b = malloc(cap * sizeof(*b));
	struct sluice_sf_result ra, rb;
	size_t trimmed = len;
	while (trimmed > 0 && (in[trimmed - 1] == ' ' || in[trimmed - 1] == '\t'))
		trimmed--;
	int rcb = sluice_sf_parse(SLUICE_SF_KIND_LIST, in, len, b, cap, &rb);
	bool one_item = rcb == 0 && rb.members == 1 && b[0].type != SLUICE_SF_INNER_LIST;
	int rca = sluice_sf_parse(SLUICE_SF_KIND_ITEM, in, trimmed, a, cap, &ra);

	check((rca == 0) == one_item || rca == SLUICE_ETOOBIG || rcb == SLUICE_ETOOBIG);
	if (rca == 0 && one_item)
		check(tree_eq(a, &ra, b, &rb));
	if (sluice_sf_parse(SLUICE_SF_KIND_ITEM, in, len, a, cap, &ra) == 0)
		check(one_item && tree_eq(a, &ra, b, &rb));
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	enum sluice_sf_kind kind = (enum sluice_sf_kind)(data[0] % 3);
	size_t small = data[1];
	const char *in = (const char *)data + 2;
	size_t len = size - 2;
	size_t cap = SLUICE_SF_NODES_MAX(len);
	struct sluice_sf_node *nodes = malloc(cap * sizeof(*nodes));
	struct sluice_sf_result res;

	if (kind != SLUICE_SF_KIND_DICT)
		check_item_list(in, len, cap);
	int rc = sluice_sf_parse(kind, in, len, nodes, cap, &res);
	check(rc == 0 || rc == SLUICE_ESYNTAX || rc == SLUICE_ETOOBIG);
	if (rc != 0) {
		check(res.error_offset <= len);
		free(nodes);
		return 0;
	}
	check(res.nodes <= cap);
	check_keys(kind, nodes, res.members);

	/* a smaller array: success must mean the same result */
	if (small < cap) {
		struct sluice_sf_node *few = malloc((small ? small : 1) * sizeof(*few));
		struct sluice_sf_result rf;
		int rcf = sluice_sf_parse(kind, in, len, few, small, &rf);
		check(rcf == 0 || rcf == SLUICE_ETRUNC);
		if (rcf == 0)
			check(tree_eq(nodes, &res, few, &rf));
		free(few);
	}

	/* round trip */
	size_t out_cap = 2 * len + 64;
	char *out = malloc(out_cap);
	struct sluice_sf_writer w;
	size_t needed;
	sluice_sf_writer_init(&w, out, out_cap);
	sluice_sf_write_nodes(&w, kind, nodes, res.members);
	check(sluice_sf_writer_finish(&w, &needed) == 0);

	size_t len2 = needed - 1;
	size_t cap2 = SLUICE_SF_NODES_MAX(len2);
	struct sluice_sf_node *nodes2 = malloc(cap2 * sizeof(*nodes2));
	struct sluice_sf_result res2;
	check(sluice_sf_parse(kind, out, len2, nodes2, cap2, &res2) == 0);
	check(tree_eq(nodes, &res, nodes2, &res2));

	char *out2 = malloc(out_cap);
	sluice_sf_writer_init(&w, out2, out_cap);
	sluice_sf_write_nodes(&w, kind, nodes2, res2.members);
	check(sluice_sf_writer_finish(&w, NULL) == 0);
	check(strcmp(out, out2) == 0);

	free(out2);
	free(nodes2);
	free(out);
	free(nodes);
	return 0;
}
