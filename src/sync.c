/*-------------------------------------------------------------------------
 *
 * sync.c
 *	  Sync passes: CALL converge.sync(source) and CALL converge.sync_all().
 *
 * A pass runs the source's next steps (backfill or incremental) until there
 * is nothing left to do now or converge.sync_time_limit is reached,
 * committing after every step, so no transaction stays open for long and a
 * crash loses at most the step in progress.  Each step runs in a
 * subtransaction: when it fails, what it wrote is rolled back and the error
 * is recorded on the source (converge.sync_status), classified as a
 * configuration problem (waits for the user, retried every 15 minutes) or a
 * transient one (retried with a growing delay).  A session-level advisory
 * lock per source makes a second concurrent pass on the same source return
 * at once; different sources never wait for each other.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "converge.h"
#include "http.h"
#include "ingest.h"
#include "sync.h"

#define LOCK_CLASS 0x636f6e76	/* "conv": advisory lock space of converge */
#define CONFIG_RETRY_SECS 900
#define MAX_BACKOFF_SECS 900

PG_FUNCTION_INFO_V1(converge_sync);
PG_FUNCTION_INFO_V1(converge_sync_all);

char *
json_quote(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

static void
source_locktag(LOCKTAG *tag, int64 source_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, LOCK_CLASS, (uint32) source_id, 2);
}

static void
exec_update(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc < 0)
		elog(ERROR, "converge: %s failed: %s", sql, SPI_result_code_string(rc));
}

/*
 * For the transaction that starts, without JIT: converge's statements touch a
 * batch of rows each, and compiling them (hundreds of milliseconds, again for
 * every batch) costs far more than it saves.  async_commit: commit without
 * waiting for the WAL flush.
 */
void
converge_transaction_settings(bool async_commit)
{
	if (SPI_execute("SET LOCAL jit TO off", false, 0) != SPI_OK_UTILITY ||
		(async_commit && SPI_execute("SET LOCAL synchronous_commit TO off", false, 0) != SPI_OK_UTILITY))
		elog(ERROR, "converge: could not set the transaction's settings");
}

/*
 * The sync commits asynchronously.  A crash can then lose the last moments
 * of work, but never half of it: rows and the offset or cursor that covers
 * them are lost together, and the next pass reads them again.  Nothing is
 * skipped or stored twice.
 */
void
sync_transaction_settings(void)
{
	converge_transaction_settings(true);
}

/* Record an error on the source without aborting anything. */
void
sync_note_error(SyncContext *ctx, const char *kind, const char *message,
				const char *detail, const char *hint)
{
	Oid			types[5] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(ctx->source_id);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(message);
	values[3] = nullable_text(detail, &nulls[3]);
	values[4] = nullable_text(hint, &nulls[4]);
	exec_update("UPDATE converge.sync_state SET error_kind = $2, error_message = $3, error_detail = $4, "
				"error_hint = $5, error_at = now() WHERE source_id = $1", 5, types, values, nulls);
	ctx->error_noted = true;
}

