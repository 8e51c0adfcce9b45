/*
 * parse_routes.c - endpoint classes and their routes.
 *
 * 'class NAME [match METHOD PATTERN]' declares a class and maps a route to
 * it: the method is interned (distinct methods get ids; '*' is any method)
 * and the pattern is inserted into the builder's route trie, one node per
 * distinct pattern prefix, literal children in a sibling list and at most
 * one ':param' child; the rule lands in the term list of the node where the
 * pattern ends, or in its wild list for a final '*', and a second rule for
 * the same method and pattern is refused there. The node array is sized by
 * the '/' bytes of the text (a node per '/'), so an insert never runs out of
 * room.
 *
 * A literal segment must already be in the normal form request paths are
 * matched in (normalize.c), or no request could match it. That check waits
 * until the whole text is read (sluice__parse_check_patterns), since 'routes
 * case-insensitive' may come after the routes.
 */
#include <string.h>

#include "policy/parse_internal.h"

/* Intern a route method; SLUICE_POLICY_ANY_METHOD for "*". */
static int method_word(struct parser *p, const struct word *w, struct broute *r)
{
	struct builder *b = p->b;

	if (w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected a method (GET, POST, ... or *)");
	if (w->len == 1 && w->s[0] == '*') {
		r->method_id = SLUICE_POLICY_ANY_METHOD;
		r->method = w->s;
		r->method_len = 1;
		return SLUICE_OK;
	}
	if (w->len > SLUICE_POLICY_MAX_METHOD_LEN)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "method longer than %d bytes",
					  SLUICE_POLICY_MAX_METHOD_LEN);
	for (uint32_t i = 0; i < w->len; i++) {
		char c = w->s[i];
		if (!((c >= 'A' && c <= 'Z') || (i > 0 && (is_digit(c) || c == '-' || c == '_'))))
			return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + i,
						  "expected a method in upper case (GET, POST, ... or *)");
	}
	r->method = w->s;
	r->method_len = w->len;
	for (uint32_t i = 0; i < b->nmethods; i++) {
		if (strlen(b->methods[i]) == w->len && memcmp(b->methods[i], w->s, w->len) == 0) {
			r->method_id = i;
			return SLUICE_OK;
		}
	}
	if (b->nmethods == SLUICE_POLICY_MAX_METHODS)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "more than %d distinct methods",
					  SLUICE_POLICY_MAX_METHODS);
	memcpy(b->methods[b->nmethods], w->s, w->len);
	b->methods[b->nmethods][w->len] = '\0';
	r->method_id = b->nmethods++;
	return SLUICE_OK;
}

/*
 * Validate a pattern: "/" alone, or { "/" segment } where a segment is a
 * literal (visible ASCII except ':' first, '*', '?', '#'), ":" name, or a
 * final "*". Inserts it into the trie with its term.
 */
