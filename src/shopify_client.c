/*-------------------------------------------------------------------------
 *
 * shopify_client.c
 *	  The Shopify Admin API: the client-credentials token and GraphQL
 *	  requests, paced by the cost bucket and retried when that is right.
 *
 * Requests are paced from the throttleStatus Shopify reports with every
 * answer, so that a query is only sent when the bucket can pay for it and
 * THROTTLED stays rare.  Transient failures (transport errors, timeouts,
 * 429, 5xx, THROTTLED, malformed or truncated bodies) are retried with
 * exponential backoff and jitter, a bounded number of times; a malformed or
 * truncated body is also recorded in converge.sync_errors.  Configuration
 * problems (credentials, unknown store, app not installed, access denied)
 * are errors with a hint, never retried here: the caller records them on the
 * source.  No wait ever runs past the pass's deadline.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "converge.h"
#include "http.h"
#include "ingest.h"
#include "json.h"
#include "sync.h"

#define ERRCODE_CONFIGURATION ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION
#define SHOPIFY_HINT_CREDENTIALS \
	"Check the Client ID and Client Secret on the app's Settings page in the Shopify Dev Dashboard, " \
	"then call converge.set_credentials(source, client_id, client_secret)."

double
backoff_seconds(int attempt)
{
	double		delay = converge_retry_base_ms / 1000.0;
	double		cap = converge_retry_max_ms / 1000.0;

	while (attempt-- > 0 && delay < cap)
		delay *= 2;
	delay = Min(delay, cap);
	/* "equal jitter": at least half the delay, so retries still back off */
	return delay / 2 + pg_prng_double(&pg_global_prng_state) * delay / 2;
}

/*
 * Sleep, interruptibly.  false (and nothing slept) when the wait would run
 * past the pass's deadline: the caller stops and the next pass goes on.
 */
bool
sync_sleep(SyncContext *ctx, double seconds)
{
	TimestampTz until;

	if (seconds <= 0)
		return true;
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) (seconds * 1000));
	if (until > ctx->deadline)
	{
		ctx->out_of_time = true;
		return false;
	}
	for (;;)
	{
		long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		if (ms <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

static char *
excerpt(const char *body, int len)
{
	int			n = Min(len, 300);

	return pnstrdup(body, pg_mbcliplen(body, n, n));
}

static void
config_error(const char *message, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION),
			 errmsg("%s", message),
			 detail ? errdetail("%s", detail) : 0,
			 errhint("%s", hint)));
}

/* What a non-2xx answer means; returns only when it is worth retrying. */
static void
classify_failure(SyncContext *ctx, const HttpResult *res, StringInfo body, const char *what)
{
	char	   *detail = psprintf("HTTP %ld from %s: %s", res->status, what, excerpt(body->data, body->len));

	switch (res->status)
	{
		case 402:
			config_error(psprintf("Shopify store \"%s\" is frozen or unpaid", ctx->store), detail,
						 "The store owner must settle the store's billing in Shopify; the sync resumes by itself.");
			break;
		case 403:
			config_error(psprintf("Shopify denied access to store \"%s\"", ctx->store), detail,
						 "Make sure the app is installed on the store and its released version has the scopes "
						 "read_orders and read_all_orders (Dev Dashboard > Versions).");
			break;
		case 404:
			config_error(psprintf("Shopify store \"%s\" was not found", ctx->store), detail,
						 "Check the store handle (the part before .myshopify.com) and that the app is installed "
						 "on that store; fix it by dropping and re-creating the source.");
			break;
		case 423:
			config_error(psprintf("Shopify store \"%s\" is locked", ctx->store), detail,
						 "The store is locked by Shopify; the sync resumes once it is unlocked.");
			break;
		default:
			if (res->status == 408 || res->status == 429 || res->status >= 500)
				return;			/* transient */
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_EXCEPTION),
					 errmsg("unexpected answer from Shopify store \"%s\"", ctx->store),
					 errdetail("%s", detail),
					 errhint("Check converge.sync_errors and the API version of the source.")));
	}
}

