/*
 * parse_layout.c - the compilation of a valid builder into the immutable struct
 * sluice_policy, one allocation.
 *
 * sluice__parse_layout() runs twice over the same builder: a dry run that
 * only adds up sizes and alignments (c->base NULL), then, once a block of
 * exactly that size is allocated, the run that carves it and copies
 * everything in. The layout is a pure function of the builder, so both runs
 * agree and the block has no slack.
 *
 * The route trie is flattened breadth first, so that the literal children of
 * every node are contiguous and sorted by (length, bytes), which is what the
 * matcher's binary search needs (policy.c); a node's terms list exact
 * methods by id, then '*'.
 */
#include <string.h>

#include "policy/parse_internal.h"

#define take sluice__parse_take
#define take_str sluice__parse_take_str

/* Literal children order: by length, then bytes (what the matcher searches). */
static int seg_cmp(const struct bnode *a, const struct bnode *b)
{
	if (a->seg_len != b->seg_len)
		return a->seg_len < b->seg_len ? -1 : 1;
	return memcmp(a->seg, b->seg, a->seg_len);
}

void *sluice__parse_take(struct carve *c, size_t size, size_t align)
{
	c->used = (c->used + align - 1) & ~(align - 1);
	void *ptr = c->base == NULL ? NULL : c->base + c->used;
	c->used += size;
	return ptr;
}