static int pattern_word(struct parser *p, const struct word *w, struct broute *r)
{
	struct builder *b = p->b;
	uint32_t node = 0, nseg = 0;
	bool wild = false;

	if (w->quoted || w->len == 0 || w->s[0] != '/')
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected a path pattern starting with '/'");
	if (w->len > SLUICE_POLICY_MAX_PATTERN)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "path pattern longer than %d bytes",
					  SLUICE_POLICY_MAX_PATTERN);
	r->pattern = w->s;
	r->pattern_len = w->len;
	r->col = w->col;
	const char *s = w->s;
	uint32_t i = 1;
	if (w->len == 1)
		goto insert; /* the root */
	while (i <= w->len) {
		uint32_t start = i;
		while (i < w->len && s[i] != '/')
			i++;
		uint32_t seg_len = i - start;
		uint32_t col = w->col + start;
		if (seg_len == 0)
			return sluice__parse_fail(p, SLUICE_ESYNTAX, col,
						  i == w->len
							  ? "trailing '/' (paths match with or without it): remove it"
							  : "empty segment '//' in a path pattern");
		if (wild)
			return sluice__parse_fail(p, SLUICE_ESYNTAX, col - 1, "'*' must be the last segment");
		if (++nseg > SLUICE_POLICY_MAX_SEGMENTS)
			return sluice__parse_fail(p, SLUICE_ETOOBIG, col, "more than %d segments in a path pattern",
						  SLUICE_POLICY_MAX_SEGMENTS);
		for (uint32_t k = start; k < i; k++)
			if (s[k] == '?' || s[k] == '#' || (s[k] == '*' && seg_len != 1) ||
			    (s[k] == ':' && k != start))
				return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + k,
							  "unexpected '%c' in a path segment", s[k]);
		if (seg_len == 1 && s[start] == '*') {
			wild = true;
		} else if (s[start] == ':') {
			int rc = sluice__parse_check_name(p, s + start + 1, seg_len - 1, col + 1, "a parameter name");
			if (rc != SLUICE_OK)
				return rc;
			if (b->nodes[node].param_child == SLUICE__NODE_NONE) {
				if (b->nnodes == b->cap_nodes) /* unreachable: one '/' per node */
					return sluice__parse_fail(p, SLUICE_ETOOBIG, col, "too many path segments");
				uint32_t n = b->nnodes++;
				memset(&b->nodes[n], 0, sizeof(b->nodes[n]));
				b->nodes[n].first_child = b->nodes[n].next_sibling = SLUICE__NODE_NONE;
				b->nodes[n].param_child = SLUICE__NODE_NONE;
				b->nodes[n].term_head = b->nodes[n].wild_head = SLUICE__NODE_NONE;
				b->nodes[node].param_child = n;
			}
			node = b->nodes[node].param_child;
		} else {
			uint32_t c = b->nodes[node].first_child;
			while (c != SLUICE__NODE_NONE &&
			       !(b->nodes[c].seg_len == seg_len && memcmp(b->nodes[c].seg, s + start, seg_len) == 0))
				c = b->nodes[c].next_sibling;
			if (c == SLUICE__NODE_NONE) {
				if (b->nnodes == b->cap_nodes) /* unreachable: one '/' per node */
					return sluice__parse_fail(p, SLUICE_ETOOBIG, col, "too many path segments");
				c = b->nnodes++;
				memset(&b->nodes[c], 0, sizeof(b->nodes[c]));
				b->nodes[c].first_child = SLUICE__NODE_NONE;
				b->nodes[c].param_child = SLUICE__NODE_NONE;
				b->nodes[c].term_head = b->nodes[c].wild_head = SLUICE__NODE_NONE;
				b->nodes[c].seg = s + start;
				b->nodes[c].seg_len = seg_len;
				b->nodes[c].next_sibling = b->nodes[node].first_child;
				b->nodes[node].first_child = c;
			}
			node = c;
		}
		i++; /* past the '/' (or the end) */
	}
insert:;
	uint32_t *head = wild ? &b->nodes[node].wild_head : &b->nodes[node].term_head;
	for (uint32_t t = *head; t != SLUICE__NODE_NONE; t = b->terms[t].next)
		if (b->terms[t].method_id == r->method_id)
			return sluice__parse_fail(p, SLUICE_EINVAL, w->col,
						  "duplicate route: %.*s %.*s already maps to a class on line %u",
						  (int)r->method_len, r->method, (int)r->pattern_len, r->pattern,
						  b->terms[t].line);
	uint32_t t = b->nterms++;
	b->terms[t].next = *head;
	b->terms[t].method_id = r->method_id;
	b->terms[t].class_id = r->class_id;
	b->terms[t].line = p->line;
	*head = t;
	return SLUICE_OK;
}

/* "routes" ("case-insensitive" | "case-sensitive"): how paths compare. */
int sluice__parse_d_routes(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if (b->seen_routes)
		return sluice__parse_fail(p, SLUICE_EINVAL, p->w[0].col, "second 'routes' directive");
	if ((rc = sluice__parse_next_word(p, "case-insensitive or case-sensitive", &w)) != SLUICE_OK)
		return rc;
	if (sluice__parse_word_is(w, "case-insensitive"))
		b->fold_case = true;
	else if (sluice__parse_word_is(w, "case-sensitive"))
		b->fold_case = false;
	else
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col,
					  "unexpected '%s': expected case-insensitive or case-sensitive",
					  sluice__parse_show(w, buf));
	b->seen_routes = true;
	return sluice__parse_expect_end(p);
}

/*
 * A literal pattern segment must be in the normal form request paths are
 * matched in (normalize.c), or no request could ever match it: no "." or
 * "..", escapes only of reserved bytes and with upper-case hex, and no upper
 * case letter when routes are case-insensitive.
 */
