/*-------------------------------------------------------------------------
 *
 * http.c
 *	  HTTP(S) transfers with libcurl, safe inside a PostgreSQL backend.
 *
 * Every transfer runs on one libcurl multi handle that lives as long as the
 * backend, so connections (and TLS sessions) are reused across requests.
 * libcurl calls back into this file only through callbacks that never
 * ereport: they fill malloc'd buffers and return.  Errors and interrupts are
 * raised from our own frames, between polls, so a longjmp never crosses
 * libcurl.  Transfers are malloc'd and tracked in a list: a stream may stay
 * open across the commits of a sync pass, and an aborted transaction
 * releases whatever is still open.
 *
 * Certificates are always verified; only http and https are allowed, and
 * redirects are not followed (a signed download link must not bounce the
 * server elsewhere).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "converge.h"
#include "http.h"

#define STREAM_PAUSE_BYTES (4 * 1024 * 1024)	/* read-ahead of a stream */
#define MAX_RESPONSE_BYTES (256 * 1024 * 1024)	/* one whole response */
#define POLL_MS 100				/* how often interrupts are checked */

struct HttpTransfer
{
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *data;			/* received bytes (malloc'd) */
	size_t		start;			/* data[start .. len) is not consumed yet */
	size_t		len;
	size_t		cap;
	bool		stream;
	size_t		pause_at;		/* a stream pauses with this much unconsumed */
	bool		paused;
	bool		done;
	bool		overflow;
	bool		async;			/* started by http_async_start */
	bool		returned;		/* ... and handed back by http_async_next */
	size_t		body_limit;
	void	   *tag;
	HttpResult	result;
	char		errbuf[CURL_ERROR_SIZE];
	HttpTransfer *next;			/* list of transfers in progress */
};

static CURLM *multi = NULL;
static HttpTransfer *transfers = NULL;

static void
free_transfer(HttpTransfer *t)
{
	HttpTransfer **p;

	for (p = &transfers; *p != NULL; p = &(*p)->next)
	{
		if (*p == t)
		{
			*p = t->next;
			break;
		}
	}
	if (t->easy)
	{
		curl_multi_remove_handle(multi, t->easy);
		curl_easy_cleanup(t->easy);
	}
	if (t->headers)
		curl_slist_free_all(t->headers);
	free(t->data);
	free(t);
}

void
http_abort_all(void)
{
	while (transfers != NULL)
		free_transfer(transfers);
}

static void
xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		http_abort_all();
}

