/*-------------------------------------------------------------------------
 *
 * hmac.c
 *	  HMAC-SHA256 signatures: Shopify webhooks and OAuth query strings.
 *
 * Verification never returns early on the secret-dependent comparison: the
 * expected MAC is rendered in the same encoding as the one received and the
 * two are compared with CRYPTO_memcmp, whose time does not depend on where
 * they differ.  A malformed signature is simply not valid (false), never an
 * error: it comes from the network, not from the caller.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "converge.h"

#define SHA256_B64_LEN 44		/* base64 of 32 bytes, with padding */
#define SHA256_HEX_LEN 64

PG_FUNCTION_INFO_V1(converge_verify_webhook_hmac);
PG_FUNCTION_INFO_V1(converge_verify_oauth_hmac);

void
converge_hmac_sha256(const char *key, size_t keylen,
					 const char *data, size_t datalen, unsigned char *out)
{
	unsigned int outlen = 0;

	if (HMAC(EVP_sha256(), key, (int) keylen,
			 (const unsigned char *) data, datalen, out, &outlen) == NULL ||
		outlen != CONVERGE_SHA256_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA256")));
}

bool
converge_timingsafe_equal(const char *a, const char *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

/* The secret is configuration, not input: a missing one is the caller's bug. */
static char *
required_secret(FunctionCallInfo fcinfo, int argno, size_t *len)
{
	text	   *secret;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("HMAC secret must not be null"),
				 errhint("Pass the app's client secret from the Shopify Dev Dashboard.")));
	secret = PG_GETARG_TEXT_PP(argno);
	*len = VARSIZE_ANY_EXHDR(secret);
	if (*len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("HMAC secret must not be empty"),
				 errhint("Pass the app's client secret from the Shopify Dev Dashboard.")));
	return VARDATA_ANY(secret);
}

/*
 * converge.verify_webhook_hmac(body bytea, hmac_header text, secret text)
 *
 * Shopify signs the raw body bytes: base64(HMAC-SHA256(secret, body)).
 */
Datum
converge_verify_webhook_hmac(PG_FUNCTION_ARGS)
{
	size_t		secretlen;
	char	   *secret = required_secret(fcinfo, 2, &secretlen);
	bytea	   *body;
	text	   *header;
	unsigned char mac[CONVERGE_SHA256_LEN];
	char		expected[SHA256_B64_LEN + 1];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	body = PG_GETARG_BYTEA_PP(0);
	header = PG_GETARG_TEXT_PP(1);

	/* the length of a signature is public; only its content is secret */
	if (VARSIZE_ANY_EXHDR(header) != SHA256_B64_LEN)
		PG_RETURN_BOOL(false);

	converge_hmac_sha256(secret, secretlen,
						 VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), mac);
	if (EVP_EncodeBlock((unsigned char *) expected, mac, CONVERGE_SHA256_LEN) != SHA256_B64_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not base64-encode HMAC")));

	PG_RETURN_BOOL(converge_timingsafe_equal(expected, VARDATA_ANY(header), SHA256_B64_LEN));
}

/* ---- OAuth query strings ---- */

typedef struct QueryParam
{
	char	   *key;			/* decoded */
	char	   *value;			/* decoded */
	int			position;		/* keeps repeated keys in their order */
} QueryParam;

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* application/x-www-form-urlencoded decoding; false if a %-escape is broken */
static bool
form_decode(const char *s, size_t len, char **out)
{
	StringInfoData buf;
	size_t		i;

	initStringInfo(&buf);
	for (i = 0; i < len; i++)
	{
		if (s[i] == '+')
			appendStringInfoChar(&buf, ' ');
		else if (s[i] == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= len)
				return false;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			appendStringInfoChar(&buf, (char) (hi * 16 + lo));
			i += 2;
		}
		else
			appendStringInfoChar(&buf, s[i]);
	}
	*out = buf.data;
	return true;
}

/* encodeURIComponent, which is how Shopify's SDKs rebuild the signed message */
static void
append_uri_component(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			strchr("-_.!~*'()", c) != NULL)
			appendStringInfoChar(buf, (char) c);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 0xf]);
		}
	}
}

static int
param_cmp(const void *a, const void *b)
{
	const QueryParam *pa = (const QueryParam *) a;
	const QueryParam *pb = (const QueryParam *) b;
	int			r = strcmp(pa->key, pb->key);

	return r != 0 ? r : pa->position - pb->position;
}

