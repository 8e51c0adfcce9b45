/*
 * policy_parse.c - sluice_policy_parse(): the policy text format into the immutable struct
 * sluice_policy.
 *
 * The text is read line by line (ending in \n or \r\n; a stray \r or a NUL
 * is an error); each line is tokenized (parse_lex.c) and its directive
 * parsed (parse_directives.c, parse_routes.c) into a scratch builder. The
 * builder is one allocation whose arrays are sized before parsing by bounds
 * the text proves (lines, '/' bytes) and capped by the ceilings in policy.h,
 * so nothing can make it grow.
 *
 * Once the whole text is read, finish() makes the checks that need all of it
 * (every tiered limit times every tier, the normal form of the route
 * patterns, the limit "describe=" names); the overrides are sorted for lookup, and parse_layout.c
 * computes the exact size of the final policy, which is allocated in one
 * piece, filled, and the builder freed. Every loop is bounded by the input
 * length or a ceiling.
 */
#include <stdlib.h>
#include <string.h>

#include <sluice/gcra.h>

#include "policy/parse_internal.h"
#include "common/util_internal.h"

/* Checks that need the whole text: tiers apply to limits declared anywhere. */
static int finish(struct parser *p)
{
	struct builder *b = p->b;

	if (!b->seen_policy)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, 1, "expected 'policy \"name\"' as the first directive");
	if (b->nlimits == 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, 1, "a policy needs at least one 'limit'");
	int rc = sluice__parse_check_patterns(p);
	if (rc != SLUICE_OK)
		return rc;
	b->describe = b->describe_kind == DESCRIBE_TIGHTEST ? SLUICE_POLICY_DESCRIBE_TIGHTEST
							   : SLUICE_POLICY_DESCRIBE_GOVERNING;
	if (b->describe_kind == DESCRIBE_NAMED) {
		uint32_t i = 0;
		while (i < b->nlimits && strcmp(b->limits[i].name, b->describe_name) != 0)
			i++;
		p->line = b->describe_line;
		if (i == b->nlimits)
			return sluice__parse_fail(p, SLUICE_ENOTFOUND, b->describe_col,
						  "'describe=' names no limit: '%s'", b->describe_name);
		if (b->limits[i].l.kind == SLUICE_POLICY_KIND_CONCURRENCY)
			return sluice__parse_fail(p, SLUICE_EINVAL, b->describe_col,
						  "'describe=' names concurrency limit '%s': headers describe a quota",
						  b->describe_name);
		b->describe = i;
	}
	for (uint32_t i = 0; i < b->nlimits && b->dry_run_all; i++)
		b->limits[i].l.dry_run = true; /* "dry-run all" */
	for (uint32_t i = 0; i < b->nlimits; i++) {
		const struct sluice_policy_limit *l = &b->limits[i].l;
		if (!l->tiered)
			continue;
		for (uint32_t t = 0; t < b->ntiers; t++) {
			uint64_t c = (uint64_t)(((sluice__u128)l->count * b->tiers[t].milli) / 1000);
			uint64_t bu = (uint64_t)(((sluice__u128)l->burst * b->tiers[t].milli) / 1000);
			struct sluice_rate rate;
			p->line = l->line;
			if (c == 0 || bu == 0)
				return sluice__parse_fail(p, SLUICE_ERANGE, 1,
							  "limit '%s' times tier '%s' (line %u) rounds down to 0",
							  b->limits[i].name, b->tiers[t].name, b->tiers[t].line);
			if (c > SLUICE_POLICY_MAX_COUNT || bu > SLUICE_POLICY_MAX_COUNT ||
			    (l->kind == SLUICE_POLICY_KIND_GCRA &&
			     sluice_rate_init(&rate, c, l->period_ns, bu) != SLUICE_OK))
				return sluice__parse_fail(p, SLUICE_ERANGE, 1,
							  "limit '%s' times tier '%s' (line %u) is out of range",
							  b->limits[i].name, b->tiers[t].name, b->tiers[t].line);
		}
	}
	return SLUICE_OK;
}

