/*
 * policy.c - queries on a loaded policy: names, the route matcher, tier
 * numbers, override lookup, equality.
 *
 * Route matching. The rules form a trie over path segments (built by
 * parse_routes.c, flattened by parse_layout.c): each node is a pattern
 * prefix; its children are the literal segments that may follow (sorted,
 * binary searched) and at most one ":param" child; a node lists the rules
 * that end there and the rules that end with a final "*" segment there. A
 * request path is matched by a depth-first search that tries, at each node,
 * the literal child, then the param child, then the node's "*" rules, and
 * stops at the first rule whose method fits.
 *
 * Why the first hit is the most specific rule: specificity is the
 * lexicographic order of the patterns' segment kinds from the left
 * (literal < param < wildcard), and the search enumerates the trie paths
 * that fit the request in exactly that order. A rule ending at a node is
 * found only when the path has no segment left, where no other rule of that
 * subtree can match (every longer pattern needs another segment, and "*"
 * needs at least one). Within one node the terms are sorted with the exact
 * methods before "*", so an exact method beats "*" for the same pattern.
 *
 * Cost: the trie is a tree and the search never revisits a node, so a
 * lookup is bounded by the number of nodes (at most routes * segments + 1)
 * and, in practice, by the depth of the path times a binary search. No
 * allocation, no lock, no syscall; recursion depth <= SLUICE_POLICY_MAX_SEGMENTS.
 *
 * The trie is matched against the normalized path (normalize.c). A path
 * that normalizing would not change for matching purposes (no '%', no
 * segment starting with '.', no control byte, no upper case when folding)
 * is matched in place; any other is normalized into a stack buffer first.
 * Pattern literals are themselves in normal form (checked at load), so the
 * byte comparison of the trie is the comparison of normal forms.
 */
#include <string.h>

#include "policy/policy_internal.h"
#include "common/util_internal.h"

void sluice_policy_destroy(struct sluice_policy *policy)
{
	if (policy == NULL)
		return;
	policy->free_fn(policy->alloc_ctx, policy);
}

const struct sluice_policy_spec *sluice_policy_spec(const struct sluice_policy *policy)
{
	return policy == NULL ? NULL : &policy->spec;
}

static int index_of(const char *const *names, uint32_t n, const char *name)
{
	if (names == NULL || name == NULL)
		return SLUICE_EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return SLUICE_ENOTFOUND;
}

int sluice_policy_scope_index(const struct sluice_policy *policy, const char *name)
{
	if (policy == NULL)
		return SLUICE_EINVAL;
	if (policy->spec.scope_count == 0)
		return name == NULL ? SLUICE_EINVAL : SLUICE_ENOTFOUND;
	return index_of(policy->spec.scopes, policy->spec.scope_count, name);
}

int sluice_policy_class_index(const struct sluice_policy *policy, const char *name)
{
	if (policy == NULL)
		return SLUICE_EINVAL;
	return index_of(policy->spec.classes, policy->spec.class_count, name);
}

int sluice_policy_limit_index(const struct sluice_policy *policy, const char *name)
{
	if (policy == NULL || name == NULL)
		return SLUICE_EINVAL;
	for (uint32_t i = 0; i < policy->spec.limit_count; i++)
		if (strcmp(policy->spec.limits[i].name, name) == 0)
			return (int)i;
	return SLUICE_ENOTFOUND;
}

int sluice_policy_tier_index(const struct sluice_policy *policy, const char *name)
{
	if (policy == NULL || name == NULL)
		return SLUICE_EINVAL;
	for (uint32_t i = 0; i < policy->spec.tier_count; i++)
		if (strcmp(policy->spec.tiers[i].name, name) == 0)
			return (int)i;
	return SLUICE_ENOTFOUND;
}

/* ------------------------------------------------------------------------
 * Route matching
 * ------------------------------------------------------------------------ */

static inline char ascii_upper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* The id of a request method (ASCII case-insensitive), or a value that no
 * exact term carries (so only "*" terms match). */
static uint32_t method_id(const struct sluice_policy *p, const char *m, size_t len)
{
	for (uint32_t i = 0; i < p->method_count; i++) {
		if (p->method_lens[i] != len)
			continue;
		const char *u = p->methods[i];
		size_t k = 0;
		while (k < len && ascii_upper(m[k]) == u[k])
			k++;
		if (k == len)
			return i;
	}
	return SLUICE_POLICY_ANY_METHOD - 1;
}

#define NO_CLASS UINT32_MAX

