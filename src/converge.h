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

/* Settings (converge.c) */
extern char *converge_shopify_base_url;

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

#endif							/* CONVERGE_H */
