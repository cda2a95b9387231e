/*-------------------------------------------------------------------------
 *
 * workers.c
 *	  Background workers that load parts of a bulk export in parallel with
 *	  the sync pass that started them.
 *
 * A backfill is CPU-bound (parsing JSON, writing rows and index entries),
 * and a backend uses one core.  The pass cuts the export into parts
 * (export_loader.c) and starts converge.backfill_workers dynamic background
 * workers; every process, the pass included, loads whichever unfinished part
 * it can lock, committing as it goes, until the parts are done or the pass's
 * deadline is reached.  A worker that fails or is stopped loses nothing: its
 * part's committed offset is where the next process resumes.  Where no
 * worker can be started (max_worker_processes reached), the pass loads every
 * part itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "converge.h"
#include "http.h"
#include "ingest.h"
#include "sync.h"

typedef struct WorkerArgs
{
	Oid			database;
	Oid			user;
	int64		source_id;
	int64		run_id;
	TimestampTz deadline;
} WorkerArgs;

PGDLLEXPORT void converge_export_worker_main(Datum arg);

/* Start up to n workers for the pass's source; returns how many started. */
int
launch_export_workers(SyncContext *ctx, int n)
{
	WorkerArgs	args;
	int			started = 0;
	int			i;

	StaticAssertStmt(sizeof(WorkerArgs) <= BGW_EXTRALEN, "worker arguments too large");
	args.database = MyDatabaseId;
	args.user = GetUserId();
	args.source_id = ctx->source_id;
	args.run_id = ctx->run_id;
	args.deadline = ctx->deadline;

	for (i = 0; i < Min(n, converge_backfill_workers); i++)
	{
		BackgroundWorker worker;
		BackgroundWorkerHandle *handle;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "converge");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "converge_export_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "converge export loader for source " INT64_FORMAT, ctx->source_id);
		snprintf(worker.bgw_type, BGW_MAXLEN, "converge export loader");
		memcpy(worker.bgw_extra, &args, sizeof(args));
		worker.bgw_notify_pid = MyProcPid;
		if (!RegisterDynamicBackgroundWorker(&worker, &handle))
			break;				/* no slot: the pass loads the rest itself */
		started++;
	}
	return started;
}

/* One batch in its own transaction; false when there is nothing more to do. */
static bool
worker_step(SyncContext *ctx, const char *url)
{
	bool		more = true;

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	sync_transaction_settings();

	ctx->requests = 0;
	ctx->orders_synced = ctx->refunds_synced = 0;
	if (!export_claim_part(ctx))
		more = false;
	else
	{
		switch (export_load_batch(ctx, url))
		{
			case LOAD_MORE:
				ctx->download_failures = 0;
				break;
			case LOAD_PART_DONE:
				export_release_part(ctx);
				break;
			case LOAD_RETRY:
				if (++ctx->download_failures > converge_max_retries ||
					!sync_sleep(ctx, backoff_seconds(ctx->download_failures - 1)))
					more = false;
				break;
			case LOAD_GONE:
			case LOAD_STOP:
				more = false;
				break;
		}
	}
	if (ctx->requests > 0 || ctx->orders_synced > 0)
	{
		/* what this worker did counts for the pass that started it */
		Oid			types[5] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
		Datum		values[5] = {Int64GetDatum(ctx->source_id), Int64GetDatum(ctx->requests),
			Int64GetDatum(ctx->run_id), Int64GetDatum(ctx->orders_synced), Int64GetDatum(ctx->refunds_synced)};

		(void) SPI_execute_with_args("WITH r AS (UPDATE converge.sync_runs SET requests = requests + $2, "
									 "orders_synced = orders_synced + $4, refunds_synced = refunds_synced + $5 "
									 "WHERE id = $3) "
									 "UPDATE converge.sync_state SET api_requests = api_requests + $2 "
									 "WHERE source_id = $1", 5, types, values, NULL, false, 0);
	}

	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	return more;
}

static char *
export_url(int64 source_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(source_id)};
	char	   *url = NULL;

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("SELECT bulk_url FROM converge.sync_state WHERE source_id = $1 AND phase = 'backfill'",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *u = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (u)
			url = MemoryContextStrdup(TopMemoryContext, u);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	return url;
}

void
converge_export_worker_main(Datum arg)
{
	WorkerArgs	args;
	SyncContext *ctx;
	char	   *url;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	/* die() only sets a flag: the worker stops at its next interrupt check */
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.database, args.user, 0);
	pgstat_report_appname("converge export loader");

	ctx = MemoryContextAllocZero(TopMemoryContext, sizeof(SyncContext));
	ctx->cxt = AllocSetContextCreate(TopMemoryContext, "converge export loader", ALLOCSET_DEFAULT_SIZES);
	ctx->source_id = args.source_id;
	ctx->run_id = args.run_id;
	ctx->deadline = args.deadline;

	url = export_url(args.source_id);
	if (url == NULL)
		proc_exit(0);

	PG_TRY();
	{
		while (GetCurrentTimestamp() < ctx->deadline && !ctx->out_of_time)
		{
			CHECK_FOR_INTERRUPTS();
			if (!worker_step(ctx, url))
				break;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* keep the failure where users look; the part resumes in the next pass */
		EmitErrorReport();
		MemoryContextSwitchTo(ctx->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		http_abort_all();
		StartTransactionCommand();
		if (SPI_connect() == SPI_OK_CONNECT)
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			record_sync_error(ctx->source_id, "bulk_worker", "an export loader stopped on an error",
							  edata->message, NULL, 0);
			PopActiveSnapshot();
			SPI_finish();
		}
		CommitTransactionCommand();
		proc_exit(1);
	}
	PG_END_TRY();

	export_release_part(ctx);
	proc_exit(0);
}