/* Terms are sorted by method id with "*" (UINT32_MAX) last. */
static inline uint32_t pick_term(const struct sluice_policy *p, uint32_t first, uint32_t count,
				 uint32_t mid)
{
	for (uint32_t i = first; i < first + count; i++) {
		uint32_t t = p->terms[i].method_id;
		if (t == mid || t == SLUICE_POLICY_ANY_METHOD)
			return p->terms[i].class_id;
		if (t > mid)
			break;
	}
	/* "*" is last if present */
	if (count > 0 && p->terms[first + count - 1].method_id == SLUICE_POLICY_ANY_METHOD)
		return p->terms[first + count - 1].class_id;
	return NO_CLASS;
}

static uint32_t find_literal(const struct sluice_policy *p, const struct sluice__route_node *n,
			     const char *seg, size_t len)
{
	uint32_t lo = n->lit_first, hi = n->lit_first + n->lit_count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct sluice__route_node *c = &p->nodes[mid];
		int cmp = c->seg_len != len ? (c->seg_len < len ? -1 : 1) : memcmp(c->seg, seg, len);
		if (cmp == 0)
			return mid;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SLUICE__NODE_NONE;
}

static uint32_t match_node(const struct sluice_policy *p, uint32_t node, const char *s, const char *end,
			   uint32_t mid)
{
	const struct sluice__route_node *n = &p->nodes[node];

	while (s < end && *s == '/') /* empty segments do not count */
		s++;
	if (s == end)
		return n->term_count ? pick_term(p, n->term_first, n->term_count, mid) : NO_CLASS;
	const char *e = memchr(s, '/', (size_t)(end - s));
	if (e == NULL)
		e = end;
	if (n->lit_count > 0) {
		uint32_t c = find_literal(p, n, s, (size_t)(e - s));
		if (c != SLUICE__NODE_NONE) {
			uint32_t r = match_node(p, c, e, end, mid);
			if (r != NO_CLASS)
				return r;
		}
	}
	if (n->param_child != SLUICE__NODE_NONE) {
		uint32_t r = match_node(p, n->param_child, e, end, mid);
		if (r != NO_CLASS)
			return r;
	}
	return n->wild_count ? pick_term(p, n->wild_first, n->wild_count, mid) : NO_CLASS;
}

/* The rare path that needs rewriting: normalized into a stack buffer, out
 * of line so that the common case keeps a small frame. */
static __attribute__((noinline)) int match_normalized(const struct sluice_policy *policy, uint32_t mid, const char *path,
					    size_t n)
{
	char buf[SLUICE_POLICY_MAX_PATH];
	const char *norm = NULL;
	size_t len = 0;
	unsigned flags = policy->spec.route_fold_case ? SLUICE_PATH_FOLD_CASE : 0;
	int rc = sluice__path_normalize_bounded(path, n, flags, buf, &norm, &len);
	if (rc != SLUICE_OK)
		return rc; /* ESYNTAX */
	uint32_t c = match_node(policy, 0, norm, norm + len, mid);
	return c == NO_CLASS ? (int)SLUICE_POLICY_DEFAULT_CLASS : (int)c;
}

int sluice_policy_match(const struct sluice_policy *policy, const char *method, size_t method_len,
			const char *path, size_t path_len)
{
	if (SLUICE_UNLIKELY(policy == NULL || method == NULL || path == NULL || method_len == 0 ||
			    path_len == 0 || path[0] != '/'))
		return SLUICE_EINVAL;
	unsigned flags = policy->spec.route_fold_case ? SLUICE_PATH_FOLD_CASE : 0;
	bool normal;
	size_t n = sluice__path_scan(path, path_len, flags, &normal);
	if (SLUICE_UNLIKELY(n > SLUICE_POLICY_MAX_PATH))
		return SLUICE_ETOOBIG;
	uint32_t mid = method_id(policy, method, method_len);
	if (SLUICE_UNLIKELY(!normal))
		return match_normalized(policy, mid, path, n);
	const char *end = path + n;
	uint32_t c = match_node(policy, 0, path, end, mid);
	return c == NO_CLASS ? (int)SLUICE_POLICY_DEFAULT_CLASS : (int)c;
}

uint32_t sluice_policy_class_limits(const struct sluice_policy *policy, uint32_t class_id)
{
	if (policy == NULL || class_id >= policy->spec.class_count)
		return 0;
	return policy->class_limits[class_id];
}

/* ------------------------------------------------------------------------
 * Tiers and overrides
 * ------------------------------------------------------------------------ */

