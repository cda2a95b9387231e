/*-------------------------------------------------------------------------
 *
 * event_payload.c
 *	  The properties, profile properties and aliases of events, as jsonb.
 *
 * What an event says is defined in SQL, by two views per event name: one row
 * of facts per event (converge._placed_order_facts,
 * converge._received_refund_facts) and one row per item
 * (converge._placed_order_items, converge._received_refund_items).  Their
 * first columns are fixed (see FactsColumn); every further column is a
 * property named by its column name, "p.$email" style names are profile
 * fields (in both properties and profile_properties).  A NULL is an absent
 * key, never a JSON null.
 *
 * This file only assembles the JSON: SQL's jsonb_build_object() looks up
 * every argument's type on every call and costs ~10x more per event, which
 * the backfill cannot afford.  Keys are put in jsonb's order once per query,
 * so that every object is built already sorted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "converge.h"

PG_FUNCTION_INFO_V1(converge_event_payloads);

/* The fixed leading columns of a facts view. */
typedef enum FactsColumn
{
	F_SOURCE_ID,
	F_KEY,						/* order id or refund id: what the ids name */
	F_EVENT_ID,
	F_ORDER_ID,
	F_OCCURRED_AT,
	F_CREATED_AT,
	F_SALES_CHANNEL,
	F_ALIASES,
	F_FIRST_PROPERTY
} FactsColumn;

/* ... and of an items view: source id, key, position, then the item's fields. */
#define ITEMS_FIRST_FIELD 3

#define PROFILE_PREFIX "p."
#define CHUNK 5000				/* ids per query: bounded memory for any number */

typedef struct PayloadKind
{
	const char *event_name;
	const char *facts_view;
	const char *items_view;
} PayloadKind;

static const PayloadKind kinds[] = {
	{"Placed Order", "converge._placed_order_facts", "converge._placed_order_items"},
	{"Received Refund", "converge._received_refund_facts", "converge._received_refund_items"},
};

/*
 * What one object of the result holds, in jsonb's key order (shorter keys
 * first, then bytewise), so that objects are built already sorted: no
 * pushJsonbValue(), no sorting of keys for every event.
 */
typedef enum EntryKind
{
	ENTRY_COLUMN,				/* a column of the row */
	ENTRY_ITEMS,				/* the items array */
	ENTRY_EVENT_CURRENCY		/* in an item: the event's currency */
} EntryKind;

typedef struct Entry
{
	const char *key;
	int			keylen;
	EntryKind	kind;
	int			col;
	Oid			type;
} Entry;

typedef struct Shape
{
	Entry	   *entries;
	int			n;
} Shape;

static int
entry_cmp(const void *a, const void *b)
{
	const Entry *x = a;
	const Entry *y = b;

	if (x->keylen != y->keylen)
		return x->keylen < y->keylen ? -1 : 1;
	return memcmp(x->key, y->key, x->keylen);
}

static void
add_entry(Shape *shape, const char *key, EntryKind kind, int col, Oid type)
{
	Entry	   *e = &shape->entries[shape->n++];

	e->key = key;
	e->keylen = strlen(key);
	e->kind = kind;
	e->col = col;
	e->type = type;
}

/*
 * The object made of a row's columns from first on: every column, or only
 * the profile ones; plus the items array, or the event's currency.
 */
static Shape
make_shape(TupleDesc desc, int first, bool profile_only, EntryKind extra, const char *extra_key)
{
	Shape		shape;
	int			i;

	shape.entries = palloc(sizeof(Entry) * (desc->natts + 1));
	shape.n = 0;
	for (i = first; i < desc->natts; i++)
	{
		char	   *name = NameStr(TupleDescAttr(desc, i)->attname);
		bool		profile = strncmp(name, PROFILE_PREFIX, strlen(PROFILE_PREFIX)) == 0;
		Oid			type = TupleDescAttr(desc, i)->atttypid;

		if (type != TEXTOID && type != NUMERICOID && type != BOOLOID && type != INT4OID)
			elog(ERROR, "converge: event property %s has unsupported type %u", name, type);
		if (profile_only && !profile)
			continue;
		add_entry(&shape, profile ? name + strlen(PROFILE_PREFIX) : name, ENTRY_COLUMN, i, type);
	}
	if (extra_key != NULL)
		add_entry(&shape, extra_key, extra, -1, InvalidOid);
	qsort(shape.entries, shape.n, sizeof(Entry), entry_cmp);
	for (i = 1; i < shape.n; i++)
		if (entry_cmp(&shape.entries[i - 1], &shape.entries[i]) == 0)
			elog(ERROR, "converge: event property %s is defined twice", shape.entries[i].key);
	return shape;
}