static int override_cmp(const struct boverride *a, const struct boverride *b)
{
	if (a->o.limit != b->o.limit)
		return a->o.limit < b->o.limit ? -1 : 1;
	if (a->o.scope != b->o.scope)
		return a->o.scope < b->o.scope ? -1 : 1;
	uint32_t n = SLUICE_MIN(a->o.key_len, b->o.key_len);
	int c = memcmp(a->key, b->key, n);
	if (c != 0)
		return c;
	return a->o.key_len < b->o.key_len ? -1 : a->o.key_len > b->o.key_len;
}

static void *default_alloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size);
}

static void default_free(void *ctx, void *ptr)
{
	(void)ctx;
	free(ptr);
}

static size_t align_up(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

/* Bytes of a builder with these capacities (all arrays in one block). */
static size_t scratch_bytes(uint32_t routes, uint32_t overrides, uint32_t nodes)
{
	return align_up(sizeof(struct builder)) + align_up(routes * sizeof(struct broute)) +
	       align_up(routes * sizeof(struct bterm)) + align_up(overrides * sizeof(struct boverride)) +
	       align_up(nodes * sizeof(struct bnode)) + (size_t)(overrides + nodes) * sizeof(uint32_t);
}

/*
 * Capacities the text can need: every route and override is a line of its
 * own, every trie node but the root is a path segment, which starts after a
 * '/' of its own. So small policies get a small scratch block; no input
 * gets more than the ceilings allow (about 300 KB).
 */
static void scratch_caps(const char *text, size_t len, uint32_t *routes, uint32_t *overrides, uint32_t *nodes)
{
	size_t lines = 1, slashes = 0;
	for (size_t i = 0; i < len; i++) {
		lines += text[i] == '\n';
		slashes += text[i] == '/';
	}
	*routes = (uint32_t)SLUICE_MIN(lines, (size_t)SLUICE_POLICY_MAX_ROUTES);
	*overrides = (uint32_t)SLUICE_MIN(lines, (size_t)SLUICE_POLICY_MAX_OVERRIDES);
	*nodes = (uint32_t)SLUICE_MIN(slashes + 1, (size_t)MAX_NODES);
}

static int run(struct parser *p, const char *text, size_t len)
{
	size_t i = 0;
	int rc;

	p->line = 0;
	while (i < len) {
		size_t start = i;
		while (i < len && text[i] != '\n')
			i++;
		size_t end = i;
		if (i < len)
			i++; /* the '\n' */
		p->line++;
		if (end > start && text[end - 1] == '\r')
			end--;
		for (size_t k = start; k < end; k++)
			if (text[k] == '\r' || text[k] == '\0')
				return sluice__parse_fail(
					p, SLUICE_ESYNTAX, (uint32_t)(k - start + 1),
					text[k] ? "stray carriage return (lines end with \\n or \\r\\n)"
						: "NUL byte in the text");
		if ((rc = sluice__parse_tokenize(p, text + start, (uint32_t)(end - start))) != SLUICE_OK)
			return rc;
		if (p->nw == 0)
			continue;
		if ((rc = sluice__parse_directive(p)) != SLUICE_OK)
			return rc;
	}
	p->line = p->line == 0 ? 1 : p->line;
	return finish(p);
}

int sluice_policy_parse(const char *text, size_t len, const struct sluice_policy_options *options,
			struct sluice_policy **out, struct sluice_policy_error *err)
{
	struct parser p;
	void *(*alloc_fn)(void *, size_t) = default_alloc;
	void (*free_fn)(void *, void *) = default_free;
	void *ctx = NULL;
	size_t max_bytes = 0;

	memset(&p, 0, sizeof(p));
	p.err = err;
	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if (out != NULL)
		*out = NULL;
	if (text == NULL || out == NULL)
		return sluice__parse_fail(&p, SLUICE_EINVAL, 0, "NULL text or output pointer");
	if (options != NULL) {
		if (options->size < sizeof(size_t) || options->size > sizeof(*options))
			return sluice__parse_fail(&p, SLUICE_EINVAL, 0,
						  "options->size must be sizeof(struct sluice_policy_options)");
		/* fields beyond options->size keep their defaults */
		struct sluice_policy_options o;
		memset(&o, 0, sizeof(o));
		memcpy(&o, options, SLUICE_MIN(options->size, sizeof(o)));
		if ((o.alloc == NULL) != (o.free == NULL))
			return sluice__parse_fail(&p, SLUICE_EINVAL, 0, "set both alloc and free, or neither");
		if (o.alloc != NULL) {
			alloc_fn = o.alloc;
			free_fn = o.free;
			ctx = o.alloc_ctx;
		}
		max_bytes = o.max_bytes;
	}
	if (len > SLUICE_POLICY_MAX_INPUT)
		return sluice__parse_fail(&p, SLUICE_ETOOBIG, 0, "policy text longer than %u bytes",
					  SLUICE_POLICY_MAX_INPUT);

	uint32_t cap_routes, cap_overrides, cap_nodes;
	scratch_caps(text, len, &cap_routes, &cap_overrides, &cap_nodes);
	size_t scratch = scratch_bytes(cap_routes, cap_overrides, cap_nodes);
	char *block = alloc_fn(ctx, scratch);
	if (block == NULL)
		return sluice__parse_fail(&p, SLUICE_ENOMEM, 0, "out of memory (scratch builder, %zu bytes)", scratch);
	struct builder *b = (struct builder *)block;
	/* only the counters and the root need clearing; arrays fill as they grow */
	memset(b, 0, offsetof(struct builder, scopes));
	b->cap_routes = cap_routes;
	b->cap_overrides = cap_overrides;
	b->cap_nodes = cap_nodes;
	size_t off = align_up(sizeof(struct builder));
	b->routes = (struct broute *)(block + off);
	off += align_up(cap_routes * sizeof(struct broute));
	b->terms = (struct bterm *)(block + off);
	off += align_up(cap_routes * sizeof(struct bterm));
	b->overrides = (struct boverride *)(block + off);
	off += align_up(cap_overrides * sizeof(struct boverride));
	b->nodes = (struct bnode *)(block + off);
	off += align_up(cap_nodes * sizeof(struct bnode));
	b->order = (uint32_t *)(block + off);
	b->families = SLUICE_HTTP_RETRY_AFTER;
	b->body = SLUICE_HTTP_BODY_EMPTY;
	b->nclasses = 1;
	strcpy(b->classes[0], "default");
	b->nnodes = 1;
	memset(&b->nodes[0], 0, sizeof(b->nodes[0]));
	b->nodes[0].first_child = b->nodes[0].next_sibling = b->nodes[0].param_child = SLUICE__NODE_NONE;
	b->nodes[0].term_head = b->nodes[0].wild_head = SLUICE__NODE_NONE;
	p.b = b;

	int rc = run(&p, text, len);
	if (rc != SLUICE_OK) {
		free_fn(ctx, block);
		return rc;
	}

	/* override lookup order (insertion sort: at most 256 entries) */
	for (uint32_t i = 0; i < b->noverrides; i++) {
		uint32_t k = i;
		while (k > 0 && override_cmp(&b->overrides[b->order[k - 1]], &b->overrides[i]) > 0) {
			b->order[k] = b->order[k - 1];
			k--;
		}
		b->order[k] = i;
	}

	struct carve c = {NULL, 0};
	struct sluice_policy *pol;
	sluice__parse_layout(b, &c, &pol, b->order);
	size_t bytes = c.used;
	/* The errors below have no position in the text (policy.h): the
	 * parser's line counter has run to the end of the input by now. */
	p.line = 0;
	if (max_bytes != 0 && bytes > max_bytes) {
		free_fn(ctx, block);
		return sluice__parse_fail(&p, SLUICE_ETOOBIG, 0, "policy needs %zu bytes, more than max_bytes (%zu)",
					  bytes, max_bytes);
	}
	c.base = alloc_fn(ctx, bytes);
	if (c.base == NULL) {
		free_fn(ctx, block);
		return sluice__parse_fail(&p, SLUICE_ENOMEM, 0, "out of memory (policy, %zu bytes)", bytes);
	}
	memset(c.base, 0, bytes);
	c.used = 0;
	sluice__parse_layout(b, &c, &pol, b->order);
	pol->free_fn = free_fn;
	pol->alloc_ctx = ctx;
	pol->bytes = bytes;
	free_fn(ctx, block);
	*out = pol;
	return SLUICE_OK;
}
