/*-------------------------------------------------------------------------
 *
 * json.c
 *	  JSON from the network: parsed without throwing, read by path.
 *
 * Responses and export lines come from outside and may be malformed or cut
 * short.  jsonb_in would ereport, which in the middle of a sync would lose
 * the batch's context, and it is the hot spot of a backfill (its lexer
 * copies every string character by character).  json_parse is a strict
 * RFC 8259 parser that reports errors as values and builds the Jsonb value
 * tree directly: strings without escapes are not copied until the Jsonb is
 * formed, objects are sorted once.  It accepts what jsonb_in accepts and
 * refuses what it refuses (\u0000 included), except nesting deeper than
 * 1000 levels, which it refuses rather than recursing further.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "json.h"

#define MAX_DEPTH 1000			/* far deeper than any order; bounds the recursion */

typedef struct Parser
{
	const char *p;
	const char *end;
	int			depth;
	const char *error;
	/* members of the objects and arrays being parsed, innermost last */
	JsonbPair  *pairs;
	int			npairs;
	int			maxpairs;
	JsonbValue *elems;
	int			nelems;
	int			maxelems;
} Parser;

static bool parse_value(Parser *ps, JsonbValue *v);

static inline void
skip_ws(Parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static bool
fail(Parser *ps, const char *error)
{
	if (ps->error == NULL)
		ps->error = error;
	return false;
}

static int
hex4(const char *s)
{
	int			v = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		char		c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * A string.  Without escapes it points into the input (the Jsonb is built
 * before the input is released); with escapes it is decoded into a copy.
 */
static bool
parse_string(Parser *ps, char **out, int *outlen)
{
	const char *start = ++ps->p;	/* after the quote */
	const char *q = start;
	bool		high = false;
	bool		escapes = false;
	char	   *buf;
	char	   *w;

	for (;;)
	{
		unsigned char c;

		if (q >= ps->end)
			return fail(ps, "unterminated string");
		c = (unsigned char) *q;
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(ps, "control character in a string");
		if (c == '\\')
		{
			escapes = true;
			if (q + 1 >= ps->end)
				return fail(ps, "unterminated string");
			q += 2;
			continue;
		}
		if (c >= 0x80)
			high = true;
		q++;
	}
	if (high && !pg_verify_mbstr(PG_UTF8, start, q - start, true))
		return fail(ps, "invalid UTF-8 in a string");
	ps->p = q + 1;
	if (!escapes)
	{
		*out = (char *) start;
		*outlen = q - start;
		return true;
	}

	buf = w = palloc(q - start + 1);
	for (const char *r = start; r < q;)
	{
		if (*r != '\\')
		{
			*w++ = *r++;
			continue;
		}
		r++;
		switch (*r)
		{
			case '"':
			case '\\':
			case '/':
				*w++ = *r++;
				break;
			case 'b':
				*w++ = '\b', r++;
				break;
			case 'f':
				*w++ = '\f', r++;
				break;
			case 'n':
				*w++ = '\n', r++;
				break;
			case 'r':
				*w++ = '\r', r++;
				break;
			case 't':
				*w++ = '\t', r++;
				break;
			case 'u':
				{
					int			cp;

					if (q - r < 5 || (cp = hex4(r + 1)) < 0)
						return fail(ps, "invalid \\u escape");
					r += 5;
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						int			lo;

						if (q - r < 6 || r[0] != '\\' || r[1] != 'u' ||
							(lo = hex4(r + 2)) < 0xDC00 || lo > 0xDFFF)
							return fail(ps, "invalid surrogate pair");
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						r += 6;
					}
					else if (cp >= 0xDC00 && cp <= 0xDFFF)
						return fail(ps, "invalid surrogate pair");
					if (cp == 0)
						return fail(ps, "\\u0000 cannot be stored");
					unicode_to_utf8((pg_wchar) cp, (unsigned char *) w);
					w += pg_utf_mblen((unsigned char *) w);
					break;
				}
			default:
				return fail(ps, "invalid escape in a string");
		}
	}
	*out = buf;
	*outlen = w - buf;
	return true;
}

static bool
parse_number(Parser *ps, JsonbValue *v)
{
	const char *start = ps->p;
	const char *q = start;
	bool		integer = true;
	char	   *text;

	if (q < ps->end && *q == '-')
		q++;
	if (q >= ps->end || *q < '0' || *q > '9')
		return fail(ps, "invalid number");
	if (*q == '0')
		q++;
	else
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	if (q < ps->end && *q == '.')
	{
		integer = false;
		q++;
		if (q >= ps->end || *q < '0' || *q > '9')
			return fail(ps, "invalid number");
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < ps->end && (*q == 'e' || *q == 'E'))
	{
		integer = false;
		q++;
		if (q < ps->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= ps->end || *q < '0' || *q > '9')
			return fail(ps, "invalid number");
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	ps->p = q;
	v->type = jbvNumeric;
	if (integer && q - start <= 18)
	{
		int64		n = 0;
		const char *r = start + (*start == '-');

		for (; r < q; r++)
			n = n * 10 + (*r - '0');
		v->val.numeric = int64_to_numeric(*start == '-' ? -n : n);
		return true;
	}
	text = pnstrdup(start, q - start);
	v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
														 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	return true;
}

static bool
literal(Parser *ps, const char *word, int len)
{
	if (ps->end - ps->p < len || memcmp(ps->p, word, len) != 0)
		return fail(ps, "invalid literal");
	ps->p += len;
	return true;
}

/* jsonb's key order: shorter keys first, then bytewise */
static inline int
pair_cmp(const JsonbPair *pa, const JsonbPair *pb)
{
	if (pa->key.val.string.len != pb->key.val.string.len)
		return pa->key.val.string.len > pb->key.val.string.len ? 1 : -1;
	{
		int			r = memcmp(pa->key.val.string.val, pb->key.val.string.val, pa->key.val.string.len);

		/* equal keys: the later one wins, as in jsonb_in */
		return r != 0 ? r : (pa->order > pb->order ? 1 : -1);
	}
}

/*
 * Members are collected on the parser's stacks and copied out at exact size
 * when the container ends: a Shopify order has dozens of two-key objects,
 * and a growing array per object would cost more than the whole document.
 */
/* an inlined sort: every object of every line is sorted */
#define ST_SORT sort_pairs
#define ST_ELEMENT_TYPE JsonbPair
#define ST_COMPARE(a, b) pair_cmp(a, b)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

static bool
parse_object(Parser *ps, JsonbValue *v)
{
	int			base = ps->npairs;
	int			n;

	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}')
		ps->p++;
	else
	{
		for (;;)
		{
			JsonbPair  *pair;

			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != '"')
				return fail(ps, "expected a key");
			if (ps->npairs == ps->maxpairs)
			{
				ps->maxpairs *= 2;
				ps->pairs = repalloc(ps->pairs, sizeof(JsonbPair) * ps->maxpairs);
			}
			pair = &ps->pairs[ps->npairs];
			pair->key.type = jbvString;
			if (!parse_string(ps, &pair->key.val.string.val, &pair->key.val.string.len))
				return false;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':')
				return fail(ps, "expected ':'");
			ps->p++;
			{
				int			at = ps->npairs++;	/* claimed first: nested members go above it */
				JsonbValue	value;

				pair->order = at - base;
				/* parsed aside: nested members may move the stack */
				if (!parse_value(ps, &value))
					return false;
				ps->pairs[at].value = value;
			}
			skip_ws(ps);
			if (ps->p < ps->end && *ps->p == ',')
			{
				ps->p++;
				continue;
			}
			if (ps->p < ps->end && *ps->p == '}')
			{
				ps->p++;
				break;
			}
			return fail(ps, "expected ',' or '}'");
		}
	}

	n = ps->npairs - base;
	v->type = jbvObject;
	v->val.object.pairs = n > 0 ? palloc(sizeof(JsonbPair) * n) : NULL;
	if (n > 0)
		memcpy(v->val.object.pairs, &ps->pairs[base], sizeof(JsonbPair) * n);
	ps->npairs = base;
	if (n > 1)
	{
		JsonbPair  *pairs = v->val.object.pairs;
		int			i;
		int			kept = 0;

		sort_pairs(pairs, n);
		for (i = 0; i < n; i++)
		{
			if (i + 1 < n && pairs[i].key.val.string.len == pairs[i + 1].key.val.string.len &&
				memcmp(pairs[i].key.val.string.val, pairs[i + 1].key.val.string.val,
					   pairs[i].key.val.string.len) == 0)
				continue;		/* a duplicate key: the last one is kept */
			pairs[kept++] = pairs[i];
		}
		n = kept;
	}
	v->val.object.nPairs = n;
	return true;
}

