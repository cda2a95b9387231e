/*-------------------------------------------------------------------------
 *
 * backfill.c
 *	  The historical sync: a bulk export of every order, streamed into the
 *	  tables.
 *
 * One step does one bounded thing and leaves converge.sync_state saying
 * what comes next: start the bulk operation (or adopt ours if one is already
 * running), poll it, or load the next batch of its JSONL file.  The file is
 * read as a stream with a bounded read-ahead, so the backend's memory does
 * not grow with the file; each batch of orders is written in the same
 * transaction as the byte offset after it, and a pass that was cut short
 * (timeout, crash, killed backend) resumes with an HTTP Range request from
 * that offset: nothing is skipped and nothing is stored twice.
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
#define READ_AHEAD (1024 * 1024)

typedef struct BulkState
{
	char	   *operation_id;
	char	   *status;
	char	   *url;
	int64		offset;
	int64		lines;
	int32		attempts;
} BulkState;

static char *bulk_query = NULL;

/* The export query, generated from the column mappings. */
static const char *
export_query(void)
{
	if (bulk_query == NULL)
		bulk_query = MemoryContextStrdup(TopMemoryContext,
										 psprintf("{ orders { edges { node { %s"
												  "lineItems { edges { node { %s} } } "
												  "refunds { %srefundLineItems { edges { node { %s} } } } "
												  "} } } }",
												  mapping_selection(&order_mapping),
												  mapping_selection(&line_item_mapping),
												  mapping_selection(&refund_mapping),
												  mapping_selection(&refund_line_item_mapping)));
	return bulk_query;
}

static void
load_state(SyncContext *ctx, BulkState *st)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (SPI_execute_with_args("SELECT bulk_operation_id, bulk_status, bulk_url, bulk_offset, bulk_lines, bulk_attempts "
							  "FROM converge.sync_state WHERE source_id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "converge: no sync state for source " INT64_FORMAT, ctx->source_id);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	st->operation_id = SPI_getvalue(tup, desc, 1);
	st->status = SPI_getvalue(tup, desc, 2);
	st->url = SPI_getvalue(tup, desc, 3);
	st->offset = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	st->lines = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	st->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
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

	if (ctx->download)
	{
		http_stream_end(ctx->download);
		ctx->download = NULL;
	}
	exec_state("UPDATE converge.sync_state SET bulk_operation_id = NULL, bulk_status = NULL, bulk_url = NULL, "
			   "bulk_object_count = NULL, bulk_file_size = NULL, bulk_offset = 0, bulk_lines = 0, "
			   "bulk_attempts = bulk_attempts + CASE WHEN $2 THEN 1 ELSE 0 END WHERE source_id = $1",
			   2, types, values, NULL);
}

static void
adopt_operation(SyncContext *ctx, JsonbContainer *op)
{
	Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[4];
	char	   *created = json_get_string(op, "createdAt");
	TimestampTz started;

	/* changes made while the export runs are caught by the incremental sync from here */
	if (created == NULL || !parse_timestamptz(created, &started))
		started = GetCurrentTimestamp();
	values[0] = Int64GetDatum(ctx->source_id);
	values[1] = CStringGetTextDatum(json_get_string(op, "id"));
	values[2] = CStringGetTextDatum(json_get_string(op, "status") ? json_get_string(op, "status") : "CREATED");
	values[3] = TimestampTzGetDatum(started);
	exec_state("UPDATE converge.sync_state SET bulk_operation_id = $2, bulk_status = $3, bulk_started_at = $4, "
			   "bulk_url = NULL, bulk_offset = 0, bulk_lines = 0 WHERE source_id = $1",
			   4, types, values, NULL);
}

#define OPERATION_FIELDS "id status errorCode objectCount fileSize url partialDataUrl createdAt completedAt query"

/* A running export of ours (one this source started and lost track of). */
static JsonbContainer *
running_export(SyncContext *ctx)
{
	static const char *const path[] = {"data", "currentBulkOperation", NULL};
	Jsonb	   *doc = shopify_graphql(ctx, "{ currentBulkOperation(type: QUERY) { " OPERATION_FIELDS " } }", NULL, 1);
	JsonbContainer *op;
	char	   *status;
	char	   *query;

	if (doc == NULL)
		return NULL;
	op = json_get_path(&doc->root, path);
	status = op ? json_get_string(op, "status") : NULL;
	query = op ? json_get_string(op, "query") : NULL;
	if (status && (strcmp(status, "CREATED") == 0 || strcmp(status, "RUNNING") == 0) &&
		query && strcmp(query, export_query()) == 0)
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
	op = running_export(ctx);
	if (op == NULL && ctx->out_of_time)
		return false;
	if (op != NULL)
	{
		adopt_operation(ctx, op);
		return true;
	}

	doc = shopify_graphql(ctx,
						  "mutation($q: String!) { bulkOperationRunQuery(query: $q) { "
						  "bulkOperation { id status createdAt } userErrors { field message code } } }",
						  psprintf("{\"q\":%s}", json_quote(export_query())), 10);
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
	static const char *const path[] = {"data", "bulkOperation", NULL};
	Jsonb	   *doc = shopify_graphql(ctx, "query($id: ID!) { bulkOperation(id: $id) { " OPERATION_FIELDS " } }",
									  psprintf("{\"id\":%s}", json_quote(st->operation_id)), 1);
	JsonbContainer *op;
	char	   *status;

	if (doc == NULL)
		return false;
	op = json_get_path(&doc->root, path);
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
save_progress(SyncContext *ctx, int64 offset, int64 lines)
{
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(ctx->source_id), Int64GetDatum(offset), Int64GetDatum(lines)};

	exec_state("UPDATE converge.sync_state SET bulk_offset = $2, bulk_lines = $3 WHERE source_id = $1",
			   3, types, values, NULL);
}

static void
finish_backfill(SyncContext *ctx)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};

	if (ctx->download)
	{
		http_stream_end(ctx->download);
		ctx->download = NULL;
	}
	exec_state("UPDATE converge.sync_state SET phase = 'incremental', backfill_completed_at = clock_timestamp(), "
			   "cursor_updated_at = coalesce(cursor_updated_at, bulk_started_at), bulk_attempts = 0, "
			   "bulk_status = 'LOADED', error_kind = NULL, last_success_at = now() WHERE source_id = $1",
			   1, types, values, NULL);
}

