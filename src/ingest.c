/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  Orders and their children, normalized and upserted in batches.
 *
 * Rows are collected column by column and written by one statement per
 * batch: every column travels as an array parameter and is unnested into an
 * INSERT ... ON CONFLICT for orders, line items, refunds and refund line
 * items together.  An order is only rewritten when it is newer than (or
 * differs from) the stored one, and only then are its children upserted, so
 * re-reading a page or an export line never duplicates or regresses a row.
 * An order that cannot be read whole is recorded in converge.sync_errors
 * and left out; the rest of the batch goes on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "converge.h"
#include "ingest.h"
#include "json.h"
#include "order_mapping.h"

/* Order columns computed here rather than extracted; tags and discount codes
 * travel joined by 0x1F (a plain text array parameter cannot hold a list per row). */
#define ORDER_EXTRA_COLUMNS 4
#define LIST_SEPARATOR '\x1f'
static const char *const order_extra_names[ORDER_EXTRA_COLUMNS] = {"sales_channel", "data", "tags_joined", "codes_joined"};
static const Oid order_extra_types[ORDER_EXTRA_COLUMNS] = {TEXTOID, JSONBOID, TEXTOID, TEXTOID};
#define MAX_PAYLOAD 16384		/* of a bad row kept in sync_errors */

static const char *const connection_keys[] = {"lineItems", "refundLineItems", NULL};

static SPIPlanPtr flush_plan = NULL;
static SPIPlanPtr error_plan = NULL;
static SPIPlanPtr events_plan = NULL;

static int
width(const TableMapping *m)
{
	return m->nfields + (m == &order_mapping ? ORDER_EXTRA_COLUMNS : 0);
}

static int
column_index(const TableMapping *m, const char *column)
{
	int			i;

	for (i = 0; i < m->nfields; i++)
		if (strcmp(m->fields[i].column, column) == 0)
			return i;
	elog(ERROR, "converge: no column %s in %s", column, m->table);
	return -1;
}

/* ---- the batch statement, generated once from the mappings ---- */

typedef struct BatchParam
{
	Oid			elemtype;
	const TableMapping *m;
	int			col;			/* index into the row set's columns */
} BatchParam;

static BatchParam params[128];
static int	nparams;

/* A subquery that zips the array parameters of a table's columns into rows. */
static void
add_rows(StringInfo sql, const TableMapping *m, const char *alias)
{
	int			i;
	int			w = width(m);

	/* unnest() in the select list streams (ProjectSet); in FROM it is materialized */
	appendStringInfoString(sql, "(SELECT ");
	for (i = 0; i < w; i++)
	{
		Oid			type = i < m->nfields ? field_type(m->fields[i].kind) : order_extra_types[i - m->nfields];
		const char *name = i < m->nfields ? m->fields[i].column : order_extra_names[i - m->nfields];

		params[nparams].elemtype = type;
		params[nparams].m = m;
		params[nparams].col = i;
		nparams++;
		appendStringInfo(sql, "%sunnest($%d::%s[]) AS %s", i > 0 ? ", " : "", nparams + 1,
						 format_type_be(type), name);
	}
	appendStringInfo(sql, ") AS %s", alias);
}

static void
add_columns(StringInfo sql, const TableMapping *m, const char *prefix)
{
	int			i;

	for (i = 0; i < m->nfields; i++)
		appendStringInfo(sql, ", %s%s", prefix, m->fields[i].column);
}

static void
add_updates(StringInfo sql, const TableMapping *m)
{
	int			i;
	bool		first = true;

	for (i = 0; i < m->nfields; i++)
	{
		if (strcmp(m->fields[i].column, m->key) == 0)
			continue;
		appendStringInfo(sql, "%s%s = EXCLUDED.%s", first ? "" : ", ",
						 m->fields[i].column, m->fields[i].column);
		first = false;
	}
}

/*
 * Children of the changed orders, upserted.  Nothing is deleted: Shopify
 * keeps a line item removed by an edit (with currentQuantity 0) and never
 * removes a refund, and a page may carry only an order's first refunds.
 */