/* Add this step's request counts to the source, and clear a cleared error. */
static void
save_counters(SyncContext *ctx, bool clean)
{
	Oid			types[6] = {INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, BOOLOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	ctx->pass_requests += ctx->requests;
	ctx->pass_throttled += ctx->throttled;
	ctx->pass_retries += ctx->retries;
	values[0] = Int64GetDatum(ctx->source_id);
	values[1] = Int64GetDatum(ctx->requests);
	values[2] = Int64GetDatum(ctx->throttled);
	values[3] = Int64GetDatum(ctx->retries);
	values[4] = nullable_text(ctx->api_version_seen[0] ? ctx->api_version_seen : NULL, &nulls[4]);
	values[5] = BoolGetDatum(clean);
	exec_update("UPDATE converge.sync_state SET api_requests = api_requests + $2, throttled = throttled + $3, "
				"retries = retries + $4, api_version_seen = coalesce($5, api_version_seen), "
				"error_kind = CASE WHEN $6 THEN NULL ELSE error_kind END, "
				"failures = CASE WHEN $6 THEN 0 ELSE failures END WHERE source_id = $1",
				6, types, values, nulls);
}

static bool
load_source(SyncContext *ctx, bool *paused, bool *backfill)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	MemoryContext old;

	if (SPI_execute_with_args("SELECT s.store, s.api_version, s.client_id, k.client_secret, k.access_token, "
							  "k.token_obtained_at, k.token_expires_at, s.connected_at, s.paused, st.phase, s.name "
							  "FROM converge.source_settings s JOIN converge.source_secrets k ON k.source_id = s.id "
							  "JOIN converge.sync_state st ON st.source_id = s.id WHERE s.id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "converge: could not read source " INT64_FORMAT, ctx->source_id);
	if (SPI_processed != 1)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(ctx->cxt);
	ctx->store = SPI_getvalue(tup, desc, 1);
	ctx->api_version = SPI_getvalue(tup, desc, 2);
	ctx->client_id = SPI_getvalue(tup, desc, 3);
	ctx->client_secret = SPI_getvalue(tup, desc, 4);
	ctx->access_token = SPI_getvalue(tup, desc, 5);
	d = SPI_getbinval(tup, desc, 6, &isnull);
	ctx->token_obtained_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tup, desc, 7, &isnull);
	ctx->token_expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	if (isnull)
		ctx->access_token = NULL;
	ctx->connected_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
	*paused = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
	*backfill = strcmp(SPI_getvalue(tup, desc, 10), "backfill") == 0;
	ctx->name = SPI_getvalue(tup, desc, 11);
	MemoryContextSwitchTo(old);
	return true;
}

static char *
source_name(int64 source_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(source_id)};

	if (SPI_execute_with_args("SELECT name FROM converge.source_settings WHERE id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		return psprintf(INT64_FORMAT, source_id);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

static bool
current_phase_is_backfill(SyncContext *ctx)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(ctx->source_id)};

	if (SPI_execute_with_args("SELECT phase FROM converge.sync_state WHERE source_id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "converge: source " INT64_FORMAT " has no sync state", ctx->source_id);
	return strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "backfill") == 0;
}

static bool
is_configuration_error(int sqlerrcode)
{
	return ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION ||
		sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE;
}

/* Errors that must end the pass (and the statement), not be recorded and survived. */
static bool
must_rethrow(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_OPERATOR_INTERVENTION ||
		category == ERRCODE_INSUFFICIENT_RESOURCES ||
		category == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

static void
record_failure(SyncContext *ctx, ErrorData *edata)
{
	bool		config = is_configuration_error(edata->sqlerrcode);
	Oid			types[2] = {INT8OID, BOOLOID};
	Datum		values[2] = {Int64GetDatum(ctx->source_id), BoolGetDatum(config)};

	sync_note_error(ctx, config ? "configuration" : "transient", edata->message, edata->detail,
					edata->hint);
	exec_update("UPDATE converge.sync_state SET failures = failures + 1 WHERE source_id = $1",
				1, types, values, NULL);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("converge: source \"%s\": %s", ctx->name, edata->message),
			 edata->detail ? errdetail("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s", edata->hint) : 0));
}

/* After an error, when to try again: soon for a hiccup, later for configuration. */
static void
schedule_next_attempt(SyncContext *ctx)
{
	Oid			types[3] = {INT8OID, INT4OID, INT4OID};
	Datum		values[3] = {Int64GetDatum(ctx->source_id), Int32GetDatum(CONFIG_RETRY_SECS),
	Int32GetDatum(MAX_BACKOFF_SECS)};

	exec_update("UPDATE converge.sync_state SET next_attempt_at = CASE "
				"WHEN error_kind = 'configuration' THEN now() + make_interval(secs => $2) "
				"WHEN error_kind = 'transient' THEN now() + make_interval(secs => least($3, 15 * power(2, least(failures, 10)))) "
				"ELSE NULL END WHERE source_id = $1", 3, types, values, NULL);
}

static int64
start_run(SyncContext *ctx, const char *phase)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(ctx->source_id), CStringGetTextDatum(phase)};
	bool		isnull;

	if (SPI_execute_with_args("INSERT INTO converge.sync_runs (source_id, phase) VALUES ($1, $2) RETURNING id",
							  2, types, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "converge: could not log the sync run");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static void
finish_run(SyncContext *ctx, int64 run_id, const char *outcome, const char *message)
{
	Oid			types[9] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, INT4OID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(outcome);
	values[2] = Int64GetDatum(ctx->orders_synced);
	values[3] = Int64GetDatum(ctx->refunds_synced);
	values[4] = Int64GetDatum(ctx->pass_requests);
	values[5] = Int64GetDatum(ctx->pass_throttled);
	values[6] = Int64GetDatum(ctx->pass_retries);
	values[7] = nullable_text(message, &nulls[7]);
	values[8] = Int32GetDatum(converge_sync_runs_retention_days);
	/* added: export workers count their own work into the run */
	exec_update("WITH r AS (UPDATE converge.sync_runs SET finished_at = clock_timestamp(), outcome = $2, "
				"orders_synced = orders_synced + $3, refunds_synced = refunds_synced + $4, requests = requests + $5, "
				"throttled = $6, retries = $7, message = $8 "
				"WHERE id = $1), "
				"old_runs AS (DELETE FROM converge.sync_runs WHERE started_at < now() - make_interval(days => $9)) "
				"DELETE FROM converge.sync_errors WHERE occurred_at < now() - make_interval(days => $9)",
				9, types, values, nulls);
}

void
converge_commit_if(bool nonatomic)
{
	if (nonatomic)
	{
		SPI_commit();
		SPI_start_transaction();
	}
}

/*
 * One step in a subtransaction: what it wrote is kept, or rolled back and the
 * error recorded on the source.  false when it failed.
 */
static bool
run_step(SyncContext *ctx, bool *more)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	ctx->requests = ctx->throttled = ctx->retries = 0;
	ctx->error_noted = false;
	sync_transaction_settings();

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		*more = current_phase_is_backfill(ctx) ? backfill_step(ctx) : incremental_step(ctx);
		save_counters(ctx, !ctx->error_noted);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();

	if (edata == NULL)
		return true;

	/* a stream read in the rolled-back step no longer matches the saved offset */
	http_abort_all();
	ctx->download = NULL;
	export_release_part(ctx);
	if (must_rethrow(edata->sqlerrcode))
		ReThrowError((ErrorData *) edata);
	record_failure(ctx, (ErrorData *) edata);
	save_counters(ctx, false);
	ctx->last_error = MemoryContextStrdup(ctx->cxt, edata->message);
	FreeErrorData((ErrorData *) edata);
	*more = false;
	return false;
}