typedef enum OpenResult
{
	OPEN_OK,
	OPEN_FAILED,				/* try again after a delay */
	OPEN_RESTARTED,				/* the file is gone: a new export was queued */
} OpenResult;

/* Open the export file at the committed offset. */
static OpenResult
open_download(SyncContext *ctx, BulkState *st)
{
	HttpRequest req = {0};
	const HttpResult *res;
	size_t		len;

	req.method = "GET";
	req.url = st->url;
	req.range_from = st->offset;
	ctx->download = http_stream_start(&req);
	ctx->download_offset = st->offset;
	ctx->requests++;

	(void) http_stream_fill(ctx->download, 1);
	res = http_stream_result(ctx->download);
	(void) http_stream_data(ctx->download, &len);

	if (res->status == 206 && res->range_start == st->offset)
		return OPEN_OK;
	if (res->status == 200)
	{
		/* the server ignored the range: skip what is already loaded */
		int64		skip = st->offset;

		while (skip > 0)
		{
			size_t		n;

			(void) http_stream_data(ctx->download, &len);
			n = Min((int64) len, skip);
			http_stream_consume(ctx->download, n);
			skip -= n;
			if (skip > 0 && !http_stream_fill(ctx->download, READ_AHEAD))
			{
				(void) http_stream_data(ctx->download, &len);
				if (len == 0)
					break;		/* the file is shorter than the offset */
			}
		}
		if (skip == 0)
			return OPEN_OK;
	}

	if (res->status == 403 || res->status == 404 || res->status == 410 ||
		(res->status == 416 && st->offset > 0))
	{
		/* the signed link expired (or the file is gone): export again */
		record_sync_error(ctx->source_id, "bulk_download",
						  psprintf("the export file could not be read (HTTP %ld)", res->status), st->url, NULL, 0);
		restart_export(ctx, false);
		return OPEN_RESTARTED;
	}
	record_sync_error(ctx->source_id, "bulk_download", "reading the export file failed",
					  psprintf("HTTP %ld %s", res->status, res->error), NULL, 0);
	http_stream_end(ctx->download);
	ctx->download = NULL;
	ctx->retries++;
	return OPEN_FAILED;
}

