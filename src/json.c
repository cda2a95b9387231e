/*-------------------------------------------------------------------------
 *
 * json.c
 *	  JSON from the network: parsed without throwing, read by path.
 *
 * Responses and export lines come from outside and may be malformed or cut
 * short.  jsonb_in would ereport, which in the middle of a sync would lose
 * the batch's context; json_parse instead runs PostgreSQL's own lexer and
 * parser (which report errors as values) and builds the Jsonb directly, so a
 * bad line is one parse for a good one and an error message for a bad one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "json.h"

typedef struct BuildState
{
	JsonbParseState *parse_state;
	JsonbValue *result;
} BuildState;

static void
build_object_start(void *state)
{
	BuildState *s = state;

	s->result = pushJsonbValue(&s->parse_state, WJB_BEGIN_OBJECT, NULL);
}

static void
build_object_end(void *state)
{
	BuildState *s = state;

	s->result = pushJsonbValue(&s->parse_state, WJB_END_OBJECT, NULL);
}

static void
build_array_start(void *state)
{
	BuildState *s = state;

	s->result = pushJsonbValue(&s->parse_state, WJB_BEGIN_ARRAY, NULL);
}

static void
build_array_end(void *state)
{
	BuildState *s = state;

	s->result = pushJsonbValue(&s->parse_state, WJB_END_ARRAY, NULL);
}

static void
build_field(void *state, char *fname, bool isnull)
{
	BuildState *s = state;
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.len = strlen(fname);
	v.val.string.val = fname;
	s->result = pushJsonbValue(&s->parse_state, WJB_KEY, &v);
}

static void
build_scalar(void *state, char *token, JsonTokenType type)
{
	BuildState *s = state;
	JsonbValue	v;

	switch (type)
	{
		case JSON_TOKEN_STRING:
			v.type = jbvString;
			v.val.string.len = strlen(token);
			v.val.string.val = token;
			break;
		case JSON_TOKEN_NUMBER:
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																CStringGetDatum(token),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1)));
			break;
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			v.type = jbvBool;
			v.val.boolean = (type == JSON_TOKEN_TRUE);
			break;
		default:
			v.type = jbvNull;
			break;
	}

	if (s->parse_state == NULL)
	{
		/* a bare scalar document is stored as a one-element raw array */
		JsonbValue	va;

		va.type = jbvArray;
		va.val.array.rawScalar = true;
		va.val.array.nElems = 1;
		s->result = pushJsonbValue(&s->parse_state, WJB_BEGIN_ARRAY, &va);
		s->result = pushJsonbValue(&s->parse_state, WJB_ELEM, &v);
		s->result = pushJsonbValue(&s->parse_state, WJB_END_ARRAY, NULL);
	}
	else if (s->parse_state->contVal.type == jbvArray)
		s->result = pushJsonbValue(&s->parse_state, WJB_ELEM, &v);
	else
		s->result = pushJsonbValue(&s->parse_state, WJB_VALUE, &v);
}

/*
 * Parse JSON text into a Jsonb.  On a syntax error (including a document cut
 * short) return NULL and set *error; never ereport for bad input.
 */
Jsonb *
json_parse(char *text, int len, char **error)
{
	JsonLexContext *lex = makeJsonLexContextCstringLen(text, len, PG_UTF8, true);
	BuildState	state = {0};
	JsonSemAction sem = {0};
	JsonParseErrorType rc;

	sem.semstate = &state;
	sem.object_start = build_object_start;
	sem.object_end = build_object_end;
	sem.array_start = build_array_start;
	sem.array_end = build_array_end;
	sem.object_field_start = build_field;
	sem.scalar = build_scalar;

	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
	{
		*error = json_errdetail(rc, lex);
		return NULL;
	}
	if (state.result == NULL)
	{
		*error = pstrdup("The input is empty.");
		return NULL;
	}
	*error = NULL;
	return JsonbValueToJsonb(state.result);
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
	JsonbValue *v = json_get(c, key, &buf);

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
json_get_number(JsonbContainer *c, const char *key, Datum *numeric)
{
	JsonbValue	buf;
	JsonbValue *v = json_get(c, key, &buf);

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
		Datum		d;

		/* numeric_in would ereport on garbage; Shopify sends plain decimals */
		if (!is_decimal(s))
			return false;
		d = DirectFunctionCall3(numeric_in, CStringGetDatum(s),
								ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		*numeric = d;
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