static void
save_token(SyncContext *ctx)
{
	Datum		values[4];
	Oid			types[4] = {INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

	values[0] = Int64GetDatum(ctx->source_id);
	values[1] = CStringGetTextDatum(ctx->access_token);
	values[2] = TimestampTzGetDatum(ctx->token_obtained_at);
	values[3] = TimestampTzGetDatum(ctx->token_expires_at);
	if (SPI_execute_with_args("UPDATE converge.source_secrets SET access_token = $2, token_obtained_at = $3, "
							  "token_expires_at = $4 WHERE source_id = $1",
							  4, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "converge: could not save the access token");
}

static void
save_scopes(SyncContext *ctx, const char *scopes)
{
	Datum		values[3];
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	char		nulls[3] = {' ', ' ', ' '};

	values[0] = Int64GetDatum(ctx->source_id);
	values[1] = CStringGetTextDatum(scopes ? scopes : "");
	values[2] = nullable_text(ctx->scope_warning, &nulls[2]);
	if (SPI_execute_with_args("WITH s AS (UPDATE converge.source_secrets SET token_scopes = $2 WHERE source_id = $1) "
							  "UPDATE converge.sync_state SET scope_warning = $3 WHERE source_id = $1",
							  3, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "converge: could not save the token's scopes");
}

static bool
has_scope(const char *scopes, const char *scope)
{
	char	   *copy = pstrdup(scopes ? scopes : "");
	char	   *save;
	char	   *tok;

	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
		if (strcmp(tok, scope) == 0)
			return true;
	return false;
}

static void
check_scopes(SyncContext *ctx, const char *scopes)
{
	if (!has_scope(scopes, "read_orders") && !has_scope(scopes, "write_orders"))
		config_error(psprintf("the app on store \"%s\" cannot read orders", ctx->store),
					 psprintf("The token's scopes are \"%s\".", scopes ? scopes : ""),
					 "In the Dev Dashboard, add read_orders and read_all_orders to the app version's scopes "
					 "(Versions > Create a version), release it, and approve the update on the store.");

	ctx->scope_warning = NULL;
	if (!has_scope(scopes, "read_all_orders"))
		ctx->scope_warning = MemoryContextStrdup(ctx->cxt,
												 "The token lacks read_all_orders: Shopify shows only the last 60 days of orders, "
												 "so older orders are missing. In the Dev Dashboard, request access to Read all orders "
												 "(API access requests), add read_all_orders to the app version's scopes and release it, "
												 "then call converge.resync_source(source).");
	save_scopes(ctx, scopes);
}

/*
 * Make sure ctx->access_token is valid for a while: renew at 90 % of its life,
 * when missing, or when the caller cleared it after a 401.
 */
void
shopify_ensure_token(SyncContext *ctx)
{
	TimestampTz now = GetCurrentTimestamp();
	StringInfoData body;
	StringInfoData answer;
	HttpRequest req = {0};
	HttpResult	res;
	int			attempt;

	if (ctx->access_token != NULL &&
		now < ctx->token_obtained_at + (ctx->token_expires_at - ctx->token_obtained_at) * 9 / 10)
		return;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"client_id\":");
	escape_json(&body, ctx->client_id);
	appendStringInfoString(&body, ",\"client_secret\":");
	escape_json(&body, ctx->client_secret);
	appendStringInfoString(&body, ",\"grant_type\":\"client_credentials\"}");
	initStringInfo(&answer);

	req.method = "POST";
	req.url = converge_store_url(ctx->store, "/admin/oauth/access_token");
	req.body = body.data;
	req.body_len = body.len;
	req.content_type = "application/json";

	for (attempt = 0;; attempt++)
	{
		const char *reason;

		http_request(&req, &answer, &res);
		ctx->requests++;
		if (res.curl_code != 0)
			reason = res.error;
		else if (res.status == 200)
		{
			char	   *error;
			Jsonb	   *doc = json_parse(answer.data, answer.len, &error);
			char	   *token = doc ? json_get_string(&doc->root, "access_token") : NULL;
			char	   *scopes = doc ? json_get_string(&doc->root, "scope") : NULL;
			char	   *expires = doc ? json_get_string(&doc->root, "expires_in") : NULL;
			double		ttl = expires ? strtod(expires, NULL) : 0;

			if (token != NULL && *token != '\0')
			{
				explicit_bzero(body.data, body.len);
				if (ttl <= 0)
					ttl = 86399;	/* documented lifetime when not given */
				ctx->access_token = MemoryContextStrdup(ctx->cxt, token);
				ctx->token_obtained_at = GetCurrentTimestamp();
				ctx->token_expires_at = TimestampTzPlusMilliseconds(ctx->token_obtained_at, (int64) (ttl * 1000));
				save_token(ctx);
				check_scopes(ctx, scopes);
				return;
			}
			/* no payload: a half-readable answer may still hold the token */
			record_sync_error(ctx->source_id, "bad_response", "malformed access token answer",
							  error, NULL, 0);
			reason = "malformed access token answer";
		}
		else if (res.status == 400 || res.status == 401)
		{
			char	   *error;
			Jsonb	   *doc = json_parse(answer.data, answer.len, &error);
			char	   *code = doc ? json_get_string(&doc->root, "error") : NULL;
			char	   *desc = doc ? json_get_string(&doc->root, "error_description") : NULL;
			char	   *detail = psprintf("Shopify answered %ld %s%s%s", res.status,
										  code ? code : excerpt(answer.data, answer.len),
										  desc ? ": " : "", desc ? desc : "");

			explicit_bzero(body.data, body.len);
			if (desc && strstr(desc, "not installed") != NULL)
				config_error(psprintf("the app is not installed on store \"%s\"", ctx->store), detail,
							 "Install it from the Dev Dashboard: Home > Distribution > Manage custom install link, "
							 "generate a link for this store and complete the installation.");
			config_error(psprintf("Shopify refused the app credentials for store \"%s\"", ctx->store),
						 detail, SHOPIFY_HINT_CREDENTIALS);
		}
		else
		{
			classify_failure(ctx, &res, &answer, "the token endpoint");
			reason = psprintf("HTTP %ld", res.status);
		}

		if (attempt >= converge_max_retries)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not get an access token for store \"%s\"", ctx->store),
					 errdetail("Gave up after %d attempts; the last failure was: %s", attempt + 1, reason),
					 errhint("The next pass tries again.")));
		ctx->retries++;
		if (!sync_sleep(ctx, res.retry_after >= 0 ? res.retry_after : backoff_seconds(attempt)))
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not get an access token for store \"%s\" in this pass", ctx->store),
					 errdetail("The last failure was: %s", reason)));
	}
}