/* Route one JSONL line into the batch. */
static void
load_line(SyncContext *ctx, IngestBatch *b, char *line, int len, int64 *skip_parent)
{
	char	   *error = NULL;
	Jsonb	   *doc = json_parse(line, len, &error);
	JsonbContainer *obj;
	char	   *parent;
	char	   *id;

	if (doc == NULL || !JsonContainerIsObject(&doc->root))
	{
		record_sync_error(ctx->source_id, "bad_line", "malformed line in the bulk export",
						  error, line, len);
		b->bad_rows++;
		return;
	}
	obj = &doc->root;
	parent = json_get_string(obj, "__parentId");
	if (parent == NULL)
	{
		if (!ingest_order(b, doc, obj, true, &error))
		{
			record_sync_error(ctx->source_id, "bad_order", "order left out: it cannot be read whole",
							  error, line, len);
			*skip_parent = gid_to_id(json_get_string(obj, "id"));
		}
		else
			*skip_parent = -1;
		return;
	}

	/* a child of an order already left out is left out with it */
	id = json_get_string(obj, "id");
	if (*skip_parent >= 0 && gid_to_id(parent) == *skip_parent)
		return;
	if (id && strstr(id, "/RefundLineItem/") != NULL)
	{
		if (ingest_refund_line_item(b, gid_to_id(parent), obj, &error))
			return;
	}
	else if (b->order_id >= 0 && gid_to_id(parent) == b->order_id)
	{
		if (ingest_line_item(b, obj, &error))
			return;
	}
	else
		error = psprintf("its parent %s is not the order before it", parent);

	record_sync_error(ctx->source_id, "bad_order", "order left out: one of its lines cannot be used",
					  error, line, len);
	b->bad_rows++;
	if (b->order_id >= 0)
	{
		*skip_parent = b->order_id;
		ingest_discard_order(b);
	}
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

/*
 * Load up to one batch of orders from the export, ending at an order
 * boundary, and save the offset after it.  true while the pass should go on.
 */
static bool
load_batch(SyncContext *ctx, BulkState *st)
{
	IngestBatch b;
	int64		lines = st->lines;
	int64		skip_parent = -1;
	int64		order_offset = -1;	/* where the order being assembled starts */
	int64		order_lines = 0;
	bool		eof = false;
	bool		broken = false;

	if (ctx->download == NULL)
	{
		switch (open_download(ctx, st))
		{
			case OPEN_OK:
				break;
			case OPEN_FAILED:
				return download_failed(ctx);
			case OPEN_RESTARTED:
				return true;
		}
	}

	ingest_begin(&b, ctx->source_id);
	for (;;)
	{
		size_t		len;
		const char *data = http_stream_data(ctx->download, &len);
		const char *nl = memchr(data, '\n', len);
		size_t		linelen;
		bool		root;
		MemoryContext old;

		if (nl == NULL)
		{
			if (http_stream_fill(ctx->download, len + READ_AHEAD))
				continue;
			data = http_stream_data(ctx->download, &len);
			nl = memchr(data, '\n', len);
			if (nl == NULL)
			{
				const HttpResult *res = http_stream_result(ctx->download);

				if (res->curl_code != 0 || res->status >= 300)
					broken = true;
				else if (len == 0)
					eof = true;
				else
					nl = data + len;	/* a last line without a newline */
				if (broken || eof)
					break;
			}
		}
		linelen = nl - data;
		root = linelen > 0 && memmem(data, linelen, "\"__parentId\"", 12) == NULL;

		/* a batch ends before the next order's line, never inside an order */
		if (root && ingest_pending(&b) >= converge_batch_size)
			break;
		if (root)
		{
			order_offset = ctx->download_offset;
			order_lines = lines;
		}
		if (linelen > 0)
		{
			old = MemoryContextSwitchTo(b.cxt);
			load_line(ctx, &b, (char *) data, (int) linelen, &skip_parent);
			MemoryContextSwitchTo(old);
			lines++;
		}
		linelen = Min(linelen + 1, len);
		http_stream_consume(ctx->download, linelen);
		ctx->download_offset += linelen;
	}

	if (broken)
	{
		const HttpResult *res = http_stream_result(ctx->download);

		/* keep the whole orders; the one cut short is read again on resume */
		record_sync_error(ctx->source_id, "bulk_download", "the export download broke off",
						  psprintf("at byte " INT64_FORMAT ": %s (HTTP %ld)", ctx->download_offset,
								   res->error, res->status), NULL, 0);
		if (b.order_id >= 0 && order_offset >= 0)
		{
			ingest_discard_order(&b);
			ctx->download_offset = order_offset;
			lines = order_lines;
		}
		http_stream_end(ctx->download);
		ctx->download = NULL;
		ctx->retries++;
	}

	ingest_flush(&b);
	ctx->orders_synced += b.orders_stored;
	ctx->refunds_synced += b.refunds_stored;
	ingest_end(&b);
	save_progress(ctx, ctx->download_offset, lines);

	if (eof)
	{
		finish_backfill(ctx);
		return true;
	}
	if (broken)
		return download_failed(ctx);
	ctx->download_failures = 0;
	return true;
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
	return load_batch(ctx, &st);
}
