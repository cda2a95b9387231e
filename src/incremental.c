/*-------------------------------------------------------------------------
 *
 * incremental.c
 *	  Keeping the mirror current: orders changed since the cursor, page by
 *	  page through the GraphQL orders connection.
 *
 * Orders are asked for by updatedAt, oldest first, from the stored cursor
 * minus an overlap (converge.incremental_overlap), so that an order whose
 * update became visible late, or that moved while we paged, is read again
 * rather than missed; re-reading an unchanged order writes nothing.  Each
 * page is written in the same transaction as the cursor it advances.
 *
 * The page size follows from Shopify's cost rules: a query may not request
 * more than 1000 points, and nested connections multiply, so the size is
 * recomputed from the requestedQueryCost of the previous page (at most 250).
 * Orders with more line items than the nested page are completed with
 * further queries before they are stored: an order is never stored cut.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "converge.h"
#include "ingest.h"
#include "json.h"
#include "order_mapping.h"
#include "sync.h"

#define NESTED_LINE_ITEMS 5
#define NESTED_REFUNDS 3
#define ALL_REFUNDS 5			/* refunds(first: 5) x refundLineItems(first: 10) ~ 580 points */
#define REFUND_LINE_ITEMS 10
#define MAX_QUERY_COST 1000.0	/* Shopify's single-query limit */
#define FIRST_PAGE_SIZE 10

static char *page_query = NULL;
static char *line_items_query = NULL;
static char *refunds_query = NULL;

static void
build_queries(void)
{
	MemoryContext old;

	if (page_query != NULL)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	/*
	 * Refunds come without their line items here (those cost ~100 points per
	 * refund; a follow-up query reads them), with the fields an export line
	 * carries, so that the stored order JSON has the same shape either way.
	 */
	page_query = psprintf("query($first: Int!, $after: String, $q: String!) { "
						  "orders(first: $first, after: $after, query: $q, sortKey: UPDATED_AT) { "
						  "edges { cursor node { %s"
						  "lineItems(first: %d) { edges { node { %s} } pageInfo { hasNextPage endCursor } } "
						  "refunds(first: %d) { %s} } } "
						  "pageInfo { hasNextPage endCursor } } }",
						  mapping_selection(&order_mapping),
						  NESTED_LINE_ITEMS, mapping_selection(&line_item_mapping),
						  NESTED_REFUNDS, mapping_selection(&refund_mapping));
	line_items_query = psprintf("query($id: ID!, $after: String) { order(id: $id) { "
								"lineItems(first: 100, after: $after) { edges { node { %s} } "
								"pageInfo { hasNextPage endCursor } } } }",
								mapping_selection(&line_item_mapping));
	refunds_query = psprintf("query($id: ID!) { order(id: $id) { refunds(first: %d) { %s"
							 "refundLineItems(first: %d) { edges { node { %s} } pageInfo { hasNextPage } } } } }",
							 ALL_REFUNDS, mapping_selection(&refund_mapping),
							 REFUND_LINE_ITEMS, mapping_selection(&refund_line_item_mapping));
	MemoryContextSwitchTo(old);
}

static bool
has_next_page(JsonbContainer *connection)
{
	JsonbContainer *info = json_get_container(connection, "pageInfo");

	return info != NULL && json_get_bool(info, "hasNextPage", false);
}

static char *
end_cursor(JsonbContainer *connection)
{
	return json_get_string(json_get_container(connection, "pageInfo"), "endCursor");
}

