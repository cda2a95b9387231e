/*-------------------------------------------------------------------------
 *
 * export_loader.c
 *	  Loading a bulk export file into the tables, part by part.
 *
 * The JSONL file is cut into parts at order boundaries (an order's line is
 * followed by its children's lines), so that two processes can load it at
 * once: the sync pass and a background worker (workers.c), each holding the
 * advisory lock of the part it loads.  A part is read as a stream with a
 * bounded read-ahead, through an HTTP Range request from the part's next
 * offset to its end; every batch of orders is written in the same
 * transaction as that offset, so a load cut short anywhere (time limit,
 * crash, killed or cancelled backend, broken download) resumes exactly where
 * the last commit left it: nothing skipped, nothing stored twice.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "converge.h"
#include "ingest.h"
#include "json.h"
#include "sync.h"

#define READ_AHEAD (1024 * 1024)
#define SPLIT_WINDOW (4 * 1024 * 1024)	/* searched for an order line near a cut */
#define MIN_PART_BYTES (8 * 1024 * 1024)	/* smaller files are one part */
#define LOCK_CLASS_PART 0x636f6e77	/* "conw": part locks (sync.c uses "conv") */
#define PARENT_UNKNOWN (-2)		/* skip children until the next order line */

static void
part_locktag(LOCKTAG *tag, int64 source_id, int part)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, LOCK_CLASS_PART + part, (uint32) source_id, 2);
}

/*
 * Shopify writes "__parentId" as the last key of a child's line, so only the
 * end of a line is searched: an order whose note or tag says "__parentId"
 * stays an order.
 */
static bool
is_order_line(const char *line, size_t len)
{
	size_t		tail = Min(len, (size_t) 160);

	return len > 0 && memmem(line + len - tail, tail, ",\"__parentId\":\"", 15) == NULL;
}

/* The offset of the first order line at or after `from`, or -1. */
static int64
order_line_after(SyncContext *ctx, const char *url, int64 from)
{
	HttpRequest req = {0};
	HttpResult	res;
	StringInfoData body;
	const char *p;
	const char *end;

	req.method = "GET";
	req.url = url;
	req.range_from = from;
	req.range_to = from + SPLIT_WINDOW - 1;
	initStringInfo(&body);
	http_request(&req, &body, &res);
	ctx->requests++;
	if (res.curl_code != 0 || res.status != 206 || res.range_start != from)
		return -1;

	p = body.data;
	end = body.data + body.len;
	/* `from` may fall inside a line: start after its end */
	p = memchr(p, '\n', end - p);
	while (p != NULL && ++p < end)
	{
		const char *nl = memchr(p, '\n', end - p);

		if (nl == NULL)
			break;
		if (is_order_line(p, nl - p))
			return from + (p - body.data);
		p = nl;
	}
	return -1;
}

/*
 * Cut the export at order boundaries into twice as many parts as there are
 * processes to load it (so that one finishing early takes another part), but
 * no part under MIN_PART_BYTES, and record them.
 */
void
export_plan_parts(SyncContext *ctx, const char *url, int64 size)
{
	int			nparts = (int) Max(1, Min((int64) 2 * (1 + converge_backfill_workers), size / MIN_PART_BYTES));
	int64		starts[16];
	int			n = 1;
	int			k;

	starts[0] = 0;
	for (k = 1; k < nparts && n < (int) lengthof(starts); k++)
	{
		int64		cut = order_line_after(ctx, url, size * k / nparts);

		if (cut > starts[n - 1])
			starts[n++] = cut;
	}
	for (k = 0; k < n; k++)
	{
		Oid			types[4] = {INT8OID, INT4OID, INT8OID, INT8OID};
		Datum		values[4];
		char		nulls[4] = {' ', ' ', ' ', ' '};

		values[0] = Int64GetDatum(ctx->source_id);
		values[1] = Int32GetDatum(k);
		values[2] = Int64GetDatum(starts[k]);
		if (k + 1 < n)
			values[3] = Int64GetDatum(starts[k + 1]);
		else
			nulls[3] = 'n';
		if (SPI_execute_with_args("INSERT INTO converge.backfill_parts "
								  "(source_id, part, operation_id, start_offset, end_offset, next_offset) "
								  "SELECT $1, $2, bulk_operation_id, $3, $4, $3 FROM converge.sync_state "
								  "WHERE source_id = $1", 4, types, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "converge: could not record the export's parts");
	}
}

/* Whether the export has parts yet, and how many are not loaded. */
bool
export_parts_planned(SyncContext *ctx, int *unfinished)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT count(*), count(*) FILTER (WHERE NOT p.done) FROM converge.backfill_parts p "
							  "JOIN converge.sync_state s ON s.source_id = p.source_id AND s.bulk_operation_id = p.operation_id "
							  "WHERE p.source_id = $1", 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "converge: could not read the export's parts");
	*unfinished = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) > 0;
}