static void
http_init(void)
{
	if (multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	RegisterXactCallback(xact_callback, NULL);
}

/* libcurl callback: never ereports. */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpTransfer *t = (HttpTransfer *) userdata;
	size_t		n = size * nmemb;

	if (t->stream && t->len - t->start >= t->pause_at)
	{
		t->paused = true;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (t->body_limit > 0 && t->len + n > t->body_limit)
	{
		/* keep the beginning, swallow the rest */
		n = t->len < t->body_limit ? t->body_limit - t->len : 0;
		if (n == 0)
			return size * nmemb;
	}
	if (t->len - t->start + n > MAX_RESPONSE_BYTES)
	{
		t->overflow = true;
		return 0;
	}
	if (t->start > 0 && t->len + n + 1 > t->cap)
	{
		/* drop what was consumed, once, rather than on every consume */
		memmove(t->data, t->data + t->start, t->len - t->start);
		t->len -= t->start;
		t->start = 0;
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		cap = Max(t->cap * 2, t->len + n + 1);
		char	   *grown;

		cap = Max(cap, 64 * 1024);
		grown = realloc(t->data, cap);
		if (grown == NULL)
		{
			t->overflow = true;
			return 0;
		}
		t->data = grown;
		t->cap = cap;
	}
	memcpy(t->data + t->len, ptr, n);
	t->len += n;
	t->data[t->len] = '\0';
	return size * nmemb;
}

static bool
header_is(const char *line, size_t len, const char *name, const char **value)
{
	size_t		nlen = strlen(name);

	if (len <= nlen || pg_strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
		return false;
	*value = line + nlen + 1;
	while (**value == ' ' || **value == '\t')
		(*value)++;
	return true;
}

/* libcurl callback: never ereports. */
static size_t
header_cb(char *line, size_t size, size_t nmemb, void *userdata)
{
	HttpTransfer *t = (HttpTransfer *) userdata;
	size_t		len = size * nmemb;
	const char *value;
	char		buf[256];
	size_t		vlen;

	/* a new status line (after 100 Continue, say): forget earlier headers */
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		t->result.retry_after = -1;
		t->result.api_version[0] = '\0';
		t->result.range_start = -1;
		return len;
	}
	if (header_is(line, len, "Retry-After", &value) ||
		header_is(line, len, "X-Shopify-API-Version", &value) ||
		header_is(line, len, "Content-Range", &value))
	{
		vlen = Min(len - (value - line), sizeof(buf) - 1);
		memcpy(buf, value, vlen);
		buf[vlen] = '\0';
		while (vlen > 0 && (buf[vlen - 1] == '\r' || buf[vlen - 1] == '\n' || buf[vlen - 1] == ' '))
			buf[--vlen] = '\0';

		if (pg_strncasecmp(line, "Retry-After", 11) == 0)
		{
			char	   *end;
			double		secs = strtod(buf, &end);

			/* a day at most: a wait that long is the pass's deadline anyway */
			if (end != buf && *end == '\0' && secs >= 0 && secs <= 86400)
				t->result.retry_after = secs;
		}
		else if (pg_strncasecmp(line, "X-Shopify-API-Version", 21) == 0)
			strlcpy(t->result.api_version, buf, sizeof(t->result.api_version));
		else if (strncmp(buf, "bytes ", 6) == 0)
			t->result.range_start = strtoll(buf + 6, NULL, 10);
	}
	return len;
}

static HttpTransfer *
start_transfer(const HttpRequest *req)
{
	HttpTransfer *t;
	CURL	   *easy;
	char		range[64];

	http_init();

	t = calloc(1, sizeof(HttpTransfer));
	if (t == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	t->stream = req->stream;
	t->pause_at = STREAM_PAUSE_BYTES;
	t->body_limit = req->body_limit;
	t->tag = req->tag;
	t->result.retry_after = -1;
	t->result.range_start = -1;
	t->next = transfers;
	transfers = t;

	easy = t->easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not create a libcurl handle")));

	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "converge/" CONVERGE_VERSION);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) converge_connect_timeout_ms);
	if (req->stream)
	{
		/* a download may take long: give up only when it stalls */
		curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME,
						 Max(1L, (long) converge_request_timeout_ms / 1000));
		curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 512L * 1024);
	}
	else
	{
		curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
						 req->timeout_ms > 0 ? req->timeout_ms : (long) converge_request_timeout_ms);
		curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	}

	t->headers = curl_slist_append(t->headers, "Expect:");
	t->headers = curl_slist_append(t->headers, "Accept: application/json");
	if (req->content_type)
	{
		char		ct[128];

		snprintf(ct, sizeof(ct), "Content-Type: %s", req->content_type);
		t->headers = curl_slist_append(t->headers, ct);
	}
	if (req->headers)
	{
		const char *const *h;

		for (h = req->headers; *h != NULL; h++)
			t->headers = curl_slist_append(t->headers, *h);
	}
	if (req->access_token)
	{
		char	   *h = psprintf("X-Shopify-Access-Token: %s", req->access_token);

		t->headers = curl_slist_append(t->headers, h);
		explicit_bzero(h, strlen(h));
		pfree(h);
	}
	if (t->headers == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);

	if (req->range_from > 0 || req->range_to > 0)
	{
		if (req->range_to > 0)
			snprintf(range, sizeof(range), INT64_FORMAT "-" INT64_FORMAT, req->range_from, req->range_to);
		else
			snprintf(range, sizeof(range), INT64_FORMAT "-", req->range_from);
		curl_easy_setopt(easy, CURLOPT_RANGE, range);
	}
	if (req->method && strcmp(req->method, "POST") == 0)
	{
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
		curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
	}

	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
		ereport(ERROR, (errcode(ERRCODE_SYSTEM_ERROR), errmsg("could not start an HTTP transfer")));
	return t;
}