/* The rest of an order's line items, after the nested page. */
static bool
complete_line_items(SyncContext *ctx, IngestBatch *b, const char *gid, char *after, char **error)
{
	static const char *const path[] = {"data", "order", "lineItems", NULL};

	while (after != NULL)
	{
		Jsonb	   *doc = shopify_graphql(ctx, line_items_query,
										  psprintf("{\"id\":%s,\"after\":%s}", json_quote(gid), json_quote(after)),
										  100 * 5 + 3);
		JsonbContainer *conn;
		JsonbContainer *edges;
		int			i;

		if (doc == NULL)
			return false;
		conn = json_get_path(&doc->root, path);
		edges = json_get_container(conn, "edges");
		for (i = 0; i < json_array_size(edges); i++)
		{
			JsonbContainer *item = json_get_container(json_array_container(edges, i), "node");
			JsonbValue	v;

			v.type = jbvBinary;
			v.val.binary.data = item;
			v.val.binary.len = 0;
			if (!ingest_line_item(b, item ? &v : NULL, error))
				return false;
		}
		after = has_next_page(conn) ? end_cursor(conn) : NULL;
	}
	return true;
}

/* An order's refunds with their line items (the page lists only their ids). */
static bool
complete_refunds(SyncContext *ctx, IngestBatch *b, const char *gid, char **error)
{
	static const char *const path[] = {"data", "order", "refunds", NULL};
	Jsonb	   *doc = shopify_graphql(ctx, refunds_query, psprintf("{\"id\":%s}", json_quote(gid)), 600);
	JsonbContainer *refunds;
	int			i;

	if (doc == NULL)
		return false;
	refunds = json_get_path(&doc->root, path);
	for (i = 0; i < json_array_size(refunds); i++)
	{
		JsonbContainer *refund = json_array_container(refunds, i);

		if (has_next_page(json_get_container(refund, "refundLineItems")) || json_array_size(refunds) >= ALL_REFUNDS)
			record_sync_error(ctx->source_id, "incomplete_order",
							  "an order has more refunds or refund line items than converge reads incrementally",
							  psprintf("order %s: its first %d refunds with %d line items each are stored; "
									   "converge.resync_source() reads it whole", gid, ALL_REFUNDS, REFUND_LINE_ITEMS),
							  NULL, 0);
		if (!ingest_refund(b, refund, error))
			return false;
	}
	return true;
}

static bool
has_refunds(JsonbContainer *node)
{
	return json_array_size(json_get_container(node, "refunds")) > 0;
}

static char *
iso_utc(TimestampTz t)
{
	pg_time_t	secs = timestamptz_to_time_t(t);
	struct pg_tm *tm = pg_gmtime(&secs);
	char		buf[32];

	pg_strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", tm);
	return pstrdup(buf);
}