/*
 * converge.verify_oauth_hmac(query_string text, secret text
 *							  [, max_age interval])
 *
 * The message is the query without "hmac" and "signature", sorted by key,
 * as k=v pairs joined by '&' and percent-encoded as encodeURIComponent does;
 * the MAC is lowercase hex.  With max_age, "timestamp" must also be within
 * max_age of the current time (Shopify's SDKs use 90 seconds).
 */
Datum
converge_verify_oauth_hmac(PG_FUNCTION_ARGS)
{
	size_t		secretlen;
	char	   *secret = required_secret(fcinfo, 1, &secretlen);
	char	   *query;
	char	   *given_hmac = NULL;
	char	   *timestamp = NULL;
	QueryParam *params;
	int			nparams = 0;
	int			maxparams;
	char	   *p;
	StringInfoData msg;
	unsigned char mac[CONVERGE_SHA256_LEN];
	char		expected[SHA256_HEX_LEN + 1];
	char		given[SHA256_HEX_LEN];
	int			i;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (*query == '?')
		query++;

	maxparams = 1;
	for (p = query; *p; p++)
		if (*p == '&')
			maxparams++;
	params = palloc(sizeof(QueryParam) * maxparams);

	for (p = query; p != NULL && *p;)
	{
		char	   *amp = strchr(p, '&');
		size_t		len = amp ? (size_t) (amp - p) : strlen(p);
		char	   *eq = memchr(p, '=', len);
		char	   *key;
		char	   *value;

		if (len > 0)
		{
			if (!form_decode(p, eq ? (size_t) (eq - p) : len, &key) ||
				!form_decode(eq ? eq + 1 : "", eq ? len - (eq - p) - 1 : 0, &value))
				PG_RETURN_BOOL(false);

			if (strcmp(key, "hmac") == 0)
			{
				if (given_hmac != NULL)
					PG_RETURN_BOOL(false);	/* two signatures: ambiguous */
				given_hmac = value;
			}
			else if (strcmp(key, "signature") != 0)
			{
				if (strcmp(key, "timestamp") == 0)
					timestamp = value;
				params[nparams].key = key;
				params[nparams].value = value;
				params[nparams].position = nparams;
				nparams++;
			}
		}
		p = amp ? amp + 1 : NULL;
	}

	if (given_hmac == NULL || strlen(given_hmac) != SHA256_HEX_LEN)
		PG_RETURN_BOOL(false);

	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
	{
		Interval   *max_age = PG_GETARG_INTERVAL_P(2);
		int64		max_usecs = max_age->time +
			((int64) max_age->day * SECS_PER_DAY +
			 (int64) max_age->month * DAYS_PER_MONTH * SECS_PER_DAY) * USECS_PER_SEC;
		int64		now_secs = (GetCurrentTimestamp() / USECS_PER_SEC) +
			(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
		char	   *endp;
		long long	ts;

		if (timestamp == NULL || *timestamp == '\0')
			PG_RETURN_BOOL(false);
		errno = 0;
		ts = strtoll(timestamp, &endp, 10);
		if (errno != 0 || *endp != '\0')
			PG_RETURN_BOOL(false);
		/* compared in seconds: a huge timestamp must not overflow into "fresh" */
		if (ts < now_secs - max_usecs / USECS_PER_SEC || ts > now_secs + max_usecs / USECS_PER_SEC)
			PG_RETURN_BOOL(false);
	}

	qsort(params, nparams, sizeof(QueryParam), param_cmp);
	initStringInfo(&msg);
	for (i = 0; i < nparams; i++)
	{
		if (i > 0)
			appendStringInfoChar(&msg, '&');
		append_uri_component(&msg, params[i].key);
		appendStringInfoChar(&msg, '=');
		append_uri_component(&msg, params[i].value);
	}

	converge_hmac_sha256(secret, secretlen, msg.data, msg.len, mac);
	hex_encode((const char *) mac, CONVERGE_SHA256_LEN, expected);
	for (i = 0; i < SHA256_HEX_LEN; i++)
		given[i] = (given_hmac[i] >= 'A' && given_hmac[i] <= 'F') ?
			given_hmac[i] - 'A' + 'a' : given_hmac[i];

	PG_RETURN_BOOL(converge_timingsafe_equal(expected, given, SHA256_HEX_LEN));
}
