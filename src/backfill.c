/*-------------------------------------------------------------------------
 *
 * backfill.c
 *	  The historical sync: a bulk export of every order, streamed into the
 *	  tables.
 *
 * One step does one bounded thing and leaves converge.sync_state saying
 * what comes next: start the bulk operation (or adopt ours if one is already
 * running), poll it, cut its JSONL file into parts, or load the next batch
 * of a part (export_loader.c); background workers (workers.c) load the other
 * parts at the same time.  When every part is loaded, the source moves on to
 * incremental sync from the moment the export started.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "converge.h"
#include "ingest.h"
#include "json.h"
#include "order_mapping.h"
#include "sync.h"

#define MAX_BULK_ATTEMPTS 5		/* failed exports in a row before it is an error */

typedef struct BulkState
{
	char	   *operation_id;
	char	   *since;			/* catch-up export: ISO timestamp; NULL: all orders */
	char	   *status;
	char	   *url;
	int64		file_size;
	int32		attempts;
} BulkState;

static char *export_selection = NULL;

/*
 * The export query, generated from the column mappings: every order, or (a
 * catch-up) those updated since `since` (since is NULL or an ISO timestamp).
 */
static char *
export_query(const char *since)
{
	if (export_selection == NULL)
		export_selection = MemoryContextStrdup(TopMemoryContext,
											   psprintf("{ edges { node { %s"
														"lineItems { edges { node { %s} } } "
														"refunds { %srefundLineItems { edges { node { %s} } } } "
														"} } }",
														mapping_selection(&order_mapping),
														mapping_selection(&line_item_mapping),
														mapping_selection(&refund_mapping),
														mapping_selection(&refund_line_item_mapping)));
	if (since == NULL)
		return psprintf("{ orders %s }", export_selection);
	return psprintf("{ orders(query: \"updated_at:>='%s'\") %s }", since, export_selection);
}

static void
load_state(SyncContext *ctx, BulkState *st)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (SPI_execute_with_args("SELECT bulk_operation_id, bulk_status, bulk_url, coalesce(bulk_file_size, 0), bulk_attempts, "
							  "to_char(bulk_since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
							  "FROM converge.sync_state WHERE source_id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "converge: no sync state for source " INT64_FORMAT, ctx->source_id);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	st->operation_id = SPI_getvalue(tup, desc, 1);
	st->status = SPI_getvalue(tup, desc, 2);
	st->url = SPI_getvalue(tup, desc, 3);
	st->file_size = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	st->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	st->since = SPI_getvalue(tup, desc, 6);
}

static void
exec_state(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	if (SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "converge: could not update the sync state");
}

/* Forget the current export so that the next step starts another. */
static void
restart_export(SyncContext *ctx, bool count_attempt)
{
	Oid			types[2] = {INT8OID, BOOLOID};
	Datum		values[2] = {Int64GetDatum(ctx->source_id), BoolGetDatum(count_attempt)};

	export_release_part(ctx);
	exec_state("WITH p AS (DELETE FROM converge.backfill_parts WHERE source_id = $1) "
			   "UPDATE converge.sync_state SET bulk_operation_id = NULL, bulk_status = NULL, bulk_url = NULL, "
			   "bulk_object_count = NULL, bulk_file_size = NULL, bulk_ready_at = NULL, "
			   "bulk_attempts = bulk_attempts + CASE WHEN $2 THEN 1 ELSE 0 END WHERE source_id = $1",
			   2, types, values, NULL);
}

static void
adopt_operation(SyncContext *ctx, JsonbContainer *op)
{
	Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[4];
	char	   *created = json_get_string(op, "createdAt");
	char	   *id = json_get_string(op, "id");
	TimestampTz started;

	if (id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_EXCEPTION),
				 errmsg("Shopify store \"%s\" described a bulk operation without an id", ctx->store)));
	export_release_part(ctx);

	/* changes made while the export runs are caught by the incremental sync from here */
	if (created == NULL || !parse_timestamptz(created, &started))
		started = GetCurrentTimestamp();
	values[0] = Int64GetDatum(ctx->source_id);
	values[1] = CStringGetTextDatum(id);
	values[2] = CStringGetTextDatum(json_get_string(op, "status") ? json_get_string(op, "status") : "CREATED");
	values[3] = TimestampTzGetDatum(started);
	exec_state("WITH p AS (DELETE FROM converge.backfill_parts WHERE source_id = $1) "
			   "UPDATE converge.sync_state SET bulk_operation_id = $2, bulk_status = $3, bulk_started_at = $4, "
			   "bulk_url = NULL, bulk_ready_at = NULL WHERE source_id = $1",
			   4, types, values, NULL);
}

#define OPERATION_FIELDS "id status errorCode objectCount fileSize url partialDataUrl createdAt completedAt query"

/* A bulk operation as Shopify describes it (data.<root>), or NULL. */
static JsonbContainer *
fetch_operation(SyncContext *ctx, const char *query, const char *variables, const char *root)
{
	const char *path[] = {"data", root, NULL};
	Jsonb	   *doc = shopify_graphql(ctx, query, variables, 1);

	return doc ? json_get_path(&doc->root, path) : NULL;
}

