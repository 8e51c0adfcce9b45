/*
 * fuzz_sf.c - the RFC 9651 parser and serializer (include/sluice/sf.h).
 *
 * Input: one byte choosing the kind (Item, List, Dictionary; byte % 3) and
 * one choosing a node capacity, then the field value. Properties checked:
 *   - parsing never crashes; with SLUICE_SF_NODES_MAX(len) nodes it returns
 *     0, SLUICE_ESYNTAX or SLUICE_ETOOBIG, with fewer also SLUICE_ETRUNC;
 *   - a parse with a small capacity that succeeds equals the full parse;
 *   - round trip: serializing a successful parse gives a value that parses
 *     again to an equal structure and serializes to the same bytes.
 */
#include <stdlib.h>
#include <string.h>

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

	int rc = sluice_sf_parse(kind, in, len, nodes, cap, &res);
	check(rc == 0 || rc == SLUICE_ESYNTAX || rc == SLUICE_ETOOBIG);
	if (rc != 0) {
		check(res.error_offset <= len);
		free(nodes);
		return 0;
	}
	check(res.nodes <= cap);

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
