/*-------------------------------------------------------------------------
 *
 * converge.c
 *	  Module entry point: loads the extension and defines its settings.
 *
 * Every setting that changes where the database server connects to is
 * superuser-only (PGC_SUSET): a role that can merely use the data must not
 * be able to point the server at another host.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "converge.h"

PG_MODULE_MAGIC;

#define DEFAULT_SHOPIFY_BASE_URL "https://{store}.myshopify.com"

char	   *converge_shopify_base_url = NULL;
int			converge_connect_timeout_ms = 10000;
int			converge_request_timeout_ms = 60000;
int			converge_max_retries = 8;
int			converge_retry_base_ms = 500;
int			converge_retry_max_ms = 30000;
int			converge_batch_size = 2000;
int			converge_incremental_overlap_s = 300;
int			converge_sync_time_limit_ms = 50000;
int			converge_bulk_poll_ms = 1000;
int			converge_sync_runs_retention_days = 7;
int			converge_backfill_workers = 1;
int			converge_catchup_pages = 20;
bool		converge_generate_events = true;
bool		converge_allow_http_destinations = false;
int			converge_delivery_time_limit_ms = 50000;
int			converge_delivery_timeout_ms = 10000;
int			converge_delivery_max_age_s = 86400;
int			converge_delivery_retry_base_ms = 1000;
int			converge_delivery_retry_max_ms = 3600000;
int			converge_circuit_breaker_failures = 10;
int			converge_circuit_breaker_cooldown_ms = 60000;
int			converge_delivery_retention_days = 7;

void		_PG_init(void);

/*
 * The base URL is a template: "{store}" is replaced by a validated store
 * handle.  Refuse anything that is not http(s) or that could not address
 * several stores, so that a typo fails at SET time rather than at sync time.
 */
static bool
check_shopify_base_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *p;

	if (url == NULL)
		return true;

	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
	{
		GUC_check_errdetail("The URL must start with https:// (or http:// for a local test server).");
		GUC_check_errhint("The default is \"%s\".", DEFAULT_SHOPIFY_BASE_URL);
		return false;
	}
	if (strstr(url, "{store}") == NULL)
	{
		GUC_check_errdetail("The URL must contain the placeholder {store}, which is replaced by the store handle.");
		GUC_check_errhint("The default is \"%s\".", DEFAULT_SHOPIFY_BASE_URL);
		return false;
	}
	for (p = url; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || *p == '?' || *p == '#' || (unsigned char) *p == 0x7f)
		{
			GUC_check_errdetail("The URL must not contain spaces, control characters, a query or a fragment.");
			GUC_check_errhint("The default is \"%s\".", DEFAULT_SHOPIFY_BASE_URL);
			return false;
		}
	}
	return true;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("converge.shopify_base_url",
							   "URL template of the Shopify Admin API; {store} is replaced by the store handle.",
							   "Only superusers can change it. Tests point it at a local mock server.",
							   &converge_shopify_base_url,
							   DEFAULT_SHOPIFY_BASE_URL,
							   PGC_SUSET,
							   0,
							   check_shopify_base_url, NULL, NULL);

	DefineCustomIntVariable("converge.connect_timeout",
							"Time allowed to connect to Shopify or a destination.",
							NULL,
							&converge_connect_timeout_ms,
							10000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.request_timeout",
							"Time allowed for one whole request; a download is abandoned when it stalls this long.",
							NULL,
							&converge_request_timeout_ms,
							60000, 100, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.max_retries",
							"Retries of one failed request (5xx, 429, timeouts, malformed answers) before the pass gives up.",
							NULL,
							&converge_max_retries,
							8, 0, 100,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.retry_base_delay",
							"First retry delay; each further retry doubles it, with jitter.",
							NULL,
							&converge_retry_base_ms,
							500, 1, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.retry_max_delay",
							"Longest delay between two retries.",
							NULL,
							&converge_retry_max_ms,
							30000, 1, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.batch_size",
							"Orders written per transaction while loading an export or a page.",
							NULL,
							&converge_batch_size,
							2000, 1, 100000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.incremental_overlap",
							"How far before its cursor an incremental pass looks again, so that nothing changed at a page boundary is missed.",
							NULL,
							&converge_incremental_overlap_s,
							300, 0, 86400,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.sync_time_limit",
							"How long one sync pass may run before it stops starting new work (it commits as it goes).",
							NULL,
							&converge_sync_time_limit_ms,
							50000, 100, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.bulk_poll_interval",
							"How often a pass asks Shopify whether the bulk export is ready.",
							NULL,
							&converge_bulk_poll_ms,
							1000, 10, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.sync_runs_retention",
							"Days of converge.sync_runs and converge.sync_errors kept; older rows are pruned by the sync.",
							NULL,
							&converge_sync_runs_retention_days,
							7, 1, 3650,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.backfill_workers",
							"Background workers that load parts of a bulk export alongside the sync pass.",
							"0 loads the export in the pass's own backend only.",
							&converge_backfill_workers,
							1, 0, 8,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.catchup_pages",
							"Incremental pages a pass reads before it switches a longer backlog to a catch-up export.",
							"0 never switches.",
							&converge_catchup_pages,
							20, 0, 100000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("converge.generate_events",
							 "Generate events for the orders and refunds the sync stores.",
							 "For benchmarks only: orders stored while it is off never get their events.",
							 &converge_generate_events,
							 true,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("converge.allow_http_destinations",
							 "Allow http:// destinations on this machine (127.0.0.1, ::1, localhost).",
							 "For tests and local relays; every other destination must use https://.",
							 &converge_allow_http_destinations,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("converge.delivery_time_limit",
							"A delivery run stops taking new deliveries after this.",
							NULL,
							&converge_delivery_time_limit_ms,
							50000, 100, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.delivery_timeout",
							"Time a destination has to answer one request.",
							NULL,
							&converge_delivery_timeout_ms,
							10000, 100, 300000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.delivery_max_age",
							"How long a delivery is retried after its first attempt before it is dead.",
							NULL,
							&converge_delivery_max_age_s,
							86400, 1, 30 * 86400,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.delivery_retry_base",
							"First delay before a failed delivery is tried again; it doubles with each attempt.",
							NULL,
							&converge_delivery_retry_base_ms,
							1000, 1, 3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.delivery_retry_max",
							"Longest delay between two attempts of a delivery.",
							NULL,
							&converge_delivery_retry_max_ms,
							3600000, 1, 86400000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.circuit_breaker_failures",
							"Failed requests in a row after which a destination is paused for the cool-down.",
							NULL,
							&converge_circuit_breaker_failures,
							10, 1, 100000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.circuit_breaker_cooldown",
							"How long a destination whose circuit opened is left alone.",
							NULL,
							&converge_circuit_breaker_cooldown_ms,
							60000, 1, 86400000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("converge.delivery_retention",
							"Days delivered deliveries are kept; older ones are pruned by converge.deliver().",
							NULL,
							&converge_delivery_retention_days,
							7, 1, 3650,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("converge");
}