/* A running export of ours (one this source started and lost track of). */
static JsonbContainer *
running_export(SyncContext *ctx, BulkState *st)
{
	JsonbContainer *op = fetch_operation(ctx, "{ currentBulkOperation(type: QUERY) { " OPERATION_FIELDS " } }",
										 NULL, "currentBulkOperation");
	char	   *status;
	char	   *query;

	status = op ? json_get_string(op, "status") : NULL;
	query = op ? json_get_string(op, "query") : NULL;
	if (status && (strcmp(status, "CREATED") == 0 || strcmp(status, "RUNNING") == 0) &&
		query && strcmp(query, export_query(st->since)) == 0)
		return op;
	return NULL;
}

static bool
start_export(SyncContext *ctx, BulkState *st)
{
	static const char *const run_path[] = {"data", "bulkOperationRunQuery", NULL};
	JsonbContainer *op;
	JsonbContainer *result;
	JsonbContainer *errors;
	Jsonb	   *doc;

	if (st->attempts >= MAX_BULK_ATTEMPTS)
	{
		/* visible, and not hammered: sync.c backs off before the next try */
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(ctx->source_id)};

		sync_note_error(ctx, "transient", "the bulk export of all orders failed repeatedly",
						psprintf("%d exports in a row ended FAILED, EXPIRED or CANCELED (see converge.sync_errors).",
								 st->attempts),
						"The sync keeps trying with a growing delay; converge.resync_source(source) starts over at once.");
		exec_state("UPDATE converge.sync_state SET bulk_attempts = 0 WHERE source_id = $1", 1, types, values, NULL);
		return false;
	}

	/* a pass that died after starting an export left it running: use it */
	op = running_export(ctx, st);
	if (op == NULL && ctx->out_of_time)
		return false;
	if (op != NULL)
	{
		adopt_operation(ctx, op);
		return true;
	}

	doc = shopify_graphql(ctx,
						  /* grouped: every order's children follow it (the default before 2026-01) */
						  "mutation($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: true) { "
						  "bulkOperation { id status createdAt } userErrors { field message code } } }",
						  psprintf("{\"q\":%s}", json_quote(export_query(st->since))), 10);
	if (doc == NULL)
		return false;
	result = json_get_path(&doc->root, run_path);
	errors = json_get_container(result, "userErrors");
	if (json_array_size(errors) > 0)
	{
		char	   *message = json_get_string(json_array_container(errors, 0), "message");

		/* another export of this app is running (not ours, or the limit is reached): wait */
		record_sync_error(ctx->source_id, "bulk_operation", "Shopify did not start the bulk export",
						  message, NULL, 0);
		sync_note_error(ctx, "transient", "Shopify did not start the bulk export of all orders",
						message ? message : "(no message)",
						message && strstr(message, "in progress") ?
						"Another bulk query of this app is running on the store; the sync starts its own when it ends." :
						"The sync tries again with a growing delay.");
		return false;
	}
	op = json_get_container(result, "bulkOperation");
	if (op == NULL || json_get_string(op, "id") == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_EXCEPTION),
				 errmsg("Shopify store \"%s\" did not return the started bulk operation", ctx->store)));
	adopt_operation(ctx, op);
	return true;
}

