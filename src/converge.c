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

	MarkGUCPrefixReserved("converge");
}