static int check_literal(struct parser *p, const char *seg, uint32_t len, uint32_t col)
{
	char in[SLUICE_POLICY_MAX_PATTERN + 1], out[SLUICE_POLICY_MAX_PATTERN + 2];
	size_t n = 0;

	in[0] = '/';
	memcpy(in + 1, seg, len);
	int rc = sluice_path_normalize(in, len + 1, p->b->fold_case ? SLUICE_PATH_FOLD_CASE : 0, out,
				       sizeof(out), &n);
	if (rc != SLUICE_OK)
		return sluice__parse_fail(
			p, SLUICE_ESYNTAX, col,
			"malformed percent-escape in path segment '%.*s': expected '%%' and two hex digits", (int)len,
			seg);
	if (n == 1)
		return sluice__parse_fail(
			p, SLUICE_ESYNTAX, col,
			"'%.*s' segment in a path pattern: request paths are matched with dot segments removed",
			(int)len, seg);
	if (n != len + 1 || memcmp(in, out, n) != 0)
		return sluice__parse_fail(
			p, SLUICE_ESYNTAX, col,
			"path segment '%.*s' can never match: request paths are normalized, write '%.*s'%s", (int)len,
			seg, (int)(n - 1), out + 1, p->b->fold_case ? " (routes are case-insensitive)" : "");
	return SLUICE_OK;
}

/* Every literal segment of every route pattern (once the whole text is read,
 * since "routes case-insensitive" may come after the routes). */
int sluice__parse_check_patterns(struct parser *p)
{
	struct builder *b = p->b;

	for (uint32_t r = 0; r < b->nroutes; r++) {
		const struct broute *br = &b->routes[r];
		p->line = br->line;
		for (uint32_t i = 1; i < br->pattern_len;) {
			uint32_t start = i;
			while (i < br->pattern_len && br->pattern[i] != '/')
				i++;
			const char *seg = br->pattern + start;
			uint32_t len = i - start;
			if (seg[0] != ':' && !(len == 1 && seg[0] == '*')) {
				int rc = check_literal(p, seg, len, br->col + start);
				if (rc != SLUICE_OK)
					return rc;
			}
			i++;
		}
	}
	return SLUICE_OK;
}

int sluice__parse_d_class(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	int rc;

	if ((rc = sluice__parse_next_word(p, "a class name", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_name_word(p, w, "a class name", name)) != SLUICE_OK)
		return rc;
	int id = sluice__parse_find_name(b->classes, b->nclasses, w->s, w->len);
	uint32_t name_col = w->col;
	if (p->pos == p->nw) {
		if (id > 0)
			return sluice__parse_fail(p, SLUICE_EINVAL, name_col, "class '%s' already declared", name);
	}
	if (id < 0) {
		if (b->nclasses == SLUICE_POLICY_MAX_CLASSES)
			return sluice__parse_fail(p, SLUICE_ETOOBIG, name_col,
						  "more than %d classes (default included)", SLUICE_POLICY_MAX_CLASSES);
		id = (int)b->nclasses++;
		memcpy(b->classes[id], name, NAME_CAP);
	}
	if (p->pos == p->nw)
		return SLUICE_OK;
	if ((rc = sluice__parse_next_word(p, "'match'", &w)) != SLUICE_OK)
		return rc;
	if (!sluice__parse_word_is(w, "match")) {
		char buf[32];
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected 'match' or end of line",
					  sluice__parse_show(w, buf));
	}
	if (b->nroutes == SLUICE_POLICY_MAX_ROUTES || b->nroutes == b->cap_routes)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "more than %d routes", SLUICE_POLICY_MAX_ROUTES);
	struct broute *r = &b->routes[b->nroutes];
	r->class_id = (uint32_t)id;
	r->line = p->line;
	if ((rc = sluice__parse_next_word(p, "a method (GET, POST, ... or *)", &w)) != SLUICE_OK)
		return rc;
	if ((rc = method_word(p, w, r)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_next_word(p, "a path pattern", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_expect_end(p)) != SLUICE_OK)
		return rc;
	if ((rc = pattern_word(p, w, r)) != SLUICE_OK)
		return rc;
	b->nroutes++;
	return SLUICE_OK;
}
