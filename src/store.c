/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Store handles: validation, normalization and the URLs built from them.
 *
 * A store handle ends up in a URL that the database server connects to, so
 * it is validated strictly before any URL is built: only the handle of a
 * myshopify.com domain is accepted, never another host, a port, user info
 * or a path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

#include "converge.h"

#define MYSHOPIFY_SUFFIX ".myshopify.com"
#define MAX_HANDLE_LEN 63		/* a DNS label */

PG_FUNCTION_INFO_V1(converge_store_handle_sql);
PG_FUNCTION_INFO_V1(converge_store_url_sql);

static void
refuse_store(const char *store, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Shopify store \"%s\"", store),
			 errdetail("%s", detail),
			 errhint("Give the store's handle (acme-eu) or its myshopify.com domain "
					 "(acme-eu.myshopify.com or https://acme-eu.myshopify.com/); "
					 "a handle is 1 to 63 letters, digits and hyphens.")));
}

/*
 * Return the lowercase handle of a store given as a handle, a myshopify.com
 * domain or an http(s) URL of one; ereport ERROR (22023) for anything else.
 */
char *
converge_store_handle(const char *store)
{
	char	   *s = asc_tolower(store, strlen(store));
	char	   *host;
	char	   *end;
	size_t		len;
	const char *p;

	if (*s == '\0')
		refuse_store(store, "The store is empty.");
	for (p = s; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
			refuse_store(store, "The store contains spaces, control or non-ASCII characters.");
	}

	host = s;
	if (strncmp(host, "https://", 8) == 0)
		host += 8;
	else if (strncmp(host, "http://", 7) == 0)
		host += 7;
	else if (strstr(host, "://") != NULL)
		refuse_store(store, "Only an https:// URL of a myshopify.com domain is accepted.");

	/* one trailing slash is what browsers show; anything after it is a path */
	len = strlen(host);
	if (len > 0 && host[len - 1] == '/')
		host[--len] = '\0';

	if (strchr(host, '?') != NULL || strchr(host, '#') != NULL)
		refuse_store(store, "The store must not contain a query or a fragment.");
	if (strchr(host, '@') != NULL)
		refuse_store(store, "The store must not contain user info (user@ or user:password@).");
	if (strchr(host, '/') != NULL)
		refuse_store(store, "The store must not contain a path.");
	if (strchr(host, ':') != NULL)
		refuse_store(store, "The store must not contain a port.");

	len = strlen(host);
	if (len > strlen(MYSHOPIFY_SUFFIX) &&
		strcmp(host + len - strlen(MYSHOPIFY_SUFFIX), MYSHOPIFY_SUFFIX) == 0)
		host[len - strlen(MYSHOPIFY_SUFFIX)] = '\0';
	else if (strchr(host, '.') != NULL)
		refuse_store(store, "The domain is not a myshopify.com domain; use the store's myshopify.com "
					 "domain, not its storefront domain.");

	len = strlen(host);
	if (len == 0)
		refuse_store(store, "The store handle is empty.");
	if (len > MAX_HANDLE_LEN)
		refuse_store(store, "The store handle is longer than 63 characters.");
	for (end = host; *end; end++)
	{
		if (!((*end >= 'a' && *end <= 'z') || (*end >= '0' && *end <= '9') || *end == '-'))
			refuse_store(store, "The store handle may only contain letters, digits and hyphens.");
	}
	if (host[0] == '-' || host[len - 1] == '-')
		refuse_store(store, "The store handle must not start or end with a hyphen.");

	return pstrdup(host);
}

/*
 * Build the URL of a path on a store from converge.shopify_base_url.  The
 * handle must already be validated: it is substituted as is.
 */
char *
converge_store_url(const char *handle, const char *path)
{
	StringInfoData buf;
	const char *t = converge_shopify_base_url;
	const char *hit;

	initStringInfo(&buf);
	while ((hit = strstr(t, "{store}")) != NULL)
	{
		appendBinaryStringInfo(&buf, t, hit - t);
		appendStringInfoString(&buf, handle);
		t = hit + strlen("{store}");
	}
	appendStringInfoString(&buf, t);

	/* exactly one slash between the base and the path */
	while (buf.len > 0 && buf.data[buf.len - 1] == '/')
		buf.data[--buf.len] = '\0';
	if (path != NULL && *path != '\0')
	{
		if (*path != '/')
			appendStringInfoChar(&buf, '/');
		appendStringInfoString(&buf, path);
	}
	return buf.data;
}

/* converge.store_handle(store text) returns text */
Datum
converge_store_handle_sql(PG_FUNCTION_ARGS)
{
	char	   *store = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(converge_store_handle(store)));
}

/* converge.store_url(store text, path text DEFAULT '') returns text */
Datum
converge_store_url_sql(PG_FUNCTION_ARGS)
{
	char	   *handle = converge_store_handle(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(converge_store_url(handle, path)));
}