static bool
parse_array(Parser *ps, JsonbValue *v)
{
	int			base = ps->nelems;
	int			n;

	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']')
		ps->p++;
	else
	{
		for (;;)
		{
			if (ps->nelems == ps->maxelems)
			{
				ps->maxelems *= 2;
				ps->elems = repalloc(ps->elems, sizeof(JsonbValue) * ps->maxelems);
			}
			{
				int			at = ps->nelems++;
				JsonbValue	value;

				if (!parse_value(ps, &value))
					return false;
				ps->elems[at] = value;
			}
			skip_ws(ps);
			if (ps->p < ps->end && *ps->p == ',')
			{
				ps->p++;
				continue;
			}
			if (ps->p < ps->end && *ps->p == ']')
			{
				ps->p++;
				break;
			}
			return fail(ps, "expected ',' or ']'");
		}
	}
	n = ps->nelems - base;
	v->type = jbvArray;
	v->val.array.nElems = n;
	v->val.array.elems = n > 0 ? palloc(sizeof(JsonbValue) * n) : NULL;
	if (n > 0)
		memcpy(v->val.array.elems, &ps->elems[base], sizeof(JsonbValue) * n);
	v->val.array.rawScalar = false;
	ps->nelems = base;
	return true;
}

static bool
parse_value(Parser *ps, JsonbValue *v)
{
	bool		ok;

	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "unexpected end of input");
	switch (*ps->p)
	{
		case '{':
			if (++ps->depth > MAX_DEPTH)
				return fail(ps, "nested too deeply");
			ok = parse_object(ps, v);
			ps->depth--;
			return ok;
		case '[':
			if (++ps->depth > MAX_DEPTH)
				return fail(ps, "nested too deeply");
			ok = parse_array(ps, v);
			ps->depth--;
			return ok;
		case '"':
			v->type = jbvString;
			return parse_string(ps, &v->val.string.val, &v->val.string.len);
		case 't':
			v->type = jbvBool;
			v->val.boolean = true;
			return literal(ps, "true", 4);
		case 'f':
			v->type = jbvBool;
			v->val.boolean = false;
			return literal(ps, "false", 5);
		case 'n':
			v->type = jbvNull;
			return literal(ps, "null", 4);
		default:
			return parse_number(ps, v);
	}
}

