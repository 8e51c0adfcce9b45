/*
 * sluice/sf.h - Structured Field Values for HTTP (RFC 9651): a parser into a
 * caller-provided node array, and a serializer into a caller-provided buffer.
 * Neither allocates.
 *
 * EXPERIMENTAL API. The declarations below are visible only to a file that
 * defines SLUICE_EXPERIMENTAL_API before it includes this header (or
 * sluice.h), as zstd fences its ZSTD_STATIC_LINKING_ONLY section:
 *
 *     #define SLUICE_EXPERIMENTAL_API
 *     #include <sluice.h>
 *
 * Why: this is a general RFC 9651 library that sluice's HTTP layer renders
 * its headers with and its client layer parses them with; it is not part of
 * the rate limiter's stable ABI. Its types, node layout and functions may
 * change in any minor version. The symbols stay exported (the tests, the
 * fuzz targets and the benchmarks use them), but a program that uses them
 * must be rebuilt against the headers of the libsluice it runs with.
 *
 * Parsed form. A field value parses into a flat array of nodes in document
 * order. Each top-level member (a list member, a dictionary member, or the one
 * item of an Item field) is a node followed by its subtree:
 *
 *     item member:        [item] [param]*nparams
 *     inner-list member:  [inner list] ([item] [param]*)*nitems [param]*nparams
 *
 * A parameter node carries its key in `key` and its value like an item. A
 * dictionary member node carries the member key in `key`. String, Token,
 * Byte Sequence and Display String nodes point into the input (`str`,
 * `str_len`: the bytes between the delimiters, escapes not decoded), so the
 * input must outlive the nodes; sluice_sf_decode() yields the value.
 * Duplicate dictionary keys and duplicate parameter keys are resolved as RFC
 * 9651 says: the last value wins, in the position of the first.
 *
 * Sizing: a value of len bytes never needs more than SLUICE_SF_NODES_MAX(len)
 * nodes (every node consumes at least one input byte).
 *
 * Memory ordering: every function is pure: it reads its arguments (the
 * input bytes, the nodes) and writes only the caller's nodes, buffer and
 * writer; no global state, so any thread may call it at any time, and it
 * orders no memory. Nodes point into the input: keep the input unchanged
 * while they are used.
 */
#ifndef SLUICE_SF_H
#define SLUICE_SF_H

#include "common.h"

#endif /* SLUICE_SF_H */

/* A second guard, so that a file that included this header without the macro
 * (say through sluice.h) gets the declarations from a later include made
 * with it. */
#if defined(SLUICE_EXPERIMENTAL_API) && !defined(SLUICE_SF_H_EXPERIMENTAL)
#define SLUICE_SF_H_EXPERIMENTAL