static void
add_children(StringInfo sql, const TableMapping *m, const char *name)
{
	appendStringInfo(sql, ", %s AS (INSERT INTO converge.%s AS t (source_id", name, m->table);
	add_columns(sql, m, "");
	appendStringInfoString(sql, ") SELECT $1");
	add_columns(sql, m, "u.");
	appendStringInfoString(sql, " FROM ");
	add_rows(sql, m, "u");
	appendStringInfo(sql, " WHERE u.order_id IN (SELECT order_id FROM o) ON CONFLICT (source_id, %s) DO UPDATE SET ",
					 m->key);
	add_updates(sql, m);
	/* xmax is 0 in a row version the statement inserted (not one it updated) */
	appendStringInfo(sql, " RETURNING t.%s AS id, t.xmax = 0 AS inserted)", m->key);
}

static void
prepare_flush(void)
{
	StringInfoData sql;
	Oid			argtypes[lengthof(params) + 1];
	int			i;

	if (flush_plan != NULL)
		return;

	nparams = 0;
	initStringInfo(&sql);
	appendStringInfoString(&sql, "WITH o AS (INSERT INTO converge.orders AS t (source_id");
	add_columns(&sql, &order_mapping, "");
	appendStringInfoString(&sql, ", sales_channel, data, tags, discount_codes, synced_at) SELECT $1");
	add_columns(&sql, &order_mapping, "u.");
	appendStringInfoString(&sql, ", u.sales_channel, u.data, "
						   "coalesce(string_to_array(u.tags_joined, E'\\x1f'), '{}'), "
						   "coalesce(string_to_array(u.codes_joined, E'\\x1f'), '{}'), now() FROM ");
	add_rows(&sql, &order_mapping, "u");
	appendStringInfoString(&sql, " ON CONFLICT (source_id, order_id) DO UPDATE SET ");
	add_updates(&sql, &order_mapping);
	appendStringInfoString(&sql, ", sales_channel = EXCLUDED.sales_channel, data = EXCLUDED.data, "
						   "tags = EXCLUDED.tags, discount_codes = EXCLUDED.discount_codes, synced_at = EXCLUDED.synced_at "
						   "WHERE t.updated_at < EXCLUDED.updated_at OR "
						   "(t.updated_at = EXCLUDED.updated_at AND t.data IS DISTINCT FROM EXCLUDED.data) "
						   "RETURNING t.order_id, t.xmax = 0 AS inserted)");
	add_children(&sql, &line_item_mapping, "li");
	add_children(&sql, &refund_mapping, "r");
	add_children(&sql, &refund_line_item_mapping, "rli");
	/* what the events need: the orders written (and which are new), the new refunds */
	appendStringInfoString(&sql, " SELECT oo.n, rr.n, oo.ids, oo.inserted, rr.ids FROM "
						   "(SELECT count(*) AS n, array_agg(order_id) AS ids, array_agg(inserted) AS inserted FROM o) oo, "
						   "(SELECT count(*) AS n, array_agg(id) FILTER (WHERE inserted) AS ids FROM r) rr");

	argtypes[0] = INT8OID;
	for (i = 0; i < nparams; i++)
		argtypes[i + 1] = get_array_type(params[i].elemtype);

	flush_plan = SPI_prepare(sql.data, nparams + 1, argtypes);
	if (flush_plan == NULL)
		elog(ERROR, "converge: could not prepare the batch statement: %s\n%s",
			 SPI_result_code_string(SPI_result), sql.data);
	SPI_keepplan(flush_plan);
}