/*
 * Parse JSON text into a value tree (strings may point into the text, which
 * must outlive the tree).  On a syntax error (including a document cut
 * short) return NULL and set *error; never ereport for bad input.  The text
 * need not be NUL-terminated.
 */
JsonbValue *
json_parse_value(char *text, int len, char **error)
{
	Parser		ps;
	JsonbValue *root = palloc(sizeof(JsonbValue));

	memset(&ps, 0, sizeof(ps));
	ps.p = text;
	ps.end = text + len;
	ps.maxpairs = 64;
	ps.pairs = palloc(sizeof(JsonbPair) * ps.maxpairs);
	ps.maxelems = 16;
	ps.elems = palloc(sizeof(JsonbValue) * ps.maxelems);

	if (!parse_value(&ps, root))
	{
		*error = psprintf("%s at byte %d", ps.error, (int) (ps.p - text));
		return NULL;
	}
	skip_ws(&ps);
	if (ps.p != ps.end)
	{
		*error = psprintf("unexpected text after the JSON value at byte %d", (int) (ps.p - text));
		return NULL;
	}
	pfree(ps.pairs);
	pfree(ps.elems);
	*error = NULL;
	return root;
}

/* A value tree as jsonb; a bare scalar becomes jsonb's one-element raw array. */
Jsonb *
json_value_to_jsonb(JsonbValue *root)
{
	if (root->type != jbvObject && root->type != jbvArray)
	{
		JsonbValue *scalar = palloc(sizeof(JsonbValue));
		JsonbValue	array;

		*scalar = *root;
		array.type = jbvArray;
		array.val.array.nElems = 1;
		array.val.array.elems = scalar;
		array.val.array.rawScalar = true;
		return JsonbValueToJsonb(&array);
	}
	return JsonbValueToJsonb(root);
}