static bool
poll_export(SyncContext *ctx, BulkState *st)
{
	JsonbContainer *op = fetch_operation(ctx, "query($id: ID!) { bulkOperation(id: $id) { " OPERATION_FIELDS " } }",
										 psprintf("{\"id\":%s}", json_quote(st->operation_id)), "bulkOperation");
	char	   *status;

	if (op == NULL && ctx->out_of_time)
		return false;
	status = op ? json_get_string(op, "status") : NULL;
	if (status == NULL)
	{
		/* Shopify no longer knows it: start another */
		record_sync_error(ctx->source_id, "bulk_operation", "the bulk operation vanished", st->operation_id, NULL, 0);
		restart_export(ctx, true);
		return true;
	}

	if (strcmp(status, "COMPLETED") == 0)
	{
		Oid			types[5] = {INT8OID, TEXTOID, INT8OID, INT8OID, TEXTOID};
		Datum		values[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
		char	   *url = json_get_string(op, "url");
		char	   *count = json_get_string(op, "objectCount");
		char	   *size = json_get_string(op, "fileSize");

		values[0] = Int64GetDatum(ctx->source_id);
		if (url)
			values[1] = CStringGetTextDatum(url);
		else
			nulls[1] = 'n';
		values[2] = Int64GetDatum(count ? strtoll(count, NULL, 10) : 0);
		values[3] = Int64GetDatum(size ? strtoll(size, NULL, 10) : 0);
		values[4] = CStringGetTextDatum(status);
		exec_state("UPDATE converge.sync_state SET bulk_url = $2, bulk_object_count = $3, bulk_file_size = $4, "
				   "bulk_status = $5, bulk_ready_at = clock_timestamp() WHERE source_id = $1", 5, types, values, nulls);
		return true;
	}
	if (strcmp(status, "FAILED") == 0 || strcmp(status, "EXPIRED") == 0 || strcmp(status, "CANCELED") == 0)
	{
		char	   *code = json_get_string(op, "errorCode");

		record_sync_error(ctx->source_id, "bulk_operation",
						  psprintf("the bulk export ended %s", status),
						  psprintf("operation %s, errorCode %s", st->operation_id, code ? code : "none"), NULL, 0);
		sync_note_error(ctx, "transient", psprintf("the bulk export of all orders ended %s", status),
						psprintf("Operation %s, errorCode %s; a new export starts.", st->operation_id, code ? code : "none"),
						"Nothing to do: the sync starts a new export; orders already loaded are kept.");
		restart_export(ctx, true);
		return true;
	}

	/* CREATED, RUNNING, CANCELING: wait for it, within this pass if there is time */
	if (strcmp(status, st->status ? st->status : "") != 0)
	{
		Oid			types[2] = {INT8OID, TEXTOID};
		Datum		values[2] = {Int64GetDatum(ctx->source_id), CStringGetTextDatum(status)};

		exec_state("UPDATE converge.sync_state SET bulk_status = $2 WHERE source_id = $1", 2, types, values, NULL);
	}
	return sync_sleep(ctx, converge_bulk_poll_ms / 1000.0);
}

static void
finish_backfill(SyncContext *ctx)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};

	export_release_part(ctx);
	/* the first time: held events can be released, historic ones are settled */
	if (SPI_execute_with_args("SELECT converge._history_complete($1)", 1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "converge: could not complete the history of source " INT64_FORMAT, ctx->source_id);
	/* changes made after the export started are read by incremental sync */
	exec_state("UPDATE converge.sync_state SET phase = 'incremental', backfill_completed_at = clock_timestamp(), "
			   "cursor_updated_at = bulk_started_at, bulk_since = NULL, bulk_attempts = 0, "
			   "bulk_status = 'LOADED', error_kind = NULL, last_success_at = now() WHERE source_id = $1",
			   1, types, values, NULL);
}

/* After a failed read of the export: retry after a delay, a bounded number of times per pass. */
static bool
download_failed(SyncContext *ctx)
{
	if (++ctx->download_failures > converge_max_retries)
	{
		sync_note_error(ctx, "transient", "the export file could not be read",
						psprintf("%d attempts in a row failed (see converge.sync_errors).", ctx->download_failures),
						"The sync resumes the download from where it stopped with a growing delay.");
		return false;
	}
	return sync_sleep(ctx, backoff_seconds(ctx->download_failures - 1));
}

/* Load the export: plan its parts, start helpers, load a part, finish. */
static bool
load_export(SyncContext *ctx, BulkState *st)
{
	int			unfinished;

	if (!export_parts_planned(ctx, &unfinished))
	{
		export_plan_parts(ctx, st->url, st->file_size);
		return true;			/* committed before helpers look for parts */
	}
	if (!ctx->workers_launched)
	{
		ctx->workers_launched = true;
		if (unfinished > 1)
			launch_export_workers(ctx, unfinished - 1);
	}
	if (!export_claim_part(ctx))
	{
		if (unfinished == 0)
		{
			finish_backfill(ctx);
			return true;
		}
		/* every unfinished part is being loaded by a helper: wait for them */
		return sync_sleep(ctx, 0.05);
	}

	switch (export_load_batch(ctx, st->url))
	{
		case LOAD_MORE:
			ctx->download_failures = 0;
			return true;
		case LOAD_PART_DONE:
			export_release_part(ctx);
			return true;
		case LOAD_RETRY:
			return download_failed(ctx);
		case LOAD_GONE:
			export_release_part(ctx);
			restart_export(ctx, false);
			return true;
		case LOAD_STOP:
			export_release_part(ctx);
			return false;
	}
	return false;
}

/* One step of the historical sync; true when the pass should go on at once. */
bool
backfill_step(SyncContext *ctx)
{
	BulkState	st;

	load_state(ctx, &st);
	if (st.operation_id == NULL)
		return start_export(ctx, &st);
	if (st.url == NULL && (st.status == NULL || strcmp(st.status, "COMPLETED") != 0))
		return poll_export(ctx, &st);
	if (st.url == NULL)
	{
		/* completed without a file: the store has no orders */
		finish_backfill(ctx);
		return true;
	}
	return load_export(ctx, &st);
}

/*
 * Switch a source whose incremental sync has a long backlog to a catch-up
 * export of the orders updated since `since`: an export costs no query
 * points and loads at backfill speed, where pages of a dozen orders each
 * would take long.
 */
void
backfill_catch_up(SyncContext *ctx, TimestampTz since)
{
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int64GetDatum(ctx->source_id), TimestampTzGetDatum(since)};

	exec_state("WITH p AS (DELETE FROM converge.backfill_parts WHERE source_id = $1) "
			   "UPDATE converge.sync_state SET phase = 'backfill', bulk_since = $2, bulk_operation_id = NULL, "
			   "bulk_status = NULL, bulk_url = NULL, bulk_object_count = NULL, bulk_file_size = NULL, "
			   "bulk_ready_at = NULL, bulk_attempts = 0 WHERE source_id = $1",
			   2, types, values, NULL);
}