static void
scalar(Oid type, Datum value, JsonbValue *v)
{
	switch (type)
	{
		case TEXTOID:
			{
				text	   *t = DatumGetTextPP(value);

				v->type = jbvString;
				v->val.string.val = VARDATA_ANY(t);
				v->val.string.len = VARSIZE_ANY_EXHDR(t);
				break;
			}
		case NUMERICOID:
			v->type = jbvNumeric;
			v->val.numeric = DatumGetNumeric(value);
			break;
		case INT4OID:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt32(value));
			break;
		default:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(value);
			break;
	}
}

/* The object of one row; a NULL column is an absent key. */
static JsonbValue *
build_object(const Shape *shape, Datum *values, bool *nulls, JsonbValue *items, JsonbValue *currency)
{
	JsonbValue *obj = palloc(sizeof(JsonbValue));
	JsonbPair  *pairs = palloc(sizeof(JsonbPair) * Max(shape->n, 1));
	int			n = 0;
	int			i;

	for (i = 0; i < shape->n; i++)
	{
		const Entry *e = &shape->entries[i];
		JsonbPair  *p = &pairs[n];

		if (e->kind == ENTRY_COLUMN)
		{
			if (nulls[e->col])
				continue;
			scalar(e->type, values[e->col], &p->value);
		}
		else if (e->kind == ENTRY_ITEMS)
			p->value = *items;
		else if (currency == NULL)
			continue;
		else
			p->value = *currency;
		p->key.type = jbvString;
		p->key.val.string.val = (char *) e->key;
		p->key.val.string.len = e->keylen;
		p->order = n++;
	}
	obj->type = jbvObject;
	obj->val.object.nPairs = n;
	obj->val.object.pairs = pairs;
	return obj;
}

static int64
row_int64(HeapTuple row, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = heap_getattr(row, col + 1, desc, &isnull);

	return isnull ? -1 : DatumGetInt64(d);
}

/*
 * converge._event_payloads(event_name text, source bigint, ids bigint[])
 *   RETURNS TABLE (key bigint, event_id text, order_id bigint, occurred_at timestamptz,
 *                  created_at timestamptz, sales_channel text, aliases text[],
 *                  properties jsonb, profile jsonb)
 *
 * One row per id that exists (orders for Placed Order, refunds for Received Refund).
 */