int sluice_policy_limit_numbers(const struct sluice_policy *policy, uint32_t limit, int tier,
				uint64_t *count, uint64_t *burst)
{
	if (policy == NULL || limit >= policy->spec.limit_count || tier < SLUICE_POLICY_NO_TIER ||
	    (tier >= 0 && (uint32_t)tier >= policy->spec.tier_count))
		return SLUICE_EINVAL;
	const struct sluice_policy_limit *l = &policy->spec.limits[limit];
	uint64_t c = l->count, b = l->burst;
	if (l->tiered && tier >= 0) {
		uint32_t m = policy->spec.tiers[tier].multiplier_milli;
		/* validated at load: >= 1 and <= SLUICE_POLICY_MAX_COUNT */
		c = (uint64_t)(((sluice__u128)c * m) / 1000);
		b = (uint64_t)(((sluice__u128)b * m) / 1000);
	}
	if (count != NULL)
		*count = c;
	if (burst != NULL)
		*burst = b;
	return SLUICE_OK;
}

static int override_key_cmp(const struct sluice_policy_override *o, uint32_t limit, uint32_t scope,
			    const void *key, size_t len)
{
	if (o->limit != limit)
		return o->limit < limit ? -1 : 1;
	if (o->scope != scope)
		return o->scope < scope ? -1 : 1;
	size_t n = SLUICE_MIN((size_t)o->key_len, len);
	int c = n ? memcmp(o->key, key, n) : 0;
	if (c != 0)
		return c;
	return o->key_len < len ? -1 : o->key_len > len;
}

int sluice_policy_override_find(const struct sluice_policy *policy, uint32_t limit, uint32_t scope,
				const void *key, size_t key_len, uint64_t now_ns)
{
	if (policy == NULL || (key == NULL && key_len > 0) || limit >= policy->spec.limit_count ||
	    scope >= policy->spec.scope_count)
		return SLUICE_EINVAL;
	uint32_t lo = 0, hi = policy->spec.override_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t idx = policy->override_order[mid];
		int cmp = override_key_cmp(&policy->spec.overrides[idx], limit, scope, key, key_len);
		if (cmp == 0)
			return now_ns < policy->spec.overrides[idx].expires_at_ns ? (int)idx : SLUICE_ENOTFOUND;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SLUICE_ENOTFOUND;
}

/* ------------------------------------------------------------------------
 * Equality
 * ------------------------------------------------------------------------ */

