/*-------------------------------------------------------------------------
 *
 * destinations.c
 *	  Destination URLs (what may receive events) and request signatures.
 *
 * A destination URL is where the database server will send buyers' data:
 * only https://, or http:// to this very machine when a superuser allows it
 * (converge.allow_http_destinations, for tests and local relays).  No user
 * info (it would show in converge.destinations), no fragment.  The URL is
 * parsed by libcurl, the library that will use it, so what is checked is
 * what is connected to.
 *
 * Signature: Converge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
 * "<t>.<body>" with the destination's secret>.  The timestamp lets the
 * receiver refuse old requests (replays of a captured request).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include "fmgr.h"
#include "utils/builtins.h"

#include "converge.h"
#include "destinations.h"

PG_FUNCTION_INFO_V1(converge_destination_url_sql);

/* A numeric loopback address (127.0.0.0/8, ::1) or localhost: never a name DNS could point elsewhere. */
static bool
is_loopback(const char *host)
{
	struct in_addr v4;

	if (pg_strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0)
		return true;
	return inet_pton(AF_INET, host, &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

static void
refuse(const char *url, const char *detail, const char *hint)
{
	/* a query string may carry a token: it stays out of messages and logs */
	char	   *shown = pnstrdup(url, strcspn(url, "?"));

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid destination URL \"%s%s\"", shown, strchr(url, '?') ? "?..." : ""),
			 errdetail("%s", detail),
			 errhint("%s", hint)));
}

/*
 * What is wrong with a destination URL (NULL: nothing; *normal is then the
 * URL as libcurl writes it back), and a hint.
 */
const char *
converge_destination_url_problem(const char *url, char **normal_out, const char **hint_out)
{
	CURLU	   *u;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *fragment = NULL;
	char	   *normal = NULL;
	const char *problem = NULL;
	const char *hint = "Use an https:// URL, for example https://hooks.example.com/converge.";

	if (strlen(url) > 2048 || strpbrk(url, " \t\r\n") != NULL)
	{
		*normal_out = NULL;
		*hint_out = hint;
		return "The URL is longer than 2048 characters or contains white space.";
	}
	u = curl_url();
	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		problem = "It is not an absolute URL with a scheme and a host.";
	else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
		problem = "It contains user info; credentials in a URL would be visible in converge.destinations.";
	else if (curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK)
		problem = "It contains a fragment.";
	else if (strcmp(scheme, "https") == 0)
		;
	else if (strcmp(scheme, "http") != 0)
		problem = "Only https:// is allowed.";
	else if (!is_loopback(host))
	{
		problem = "http:// is allowed only to this machine (127.0.0.1, ::1, localhost).";
		hint = "Events carry buyers' data: use https://.";
	}
	else if (!converge_allow_http_destinations)
	{
		problem = "http:// destinations are off.";
		hint = "A superuser can set converge.allow_http_destinations = on for tests and local relays.";
	}
	if (problem == NULL && curl_url_get(u, CURLUPART_URL, &normal, 0) != CURLUE_OK)
		problem = "It cannot be written back as a URL.";

	*normal_out = problem == NULL ? pstrdup(normal) : NULL;
	*hint_out = hint;
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(fragment);
	curl_free(normal);
	curl_url_cleanup(u);
	return problem;
}

char *
converge_destination_url(const char *url)
{
	char	   *normal;
	const char *hint;
	const char *problem = converge_destination_url_problem(url, &normal, &hint);

	if (problem != NULL)
		refuse(url, problem, hint);
	return normal;
}

Datum
converge_destination_url_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(converge_destination_url(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

/* The Converge-Signature header line for a body sent at time t. */
char *
converge_signature_header(const char *secret, int64 t, const char *body, size_t body_len)
{
	char		prefix[32];
	int			plen = snprintf(prefix, sizeof(prefix), INT64_FORMAT ".", t);
	char	   *message = palloc(plen + body_len);
	unsigned char mac[CONVERGE_SHA256_LEN];
	char		hex[CONVERGE_SHA256_LEN * 2 + 1];

	memcpy(message, prefix, plen);
	memcpy(message + plen, body, body_len);
	converge_hmac_sha256(secret, strlen(secret), message, plen + body_len, mac);
	hex[hex_encode((const char *) mac, CONVERGE_SHA256_LEN, hex)] = '\0';
	pfree(message);
	return psprintf("Converge-Signature: t=" INT64_FORMAT ",v1=%s", t, hex);
}