static bool
read_part(SyncContext *ctx, int part, ExportPart *p)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(ctx->source_id), Int32GetDatum(part)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	/* only a part of the current export, read afresh (not with the step's snapshot) */
	if (SPI_execute_with_args("SELECT p.start_offset, p.end_offset, p.next_offset, p.lines, p.operation_id "
							  "FROM converge.backfill_parts p JOIN converge.sync_state s "
							  "ON s.source_id = p.source_id AND s.bulk_operation_id = p.operation_id "
							  "WHERE p.source_id = $1 AND p.part = $2 AND NOT p.done FOR UPDATE OF p",
							  2, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "converge: could not read an export part");
	if (SPI_processed != 1)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	p->part = part;
	p->start = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	d = SPI_getbinval(tup, desc, 2, &isnull);
	p->end = isnull ? -1 : DatumGetInt64(d);
	p->next = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	p->lines = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	strlcpy(p->operation, SPI_getvalue(tup, desc, 5), sizeof(p->operation));
	return true;
}

/* Lock an unfinished part that no other process is loading. */
bool
export_claim_part(SyncContext *ctx)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};
	int		   *parts;
	uint64		n;
	uint64		i;
	bool		isnull;

	if (ctx->holding_part)
		return true;
	if (SPI_execute_with_args("SELECT p.part FROM converge.backfill_parts p JOIN converge.sync_state s "
							  "ON s.source_id = p.source_id AND s.bulk_operation_id = p.operation_id "
							  "WHERE p.source_id = $1 AND NOT p.done ORDER BY p.part",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "converge: could not read the export's parts");
	n = SPI_processed;
	parts = palloc(sizeof(int) * Max(n, 1));
	for (i = 0; i < n; i++)
		parts[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

	for (i = 0; i < n; i++)
	{
		LOCKTAG		tag;

		part_locktag(&tag, ctx->source_id, parts[i]);
		if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
			continue;
		/* held from here, so that an error below still releases it */
		ctx->part.part = parts[i];
		ctx->holding_part = true;
		/* read it under the lock: whoever held it before may have moved it on */
		if (read_part(ctx, parts[i], &ctx->part))
			return true;
		export_release_part(ctx);
	}
	return false;
}

void
export_release_part(SyncContext *ctx)
{
	LOCKTAG		tag;

	if (ctx->download)
	{
		http_stream_end(ctx->download);
		ctx->download = NULL;
	}
	if (!ctx->holding_part)
		return;
	part_locktag(&tag, ctx->source_id, ctx->part.part);
	LockRelease(&tag, ExclusiveLock, true);
	ctx->holding_part = false;
}

/* false when the part is no longer there (a new export replaced it) */
static bool
save_part(SyncContext *ctx, bool done)
{
	Oid			types[6] = {INT8OID, INT4OID, INT8OID, INT8OID, BOOLOID, TEXTOID};
	Datum		values[6];

	values[0] = Int64GetDatum(ctx->source_id);
	values[1] = Int32GetDatum(ctx->part.part);
	values[2] = Int64GetDatum(ctx->part.next);
	values[3] = Int64GetDatum(ctx->part.lines);
	values[4] = BoolGetDatum(done);
	values[5] = CStringGetTextDatum(ctx->part.operation);
	/* a part of an export that was replaced (a resync, an expired link) is not saved */
	if (SPI_execute_with_args("UPDATE converge.backfill_parts p SET next_offset = $3, lines = $4, done = $5 "
							  "FROM converge.sync_state s WHERE p.source_id = $1 AND p.part = $2 "
							  "AND p.operation_id = $6 AND s.source_id = p.source_id "
							  "AND s.bulk_operation_id = p.operation_id", 6, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "converge: could not save the export's progress");
	return SPI_processed == 1;
}

/* Open the part's byte range at its committed offset. */
static LoadResult
open_part(SyncContext *ctx, const char *url)
{
	HttpRequest req = {0};
	const HttpResult *res;
	size_t		len;

	if (ctx->part.end >= 0 && ctx->part.next >= ctx->part.end)
		return LOAD_PART_DONE;
	req.method = "GET";
	req.url = url;
	req.range_from = ctx->part.next;
	req.range_to = ctx->part.end >= 0 ? ctx->part.end - 1 : 0;
	ctx->download = http_stream_start(&req);
	ctx->download_offset = ctx->part.next;
	ctx->requests++;

	(void) http_stream_fill(ctx->download, 1);
	res = http_stream_result(ctx->download);
	(void) http_stream_data(ctx->download, &len);

	if ((res->status == 206 && res->range_start == ctx->part.next) ||
		(res->status == 200 && ctx->part.next == 0 && ctx->part.end < 0))
		return LOAD_MORE;
	if (res->status == 416 && ctx->part.end < 0 && ctx->part.next > 0)
		return LOAD_PART_DONE;	/* nothing after the offset: the file is loaded */

	if (res->status == 403 || res->status == 404 || res->status == 410)
	{
		/* the signed link expired (or the file is gone) */
		record_sync_error(ctx->source_id, "bulk_download",
						  psprintf("the export file could not be read (HTTP %ld)", res->status), url, NULL, 0);
		http_stream_end(ctx->download);
		ctx->download = NULL;
		return LOAD_GONE;
	}
	record_sync_error(ctx->source_id, "bulk_download", "reading the export file failed",
					  psprintf("HTTP %ld %s", res->status, res->error), NULL, 0);
	http_stream_end(ctx->download);
	ctx->download = NULL;
	ctx->retries++;
	return LOAD_RETRY;
}

static void
load_order(SyncContext *ctx, IngestBatch *b, JsonbValue *tree, char *line, int len, int64 *skip_parent)
{
	char	   *error = NULL;
	Jsonb	   *doc = json_value_to_jsonb(tree);

	if (!ingest_order(b, doc, &doc->root, tree, true, &error))
	{
		record_sync_error(ctx->source_id, "bad_order", "order left out: it cannot be read whole",
						  error, line, len);
		*skip_parent = gid_to_id(json_get_string(&doc->root, "id"));
		if (*skip_parent < 0)
			*skip_parent = PARENT_UNKNOWN;
	}
	else
		*skip_parent = -1;
}

/*
 * Route one JSONL line into the batch.  An order line becomes jsonb (it is
 * stored); a child line stays a value tree: only its columns are kept.
 */
static void
load_line(SyncContext *ctx, IngestBatch *b, char *line, int len, int64 *skip_parent)
{
	char	   *error = NULL;
	JsonbValue *tree = is_order_line(line, len) ? NULL : json_parse_value(line, len, &error);
	JsonbValue	buf;
	JsonbValue *parent_v;
	char	   *parent;
	char	   *id;

	if (tree == NULL && error == NULL)
	{
		JsonbValue *order = json_parse_value(line, len, &error);

		if (order != NULL && order->type == jbvObject)
		{
			load_order(ctx, b, order, line, len, skip_parent);
			return;
		}
	}
	if (tree == NULL || tree->type != jbvObject)
	{
		record_sync_error(ctx->source_id, "bad_line", "malformed line in the bulk export",
						  error ? error : "not a JSON object", line, len);
		b->bad_rows++;
		if (is_order_line(line, len))
		{
			/* the order before it is complete; this one's children follow it out */
			ingest_end_order(b);
			*skip_parent = PARENT_UNKNOWN;
		}
		else if (b->order_id >= 0)
		{
			/* its order would be stored without this child: leave it out */
			*skip_parent = b->order_id;
			ingest_discard_order(b);
		}
		return;
	}
	parent_v = json_node_get(tree, "__parentId", &buf);
	parent = json_node_text(parent_v);
	if (parent == NULL)
	{
		/* "__parentId" was only text inside an order line */
		load_order(ctx, b, tree, line, len, skip_parent);
		return;
	}

	/* a child of an order already left out is left out with it */
	id = json_node_text(json_node_get(tree, "id", &buf));
	if (*skip_parent == PARENT_UNKNOWN || (*skip_parent >= 0 && gid_to_id(parent) == *skip_parent))
		return;
	if (id && strstr(id, "/RefundLineItem/") != NULL)
	{
		if (ingest_refund_line_item(b, gid_to_id(parent), tree, &error))
			return;
	}
	else if (b->order_id >= 0 && gid_to_id(parent) == b->order_id)
	{
		if (ingest_line_item(b, tree, &error))
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

/*
 * Load up to one batch of orders of the claimed part, ending at an order
 * boundary, and save the part's offset after it, in the current transaction.
 */
LoadResult
export_load_batch(SyncContext *ctx, const char *url)
{
	IngestBatch b;
	int64		skip_parent = -1;
	int64		order_offset = -1;	/* where the order being assembled starts */
	int64		order_lines = 0;
	bool		eof = false;
	bool		broken = false;

	if (ctx->download == NULL)
	{
		LoadResult	r = open_part(ctx, url);

		if (r == LOAD_PART_DONE)
			return save_part(ctx, true) ? LOAD_PART_DONE : LOAD_STOP;
		if (r != LOAD_MORE)
			return r;
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
		root = is_order_line(data, linelen);

		/* a batch ends before the next order's line, never inside an order */
		if (root && ingest_pending(&b) >= converge_batch_size)
			break;
		if (root)
		{
			order_offset = ctx->download_offset;
			order_lines = ctx->part.lines;
		}
		if (linelen > 0)
		{
			old = MemoryContextSwitchTo(b.cxt);
			load_line(ctx, &b, (char *) data, (int) linelen, &skip_parent);
			MemoryContextSwitchTo(old);
			ctx->part.lines++;
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
			ctx->part.lines = order_lines;
		}
		http_stream_end(ctx->download);
		ctx->download = NULL;
		ctx->retries++;
	}

	ingest_flush(&b);
	ctx->orders_synced += b.orders_stored;
	ctx->refunds_synced += b.refunds_stored;
	ingest_end(&b);
	ctx->part.next = ctx->download_offset;
	if (!save_part(ctx, eof))
		return LOAD_STOP;
	if (eof)
		return LOAD_PART_DONE;
	return broken ? LOAD_RETRY : LOAD_MORE;
}