const char *sluice__parse_take_str(struct carve *c, const char *s, size_t len)
{
	char *d = take(c, len + 1, 1);
	if (d != NULL) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

static int term_cmp_method(uint32_t a, uint32_t b)
{
	/* exact methods first (by id), "*" last */
	return a < b ? -1 : a > b;
}

/*
 * Lay the policy out in c (dry run when c->base is NULL: only sizes). The
 * layout is a pure function of the builder, so both runs agree.
 */
void sluice__parse_layout(struct builder *b, struct carve *c, struct sluice_policy **out, uint32_t *order)
{
	struct sluice_policy *pol = take(c, sizeof(*pol), _Alignof(struct sluice_policy));
	const char **scopes = take(c, sizeof(char *) * b->nscopes, _Alignof(char *));
	struct sluice_policy_limit *limits =
		take(c, sizeof(*limits) * b->nlimits, _Alignof(struct sluice_policy_limit));
	const char **classes = take(c, sizeof(char *) * b->nclasses, _Alignof(char *));
	struct sluice_policy_route *routes =
		take(c, sizeof(*routes) * b->nroutes, _Alignof(struct sluice_policy_route));
	struct sluice_policy_tier *tiers = take(c, sizeof(*tiers) * b->ntiers, _Alignof(struct sluice_policy_tier));
	struct sluice_policy_override *ovr =
		take(c, sizeof(*ovr) * b->noverrides, _Alignof(struct sluice_policy_override));
	uint32_t *ovr_order = take(c, sizeof(uint32_t) * b->noverrides, _Alignof(uint32_t));
	struct sluice__route_node *nodes =
		take(c, sizeof(*nodes) * b->nnodes, _Alignof(struct sluice__route_node));
	struct sluice__route_term *terms =
		take(c, sizeof(*terms) * b->nterms, _Alignof(struct sluice__route_term));
	const char **methods = take(c, sizeof(char *) * b->nmethods, _Alignof(char *));
	uint8_t *method_lens = take(c, b->nmethods, 1);

	const char *title = take_str(c, b->title, strlen(b->title));
	struct sluice_policy_answer answers[SLUICE_POLICY_ANSWER_COUNT] = {{0}};
	/* A policy that declares no "answer identity" refuses a request
	 * without a required identity with 401 and this body (line 0: not
	 * declared; the printer leaves it out). */
	static const char identity_body[] = "{{\"error\":{{\"code\":\"identity_required\",\"scope\":\"{scope}\"}}}}";
	const struct banswer identity_default = {
		.status = 401,
		.type = "application/json",
		.type_len = 16,
		.json = true,
		.body_len = sizeof identity_body - 1,
		.body_src = identity_body,
		.body_src_len = sizeof identity_body - 1,
	};
	for (uint32_t i = 0; i < SLUICE_POLICY_ANSWER_COUNT; i++) {
		const struct banswer *a = &b->answers[i];
		if (a->status == 0 && i == SLUICE_POLICY_ANSWER_IDENTITY)
			a = &identity_default;
		if (a->status == 0)
			continue;
		answers[i].status = a->status;
		answers[i].json_escape = a->json;
		answers[i].line = a->line;
		answers[i].body_len = a->body_len;
		answers[i].content_type = take_str(c, a->type, a->type_len);
		char *body = take(c, a->body_len + 1, 1);
		if (body != NULL) {
			sluice__parse_decode_string(a->body_src, a->body_src_len, body);
			body[a->body_len] = '\0';
		}
		answers[i].body = body;
	}
	for (uint32_t i = 0; i < b->nscopes; i++) {
		const char *s = take_str(c, b->scopes[i], strlen(b->scopes[i]));
		if (scopes != NULL)
			scopes[i] = s;
	}
	for (uint32_t i = 0; i < b->nclasses; i++) {
		const char *s = take_str(c, b->classes[i], strlen(b->classes[i]));
		if (classes != NULL)
			classes[i] = s;
	}
	for (uint32_t i = 0; i < b->nlimits; i++) {
		const char *s = take_str(c, b->limits[i].name, strlen(b->limits[i].name));
		const char *res = NULL;
		if (b->limits[i].resource[0] != '\0')
			res = take_str(c, b->limits[i].resource, strlen(b->limits[i].resource));
		if (limits != NULL) {
			limits[i] = b->limits[i].l;
			limits[i].name = s;
			limits[i].resource = res;
		}
	}
	/* "headers custom" names and the dry-run header: NULL when not given */
	const char *custom[CUSTOM_FIELDS] = {NULL};
	for (uint32_t i = 0; i < CUSTOM_FIELDS; i++)
		if (b->custom[i][0] != '\0')
			custom[i] = take_str(c, b->custom[i], strlen(b->custom[i]));
	const char *dry_run_header = NULL;
	if (b->dry_run_header[0] != '\0')
		dry_run_header = take_str(c, b->dry_run_header, strlen(b->dry_run_header));
	for (uint32_t i = 0; i < b->nroutes; i++) {
		const char *m = take_str(c, b->routes[i].method, b->routes[i].method_len);
		const char *pat = take_str(c, b->routes[i].pattern, b->routes[i].pattern_len);
		if (routes != NULL) {
			routes[i].method = m;
			routes[i].pattern = pat;
			routes[i].class_id = b->routes[i].class_id;
			routes[i].line = b->routes[i].line;
		}
	}
	for (uint32_t i = 0; i < b->ntiers; i++) {
		const char *s = take_str(c, b->tiers[i].name, strlen(b->tiers[i].name));
		if (tiers != NULL) {
			tiers[i].name = s;
			tiers[i].multiplier_milli = b->tiers[i].milli;
		}
	}
	for (uint32_t i = 0; i < b->noverrides; i++) {
		uint8_t *k = take(c, b->overrides[i].o.key_len, 1);
		if (ovr != NULL) {
			memcpy(k, b->overrides[i].key, b->overrides[i].o.key_len);
			ovr[i] = b->overrides[i].o;
			ovr[i].key = k;
			ovr_order[i] = order[i];
		}
	}
	for (uint32_t i = 0; i < b->nmethods; i++) {
		const char *s = take_str(c, b->methods[i], strlen(b->methods[i]));
		if (methods != NULL) {
			methods[i] = s;
			method_lens[i] = (uint8_t)strlen(s);
		}
	}
	/* Literal segment texts, in final node order (filled below). */
	char *segs = take(c, 0, 1);
	size_t seg_bytes = 0;
	for (uint32_t i = 0; i < b->nnodes; i++)
		seg_bytes += b->nodes[i].seg_len;
	take(c, seg_bytes, 1);
	sluice__parse_layout_identity(b, c, pol);

	if (pol == NULL) {
		*out = NULL;
		return;
	}

	/*
	 * Flatten the trie breadth first. queue[] holds builder node ids in
	 * final order; for each dequeued node its literal children (sorted) and
	 * then its param child receive the next final indices.
	 */
	uint32_t *queue = order + b->noverrides; /* scratch after the override order */
	uint32_t head = 0, tail = 0, next_term = 0;
	size_t seg_used = 0;
	queue[tail++] = 0;
	b->nodes[0].final_index = 0;
	while (head < tail) {
		uint32_t u = queue[head++];
		struct bnode *bn = &b->nodes[u];
		struct sluice__route_node *n = &nodes[bn->final_index];
		if (bn->seg_len > 0) {
			memcpy(segs + seg_used, bn->seg, bn->seg_len);
			n->seg = segs + seg_used;
			seg_used += bn->seg_len;
		} else {
			n->seg = NULL;
		}
		n->seg_len = bn->seg_len;
		/* literal children: insertion sort into the queue */
		n->lit_first = tail;
		n->lit_count = 0;
		for (uint32_t ch = bn->first_child; ch != SLUICE__NODE_NONE; ch = b->nodes[ch].next_sibling) {
			uint32_t k = tail + n->lit_count;
			while (k > tail && seg_cmp(&b->nodes[queue[k - 1]], &b->nodes[ch]) > 0) {
				queue[k] = queue[k - 1];
				k--;
			}
			queue[k] = ch;
			n->lit_count++;
		}
		for (uint32_t k = 0; k < n->lit_count; k++)
			b->nodes[queue[tail + k]].final_index = tail + k;
		tail += n->lit_count;
		if (bn->param_child != SLUICE__NODE_NONE) {
			n->param_child = tail;
			b->nodes[bn->param_child].final_index = tail;
			queue[tail++] = bn->param_child;
		} else {
			n->param_child = SLUICE__NODE_NONE;
		}
		/* terms, exact methods by id then "*" */
		for (int wild = 0; wild < 2; wild++) {
			uint32_t first = next_term, count = 0;
			for (uint32_t t = wild ? bn->wild_head : bn->term_head; t != SLUICE__NODE_NONE;
			     t = b->terms[t].next) {
				uint32_t k = first + count;
				struct sluice__route_term nt = {b->terms[t].method_id, b->terms[t].class_id};
				while (k > first && term_cmp_method(terms[k - 1].method_id, nt.method_id) > 0) {
					terms[k] = terms[k - 1];
					k--;
				}
				terms[k] = nt;
				count++;
			}
			next_term += count;
			if (wild) {
				n->wild_first = first;
				n->wild_count = count;
			} else {
				n->term_first = first;
				n->term_count = count;
			}
		}
	}

	pol->spec.name = title;
	pol->spec.families = b->families;
	pol->spec.body = b->body;
	memcpy(pol->spec.answers, answers, sizeof answers);
	pol->spec.describe = b->describe;
	pol->spec.custom = (struct sluice_http_custom){
		.limit = custom[CUSTOM_LIMIT],
		.remaining = custom[CUSTOM_REMAINING],
		.reset = custom[CUSTOM_RESET],
		.used = custom[CUSTOM_USED],
		.resource = custom[CUSTOM_RESOURCE],
		.reset_form = b->custom_reset_form,
	};
	pol->spec.dry_run_header = dry_run_header;
	for (uint32_t i = 0; i < b->nlimits; i++)
		if (b->limits[i].l.dry_run)
			pol->spec.dry_run_mask |= 1u << i;
	for (uint32_t i = 0; i < b->nlimits; i++)
		if (b->limits[i].l.unless_mask != 0)
			pol->spec.unless_limits |= 1u << i;
	pol->spec.fail = b->fail;
	pol->spec.route_fold_case = b->fold_case;
	pol->spec.scope_count = b->nscopes;
	pol->spec.limit_count = b->nlimits;
	pol->spec.class_count = b->nclasses;
	pol->spec.route_count = b->nroutes;
	pol->spec.tier_count = b->ntiers;
	pol->spec.override_count = b->noverrides;
	pol->spec.scopes = scopes;
	pol->spec.limits = limits;
	pol->spec.classes = classes;
	pol->spec.routes = routes;
	pol->spec.tiers = tiers;
	pol->spec.overrides = ovr;
	pol->nodes = nodes;
	pol->terms = terms;
	pol->node_count = b->nnodes;
	pol->term_count = b->nterms;
	pol->method_count = b->nmethods;
	pol->methods = methods;
	pol->method_lens = method_lens;
	pol->override_order = ovr_order;
	for (uint32_t k = 0; k < b->nclasses; k++)
		for (uint32_t i = 0; i < b->nlimits; i++)
			if (b->limits[i].l.all_classes || (b->limits[i].l.class_mask >> k) & 1)
				pol->class_limits[k] |= 1u << i;
	*out = pol;
}