Datum
converge_event_payloads(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *event_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		source_id = PG_GETARG_INT64(1);
	ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(2);
	const PayloadKind *kind = NULL;
	Datum	   *id_values;
	int			nids;
	char	   *facts_sql;
	char	   *items_sql;
	MemoryContext row_cxt;
	int			start;
	int			i;

	for (i = 0; i < (int) lengthof(kinds); i++)
		if (strcmp(kinds[i].event_name, event_name) == 0)
			kind = &kinds[i];
	if (kind == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event name \"%s\"", event_name),
				 errhint("Events are named Placed Order or Received Refund.")));

	InitMaterializedSRF(fcinfo, 0);
	deconstruct_array(ids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &id_values, NULL, &nids);

	/*
	 * One index probe per id, whatever the statistics say: during a backfill
	 * they lag far behind the tables, and the planner would rather scan a
	 * whole source's rows.  OFFSET 0 keeps the subquery from being flattened
	 * into a join it could reorder.
	 */
	facts_sql = psprintf("SELECT f.* FROM unnest($2) AS k(id) CROSS JOIN LATERAL "
						 "(SELECT * FROM %s v WHERE v._source_id = $1 AND v._key = k.id OFFSET 0) f "
						 "ORDER BY f._key", kind->facts_view);
	items_sql = psprintf("SELECT i.* FROM unnest($2) AS k(id) CROSS JOIN LATERAL "
						 "(SELECT * FROM %s v WHERE v._source_id = $1 AND v._key = k.id OFFSET 0) i "
						 "ORDER BY i._key, i._position", kind->items_view);
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "converge event payload", ALLOCSET_DEFAULT_SIZES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "converge: SPI_connect failed");

	for (start = 0; start < nids; start += CHUNK)
	{
		int			n = Min(CHUNK, nids - start);
		Oid			types[2] = {INT8OID, INT8ARRAYOID};
		Datum		args[2];
		SPITupleTable *facts;
		SPITupleTable *items;
		uint64		nfacts;
		uint64		nitems;
		Shape		props_shape;
		Shape		profile_shape;
		Shape		item_shape;
		Datum	   *fvalues;
		bool	   *fnulls;
		Datum	   *ivalues;
		bool	   *inulls;
		int			currency_col = -1;
		uint64		f;
		uint64		it = 0;

		args[0] = Int64GetDatum(source_id);
		args[1] = PointerGetDatum(construct_array(id_values + start, n, INT8OID, 8, FLOAT8PASSBYVAL,
												  TYPALIGN_DOUBLE));
		if (SPI_execute_with_args(facts_sql, 2, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "converge: could not read the facts of events");
		facts = SPI_tuptable;
		nfacts = SPI_processed;
		if (nfacts == 0)
		{
			SPI_freetuptable(facts);
			continue;
		}
		if (SPI_execute_with_args(items_sql, 2, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "converge: could not read the items of events");
		items = SPI_tuptable;
		nitems = SPI_processed;

		props_shape = make_shape(facts->tupdesc, F_FIRST_PROPERTY, false, ENTRY_ITEMS, "items");
		profile_shape = make_shape(facts->tupdesc, F_FIRST_PROPERTY, true, ENTRY_ITEMS, NULL);
		item_shape = make_shape(items->tupdesc, ITEMS_FIRST_FIELD, false, ENTRY_EVENT_CURRENCY, "currency");
		/* each item is in the event's currency */
		for (i = F_FIRST_PROPERTY; i < facts->tupdesc->natts; i++)
			if (strcmp(NameStr(TupleDescAttr(facts->tupdesc, i)->attname), "currency") == 0)
				currency_col = i;
		fvalues = palloc(sizeof(Datum) * facts->tupdesc->natts);
		fnulls = palloc(sizeof(bool) * facts->tupdesc->natts);
		ivalues = palloc(sizeof(Datum) * items->tupdesc->natts);
		inulls = palloc(sizeof(bool) * items->tupdesc->natts);

		for (f = 0; f < nfacts; f++)
		{
			int64		key;
			JsonbValue	item_array;
			JsonbValue	currency;
			Datum		values[9];
			bool		nulls[9] = {false};
			int			nitems_here = 0;
			uint64		first_item;
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			old = MemoryContextSwitchTo(row_cxt);
			heap_deform_tuple(facts->vals[f], facts->tupdesc, fvalues, fnulls);
			key = DatumGetInt64(fvalues[F_KEY]);
			if (currency_col >= 0 && !fnulls[currency_col])
				scalar(TEXTOID, fvalues[currency_col], &currency);

			while (it < nitems && row_int64(items->vals[it], items->tupdesc, F_KEY) < key)
				it++;
			first_item = it;
			while (it < nitems && row_int64(items->vals[it], items->tupdesc, F_KEY) == key)
				it++;
			item_array.type = jbvArray;
			item_array.val.array.rawScalar = false;
			item_array.val.array.elems = palloc(sizeof(JsonbValue) * Max(it - first_item, 1));
			for (; first_item < it; first_item++)
			{
				heap_deform_tuple(items->vals[first_item], items->tupdesc, ivalues, inulls);
				item_array.val.array.elems[nitems_here++] =
					*build_object(&item_shape, ivalues, inulls, NULL,
								  currency_col >= 0 && !fnulls[currency_col] ? &currency : NULL);
			}
			item_array.val.array.nElems = nitems_here;

			values[0] = Int64GetDatum(key);
			/* event_id .. aliases: the facts' columns F_EVENT_ID .. F_ALIASES */
			for (i = 1; i < 7; i++)
			{
				values[i] = fvalues[F_EVENT_ID + i - 1];
				nulls[i] = fnulls[F_EVENT_ID + i - 1];
			}
			values[7] = JsonbPGetDatum(JsonbValueToJsonb(build_object(&props_shape, fvalues, fnulls,
																	   &item_array, NULL)));
			values[8] = JsonbPGetDatum(JsonbValueToJsonb(build_object(&profile_shape, fvalues, fnulls,
																	   NULL, NULL)));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			MemoryContextSwitchTo(old);
			MemoryContextReset(row_cxt);
		}
		SPI_freetuptable(facts);
		SPI_freetuptable(items);
	}
	SPI_finish();
	return (Datum) 0;
}
