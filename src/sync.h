/*-------------------------------------------------------------------------
 *
 * sync.h
 *	  The state of one sync pass of one source, shared by the files that
 *	  talk to Shopify (shopify_client.c), load the bulk export (backfill.c)
 *	  and page through changes (incremental.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONVERGE_SYNC_H
#define CONVERGE_SYNC_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "http.h"

/* A byte range of the export file, loaded by one process at a time. */
typedef struct ExportPart
{
	int			part;
	int64		start;
	int64		end;			/* offset after the part, -1: the end of the file */
	int64		next;			/* offset of the first line not loaded yet */
	int64		lines;
	char		operation[128];	/* the bulk operation the part belongs to */
} ExportPart;

typedef enum LoadResult
{
	LOAD_MORE,					/* a batch was stored; more follows */
	LOAD_PART_DONE,				/* the part is completely stored */
	LOAD_RETRY,					/* reading failed; try again after a delay */
	LOAD_GONE,					/* the file is gone: export again */
	LOAD_STOP,					/* out of time, or the part vanished */
} LoadResult;

typedef struct SyncContext
{
	int64		source_id;
	MemoryContext cxt;			/* lives across the pass's commits */
	char	   *name;
	char	   *store;			/* validated handle */
	char	   *api_version;
	char	   *client_id;
	char	   *client_secret;
	char	   *access_token;
	TimestampTz token_obtained_at;
	TimestampTz token_expires_at;
	TimestampTz connected_at;

	TimestampTz deadline;		/* the pass stops starting work after this */
	bool		out_of_time;	/* set when a wait would cross the deadline */

	/* Shopify's leaky bucket, as last reported */
	bool		bucket_known;
	double		bucket_max;
	double		bucket_available;
	double		restore_rate;
	TimestampTz bucket_at;

	/* counts for the current step (added to sync_state at each commit) */
	int64		requests;
	int64		throttled;
	int64		retries;
	/* and for the whole pass (converge.sync_runs) */
	int64		pass_requests;
	int64		pass_throttled;
	int64		pass_retries;
	int64		orders_synced;
	int64		refunds_synced;
	char		api_version_seen[32];
	char	   *scope_warning;
	bool		error_noted;	/* a step recorded an error on the source */
	char	   *last_error;

	/* the requested cost Shopify reported, per query text (a few kinds) */
#define COST_MEMORY 8
	uint32		cost_hash[COST_MEMORY];
	double		cost_seen[COST_MEMORY];
	double		last_query_cost;	/* of the last answered query */

	char	   *page_cursor;	/* GraphQL cursor of the incremental walk */
	int			page_size;
	double		page_cost_per_order;	/* requested points per order of a page */
	int			pages;			/* read in this pass */
	bool		caught_up;		/* this pass switched to a catch-up export */

	HttpTransfer *download;		/* the bulk export being read, if any */
	int64		download_offset;	/* file offset of the first unconsumed byte */
	int			download_failures;	/* in a row, in this pass */
	bool		holding_part;	/* ctx->part is locked by this process */
	ExportPart	part;
	bool		workers_launched;
	int64		run_id;			/* converge.sync_runs row of the pass */
} SyncContext;

/* shopify_client.c */
extern void shopify_ensure_token(SyncContext *ctx);
extern Jsonb *shopify_graphql(SyncContext *ctx, const char *query, const char *variables,
							  int cost_estimate);
extern bool sync_sleep(SyncContext *ctx, double seconds);
extern double backoff_seconds(int attempt);

/* backfill.c */
extern bool backfill_step(SyncContext *ctx);
extern void backfill_catch_up(SyncContext *ctx, TimestampTz since);

/* export_loader.c */
extern void export_plan_parts(SyncContext *ctx, const char *url, int64 size);
extern bool export_parts_planned(SyncContext *ctx, int *unfinished);
extern bool export_claim_part(SyncContext *ctx);
extern void export_release_part(SyncContext *ctx);
extern LoadResult export_load_batch(SyncContext *ctx, const char *url);

/* workers.c */
extern int	launch_export_workers(SyncContext *ctx, int n);

/* incremental.c */
extern bool incremental_step(SyncContext *ctx);

/* sync.c */
extern void sync_transaction_settings(void);
extern void sync_note_error(SyncContext *ctx, const char *kind, const char *message,
							const char *detail, const char *hint);
extern char *json_quote(const char *s);

#endif							/* CONVERGE_SYNC_H */