/*
 * One pass over one source.  Returns false when the source is busy (another
 * pass holds it).
 */
static bool
run_pass(int64 source_id, TimestampTz deadline, bool nonatomic, bool manual)
{
	LOCKTAG		tag;
	MemoryContext cxt;
	SyncContext *ctx;
	bool		paused;
	bool		backfill;
	int64		run_id = 0;
	const char *volatile outcome = "completed";
	const char *volatile message = NULL;

	source_locktag(&tag, source_id);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return false;

	cxt = AllocSetContextCreate(TopMemoryContext, "converge sync pass", ALLOCSET_DEFAULT_SIZES);
	ctx = MemoryContextAllocZero(cxt, sizeof(SyncContext));
	ctx->cxt = cxt;
	ctx->source_id = source_id;
	ctx->deadline = deadline;

	PG_TRY();
	{
		if (!load_source(ctx, &paused, &backfill))
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("source " INT64_FORMAT " does not exist", source_id),
					 errhint("SELECT id, name, store FROM converge.sources lists them.")));
		if (paused)
		{
			if (manual)
				ereport(NOTICE,
						(errmsg("source \"%s\" is paused", ctx->name),
						 errhint("converge.resume_source(source) resumes it.")));
		}
		else
		{
			Oid			types[1] = {INT8OID};
			Datum		values[1] = {Int64GetDatum(source_id)};

			/* a run left open holds no lock now: its backend died */
			exec_update("UPDATE converge.sync_runs SET outcome = 'interrupted', finished_at = clock_timestamp() "
						"WHERE source_id = $1 AND finished_at IS NULL", 1, types, values, NULL);
			run_id = start_run(ctx, backfill ? "backfill" : "incremental");
			ctx->run_id = run_id;
			converge_commit_if(nonatomic);

			for (;;)
			{
				bool		more = false;
				bool		failed;

				CHECK_FOR_INTERRUPTS();
				failed = !run_step(ctx, &more);
				if (failed || ctx->error_noted)
				{
					outcome = "error";
					message = ctx->last_error ? ctx->last_error : "see converge.sync_status";
					schedule_next_attempt(ctx);
				}
				converge_commit_if(nonatomic);

				if (failed || ctx->error_noted || !more)
					break;
				if (GetCurrentTimestamp() >= ctx->deadline || ctx->out_of_time)
				{
					outcome = "partial";
					break;
				}
			}
			if (ctx->out_of_time && strcmp(outcome, "completed") == 0)
				outcome = "partial";
			if (strcmp(outcome, "error") != 0)
				schedule_next_attempt(ctx);
			finish_run(ctx, run_id, outcome, (const char *) message);
			converge_commit_if(nonatomic);
		}
	}
	PG_FINALLY();
	{
		export_release_part(ctx);
		LockRelease(&tag, ExclusiveLock, true);
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();
	return true;
}