/* converge._order_events(source, order_ids, inserted, refund_ids) */
static void
generate_events(Datum *args, bool *isnull)
{
	char		nulls[4];
	int			i;

	if (events_plan == NULL)
	{
		Oid			types[4] = {INT8OID, INT8ARRAYOID, BOOLARRAYOID, INT8ARRAYOID};

		events_plan = SPI_prepare("SELECT converge._order_events($1, $2, $3, $4)", 4, types);
		if (events_plan == NULL)
			elog(ERROR, "converge: could not prepare the event generation: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(events_plan);
	}
	for (i = 0; i < 4; i++)
		nulls[i] = isnull[i] ? 'n' : ' ';
	if (SPI_execute_plan(events_plan, args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "converge: event generation failed");
	SPI_freetuptable(SPI_tuptable);
}

/* ---- collecting rows ---- */

static RowSet *
rowset_for(IngestBatch *b, const TableMapping *m)
{
	if (m == &order_mapping)
		return &b->orders;
	if (m == &line_item_mapping)
		return &b->line_items;
	if (m == &refund_mapping)
		return &b->refunds;
	return &b->refund_line_items;
}

static int
new_row(IngestBatch *b, const TableMapping *m)
{
	RowSet	   *rs = rowset_for(b, m);
	int			w = width(m);

	if (rs->nrows == rs->cap)
	{
		MemoryContext old = MemoryContextSwitchTo(b->cxt);

		rs->cap = rs->cap ? rs->cap * 2 : 256;
		rs->values = rs->values ? repalloc(rs->values, sizeof(Datum) * w * rs->cap) :
			palloc(sizeof(Datum) * w * rs->cap);
		rs->nulls = rs->nulls ? repalloc(rs->nulls, sizeof(bool) * w * rs->cap) :
			palloc(sizeof(bool) * w * rs->cap);
		MemoryContextSwitchTo(old);
	}
	return rs->nrows++;
}

/* A jsonb container seen as a value, for the accessors that take either. */
static JsonbValue *
node(JsonbContainer *c, JsonbValue *buf)
{
	if (c == NULL)
		return NULL;
	buf->type = jbvBinary;
	buf->val.binary.data = c;
	buf->val.binary.len = 0;
	return buf;
}

/* Extract one row; on failure the row is not added. */
static bool
add_row(IngestBatch *b, const TableMapping *m, JsonbValue *obj, Datum **values, char **error)
{
	RowSet	   *rs = rowset_for(b, m);
	int			w = width(m);
	int			row = new_row(b, m);

	*values = &rs->values[row * w];
	if (!extract_row(m, obj, *values, &rs->nulls[row * w], error))
	{
		rs->nrows--;
		return false;
	}
	return true;
}

static void
set_parent(IngestBatch *b, const TableMapping *m, Datum *values, const char *column, Datum value)
{
	RowSet	   *rs = rowset_for(b, m);
	int			col = column_index(m, column);
	int			row = (values - rs->values) / width(m);

	values[col] = value;
	rs->nulls[row * width(m) + col] = false;
}

/* A list of objects given as a plain list, a connection's nodes, or its edges. */
static int
list_size(JsonbContainer *c, JsonbContainer **items, bool *edges)
{
	*edges = false;
	if (c == NULL)
		return 0;
	if (JsonContainerIsArray(c))
	{
		*items = c;
		return json_array_size(c);
	}
	if ((*items = json_get_container(c, "nodes")) != NULL)
		return json_array_size(*items);
	if ((*items = json_get_container(c, "edges")) != NULL)
	{
		*edges = true;
		return json_array_size(*items);
	}
	return 0;
}

static JsonbContainer *
list_item(JsonbContainer *items, int i, bool edges)
{
	JsonbContainer *c = json_array_container(items, i);

	return edges ? json_get_container(c, "node") : c;
}

/*
 * A list of strings joined by LIST_SEPARATOR into *joined (NULL when the key
 * is absent); false when it is not a list of strings without that character.
 */
static bool
joined_strings(JsonbContainer *c, const char *key, char **joined)
{
	JsonbValue	buf;
	JsonbValue *v = json_get(c, key, &buf);
	StringInfoData out;
	int			i;

	*joined = NULL;
	if (v == NULL)
		return true;
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		return false;
	initStringInfo(&out);
	for (i = 0; i < json_array_size(v->val.binary.data); i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(v->val.binary.data, i);

		if (e->type != jbvString || memchr(e->val.string.val, LIST_SEPARATOR, e->val.string.len) != NULL)
			return false;
		if (i > 0)
			appendStringInfoChar(&out, LIST_SEPARATOR);
		appendBinaryStringInfo(&out, e->val.string.val, e->val.string.len);
	}
	*joined = out.data;
	return true;
}

static void
set_order_extra(IngestBatch *b, Datum *values, int k, Datum value, bool isnull)
{
	values[order_mapping.nfields + k] = value;
	b->orders.nulls[(b->orders.nrows - 1) * width(&order_mapping) + order_mapping.nfields + k] = isnull;
}

bool
ingest_line_item(IngestBatch *b, JsonbValue *item, char **error)
{
	Datum	   *values;

	if (b->order_id < 0)
	{
		*error = pstrdup("line item without its order");
		return false;
	}
	if (item == NULL || !add_row(b, &line_item_mapping, item, &values, error))
	{
		if (item == NULL)
			*error = pstrdup("line item is not an object");
		return false;
	}
	set_parent(b, &line_item_mapping, values, "order_id", Int64GetDatum(b->order_id));
	set_parent(b, &line_item_mapping, values, "position", Int32GetDatum(b->position++));
	return true;
}

/* A refund line item of a refund of the order being assembled. */
bool
ingest_refund_line_item(IngestBatch *b, int64 refund_id, JsonbValue *item, char **error)
{
	Datum	   *values;
	int			r;
	int			col = column_index(&refund_mapping, "refund_id");
	bool		found = false;

	for (r = b->refunds.mark; r < b->refunds.nrows; r++)
		if (DatumGetInt64(b->refunds.values[r * width(&refund_mapping) + col]) == refund_id)
			found = true;
	if (b->order_id < 0 || !found)
	{
		*error = psprintf("refund line item of refund " INT64_FORMAT ", which is not part of the current order", refund_id);
		return false;
	}
	if (item == NULL || !add_row(b, &refund_line_item_mapping, item, &values, error))
	{
		if (item == NULL)
			*error = pstrdup("refund line item is not an object");
		return false;
	}
	set_parent(b, &refund_line_item_mapping, values, "refund_id", Int64GetDatum(refund_id));
	set_parent(b, &refund_line_item_mapping, values, "order_id", Int64GetDatum(b->order_id));
	return true;
}

/*
 * Start a new order from its JSON object: the order row, and whatever
 * children it carries (a GraphQL page nests lineItems and refunds with their
 * refundLineItems; an export line carries only its refunds).  Children that
 * arrive separately follow with ingest_line_item / ingest_refund_line_item.
 */
/* A refund of the order being assembled, with the refund line items it nests. */
bool
ingest_refund(IngestBatch *b, JsonbContainer *refund, char **error)
{
	JsonbContainer *rlis;
	JsonbValue	rbuf;
	JsonbValue	ibuf;
	Datum	   *rvalues;
	int64		refund_id;
	bool		edges;
	int			j;
	int			m;

	if (b->order_id < 0)
	{
		*error = pstrdup("refund without its order");
		return false;
	}
	if (refund == NULL || !add_row(b, &refund_mapping, node(refund, &rbuf), &rvalues, error))
	{
		if (refund == NULL)
			*error = pstrdup("refund is not an object");
		return false;
	}
	set_parent(b, &refund_mapping, rvalues, "order_id", Int64GetDatum(b->order_id));
	refund_id = DatumGetInt64(rvalues[column_index(&refund_mapping, "refund_id")]);
	m = list_size(json_get_container(refund, "refundLineItems"), &rlis, &edges);
	for (j = 0; j < m; j++)
		if (!ingest_refund_line_item(b, refund_id, node(list_item(rlis, j, edges), &ibuf), error))
			return false;
	return true;
}

static bool
has_connections(JsonbContainer *order)
{
	JsonbContainer *refunds = json_get_container(order, "refunds");
	int			i;

	if (json_get_container(order, "lineItems") != NULL)
		return true;
	for (i = 0; i < json_array_size(refunds); i++)
		if (json_get_container(json_array_container(refunds, i), "refundLineItems") != NULL)
			return true;
	return false;
}

/*
 * doc, when given, is the document whose root is order: stored as is when it
 * nests no connections.  tree, when given, is the same order as a value tree:
 * its columns are read from it (faster than from jsonb).
 */
bool
ingest_order(IngestBatch *b, Jsonb *doc, JsonbContainer *order, JsonbValue *tree,
			 bool with_refunds, char **error)
{
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	Datum	   *values;
	JsonbContainer *items;
	JsonbContainer *refunds;
	bool		edges;
	JsonbValue	obuf;
	char	   *source_name;
	char	   *tags;
	char	   *codes;
	int			i;
	int			n;

	b->order_id = -1;
	b->position = 0;
	b->orders.mark = b->orders.nrows;
	b->line_items.mark = b->line_items.nrows;
	b->refunds.mark = b->refunds.nrows;
	b->refund_line_items.mark = b->refund_line_items.nrows;

	if (order == NULL || !JsonContainerIsObject(order))
	{
		*error = pstrdup("the order is not a JSON object");
		goto bad;
	}
	if (!add_row(b, &order_mapping, tree ? tree : node(order, &obuf), &values, error))
		goto bad;
	if (!joined_strings(order, "tags", &tags) || !joined_strings(order, "discountCodes", &codes))
	{
		b->orders.nrows--;
		*error = pstrdup("tags and discountCodes must be lists of strings (without the character 0x1F)");
		goto bad;
	}
	b->order_id = DatumGetInt64(values[column_index(&order_mapping, "order_id")]);

	source_name = json_get_string(order, "sourceName");
	set_order_extra(b, values, 0, CStringGetTextDatum(converge_sales_channel(true, b->source_id, source_name)), false);
	set_order_extra(b, values, 2, tags ? CStringGetTextDatum(tags) : (Datum) 0, tags == NULL);
	set_order_extra(b, values, 3, codes ? CStringGetTextDatum(codes) : (Datum) 0, codes == NULL);

	n = list_size(json_get_container(order, "lineItems"), &items, &edges);
	for (i = 0; i < n; i++)
		if (!ingest_line_item(b, node(list_item(items, i, edges), &obuf), error))
			goto bad;

	refunds = with_refunds ? json_get_container(order, "refunds") : NULL;
	for (i = 0; i < json_array_size(refunds); i++)
		if (!ingest_refund(b, json_array_container(refunds, i), error))
			goto bad;

	/* stored as a bulk export has it: connections live in their own tables */
	{
		Jsonb	   *data = (doc != NULL && !has_connections(order)) ? doc :
			json_without_keys(order, connection_keys);

		set_order_extra(b, values, 1, JsonbPGetDatum(data), false);
	}
	MemoryContextSwitchTo(old);
	return true;

bad:
	ingest_discard_order(b);
	b->bad_rows++;
	MemoryContextSwitchTo(old);
	return false;
}

/* The order being assembled is complete: later children belong to no order. */
void
ingest_end_order(IngestBatch *b)
{
	b->order_id = -1;
	b->orders.mark = b->orders.nrows;
	b->line_items.mark = b->line_items.nrows;
	b->refunds.mark = b->refunds.nrows;
	b->refund_line_items.mark = b->refund_line_items.nrows;
}

/* Drop the order being assembled and everything added for it. */
void
ingest_discard_order(IngestBatch *b)
{
	b->orders.nrows = b->orders.mark;
	b->line_items.nrows = b->line_items.mark;
	b->refunds.nrows = b->refunds.mark;
	b->refund_line_items.nrows = b->refund_line_items.mark;
	b->order_id = -1;
}

/*
 * One memory context serves every batch of the backend: reset, never freed,
 * so a batch reuses the pages of the one before (flat memory, no page faults
 * for every batch).
 */
static MemoryContext batch_context = NULL;

void
ingest_begin(IngestBatch *b, int64 source_id)
{
	memset(b, 0, sizeof(*b));
	b->source_id = source_id;
	b->order_id = -1;
	if (batch_context == NULL)
		batch_context = AllocSetContextCreate(TopMemoryContext, "converge ingest batch",
											  16 * 1024 * 1024, 1024 * 1024, 16 * 1024 * 1024);
	b->cxt = batch_context;
}

int
ingest_pending(IngestBatch *b)
{
	return b->orders.nrows;
}

static Datum
column_array(RowSet *rs, const TableMapping *m, int col, Oid elemtype)
{
	int			w = width(m);
	Datum	   *elems = palloc(sizeof(Datum) * Max(rs->nrows, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(rs->nrows, 1));
	int			dims[1] = {rs->nrows};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i;

	for (i = 0; i < rs->nrows; i++)
	{
		elems[i] = rs->values[i * w + col];
		nulls[i] = rs->nulls[i * w + col];
	}
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

/* Write everything collected so far, in the current transaction. */
void
ingest_flush(IngestBatch *b)
{
	MemoryContext old;
	Datum	   *values;
	char	   *nulls;
	int			i;
	int			rc;
	bool		isnull;

	if (b->orders.nrows == 0)
	{
		MemoryContextReset(b->cxt);
		memset(&b->orders, 0, sizeof(RowSet));
		memset(&b->line_items, 0, sizeof(RowSet));
		memset(&b->refunds, 0, sizeof(RowSet));
		memset(&b->refund_line_items, 0, sizeof(RowSet));
		return;
	}

	prepare_flush();
	old = MemoryContextSwitchTo(b->cxt);
	values = palloc(sizeof(Datum) * (nparams + 1));
	nulls = palloc(nparams + 1);
	values[0] = Int64GetDatum(b->source_id);
	nulls[0] = ' ';
	for (i = 0; i < nparams; i++)
	{
		values[i + 1] = column_array(rowset_for(b, params[i].m), params[i].m,
									 params[i].col, params[i].elemtype);
		nulls[i + 1] = ' ';
	}

	rc = SPI_execute_plan(flush_plan, values, nulls, false, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "converge: batch statement failed: %s", SPI_result_code_string(rc));
	{
		SPITupleTable *result = SPI_tuptable;	/* the next statement replaces SPI_tuptable */
		HeapTuple	row = result->vals[0];
		TupleDesc	desc = result->tupdesc;
		int64		orders = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		Datum		changed[4];
		bool		changed_null[4];

		b->orders_stored += orders;
		b->refunds_stored += DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
		for (i = 0; i < 3; i++)
			changed[i + 1] = SPI_getbinval(row, desc, i + 3, &changed_null[i + 1]);
		changed[0] = Int64GetDatum(b->source_id);
		changed_null[0] = false;
		/* in this transaction: the events exist exactly when their orders do */
		if (orders > 0 && converge_generate_events)
			generate_events(changed, changed_null);
		SPI_freetuptable(result);
	}

	MemoryContextSwitchTo(old);
	MemoryContextReset(b->cxt);
	memset(&b->orders, 0, sizeof(RowSet));
	memset(&b->line_items, 0, sizeof(RowSet));
	memset(&b->refunds, 0, sizeof(RowSet));
	memset(&b->refund_line_items, 0, sizeof(RowSet));
	b->order_id = -1;
}

void
ingest_end(IngestBatch *b)
{
	if (b->cxt)
		MemoryContextReset(b->cxt);
	b->cxt = NULL;
}

/* Keep what could not be used where users can see it. */
void
record_sync_error(int64 source_id, const char *kind, const char *message,
				  const char *detail, const char *payload, int payload_len)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	if (error_plan == NULL)
	{
		Oid			types[5] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};

		error_plan = SPI_prepare("INSERT INTO converge.sync_errors (source_id, kind, message, detail, payload) "
								 "VALUES ($1, $2, $3, $4, $5)", 5, types);
		if (error_plan == NULL)
			elog(ERROR, "converge: could not prepare the error insert");
		SPI_keepplan(error_plan);
	}
	values[0] = Int64GetDatum(source_id);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(message);
	values[3] = nullable_text(detail, &nulls[3]);
	if (payload && pg_verify_mbstr(GetDatabaseEncoding(), payload, Min(payload_len, MAX_PAYLOAD), true))
	{
		int			len = Min(payload_len, MAX_PAYLOAD);

		/* never cut a multibyte character in two */
		len = pg_mbcliplen(payload, len, len);
		values[4] = PointerGetDatum(cstring_to_text_with_len(payload, len));
	}
	else if (payload)
	{
		/* not text in the database's encoding: keep its bytes as hex */
		int			len = Min(payload_len, MAX_PAYLOAD / 2);
		char	   *hex = palloc(len * 2 + 1);

		hex[hex_encode(payload, len, hex)] = '\0';
		values[4] = CStringGetTextDatum(psprintf("\\x%s", hex));
	}
	else
		nulls[4] = 'n';
	if (SPI_execute_plan(error_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "converge: could not record a sync error");
}
