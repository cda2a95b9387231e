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
 * the backfill cannot afford.
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

/* How a column becomes JSON: its key, and whether it is a profile field. */
typedef struct ColumnSpec
{
	char	   *key;
	int			keylen;
	Oid			type;
	bool		profile;
} ColumnSpec;

static ColumnSpec *
column_specs(TupleDesc desc, int first)
{
	ColumnSpec *specs = palloc0(sizeof(ColumnSpec) * desc->natts);
	int			i;

	for (i = first; i < desc->natts; i++)
	{
		char	   *name = NameStr(TupleDescAttr(desc, i)->attname);

		specs[i].profile = strncmp(name, PROFILE_PREFIX, strlen(PROFILE_PREFIX)) == 0;
		specs[i].key = specs[i].profile ? name + strlen(PROFILE_PREFIX) : name;
		specs[i].keylen = strlen(specs[i].key);
		specs[i].type = TupleDescAttr(desc, i)->atttypid;
		if (specs[i].type != TEXTOID && specs[i].type != NUMERICOID && specs[i].type != BOOLOID &&
			specs[i].type != INT4OID)
			elog(ERROR, "converge: event property %s has unsupported type %u", name, specs[i].type);
	}
	return specs;
}

static void
push_string(JsonbParseState **st, JsonbIteratorToken token, const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	pushJsonbValue(st, token, &v);
}

/* One column as a key and its value; nothing for NULL. */
static void
push_column(JsonbParseState **st, const ColumnSpec *spec, Datum value, bool isnull)
{
	JsonbValue	v;

	if (isnull)
		return;
	push_string(st, WJB_KEY, spec->key, spec->keylen);
	switch (spec->type)
	{
		case TEXTOID:
			{
				text	   *t = DatumGetTextPP(value);

				push_string(st, WJB_VALUE, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				return;
			}
		case NUMERICOID:
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(value);
			break;
		case INT4OID:
			v.type = jbvNumeric;
			v.val.numeric = int64_to_numeric(DatumGetInt32(value));
			break;
		default:
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(value);
			break;
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* The columns of one row from first on (only the profile ones if profile_only). */
static void
push_columns(JsonbParseState **st, const ColumnSpec *specs, HeapTuple row, TupleDesc desc,
			 int first, bool profile_only)
{
	int			i;
	bool		isnull;

	for (i = first; i < desc->natts; i++)
	{
		Datum		value;

		if (profile_only && !specs[i].profile)
			continue;
		value = heap_getattr(row, i + 1, desc, &isnull);
		push_column(st, &specs[i], value, isnull);
	}
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
		ColumnSpec *fspecs;
		ColumnSpec *ispecs;
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

		fspecs = column_specs(facts->tupdesc, F_FIRST_PROPERTY);
		ispecs = column_specs(items->tupdesc, ITEMS_FIRST_FIELD);
		/* each item is in the event's currency */
		for (i = F_FIRST_PROPERTY; i < facts->tupdesc->natts; i++)
			if (strcmp(fspecs[i].key, "currency") == 0)
				currency_col = i;

		for (f = 0; f < nfacts; f++)
		{
			HeapTuple	row = facts->vals[f];
			TupleDesc	desc = facts->tupdesc;
			int64		key = row_int64(row, desc, F_KEY);
			JsonbParseState *st = NULL;
			JsonbValue *props;
			JsonbValue *profile;
			Datum		values[9];
			bool		nulls[9] = {false};
			bool		currency_null;
			Datum		currency;
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			old = MemoryContextSwitchTo(row_cxt);

			pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
			push_columns(&st, fspecs, row, desc, F_FIRST_PROPERTY, false);
			currency = currency_col >= 0 ? heap_getattr(row, currency_col + 1, desc, &currency_null) : (Datum) 0;
			push_string(&st, WJB_KEY, "items", 5);
			pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
			while (it < nitems && row_int64(items->vals[it], items->tupdesc, F_KEY) < key)
				it++;
			for (; it < nitems && row_int64(items->vals[it], items->tupdesc, F_KEY) == key; it++)
			{
				pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
				push_columns(&st, ispecs, items->vals[it], items->tupdesc, ITEMS_FIRST_FIELD, false);
				if (currency_col >= 0)
					push_column(&st, &fspecs[currency_col], currency, currency_null);
				pushJsonbValue(&st, WJB_END_OBJECT, NULL);
			}
			pushJsonbValue(&st, WJB_END_ARRAY, NULL);
			props = pushJsonbValue(&st, WJB_END_OBJECT, NULL);

			st = NULL;
			pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
			push_columns(&st, fspecs, row, desc, F_FIRST_PROPERTY, true);
			profile = pushJsonbValue(&st, WJB_END_OBJECT, NULL);

			values[0] = Int64GetDatum(key);
			/* event_id .. aliases: the facts' columns F_EVENT_ID .. F_ALIASES */
			for (i = 1; i < 7; i++)
				values[i] = heap_getattr(row, F_EVENT_ID + i, desc, &nulls[i]);
			values[7] = JsonbPGetDatum(JsonbValueToJsonb(props));
			values[8] = JsonbPGetDatum(JsonbValueToJsonb(profile));
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