/* Parse JSON text into a Jsonb; NULL and *error on bad input. */
Jsonb *
json_parse(char *text, int len, char **error)
{
	JsonbValue *root = json_parse_value(text, len, error);

	return root ? json_value_to_jsonb(root) : NULL;
}

/*
 * A member of an object given either as a value tree (jbvObject) or as jsonb
 * (jbvBinary); NULL when absent or JSON null.  buf may receive the result.
 */
JsonbValue *
json_node_get(JsonbValue *node, const char *key, JsonbValue *buf)
{
	int			len = strlen(key);
	JsonbValue *v = NULL;

	if (node == NULL)
		return NULL;
	if (node->type == jbvBinary)
	{
		if (!JsonContainerIsObject(node->val.binary.data))
			return NULL;
		v = getKeyJsonValueFromContainer(node->val.binary.data, key, len, buf);
	}
	else if (node->type == jbvObject)
	{
		/* pairs are in jsonb order: by length, then bytes */
		int			lo = 0;
		int			hi = node->val.object.nPairs - 1;

		while (lo <= hi)
		{
			int			mid = (lo + hi) / 2;
			JsonbValue *k = &node->val.object.pairs[mid].key;
			int			r = k->val.string.len != len ? (k->val.string.len < len ? -1 : 1) :
				memcmp(k->val.string.val, key, len);

			if (r == 0)
			{
				v = &node->val.object.pairs[mid].value;
				break;
			}
			if (r < 0)
				lo = mid + 1;
			else
				hi = mid - 1;
		}
	}
	return (v == NULL || v->type == jbvNull) ? NULL : v;
}

/* A string, number or boolean as a palloc'd C string; NULL otherwise. */
char *
json_node_text(JsonbValue *v)
{
	if (v == NULL)
		return NULL;
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/* The value of key in object c, or NULL when absent or JSON null. */
JsonbValue *
json_get(JsonbContainer *c, const char *key, JsonbValue *buf)
{
	JsonbValue *v;

	if (c == NULL || !JsonContainerIsObject(c))
		return NULL;
	v = getKeyJsonValueFromContainer(c, key, strlen(key), buf);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	return v;
}

JsonbContainer *
json_get_container(JsonbContainer *c, const char *key)
{
	JsonbValue	buf;
	JsonbValue *v = json_get(c, key, &buf);

	return (v && v->type == jbvBinary) ? v->val.binary.data : NULL;
}

/* Follow a NULL-terminated path of keys through nested objects. */
JsonbContainer *
json_get_path(JsonbContainer *c, const char *const *path)
{
	for (; c != NULL && *path != NULL; path++)
		c = json_get_container(c, *path);
	return c;
}

/* A string (or a number or boolean, as text) as a palloc'd C string; NULL if absent. */
char *
json_get_string(JsonbContainer *c, const char *key)
{
	JsonbValue	buf;

	return json_node_text(json_get(c, key, &buf));
}

/* The string at the end of a path: all keys but the last are objects. */
char *
json_path_string(JsonbContainer *c, const char *const *path)
{
	const char *const *last = path;

	while (last[1] != NULL)
		last++;
	for (; c != NULL && path != last; path++)
		c = json_get_container(c, *path);
	return c ? json_get_string(c, *last) : NULL;
}

bool
json_get_bool(JsonbContainer *c, const char *key, bool dflt)
{
	JsonbValue	buf;
	JsonbValue *v = json_get(c, key, &buf);

	return (v && v->type == jbvBool) ? v->val.boolean : dflt;
}

static bool
is_decimal(const char *s)
{
	bool		digits = false;

	if (*s == '-' || *s == '+')
		s++;
	for (; *s >= '0' && *s <= '9'; s++)
		digits = true;
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++)
			digits = true;
	return digits && *s == '\0';
}