static void
finish(HttpTransfer *t, CURLcode code)
{
	long		status = 0;

	t->done = true;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	t->result.status = status;
	t->result.curl_code = (int) code;
	t->result.timed_out = (code == CURLE_OPERATION_TIMEDOUT);
	if (t->overflow)
		snprintf(t->result.error, sizeof(t->result.error),
				 "response larger than %d MB", MAX_RESPONSE_BYTES / (1024 * 1024));
	else if (code != CURLE_OK)
		snprintf(t->result.error, sizeof(t->result.error), "%s",
				 t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
}

/* Let libcurl move every transfer on, and mark the ones that ended. */
static void
perform(void)
{
	int			running;
	int			queued;
	CURLMsg    *msg;

	curl_multi_perform(multi, &running);
	while ((msg = curl_multi_info_read(multi, &queued)) != NULL)
	{
		HttpTransfer *x;

		if (msg->msg != CURLMSG_DONE)
			continue;
		for (x = transfers; x != NULL; x = x->next)
			if (x->easy == msg->easy_handle)
				finish(x, msg->data.result);
	}
}

/*
 * Drive the transfer until at least `want` unconsumed bytes are buffered
 * (0: until it ends).  Returns false once the transfer has ended.
 */
static bool
drive(HttpTransfer *t, size_t want)
{
	while (!t->done && (want == 0 || t->len - t->start < want))
	{
		if (t->paused && t->len - t->start < t->pause_at)
		{
			t->paused = false;
			curl_easy_pause(t->easy, CURLPAUSE_CONT);
		}
		perform();
		if (t->done || (t->paused && t->len - t->start >= t->pause_at) ||
			(want > 0 && t->len - t->start >= want))
			break;
		curl_multi_poll(multi, NULL, 0, POLL_MS, NULL);
		CHECK_FOR_INTERRUPTS();
	}
	return !t->done;
}

void
http_request(const HttpRequest *req, StringInfo body, HttpResult *result)
{
	HttpTransfer *t = start_transfer(req);

	drive(t, 0);
	resetStringInfo(body);
	if (t->len > t->start)
		appendBinaryStringInfo(body, t->data + t->start, (int) (t->len - t->start));
	*result = t->result;
	free_transfer(t);
}

HttpTransfer *
http_stream_start(const HttpRequest *req)
{
	HttpRequest r = *req;

	r.stream = true;
	return start_transfer(&r);
}

/*
 * Buffer at least `want` bytes (at least the read-ahead), or until the stream
 * ends.  Returns false when nothing more will arrive.
 */
bool
http_stream_fill(HttpTransfer *t, size_t want)
{
	/* a line longer than the read-ahead widens it for as long as needed */
	t->pause_at = Max((size_t) STREAM_PAUSE_BYTES, Min(want, (size_t) MAX_RESPONSE_BYTES));
	drive(t, Min(want, t->pause_at));
	return !t->done;
}

const char *
http_stream_data(HttpTransfer *t, size_t *len)
{
	*len = t->len - t->start;
	return t->data ? t->data + t->start : "";
}

void
http_stream_consume(HttpTransfer *t, size_t n)
{
	Assert(n <= t->len - t->start);
	t->start += n;
	if (t->start == t->len)
		t->start = t->len = 0;
}

const HttpResult *
http_stream_result(HttpTransfer *t)
{
	if (!t->done)
	{
		long		status = 0;

		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
		t->result.status = status;
	}
	return &t->result;
}

/* Safe on a transfer an aborted transaction already released. */
void
http_stream_end(HttpTransfer *t)
{
	HttpTransfer *x;

	for (x = transfers; x != NULL; x = x->next)
		if (x == t)
		{
			free_transfer(t);
			return;
		}
}

/* ---- many requests at once ---- */

HttpTransfer *
http_async_start(const HttpRequest *req)
{
	HttpTransfer *t = start_transfer(req);

	t->async = true;
	return t;
}

static int
http_async_running(void)
{
	HttpTransfer *t;
	int			n = 0;

	for (t = transfers; t != NULL; t = t->next)
		if (t->async && !t->returned)
			n++;
	return n;
}

static HttpTransfer *
finished_async(void)
{
	HttpTransfer *t;

	for (t = transfers; t != NULL; t = t->next)
		if (t->async && t->done && !t->returned)
		{
			t->returned = true;
			return t;
		}
	return NULL;
}

HttpTransfer *
http_async_next(int wait_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	for (;;)
	{
		HttpTransfer *t = finished_async();
		long		left;

		if (t != NULL)
			return t;
		if (http_async_running() == 0)
			return NULL;
		perform();
		if ((t = finished_async()) != NULL)
			return t;
		left = (long) ((until - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
			return NULL;
		curl_multi_poll(multi, NULL, 0, (int) Min(left, POLL_MS), NULL);
		CHECK_FOR_INTERRUPTS();
	}
}

const HttpResult *
http_transfer_result(HttpTransfer *t)
{
	return &t->result;
}

const char *
http_transfer_body(HttpTransfer *t, size_t *len)
{
	*len = t->len - t->start;
	return t->data ? t->data + t->start : "";
}

void *
http_transfer_tag(HttpTransfer *t)
{
	return t->tag;
}

void
http_transfer_free(HttpTransfer *t)
{
	free_transfer(t);
}