/* Two optional strings: both NULL, or equal. */
static bool str_equal(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static bool limit_equal(const struct sluice_policy_limit *a, const struct sluice_policy_limit *b)
{
	return strcmp(a->name, b->name) == 0 && a->kind == b->kind && a->reason == b->reason &&
	       a->warn_percent == b->warn_percent && a->per_class == b->per_class &&
	       a->all_classes == b->all_classes && a->tiered == b->tiered && a->scope_mask == b->scope_mask &&
	       a->class_mask == b->class_mask && a->count == b->count && a->period_ns == b->period_ns &&
	       a->burst == b->burst && a->retry_after_ns == b->retry_after_ns && a->lease_ns == b->lease_ns &&
	       a->dry_run == b->dry_run && str_equal(a->resource, b->resource) && a->unless_mask == b->unless_mask;
}

static bool custom_equal(const struct sluice_http_custom *a, const struct sluice_http_custom *b)
{
	return str_equal(a->limit, b->limit) && str_equal(a->remaining, b->remaining) &&
	       str_equal(a->reset, b->reset) && str_equal(a->used, b->used) &&
	       str_equal(a->resource, b->resource) && a->reset_form == b->reset_form;
}

/* Map i of a and map j of b: same file name, key scope and pairs, in
 * order (maps are compared by content: their numbering follows the order
 * of declaration, which the canonical text may change). */
static bool map_equal(const struct sluice_policy *a, uint32_t i, const struct sluice_policy *b, uint32_t j)
{
	const struct sluice_policy_map *m = &a->spec.maps[i], *n = &b->spec.maps[j];
	if (strcmp(m->path, n->path) != 0 || m->key_scope != n->key_scope || m->entry_count != n->entry_count)
		return false;
	for (uint32_t k = 0; k < m->entry_count; k++) {
		const struct sluice__map_entry *e = &a->maps[i].entries[k], *f = &b->maps[j].entries[k];
		if (e->key_len != f->key_len || e->value_len != f->value_len || e->aux != f->aux ||
		    memcmp(e->key, f->key, e->key_len) != 0 || memcmp(e->value, f->value, e->value_len) != 0)
			return false;
	}
	return true;
}

bool sluice_policy_equal(const struct sluice_policy *a, const struct sluice_policy *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	const struct sluice_policy_spec *x = &a->spec, *y = &b->spec;
	if (strcmp(x->name, y->name) != 0 || x->families != y->families ||
	    x->body != y->body || x->fail != y->fail ||
	    x->route_fold_case != y->route_fold_case ||
	    x->scope_count != y->scope_count || x->limit_count != y->limit_count ||
	    x->class_count != y->class_count || x->route_count != y->route_count ||
	    x->tier_count != y->tier_count || x->override_count != y->override_count ||
	    x->describe != y->describe || x->dry_run_mask != y->dry_run_mask ||
	    !custom_equal(&x->custom, &y->custom) || !str_equal(x->dry_run_header, y->dry_run_header))
		return false;
	for (uint32_t i = 0; i < SLUICE_POLICY_ANSWER_COUNT; i++) {
		const struct sluice_policy_answer *p = &x->answers[i], *q = &y->answers[i];
		if (p->status != q->status)
			return false;
		if (p->status != 0 && (p->body_len != q->body_len || strcmp(p->content_type, q->content_type) != 0 ||
				       memcmp(p->body, q->body, p->body_len) != 0))
			return false;
	}
	for (uint32_t i = 0; i < x->scope_count; i++) {
		const struct sluice_policy_scope_rule *r = &x->scope_rules[i], *q = &y->scope_rules[i];
		if (strcmp(x->scopes[i], y->scopes[i]) != 0 || r->rule != q->rule || r->source != q->source ||
		    r->rule_declared != q->rule_declared || r->source_declared != q->source_declared ||
		    r->fallback != q->fallback || r->map_key != q->map_key || strcmp(r->name, q->name) != 0 ||
		    (r->source == SLUICE_POLICY_SOURCE_MAP && !map_equal(a, r->map, b, q->map)))
			return false;
	}
	if (x->proxy_count != y->proxy_count ||
	    (x->proxy_count != 0 && memcmp(x->proxies, y->proxies, x->proxy_count * sizeof *x->proxies) != 0))
		return false;
	if (x->map_count != y->map_count || (x->tier_map == UINT32_MAX) != (y->tier_map == UINT32_MAX) ||
	    (x->tier_map != UINT32_MAX && !map_equal(a, x->tier_map, b, y->tier_map)))
		return false;
	for (uint32_t i = 0; i < x->class_count; i++)
		if (strcmp(x->classes[i], y->classes[i]) != 0)
			return false;
	for (uint32_t i = 0; i < x->limit_count; i++)
		if (!limit_equal(&x->limits[i], &y->limits[i]))
			return false;
	for (uint32_t i = 0; i < x->route_count; i++)
		if (strcmp(x->routes[i].method, y->routes[i].method) != 0 ||
		    strcmp(x->routes[i].pattern, y->routes[i].pattern) != 0 ||
		    x->routes[i].class_id != y->routes[i].class_id)
			return false;
	for (uint32_t i = 0; i < x->tier_count; i++)
		if (strcmp(x->tiers[i].name, y->tiers[i].name) != 0 ||
		    x->tiers[i].multiplier_milli != y->tiers[i].multiplier_milli)
			return false;
	for (uint32_t i = 0; i < x->override_count; i++) {
		const struct sluice_policy_override *o = &x->overrides[i], *q = &y->overrides[i];
		if (o->limit != q->limit || o->scope != q->scope || o->key_len != q->key_len ||
		    memcmp(o->key, q->key, o->key_len) != 0 || o->count != q->count ||
		    o->burst != q->burst || o->expires_at_ns != q->expires_at_ns)
			return false;
	}
	return true;
}

int sluice_policy_map_find(const struct sluice_policy *policy, uint32_t map, const void *key, size_t key_len,
			   const char **value, size_t *value_len)
{
	if (policy == NULL || map >= policy->spec.map_count || (key == NULL && key_len > 0) || value == NULL)
		return SLUICE_EINVAL;
	const struct sluice__map_entry *e = sluice__map_lookup(&policy->maps[map], key != NULL ? key : "", key_len);
	if (e == NULL)
		return SLUICE_ENOTFOUND;
	*value = e->value;
	if (value_len != NULL)
		*value_len = e->value_len;
	return SLUICE_OK;
}