/* A JSON number, or a decimal string as Shopify sends money, as numeric. */
bool
json_node_number(JsonbValue *v, Datum *numeric)
{
	if (v == NULL)
		return false;
	if (v->type == jbvNumeric)
	{
		*numeric = NumericGetDatum(v->val.numeric);
		return true;
	}
	if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

		/* numeric_in would ereport on garbage; Shopify sends plain decimals */
		if (!is_decimal(s))
			return false;
		*numeric = DirectFunctionCall3(numeric_in, CStringGetDatum(s),
									   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		return true;
	}
	return false;
}

int
json_array_size(JsonbContainer *c)
{
	return (c != NULL && JsonContainerIsArray(c)) ? JsonContainerSize(c) : 0;
}

JsonbContainer *
json_array_container(JsonbContainer *c, int i)
{
	JsonbValue *v = getIthJsonbValueFromContainer(c, i);

	return (v && v->type == jbvBinary) ? v->val.binary.data : NULL;
}

static bool
key_listed(const JsonbValue *k, const char *const *keys)
{
	for (; *keys; keys++)
		if ((int) strlen(*keys) == k->val.string.len &&
			memcmp(*keys, k->val.string.val, k->val.string.len) == 0)
			return true;
	return false;
}

static JsonbValue *
copy_without(JsonbContainer *c, const char *const *keys, JsonbParseState **ps)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_KEY && key_listed(&v, keys))
		{
			/* skip the key's value, scalar or whole container */
			int			depth = 0;

			do
			{
				tok = JsonbIteratorNext(&it, &v, false);
				if (tok == WJB_BEGIN_ARRAY || tok == WJB_BEGIN_OBJECT)
					depth++;
				else if (tok == WJB_END_ARRAY || tok == WJB_END_OBJECT)
					depth--;
			} while (depth > 0);
			continue;
		}
		res = pushJsonbValue(ps, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return res;
}

/*
 * A copy of object c without the listed keys (at any depth), so that an order
 * fetched with nested connections is stored in the same shape as one from a
 * bulk export.
 */
Jsonb *
json_without_keys(JsonbContainer *c, const char *const *keys)
{
	JsonbParseState *ps = NULL;

	return JsonbValueToJsonb(copy_without(c, keys, &ps));
}

/* The numeric id at the end of a Shopify GID ("gid://shopify/Order/123"); -1 if none. */
int64
gid_to_id(const char *gid)
{
	const char *p;
	int64		id = 0;

	if (gid == NULL)
		return -1;
	p = strrchr(gid, '/');
	p = p ? p + 1 : gid;
	if (*p == '\0')
		return -1;
	for (; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return -1;
		if (id > (PG_INT64_MAX - (*p - '0')) / 10)
			return -1;
		id = id * 10 + (*p - '0');
	}
	return id;
}

PG_FUNCTION_INFO_V1(converge_parse_json);

/* converge._parse_json(text) returns jsonb: the sync's parser, for tests */
Datum
converge_parse_json(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char	   *error;
	Jsonb	   *doc = json_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &error);

	if (doc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid JSON: %s", error)));
	PG_RETURN_JSONB_P(doc);
}
