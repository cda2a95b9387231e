/*-------------------------------------------------------------------------
 *
 * converge.h
 *	  Declarations shared between the files of the converge extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONVERGE_H
#define CONVERGE_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#define CONVERGE_VERSION "0.1.0"

/* Settings (converge.c) */
extern char *converge_shopify_base_url;
extern int	converge_connect_timeout_ms;
extern int	converge_request_timeout_ms;
extern int	converge_max_retries;
extern int	converge_retry_base_ms;
extern int	converge_retry_max_ms;
extern int	converge_batch_size;
extern int	converge_incremental_overlap_s;
extern int	converge_sync_time_limit_ms;
extern int	converge_bulk_poll_ms;
extern int	converge_sync_runs_retention_days;
extern int	converge_backfill_workers;
extern int	converge_catchup_pages;
extern bool converge_generate_events;
extern bool converge_allow_http_destinations;
extern int	converge_delivery_time_limit_ms;
extern int	converge_delivery_timeout_ms;
extern int	converge_delivery_max_age_s;
extern int	converge_delivery_retry_base_ms;
extern int	converge_delivery_retry_max_ms;
extern int	converge_circuit_breaker_failures;
extern int	converge_circuit_breaker_cooldown_ms;
extern int	converge_delivery_retention_days;

/* Store handles and URLs (store.c) */
extern char *converge_store_handle(const char *store);
extern char *converge_store_url(const char *handle, const char *path);

/* HMAC primitives (hmac.c) */
#define CONVERGE_SHA256_LEN 32
extern void converge_hmac_sha256(const char *key, size_t keylen,
								 const char *data, size_t datalen,
								 unsigned char *out);
extern bool converge_timingsafe_equal(const char *a, const char *b, size_t len);

/* Sales channels (channels.c) */
extern const char *converge_sales_channel(bool have_source, int64 source_id,
										  const char *source_name);

/* Procedures that commit as they go (sync.c) */
extern bool converge_is_nonatomic(FunctionCallInfo fcinfo);
extern void converge_commit_if(bool nonatomic);
extern void converge_transaction_settings(bool async_commit);

/* An SPI text parameter that may be NULL. */
static inline Datum
nullable_text(const char *s, char *nullflag)
{
	*nullflag = s ? ' ' : 'n';
	return s ? PointerGetDatum(cstring_to_text(s)) : (Datum) 0;
}

#endif							/* CONVERGE_H */
