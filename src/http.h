/*-------------------------------------------------------------------------
 *
 * http.h
 *	  HTTP(S) transfers with libcurl, safe inside a PostgreSQL backend.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONVERGE_HTTP_H
#define CONVERGE_HTTP_H

#include "lib/stringinfo.h"

typedef struct HttpRequest
{
	const char *method;			/* "GET" or "POST" */
	const char *url;
	const char *body;			/* POST body, or NULL */
	size_t		body_len;
	const char *content_type;	/* of the body */
	const char *access_token;	/* sent as X-Shopify-Access-Token, or NULL */
	int64		range_from;		/* > 0: ask for the bytes from this offset on */
	int64		range_to;		/* > 0: ... up to this offset (inclusive) */
	bool		stream;			/* no total timeout; the caller reads as it goes */
	const char *const *headers;	/* more header lines ("Name: value"), NULL-terminated, or NULL */
	long		timeout_ms;		/* > 0: this total timeout instead of converge.request_timeout */
	size_t		body_limit;		/* > 0: keep this much of the response, drop the rest */
	void	   *tag;			/* the caller's, returned with the finished transfer */
} HttpRequest;

typedef struct HttpResult
{
	long		status;			/* HTTP status; 0 when no response arrived */
	int			curl_code;		/* CURLE_OK, or the transport error */
	char		error[256];		/* transport error message, "" if none */
	bool		timed_out;
	double		retry_after;	/* Retry-After in seconds, -1 if absent */
	char		api_version[32];	/* X-Shopify-API-Version, "" if absent */
	int64		range_start;	/* start of a 206 Content-Range, -1 if none */
} HttpResult;

typedef struct HttpTransfer HttpTransfer;

/* A whole request: the body is returned in *body (palloc'd). */
extern void http_request(const HttpRequest *req, StringInfo body, HttpResult *result);

/* Streaming: start, read as it comes, end. */
extern HttpTransfer *http_stream_start(const HttpRequest *req);
extern bool http_stream_fill(HttpTransfer *t, size_t want);
extern const char *http_stream_data(HttpTransfer *t, size_t *len);
extern void http_stream_consume(HttpTransfer *t, size_t n);
extern const HttpResult *http_stream_result(HttpTransfer *t);
extern void http_stream_end(HttpTransfer *t);

/*
 * Many requests at once: start them, then take them as they finish
 * (NULL when none finished within wait_ms, or none is left).
 */
extern HttpTransfer *http_async_start(const HttpRequest *req);
extern HttpTransfer *http_async_next(int wait_ms);
extern const HttpResult *http_transfer_result(HttpTransfer *t);
extern const char *http_transfer_body(HttpTransfer *t, size_t *len);
extern void *http_transfer_tag(HttpTransfer *t);
extern void http_transfer_free(HttpTransfer *t);

/* Release every transfer in progress (error recovery). */
extern void http_abort_all(void);

#endif							/* CONVERGE_HTTP_H */