static double
cost_number(JsonbContainer *c, const char *key)
{
	char	   *s = json_get_string(c, key);

	return s ? strtod(s, NULL) : -1;
}

static void
update_bucket(SyncContext *ctx, JsonbContainer *root, double *requested)
{
	static const char *const cost_path[] = {"extensions", "cost", NULL};
	JsonbContainer *cost = json_get_path(root, cost_path);
	JsonbContainer *status = json_get_container(cost, "throttleStatus");

	*requested = cost ? cost_number(cost, "requestedQueryCost") : -1;
	if (status == NULL)
		return;
	ctx->bucket_max = cost_number(status, "maximumAvailable");
	ctx->bucket_available = cost_number(status, "currentlyAvailable");
	ctx->restore_rate = cost_number(status, "restoreRate");
	ctx->bucket_at = GetCurrentTimestamp();
	ctx->bucket_known = ctx->bucket_max > 0 && ctx->restore_rate > 0 && ctx->bucket_available >= 0;
}

/* Wait until the bucket can pay for a query of this cost; false if out of time. */
static bool
pace(SyncContext *ctx, double cost)
{
	double		available;
	double		elapsed;

	if (!ctx->bucket_known)
		return true;
	elapsed = (GetCurrentTimestamp() - ctx->bucket_at) / (double) USECS_PER_SEC;
	available = Min(ctx->bucket_max, ctx->bucket_available + elapsed * ctx->restore_rate);
	cost = Min(cost, ctx->bucket_max);
	if (available >= cost)
		return true;
	return sync_sleep(ctx, (cost - available) / ctx->restore_rate);
}

static bool
is_throttled(JsonbContainer *errors)
{
	int			i;
	static const char *const code_path[] = {"extensions", "code", NULL};

	for (i = 0; i < json_array_size(errors); i++)
	{
		char	   *code = json_path_string(json_array_container(errors, i), code_path);

		if (code && strcmp(code, "THROTTLED") == 0)
			return true;
	}
	return false;
}

static char *
errors_text(JsonbContainer *errors, const char *body, int len)
{
	StringInfoData buf;
	int			i;

	if (errors == NULL || !JsonContainerIsArray(errors))
		return excerpt(body, len);
	initStringInfo(&buf);
	for (i = 0; i < json_array_size(errors) && i < 5; i++)
	{
		char	   *msg = json_get_string(json_array_container(errors, i), "message");

		appendStringInfo(&buf, "%s%s", i > 0 ? "; " : "", msg ? msg : "(no message)");
	}
	return buf.data;
}

/*
 * Run a GraphQL query.  Returns the whole answer (with "data"), or NULL when
 * the pass ran out of time waiting; ereports when the failure is not worth
 * retrying or retries are exhausted.
 */