static TimestampTz
load_cursor(SyncContext *ctx)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};
	bool		isnull;
	Datum		d;

	if (SPI_execute_with_args("SELECT cursor_updated_at FROM converge.sync_state WHERE source_id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "converge: no sync state for source " INT64_FORMAT, ctx->source_id);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? ctx->connected_at : DatumGetTimestampTz(d);
}

static void
save_cursor(SyncContext *ctx, TimestampTz cursor, bool caught_up)
{
	Oid			types[3] = {INT8OID, TIMESTAMPTZOID, BOOLOID};
	Datum		values[3] = {Int64GetDatum(ctx->source_id), TimestampTzGetDatum(cursor), BoolGetDatum(caught_up)};

	if (SPI_execute_with_args("UPDATE converge.sync_state SET cursor_updated_at = greatest(cursor_updated_at, $2), "
							  "last_success_at = CASE WHEN $3 THEN now() ELSE last_success_at END, "
							  "error_kind = CASE WHEN $3 THEN NULL ELSE error_kind END WHERE source_id = $1",
							  3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "converge: could not save the cursor");
}

static void
adapt_page_size(SyncContext *ctx, int first)
{
	double		limit = MAX_QUERY_COST;
	double		per_order;

	if (ctx->last_query_cost <= 0)
		return;
	if (ctx->bucket_known)
		limit = Min(limit, ctx->bucket_max);
	per_order = (ctx->last_query_cost - 3) / first;
	if (per_order <= 0)
		return;
	ctx->page_cost_per_order = per_order;
	ctx->page_size = (int) Max(1.0, Min(250.0, floor((limit - 3) / per_order)));
}

/* One page of changes; true while more pages follow. */
bool
incremental_step(SyncContext *ctx)
{
	static const char *const path[] = {"data", "orders", NULL};
	TimestampTz cursor = load_cursor(ctx);
	TimestampTz newest = cursor;
	TimestampTz since = cursor - (int64) converge_incremental_overlap_s * USECS_PER_SEC;
	char	   *search = psprintf("updated_at:>='%s'", iso_utc(since));
	int			first;
	Jsonb	   *doc;
	JsonbContainer *conn;
	JsonbContainer *edges;
	IngestBatch b;
	int			i;
	bool		more;

	build_queries();
	if (ctx->page_size <= 0)
		ctx->page_size = FIRST_PAGE_SIZE;
	first = ctx->page_size;

	doc = shopify_graphql(ctx, page_query,
						  psprintf("{\"first\":%d,\"after\":%s,\"q\":%s}", first,
								   ctx->page_cursor ? json_quote(ctx->page_cursor) : "null",
								   json_quote(search)),
						  /* paced for this page's size, not the last one's */
						  (int) ceil(first * (ctx->page_cost_per_order > 0 ? ctx->page_cost_per_order : 100) + 3));
	if (doc == NULL)
		return false;
	adapt_page_size(ctx, first);
	conn = json_get_path(&doc->root, path);
	edges = json_get_container(conn, "edges");

	ingest_begin(&b, ctx->source_id);
	for (i = 0; i < json_array_size(edges); i++)
	{
		JsonbContainer *node = json_get_container(json_array_container(edges, i), "node");
		char	   *gid = json_get_string(node, "id");
		char	   *updated = json_get_string(node, "updatedAt");
		JsonbContainer *items = json_get_container(node, "lineItems");
		bool		refunds = node != NULL && has_refunds(node);
		char	   *error = NULL;
		TimestampTz t;
		bool		ok;
		MemoryContext old = MemoryContextSwitchTo(b.cxt);

		ok = ingest_order(&b, NULL, node, NULL, false, &error);
		if (ok && has_next_page(items))
			ok = complete_line_items(ctx, &b, gid, end_cursor(items), &error);
		if (ok && refunds)
			ok = complete_refunds(ctx, &b, gid, &error);
		MemoryContextSwitchTo(old);

		if (!ok && ctx->out_of_time)
		{
			/* store the orders before this one; this one is read again next pass */
			ingest_discard_order(&b);
			break;
		}
		if (!ok)
		{
			if (b.order_id >= 0)
				ingest_discard_order(&b);
			record_sync_error(ctx->source_id, "bad_order", "order left out: it cannot be read whole",
							  error, NULL, 0);
		}
		if (updated && parse_timestamptz(updated, &t) && t > newest)
			newest = t;
	}
	ingest_flush(&b);
	ctx->orders_synced += b.orders_stored;
	ctx->refunds_synced += b.refunds_stored;
	ingest_end(&b);

	more = !ctx->out_of_time && has_next_page(conn);
	if (more && end_cursor(conn))
		ctx->page_cursor = MemoryContextStrdup(ctx->cxt, end_cursor(conn));
	save_cursor(ctx, newest, !more && !ctx->out_of_time);
	if (!more)
		ctx->page_cursor = NULL;

	/*
	 * A long backlog (many pages, reaching far back) is read faster, and at no
	 * query cost, by an export; recent changes are not (the overlap re-reads
	 * them at every pass), and a pass catches up at most once.
	 */
	if (more && converge_catchup_pages > 0 && ++ctx->pages >= converge_catchup_pages && !ctx->caught_up &&
		GetCurrentTimestamp() - newest > 2 * (int64) converge_incremental_overlap_s * USECS_PER_SEC)
	{
		backfill_catch_up(ctx, newest - (int64) converge_incremental_overlap_s * USECS_PER_SEC);
		ctx->page_cursor = NULL;
		ctx->caught_up = true;
	}
	return more;
}
