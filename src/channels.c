/*-------------------------------------------------------------------------
 *
 * channels.c
 *	  Mapping of Shopify sourceName values to Converge sales channel types.
 *
 * The product's default mapping is compiled in.  Users add or override
 * mappings in converge.channel_mappings (globally, or for one source); a
 * per-source override beats a global one, which beats the default; anything
 * unknown is "web".
 *
 * sales_channel() is called once per order on the sync path, so the
 * overrides are cached per backend in a hash table.  The cache is dropped
 * through a relcache invalidation that a statement trigger on the table
 * raises: it reaches every backend at commit (and this one at the next
 * command), and is undone on rollback, so no backend ever maps with stale
 * or uncommitted overrides.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "converge.h"

#define MAX_SOURCE_NAME_LEN 255	/* enforced by a CHECK on the table */

typedef struct DefaultMapping
{
	const char *shopify;
	const char *converge;
	const char *description;
} DefaultMapping;

/* The product specification's table, row for row. */
static const DefaultMapping default_mappings[] = {
	{"web", "web", "Shopify checkout"},
	{"subscription_contract", "subscription_contract", "Recurring orders, third-party subscription apps"},
	{"shopify_draft_order", "offline", "Manual orders"},
	{"pos", "pos", "Point of sale"},
	{"12875497473", "web", "Shopify headless"},
	{"Edit Order", "offline", "Manually edited orders"},
	{"3890849", "marketplace", "Shopify Shop app"},
	{"2329312", "facebook_shop", "Meta/Facebook checkout"},
	{"4383523", "tiktok_shop", "TikTok checkout"},
	{"3009811", "pinterest_shop", "Pinterest checkout"},
	{"amazon", "marketplace", "Amazon"},
};

static const char *const channel_types[] = {
	"web", "subscription_contract", "sms", "mobile_app", "pos",
	"marketplace", "offline", "facebook_shop", "pinterest_shop", "tiktok_shop",
};

#define FALLBACK_CHANNEL "web"

typedef struct OverrideKey
{
	bool		any_source;		/* a global mapping (source_id IS NULL) */
	int64		source_id;
	char		source_name[MAX_SOURCE_NAME_LEN + 1];
} OverrideKey;

typedef struct OverrideEntry
{
	OverrideKey key;
	const char *channel;		/* points into channel_types */
} OverrideEntry;

static HTAB *override_cache = NULL;
static MemoryContext override_context = NULL;
static bool override_cache_valid = false;
static uint64 invalidations = 0;	/* bumped by every invalidation */
static bool invalidation_registered = false;
static Oid	mappings_relid = InvalidOid;

PG_FUNCTION_INFO_V1(converge_sales_channel_sql);
PG_FUNCTION_INFO_V1(converge_sales_channel_for_source_sql);
PG_FUNCTION_INFO_V1(converge_sales_channel_types);
PG_FUNCTION_INFO_V1(converge_default_channel_mappings);
PG_FUNCTION_INFO_V1(converge_channel_mapping_check);
PG_FUNCTION_INFO_V1(converge_channel_mappings_changed);

/* Return the canonical spelling of a valid channel type, or NULL. */
static const char *
lookup_channel_type(const char *channel)
{
	int			i;

	for (i = 0; i < (int) lengthof(channel_types); i++)
	{
		if (strcmp(channel, channel_types[i]) == 0)
			return channel_types[i];
	}
	return NULL;
}

static const char *
default_channel(const char *source_name)
{
	int			i;

	for (i = 0; i < (int) lengthof(default_mappings); i++)
	{
		if (strcmp(source_name, default_mappings[i].shopify) == 0)
			return default_mappings[i].converge;
	}
	return NULL;
}

static char *
channel_type_list(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < (int) lengthof(channel_types); i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", channel_types[i]);
	return buf.data;
}

static void
mappings_invalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == mappings_relid)
	{
		override_cache_valid = false;
		invalidations++;
	}
}

static void
make_key(OverrideKey *key, bool any_source, int64 source_id, const char *name)
{
	memset(key, 0, sizeof(*key));
	key->any_source = any_source;
	key->source_id = any_source ? 0 : source_id;
	strlcpy(key->source_name, name, sizeof(key->source_name));
}