#ifdef __cplusplus
extern "C" {
#endif

/* The Integer range of RFC 9651: at most 15 decimal digits. */
#define SLUICE_SF_INTEGER_MAX INT64_C(999999999999999)
#define SLUICE_SF_INTEGER_MIN (-SLUICE_SF_INTEGER_MAX)

/* Ceilings, the minimums RFC 9651 section 3 requires parsers to support:
 * more dictionary members, or more parameters on one item or inner list,
 * give SLUICE_ETOOBIG (duplicate keys are found by linear scans, so larger
 * counts would make parsing quadratic in the input). Lists are unbounded. */
#define SLUICE_SF_DICT_MAX 1024
#define SLUICE_SF_PARAMS_MAX 256

/* Nodes enough for any value of len bytes. */
#define SLUICE_SF_NODES_MAX(len) ((len) > 0 ? (size_t)(len) : (size_t)1)

enum sluice_sf_type {
	SLUICE_SF_INTEGER = 1,    /* value */
	SLUICE_SF_DECIMAL = 2,    /* value = decimal * 1000 (exact: <= 3 fraction digits) */
	SLUICE_SF_STRING = 3,     /* str: the escaped bytes between the quotes */
	SLUICE_SF_TOKEN = 4,      /* str */
	SLUICE_SF_BINARY = 5,     /* str: the base64 text between the colons */
	SLUICE_SF_BOOLEAN = 6,    /* value 0 or 1 */
	SLUICE_SF_DATE = 7,       /* value: Unix seconds */
	SLUICE_SF_DISPLAY = 8,    /* str: the percent-encoded text between the quotes */
	SLUICE_SF_INNER_LIST = 9, /* nitems items follow, then nparams params */
};

enum sluice_sf_kind {
	SLUICE_SF_KIND_ITEM = 0,
	SLUICE_SF_KIND_LIST = 1,
	SLUICE_SF_KIND_DICT = 2,
};

struct sluice_sf_node {
	const char *key; /* dictionary member or parameter key, else NULL */
	const char *str; /* see enum sluice_sf_type; NULL for numeric types */
	int64_t value;   /* see enum sluice_sf_type */
	uint32_t key_len;
	uint32_t str_len;
	uint32_t nitems;  /* SLUICE_SF_INNER_LIST: its items */
	uint32_t nparams; /* parameters of this item or inner list */
	uint8_t type;     /* enum sluice_sf_type */
	uint8_t reserved_[7];
};

/* What a parse produced, or where it stopped. */
struct sluice_sf_result {
	size_t nodes;        /* nodes written (valid on success) */
	size_t members;      /* top-level members (1 for an Item) */
	size_t error_offset; /* on SLUICE_ESYNTAX/ETRUNC: byte offset in the input */
};

/*
 * Parse `len` bytes of `in` as a field value of the given kind (RFC 9651
 * section 4.2). Field lines must already be combined (joined with ", ") by
 * the caller. An empty List or Dictionary value parses to zero members; an
 * empty Item fails.
 *
 * Returns 0; SLUICE_EINVAL (NULL in/out/res with a non-zero length, unknown
 * kind); SLUICE_ESYNTAX, with res->error_offset the offset of the first byte
 * that cannot be accepted (the whole value must then be ignored: RFC 9651
 * allows no partial result); SLUICE_ETRUNC when `cap` nodes are too few, with
 * error_offset where the parse stopped (SLUICE_SF_NODES_MAX(len) always
 * suffices); SLUICE_ETOOBIG past SLUICE_SF_DICT_MAX members or
 * SLUICE_SF_PARAMS_MAX parameters, with error_offset, or for len above
 * 4 GiB. Cost: linear in len
 * for Lists and Items, at most O(len * 256 + 1024^2) with parameters and
 * dictionaries. Leniency beyond the RFC's MUSTs, as its SHOULDs ask: a Byte
 * Sequence may lack its '=' padding and may have non-zero pad bits.
 */
SLUICE_API int sluice_sf_parse(enum sluice_sf_kind kind, const char *in, size_t len,
			       struct sluice_sf_node *out, size_t cap, struct sluice_sf_result *res);

/* Number of nodes the member starting at `node` occupies (itself, its items
 * and all parameters). The next member starts that many nodes later. */
SLUICE_API size_t sluice_sf_member_span(const struct sluice_sf_node *node);

/*
 * The parameter named `key` (NUL-terminated) of the item or inner list at
 * `node`, or NULL. For an inner list this searches the list's parameters,
 * not its items'.
 */
SLUICE_API const struct sluice_sf_node *sluice_sf_param(const struct sluice_sf_node *node,
							const char *key);

/*
 * The value of a String, Token, Display String or Byte Sequence node as
 * bytes: escapes removed (String), percent-decoding applied (Display String:
 * UTF-8), base64 decoded (Byte Sequence). Writes at most `cap` bytes to
 * `out` (no NUL) and the full length to *out_len.
 * Returns 0; SLUICE_EINVAL (NULL node/out_len, or a node of another type);
 * SLUICE_ETRUNC when the value is longer than `cap` (*out_len = needed).
 */
SLUICE_API int sluice_sf_decode(const struct sluice_sf_node *node, uint8_t *out, size_t cap,
				size_t *out_len);

/*
 * Serializer. A writer appends to buf[0..cap); `len` counts every byte asked
 * for, written or not, so after a truncation it is the size needed. The first
 * error (a value that cannot be serialized) sticks in `err`, and later writes
 * do nothing. Nothing is written past cap; no NUL is appended by the write
 * functions (sluice_sf_writer_finish() adds one when it fits).
 */
struct sluice_sf_writer {
	char *buf;
	size_t cap;
	size_t len;
	int err;
};

SLUICE_API void sluice_sf_writer_init(struct sluice_sf_writer *w, char *buf, size_t cap);

/* Returns w->err if set, else SLUICE_ETRUNC if w->len + 1 > cap (room for the
 * NUL counted), else 0 after writing a NUL at buf[len]. *needed (may be NULL)
 * receives len + 1. */
SLUICE_API int sluice_sf_writer_finish(struct sluice_sf_writer *w, size_t *needed);

/* Raw bytes, unchecked (separators, field names). */
SLUICE_API void sluice_sf_write_raw(struct sluice_sf_writer *w, const char *s, size_t n);
/* Integer; SLUICE_ERANGE outside +-999,999,999,999,999. */
SLUICE_API void sluice_sf_write_integer(struct sluice_sf_writer *w, int64_t v);
/* Integer from an unsigned count, clamped to SLUICE_SF_INTEGER_MAX. */
SLUICE_API void sluice_sf_write_uint_clamped(struct sluice_sf_writer *w, uint64_t v);
/* Decimal given in thousandths; SLUICE_ERANGE beyond 12 integer digits. */
SLUICE_API void sluice_sf_write_decimal_milli(struct sluice_sf_writer *w, int64_t milli);
/* String: '"' and '\' escaped; SLUICE_EINVAL on a byte outside 0x20-0x7E. */
SLUICE_API void sluice_sf_write_string(struct sluice_sf_writer *w, const char *s, size_t n);
/* Token; SLUICE_EINVAL if s is not a valid token. */
SLUICE_API void sluice_sf_write_token(struct sluice_sf_writer *w, const char *s, size_t n);
/* Key (dictionary member or parameter); SLUICE_EINVAL if not a valid key. */
SLUICE_API void sluice_sf_write_key(struct sluice_sf_writer *w, const char *s, size_t n);
/* Byte Sequence, padded base64 with zero pad bits. */
SLUICE_API void sluice_sf_write_binary(struct sluice_sf_writer *w, const uint8_t *p, size_t n);
SLUICE_API void sluice_sf_write_boolean(struct sluice_sf_writer *w, bool v);
/* Date (Unix seconds); SLUICE_ERANGE outside the Integer range. */
SLUICE_API void sluice_sf_write_date(struct sluice_sf_writer *w, int64_t unix_s);
/* Display String from UTF-8 bytes; SLUICE_EINVAL if not valid UTF-8. */
SLUICE_API void sluice_sf_write_display(struct sluice_sf_writer *w, const uint8_t *p, size_t n);

/*
 * Serialize a parsed value (nodes as sluice_sf_parse() lays them out,
 * `members` top-level members) in canonical form (RFC 9651 section 4.1).
 * Errors go to w->err (SLUICE_EINVAL for a malformed node array).
 */
SLUICE_API void sluice_sf_write_nodes(struct sluice_sf_writer *w, enum sluice_sf_kind kind,
				      const struct sluice_sf_node *nodes, size_t members);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_EXPERIMENTAL_API && !SLUICE_SF_H_EXPERIMENTAL */