Jsonb *
shopify_graphql(SyncContext *ctx, const char *query, const char *variables, int cost_estimate)
{
	StringInfoData body;
	StringInfoData answer;
	HttpRequest req = {0};
	HttpResult	res;
	uint32		qhash = hash_bytes((const unsigned char *) query, strlen(query));
	bool		renewed = false;
	int			attempt = 0;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"query\":");
	escape_json(&body, query);
	appendStringInfo(&body, ",\"variables\":%s}", variables ? variables : "{}");
	initStringInfo(&answer);

	req.method = "POST";
	req.url = converge_store_url(ctx->store, psprintf("/admin/api/%s/graphql.json", ctx->api_version));
	req.body = body.data;
	req.body_len = body.len;
	req.content_type = "application/json";

	for (;;)
	{
		const char *reason;
		double		estimate = cost_estimate;
		double		wait = -1;

		if (ctx->cost_hash[qhash % COST_MEMORY] == qhash && ctx->cost_seen[qhash % COST_MEMORY] > estimate)
			estimate = ctx->cost_seen[qhash % COST_MEMORY];
		shopify_ensure_token(ctx);
		if (!pace(ctx, estimate))
			return NULL;

		req.access_token = ctx->access_token;
		http_request(&req, &answer, &res);
		ctx->requests++;
		if (res.api_version[0])
			strlcpy(ctx->api_version_seen, res.api_version, sizeof(ctx->api_version_seen));

		if (res.curl_code != 0)
		{
			reason = psprintf("%s%s", res.error, res.timed_out ? " (timeout)" : "");
			if (answer.len > 0)
				record_sync_error(ctx->source_id, "bad_response", "truncated answer from Shopify",
								  reason, answer.data, answer.len);
		}
		else if (res.status == 401)
		{
			if (renewed)
				config_error(psprintf("Shopify refused a fresh access token for store \"%s\"", ctx->store),
							 excerpt(answer.data, answer.len), SHOPIFY_HINT_CREDENTIALS);
			/* an expired or revoked token: get a new one, once */
			renewed = true;
			ctx->access_token = NULL;
			ctx->retries++;
			continue;
		}
		else if (res.status == 200)
		{
			char	   *error;
			Jsonb	   *doc = json_parse(answer.data, answer.len, &error);

			if (doc == NULL || !JsonContainerIsObject(&doc->root))
			{
				record_sync_error(ctx->source_id, "bad_response", "malformed JSON from Shopify",
								  error, answer.data, answer.len);
				reason = psprintf("malformed JSON: %s", error ? error : "not an object");
			}
			else
			{
				JsonbContainer *errors = json_get_container(&doc->root, "errors");
				double		requested;

				update_bucket(ctx, &doc->root, &requested);
				if (requested > 0)
				{
					ctx->cost_hash[qhash % COST_MEMORY] = qhash;
					ctx->cost_seen[qhash % COST_MEMORY] = requested;
					ctx->last_query_cost = requested;
				}
				if (errors != NULL && is_throttled(errors))
				{
					ctx->throttled++;
					reason = "THROTTLED";
					if (ctx->bucket_known && requested > 0)
						wait = Max(0.0, (Min(requested, ctx->bucket_max) - ctx->bucket_available) / ctx->restore_rate);
					/* throttling is pacing, not failure: it does not use up retries */
					if (!sync_sleep(ctx, wait >= 0 ? wait : 1.0))
						return NULL;
					continue;
				}
				if (errors != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_CONNECTION_EXCEPTION),
							 errmsg("Shopify store \"%s\" refused a query", ctx->store),
							 errdetail("%s", errors_text(errors, answer.data, answer.len)),
							 errhint("Check the source's API version (converge.alter_source) and the app's scopes.")));
				if (json_get_container(&doc->root, "data") == NULL)
				{
					record_sync_error(ctx->source_id, "bad_response", "answer from Shopify without data",
									  NULL, answer.data, answer.len);
					reason = "answer without data";
				}
				else
					return doc;
			}
		}
		else
		{
			classify_failure(ctx, &res, &answer, "the GraphQL endpoint");
			reason = psprintf("HTTP %ld", res.status);
			if (res.status == 429)
				ctx->throttled++;
		}

		if (attempt >= converge_max_retries)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("Shopify store \"%s\" did not answer usably", ctx->store),
					 errdetail("Gave up after %d attempts; the last failure was: %s", attempt + 1, reason),
					 errhint("The next pass tries again; converge.sync_errors keeps malformed answers.")));
		ctx->retries++;
		if (!sync_sleep(ctx, res.retry_after >= 0 ? res.retry_after : backoff_seconds(attempt)))
			return NULL;
		attempt++;
	}
}