bool
converge_is_nonatomic(FunctionCallInfo fcinfo)
{
	return fcinfo->context != NULL && IsA(fcinfo->context, CallContext) &&
		!castNode(CallContext, fcinfo->context)->atomic;
}

static TimestampTz
pass_deadline(void)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), converge_sync_time_limit_ms);
}

/* CALL converge.sync(source bigint) */
Datum
converge_sync(PG_FUNCTION_ARGS)
{
	bool		nonatomic = converge_is_nonatomic(fcinfo);
	int64		source_id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source must not be null"),
				 errhint("CALL converge.sync_all() syncs every source.")));
	source_id = PG_GETARG_INT64(0);

	if (SPI_connect_ext(nonatomic ? SPI_OPT_NONATOMIC : 0) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!run_pass(source_id, pass_deadline(), nonatomic, true))
		ereport(NOTICE,
				(errmsg("source \"%s\" is being synced by another session", source_name(source_id)),
				 errdetail("Only one pass per source runs at a time; this one did nothing.")));
	SPI_finish();
	PG_RETURN_VOID();
}

static void
run_passes(const int64 *ids, uint64 n, TimestampTz deadline, bool nonatomic)
{
	uint64		i;

	for (i = 0; i < n && GetCurrentTimestamp() < deadline; i++)
		(void) run_pass(ids[i], deadline, nonatomic, false);
}

/* CALL converge.sync_all(): every due source, until the time limit. */
Datum
converge_sync_all(PG_FUNCTION_ARGS)
{
	volatile bool nonatomic = converge_is_nonatomic(fcinfo);
	TimestampTz deadline = pass_deadline();
	int64	   *ids;
	uint64		n;
	uint64		i;

	if (SPI_connect_ext(nonatomic ? SPI_OPT_NONATOMIC : 0) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT s.id FROM converge.source_settings s JOIN converge.sync_state st ON st.source_id = s.id "
					"WHERE NOT s.paused AND (st.next_attempt_at IS NULL OR st.next_attempt_at <= now()) "
					/* the longest without a pass first: a long backfill never starves the others */
					"ORDER BY (SELECT max(r.started_at) FROM converge.sync_runs r WHERE r.source_id = s.id) "
					"NULLS FIRST, s.id", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "converge: could not list the sources");
	n = SPI_processed;
	/* the list outlives the commits of the passes */
	ids = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}

	PG_TRY();
	{
		run_passes(ids, n, deadline, nonatomic);
	}
	PG_FINALLY();
	{
		pfree(ids);
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_VOID();
}
