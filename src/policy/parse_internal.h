/*
 * parse_internal.h - the state the policy parser's files share (the scratch
 * builder, the words of the current line, the parser) and their sluice__parse_*
 * functions. Included only by the parser's files under src/policy/; not installed.
 *
 * The parser is six files along one pipeline:
 *   policy_parse.c     sluice_policy_parse(): the scratch block, the line loop,
 *                      the whole-text checks (finish), the final allocation
 *   parse_lex.c        the tokenizer, error positions and messages, and the
 *                      lexical items (names, counts, durations, rates,
 *                      strings, UTC times)
 *   parse_directives.c one function per directive, and the dispatch
 *   parse_headers.c    the response-header directives: headers (the
 *                      families and the custom names) and dry-run
 *   parse_routes.c     class/match and routes: methods, patterns, the trie
 *                      insert, and the normal-form check of literal segments
 *   parse_layout.c     the layout of the final one-piece policy and the
 *                      breadth-first flattening of the route trie
 * Every error goes through sluice__parse_fail(), which records the line the
 * parser is on and the column the caller names.
 */
#ifndef SLUICE_PARSE_INTERNAL_H
#define SLUICE_PARSE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/template.h>

#include "policy/policy_internal.h"

#define MAX_WORDS 24
#define NAME_CAP (SLUICE_POLICY_MAX_NAME + 1)
#define MAX_NODES (SLUICE_POLICY_MAX_ROUTES * SLUICE_POLICY_MAX_SEGMENTS + 1)
#define NS_PER_DAY (86400ull * SLUICE_NS_PER_SEC)
#define DEFAULT_RETRY_AFTER_NS SLUICE_NS_PER_SEC

/*
 * The builder: the scratch state the directives fill, line by line, before
 * anything is allocated for the final policy (sizes in policy_parse.c).
 */

struct blimit {
	struct sluice_policy_limit l;
	char name[NAME_CAP];
	char resource[NAME_CAP]; /* "": none */
};

/* Method and pattern point into the text, which outlives the parse. */
struct broute {
	const char *method;
	const char *pattern;
	uint32_t method_len;
	uint32_t pattern_len;
	uint32_t method_id;
	uint32_t class_id;
	uint32_t line;
	uint32_t col; /* of the pattern */
};

struct btier {
	char name[NAME_CAP];
	uint32_t milli;
	uint32_t line;
};

struct boverride {
	struct sluice_policy_override o;
	uint8_t key[SLUICE_POLICY_MAX_KEY];
};

struct bnode {
	uint32_t first_child;  /* literal children, a sibling list */
	uint32_t next_sibling;
	uint32_t param_child;
	const char *seg; /* into the policy text */
	uint32_t seg_len;
	uint32_t term_head; /* bterm lists */
	uint32_t wild_head;
	uint32_t final_index;
};

struct bterm {
	uint32_t next;
	uint32_t method_id;
	uint32_t class_id;
	uint32_t line;
};

/* An "answer" line's reason: status 0 until declared. The body points at
 * its quoted word in the text (escapes undecoded, like route patterns: the
 * text outlives the parse); the directive decoded and compiled it once to
 * check it, and the layout decodes it again into the policy. */
struct banswer {
	uint32_t status;
	uint32_t line;
	uint32_t type_len;
	uint32_t body_len; /* decoded */
	const char *body_src;
	uint32_t body_src_len;
	bool json;
	char type[SLUICE_POLICY_MAX_CONTENT_TYPE + 1];
};

/* "describe=" of "headers": resolved once every limit is declared. */
enum { DESCRIBE_GOVERNING = 0, DESCRIBE_TIGHTEST = 1, DESCRIBE_NAMED = 2 };

/* The fields of "headers custom", in struct sluice_http_custom's order. */
enum { CUSTOM_LIMIT, CUSTOM_REMAINING, CUSTOM_RESET, CUSTOM_USED, CUSTOM_RESOURCE, CUSTOM_FIELDS };
#define HEADER_NAME_CAP (SLUICE_POLICY_MAX_HEADER_NAME + 1)