static void
load_overrides(void)
{
	HASHCTL		ctl;
	uint64		i;
	uint64		seen;

	if (!invalidation_registered)
	{
		CacheRegisterRelcacheCallback(mappings_invalidated, (Datum) 0);
		invalidation_registered = true;
	}

	if (override_context == NULL)
		override_context = AllocSetContextCreate(CacheMemoryContext,
												 "converge channel overrides",
												 ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(override_context);
	override_cache = NULL;

	mappings_relid = get_relname_relid("channel_mappings",
									   get_namespace_oid("converge", false));
	if (!OidIsValid(mappings_relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table converge.channel_mappings does not exist"),
				 errhint("Reinstall the extension: DROP EXTENSION converge; CREATE EXTENSION converge;")));

	/*
	 * Valid only once loaded, and only if no invalidation arrived meanwhile:
	 * an error half way (a cancel) leaves it invalid, to be loaded again.
	 */
	override_cache_valid = false;
	seen = invalidations;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(OverrideKey);
	ctl.entrysize = sizeof(OverrideEntry);
	ctl.hcxt = override_context;
	override_cache = hash_create("converge channel overrides", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT source_id, shopify_source_name, converge_channel "
					"FROM converge.channel_mappings", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read converge.channel_mappings");

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		source_id = SPI_getbinval(tup, desc, 1, &isnull);
		char	   *name = SPI_getvalue(tup, desc, 2);
		char	   *channel = SPI_getvalue(tup, desc, 3);
		const char *canonical = channel ? lookup_channel_type(channel) : NULL;
		OverrideKey key;
		OverrideEntry *entry;

		/* the trigger keeps such rows out; skip rather than map wrongly */
		if (name == NULL || canonical == NULL || strlen(name) > MAX_SOURCE_NAME_LEN)
			continue;
		make_key(&key, isnull, isnull ? 0 : DatumGetInt64(source_id), name);
		entry = hash_search(override_cache, &key, HASH_ENTER, NULL);
		entry->channel = canonical;
	}
	SPI_finish();
	override_cache_valid = (seen == invalidations);
}

static const char *
lookup_override(bool any_source, int64 source_id, const char *name)
{
	OverrideKey key;
	OverrideEntry *entry;

	make_key(&key, any_source, source_id, name);
	entry = hash_search(override_cache, &key, HASH_FIND, NULL);
	return entry ? entry->channel : NULL;
}

/*
 * The Converge sales channel of an order with this sourceName, for one
 * source (have_source) or for any.  NULL or unknown names map to "web".
 */
const char *
converge_sales_channel(bool have_source, int64 source_id, const char *source_name)
{
	const char *channel = NULL;

	if (source_name == NULL)
		return FALLBACK_CHANNEL;

	if (!override_cache_valid)
		load_overrides();

	/* most installations have no overrides: skip hashing a 270-byte key twice per order */
	if (hash_get_num_entries(override_cache) > 0 && strlen(source_name) <= MAX_SOURCE_NAME_LEN)
	{
		if (have_source)
			channel = lookup_override(false, source_id, source_name);
		if (channel == NULL)
			channel = lookup_override(true, 0, source_name);
	}
	if (channel == NULL)
		channel = default_channel(source_name);
	return channel ? channel : FALLBACK_CHANNEL;
}

/* converge.sales_channel(source_name text) returns text */
Datum
converge_sales_channel_sql(PG_FUNCTION_ARGS)
{
	char	   *name = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(converge_sales_channel(false, 0, name)));
}

/* converge.sales_channel(source_id bigint, source_name text) returns text */
Datum
converge_sales_channel_for_source_sql(PG_FUNCTION_ARGS)
{
	char	   *name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(converge_sales_channel(!PG_ARGISNULL(0),
															PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0),
															name)));
}

/* converge.sales_channel_types() returns setof text */
Datum
converge_sales_channel_types(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;

	if (SRF_IS_FIRSTCALL())
		funcctx = SRF_FIRSTCALL_INIT();
	funcctx = SRF_PERCALL_SETUP();
	if (funcctx->call_cntr < lengthof(channel_types))
	{
		/* SRF_RETURN_NEXT bumps call_cntr before evaluating its argument */
		Datum		type = CStringGetTextDatum(channel_types[funcctx->call_cntr]);

		SRF_RETURN_NEXT(funcctx, type);
	}
	SRF_RETURN_DONE(funcctx);
}

/*
 * converge.default_channel_mappings() returns table (shopify_source_name,
 * converge_channel, description)
 */
Datum
converge_default_channel_mappings(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < (int) lengthof(default_mappings); i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum(default_mappings[i].shopify);
		values[1] = CStringGetTextDatum(default_mappings[i].converge);
		values[2] = CStringGetTextDatum(default_mappings[i].description);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * BEFORE INSERT OR UPDATE row trigger on converge.channel_mappings: refuse a
 * mapping that could never apply, with a message that says how to fix it
 * (the table's constraints stay as the backstop).
 */
Datum
converge_channel_mapping_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *name;
	char	   *channel;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "converge_channel_mapping_check must be a BEFORE ROW trigger");

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = trigdata->tg_relation->rd_att;
	name = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "shopify_source_name"));
	channel = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "converge_channel"));

	if (name == NULL || *name == '\0' || strlen(name) > MAX_SOURCE_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shopify_source_name must be 1 to %d bytes long", MAX_SOURCE_NAME_LEN),
				 errhint("Use the order's sourceName exactly as Shopify reports it, e.g. \"pos\" or an app id such as \"3890849\".")));
	if (channel == NULL || lookup_channel_type(channel) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 channel ? errmsg("\"%s\" is not a Converge sales channel type", channel) :
				 errmsg("converge_channel must not be null"),
				 errhint("Map to one of: %s.", channel_type_list())));

	return PointerGetDatum(tuple);
}

/*
 * AFTER statement trigger on converge.channel_mappings: make every backend
 * (this one included) reload its overrides once the change is visible.
 */
Datum
converge_channel_mappings_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "converge_channel_mappings_changed must be called as a trigger");

	CacheInvalidateRelcache(trigdata->tg_relation);
	/* and this backend at once: a later trigger refreshes held events with the new mapping */
	mappings_invalidated((Datum) 0, RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