struct builder {
	char title[SLUICE_POLICY_MAX_TITLE + 1];
	uint8_t describe_kind;
	char describe_name[NAME_CAP];
	uint32_t describe_line, describe_col;
	uint32_t describe; /* SLUICE_POLICY_DESCRIBE_* or a limit, after finish */
	struct banswer answers[SLUICE_POLICY_ANSWER_COUNT];
	uint32_t families; /* enum sluice_http_families bits */
	uint8_t body, fail;
	bool seen_policy, seen_headers, seen_body, seen_fail;
	/* "headers custom" names ("": not rendered) and "dry-run" */
	uint8_t custom_reset_form;
	bool seen_dry_run, dry_run_all;
	char custom[CUSTOM_FIELDS][HEADER_NAME_CAP];
	char dry_run_header[HEADER_NAME_CAP]; /* "": none */
	bool fold_case, seen_routes;
	uint32_t nscopes, nlimits, nclasses, nroutes, ntiers, noverrides;
	uint32_t nmethods, nnodes, nterms;
	char scopes[SLUICE_POLICY_MAX_SCOPES][NAME_CAP];
	char classes[SLUICE_POLICY_MAX_CLASSES][NAME_CAP];
	char methods[SLUICE_POLICY_MAX_METHODS][SLUICE_POLICY_MAX_METHOD_LEN + 1];
	struct blimit limits[SLUICE_POLICY_MAX_LIMITS];
	struct btier tiers[SLUICE_POLICY_MAX_TIERS];
	/*
	 * Sized per input, in the same allocation, by bounds the text itself
	 * proves (see scratch_caps): a route or an override takes a line of
	 * its own, a trie node a '/' of its own. Capped by the ceilings.
	 */
	uint32_t cap_routes, cap_overrides, cap_nodes;
	struct broute *routes;       /* [cap_routes] */
	struct bterm *terms;         /* [cap_routes]: one per route */
	struct boverride *overrides; /* [cap_overrides] */
	struct bnode *nodes;         /* [cap_nodes] */
	uint32_t *order;             /* [cap_overrides + cap_nodes]: sort and BFS scratch */
};

/* The words of the current line, and where errors are reported. */

struct word {
	const char *s; /* for a quoted string: the bytes between the quotes */
	uint32_t len;
	uint32_t col;
	bool quoted;
};

struct parser {
	struct builder *b;
	struct sluice_policy_error *err;
	uint32_t line;
	uint32_t end_col; /* column just past the last word of the line */
	struct word w[MAX_WORDS];
	uint32_t nw;
	uint32_t pos; /* next word */
};

static inline bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* parse_lex.c: errors and words */

/* Record code, the current line, col and the formatted message in p->err
 * (when there is one); returns code. */
__attribute__((format(printf, 4, 5))) int sluice__parse_fail(struct parser *p, int code, uint32_t col,
							  const char *fmt, ...);
const char *sluice__parse_show(const struct word *w, char buf[32]);
bool sluice__parse_word_is(const struct word *w, const char *lit);
int sluice__parse_next_word(struct parser *p, const char *what, const struct word **out);
int sluice__parse_expect_end(struct parser *p);
int sluice__parse_tokenize(struct parser *p, const char *line, uint32_t len);

/* parse_lex.c: lexical items; each reports its own errors through p */
int sluice__parse_check_name(struct parser *p, const char *s, uint32_t len, uint32_t col, const char *what);
int sluice__parse_name_word(struct parser *p, const struct word *w, const char *what, char out[NAME_CAP]);
int sluice__parse_find_name(char (*names)[NAME_CAP], uint32_t n, const char *s, uint32_t len);
int sluice__parse_uint(struct parser *p, const char *s, uint32_t len, uint32_t col, uint64_t max, const char *what,
		       uint64_t *out, uint32_t *used);
int sluice__parse_count_word(struct parser *p, const struct word *w, const char *what, uint64_t *out);
int sluice__parse_duration_word(struct parser *p, const struct word *w, const char *what, uint64_t *out);
int sluice__parse_rate_word(struct parser *p, const struct word *w, uint64_t *count, uint64_t *period_ns,
			    bool *utc);
int sluice__parse_string_word(struct parser *p, const struct word *w, const char *what, bool printable,
			      uint8_t *out, uint32_t cap, uint32_t *out_len);
/* parse_lex.c: the bytes of a quoted word that sluice__parse_string_word()
 * accepted, decoded into out (room for as many bytes as it returned). */
void sluice__parse_decode_string(const char *s, uint32_t len, char *out);
int sluice__parse_time_word(struct parser *p, const struct word *w, uint64_t *out);

/* parse_directives.c: one line's directive (p->w[0] names it) */
int sluice__parse_directive(struct parser *p);

/* parse_headers.c: the "headers" and "dry-run" directives, and a header
 * name (an HTTP token, quoted or not) into out */
int sluice__parse_d_headers(struct parser *p);
int sluice__parse_d_dry_run(struct parser *p);
int sluice__parse_header_name(struct parser *p, const struct word *w, const char *what, char out[HEADER_NAME_CAP]);

/* parse_routes.c: the "class" and "routes" directives, and the check of
 * every literal pattern segment once the whole text is read */
int sluice__parse_d_class(struct parser *p);
int sluice__parse_d_routes(struct parser *p);
int sluice__parse_check_patterns(struct parser *p);

/* parse_layout.c: a bump allocator over the final block, and the layout of
 * the policy in it (a dry run, sizes only, while c->base is NULL) */
struct carve {
	char *base;
	size_t used;
};

void sluice__parse_layout(struct builder *b, struct carve *c, struct sluice_policy **out, uint32_t *order);

#endif /* SLUICE_PARSE_INTERNAL_H */
