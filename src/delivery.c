/*-------------------------------------------------------------------------
 *
 * delivery.c
 *	  CALL converge.deliver(): ready events to their destinations over HTTP.
 *
 * Due deliveries are leased (a committed lease, so that a backend that dies
 * while sending leaves rows that come back when the lease expires: events
 * are sent again, never lost), sent concurrently on one libcurl multi handle
 * with keep-alive connections, and their outcomes are written in batches as
 * they arrive, each batch committed.  Every destination has its own queue
 * and connection limit, and no more than DEST_CAP of its deliveries are taken
 * at a time, so a destination that hangs or fails holds up nobody else.
 *
 * 2xx: delivered.  408, 429 (Retry-After honoured), 5xx, timeouts and
 * connection errors: tried again later with exponential backoff and jitter,
 * until converge.delivery_max_age after the first attempt, then dead.  Any
 * other answer: dead at once, the response kept.  A destination that fails
 * converge.circuit_breaker_failures times in a row is left alone for
 * converge.circuit_breaker_cooldown (its circuit is open), then tried again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <time.h>
#include <openssl/sha.h>

#include "catalog/pg_type_d.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "converge.h"
#include "destinations.h"
#include "http.h"

PG_FUNCTION_INFO_V1(converge_deliver);

#define CLAIM 1000				/* deliveries leased at a time */
#define DEST_CAP 2000			/* of one destination taken at a time */
#define FLUSH_RESULTS 1000		/* outcomes written per transaction ... */
#define FLUSH_MS 250			/* ... or at least this often */
#define CLAIM_EVERY_MS 20
#define IDLE_POLL_MS 1000		/* lingering: how often to look for new work */
#define RESPONSE_KEEP 2048		/* bytes of a refusing answer kept */

typedef struct Delivery
{
	char	   *event_id;
	char	   *body;
	int			body_len;
	int			attempts;		/* before this one */
	TimestampTz first_attempt;
} Delivery;

typedef struct Dest
{
	int64		id;
	char	   *url;
	char	   *secret;
	int			batch_size;
	int			max_conn;
	int			failures;		/* in a row, as stored and since */
	int			fail_delta;		/* failures to add to the stored count at the next flush ... */
	bool		succeeded;		/* ... or to set it to, after a success since the last flush */
	TimestampTz open_until;		/* its circuit opened during this run: no sends until then */
	bool		opened;			/* ... and that is not written yet */
	bool		usable;			/* exists, not paused, its URL still allowed */
	bool		touched;
	TimestampTz last_success;
	char	   *last_error;
	int			inflight;
	Delivery	  **queue;			/* taken, not sent yet */
	int			qhead;
	int			qlen;
	int			qcap;
} Dest;

typedef struct Request
{
	Dest	   *dest;
	Delivery	  **items;
	int			n;
	char	   *body;
	char	  **headers;
} Request;

/* Outcomes waiting to be written. */
typedef struct Outcomes
{
	int			n;
	int			cap;
	Datum	   *dest;
	Datum	   *event;
	Datum	   *state;
	Datum	   *next_at;
	bool	   *next_null;
	Datum	   *status;
	bool	   *status_null;
	Datum	   *error;
	bool	   *error_null;
	Datum	   *response;
	bool	   *response_null;
	Datum	   *at;
} Outcomes;

typedef struct Run
{
	MemoryContext cxt;			/* destinations, and items until they are done */
	MemoryContext out_cxt;		/* outcomes until they are written */
	Dest	  **dests;
	int			ndests;
	Outcomes	out;
	int			queued;
	int			inflight;
} Run;

/*
 * The next transaction commits with synchronous commit as configured: a
 * lease that is durable makes durable every event it covers (WAL is flushed
 * in order), so nothing is sent that a crash could take back.
 */
static void
commit(void)
{
	converge_commit_if(true);
	converge_transaction_settings(false);
}

static void release_queue(Run *run, Dest *d);

static Dest *
find_dest(Run *run, int64 id)
{
	int			i;

	for (i = 0; i < run->ndests; i++)
		if (run->dests[i]->id == id)
			return run->dests[i];
	return NULL;
}

static char *
text_or_null(HeapTuple row, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(row, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* (Re)read the destinations: settings may change while a run lingers. */
static void
load_destinations(Run *run)
{
	MemoryContext old;
	uint64		i;

	int			j;

	if (SPI_execute("SELECT d.id, d.url, k.secret, d.batch_size, d.max_connections, st.consecutive_failures, d.paused "
					"FROM converge.destination_settings d "
					"JOIN converge.destination_state st ON st.destination_id = d.id "
					"LEFT JOIN converge.destination_secrets k ON k.destination_id = d.id", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "converge: could not read the destinations");
	/* dropped ones are not listed: they are unusable */
	for (j = 0; j < run->ndests; j++)
		run->dests[j]->usable = false;
	old = MemoryContextSwitchTo(run->cxt);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		Dest	   *d = find_dest(run, id);

		if (d == NULL)
		{
			d = palloc0(sizeof(Dest));
			d->id = id;
			run->dests = run->ndests == 0 ? palloc(sizeof(Dest *)) :
				repalloc(run->dests, sizeof(Dest *) * (run->ndests + 1));
			run->dests[run->ndests++] = d;
			d->failures = DatumGetInt32(SPI_getbinval(row, desc, 6, &isnull));
		}
		if (d->url)
			pfree(d->url);
		if (d->secret)
		{
			explicit_bzero(d->secret, strlen(d->secret));
			pfree(d->secret);
		}
		d->url = text_or_null(row, desc, 2);
		d->secret = text_or_null(row, desc, 3);
		d->batch_size = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
		d->max_conn = DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
		d->usable = !DatumGetBool(SPI_getbinval(row, desc, 7, &isnull));
		if (d->usable)
		{
			char	   *normal;
			const char *hint;
			const char *problem = converge_destination_url_problem(d->url, &normal, &hint);

			/* allowed when it was set, perhaps not now (converge.allow_http_destinations) */
			if (problem != NULL)
			{
				d->usable = false;
				d->touched = true;
				d->last_error = MemoryContextStrdup(run->out_cxt, psprintf("URL refused: %s", problem));
			}
		}
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
	/* what was taken for a destination paused, dropped or refused since goes back */
	for (j = 0; j < run->ndests; j++)
		if (!run->dests[j]->usable && run->dests[j]->qlen > 0)
			release_queue(run, run->dests[j]);
}

static void
enqueue(Dest *d, Delivery *item)
{
	if (d->qhead + d->qlen == d->qcap)
	{
		if (d->qhead > 0)
		{
			memmove(d->queue, d->queue + d->qhead, sizeof(Delivery *) * d->qlen);
			d->qhead = 0;
		}
		if (d->qlen == d->qcap)
		{
			d->qcap = d->qcap ? d->qcap * 2 : 256;
			d->queue = d->queue ? repalloc(d->queue, sizeof(Delivery *) * d->qcap) :
				palloc(sizeof(Delivery *) * d->qcap);
		}
	}
	d->queue[d->qhead + d->qlen++] = item;
}

/*
 * Lease up to CLAIM due deliveries of destinations that are not paused, whose
 * circuit is closed and that do not have DEST_CAP taken already; committed
 * before anything is sent.
 */
static int
claim(Run *run, bool *everything)
{
	static const char *sql =
		"WITH due AS ("
		"  SELECT x.destination_id, x.event_id FROM converge.deliveries x"
		"    JOIN converge.destination_settings d ON d.id = x.destination_id AND NOT d.paused"
		"    JOIN converge.destination_state s ON s.destination_id = d.id"
		"         AND (s.circuit_open_until IS NULL OR s.circuit_open_until <= clock_timestamp())"
		"   WHERE x.state IN ('pending', 'retrying') AND x.next_attempt_at <= clock_timestamp()"
		"     AND (x.leased_until IS NULL OR x.leased_until < clock_timestamp())"
		"     AND x.destination_id <> ALL ($3)"
		"   ORDER BY x.next_attempt_at LIMIT $1 FOR UPDATE OF x SKIP LOCKED),"
		" leased AS ("
		"  UPDATE converge.deliveries x SET leased_until = clock_timestamp() + $2 * interval '1 millisecond'"
		"    FROM due WHERE x.destination_id = due.destination_id AND x.event_id = due.event_id"
		"  RETURNING x.destination_id, x.event_id, x.attempts, x.first_attempt_at)"
		" SELECT l.destination_id, l.event_id, l.attempts, l.first_attempt_at,"
		"        json_build_object('event_name', e.event_name, 'event_id', e.event_id,"
		"          'timestamp', to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
		"          'properties', e.properties, 'profile_properties', e.profile_properties,"
		"          'aliases', e.aliases)::text"
		"   FROM leased l JOIN converge.events e ON e.event_id = l.event_id"
		"  ORDER BY l.destination_id, l.first_attempt_at, l.event_id";
	Oid			types[3] = {INT4OID, INT8OID, INT8ARRAYOID};
	Datum		args[3];
	Datum	   *excluded;
	int			nexcl = 0;
	int			nsat = 0;
	int			i;
	uint64		r;
	int			lease_ms = converge_delivery_time_limit_ms + 2 * converge_delivery_timeout_ms + 5000;

	load_destinations(run);
	/* freed with the outcomes, at the next flush */
	excluded = MemoryContextAlloc(run->out_cxt, sizeof(Datum) * Max(run->ndests, 1));
	for (i = 0; i < run->ndests; i++)
	{
		Dest	   *d = run->dests[i];

		if (d->open_until != 0 && GetCurrentTimestamp() >= d->open_until)
			d->open_until = 0;	/* cooled down: try it again */
		if (!d->usable || d->open_until != 0)
			excluded[nexcl++] = Int64GetDatum(d->id);
		else if (d->qlen + d->inflight * d->batch_size >= DEST_CAP)
		{
			excluded[nexcl++] = Int64GetDatum(d->id);
			nsat++;
		}
	}
	args[0] = Int32GetDatum(CLAIM);
	args[1] = Int64GetDatum(lease_ms);
	{
		MemoryContext old = MemoryContextSwitchTo(run->out_cxt);

		args[2] = PointerGetDatum(construct_array(excluded, nexcl, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		MemoryContextSwitchTo(old);
	}
	if (SPI_execute_with_args(sql, 3, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "converge: could not take the due deliveries");

	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Dest	   *d = find_dest(run, DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull)));
		MemoryContext old;
		Delivery   *item;

		if (d == NULL)
			continue;			/* created after the list was read: its lease expires, the next run sends it */
		old = MemoryContextSwitchTo(run->cxt);
		item = palloc(sizeof(Delivery));

		item->event_id = text_or_null(row, desc, 2);
		item->attempts = DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull));
		item->first_attempt = DatumGetTimestampTz(SPI_getbinval(row, desc, 4, &isnull));
		if (isnull)
			item->first_attempt = 0;	/* this will be the first */
		item->body = text_or_null(row, desc, 5);
		item->body_len = strlen(item->body);
		enqueue(d, item);
		run->queued++;
		MemoryContextSwitchTo(old);
	}
	i = (int) SPI_processed;
	SPI_freetuptable(SPI_tuptable);
	commit();
	/* nothing left out: fewer than asked for means nothing more is due */
	*everything = nsat == 0 && i < CLAIM;
	return i;
}

/* ---- sending ---- */

static char *
idempotency_key(Delivery **items, int n)
{
	SHA256_CTX	sha;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	char		hex[SHA256_DIGEST_LENGTH * 2 + 1];
	int			i;

	if (n == 1)
		return psprintf("Idempotency-Key: %s", items[0]->event_id);
	/* a batch: the same events always give the same key */
	SHA256_Init(&sha);
	for (i = 0; i < n; i++)
	{
		SHA256_Update(&sha, items[i]->event_id, strlen(items[i]->event_id));
		SHA256_Update(&sha, "\n", 1);
	}
	SHA256_Final(digest, &sha);
	hex[hex_encode((const char *) digest, SHA256_DIGEST_LENGTH, hex)] = '\0';
	return psprintf("Idempotency-Key: batch-%s", hex);
}

static void
send_request(Run *run, Dest *d)
{
	MemoryContext old = MemoryContextSwitchTo(run->cxt);
	int			n = Min(d->batch_size, d->qlen);
	Request    *req = palloc0(sizeof(Request));
	HttpRequest http = {0};
	StringInfoData body;
	int			i;
	int			h = 0;

	req->dest = d;
	req->n = n;
	req->items = palloc(sizeof(Delivery *) * n);
	for (i = 0; i < n; i++)
		req->items[i] = d->queue[d->qhead + i];
	d->qhead += n;
	d->qlen -= n;
	if (d->qlen == 0)
		d->qhead = 0;
	run->queued -= n;

	if (d->batch_size == 1)
		req->body = req->items[0]->body;
	else
	{
		initStringInfo(&body);
		appendStringInfoChar(&body, '[');
		for (i = 0; i < n; i++)
		{
			if (i > 0)
				appendStringInfoChar(&body, ',');
			appendBinaryStringInfo(&body, req->items[i]->body, req->items[i]->body_len);
		}
		appendStringInfoChar(&body, ']');
		req->body = body.data;
	}

	req->headers = palloc0(sizeof(char *) * 3);
	req->headers[h++] = idempotency_key(req->items, n);
	if (d->secret != NULL)
		req->headers[h++] = converge_signature_header(d->secret,
													  (int64) time(NULL), req->body, strlen(req->body));
	http.method = "POST";
	http.url = d->url;
	http.body = req->body;
	http.body_len = strlen(req->body);
	http.content_type = "application/json";
	http.headers = (const char *const *) req->headers;
	http.timeout_ms = converge_delivery_timeout_ms;
	http.body_limit = RESPONSE_KEEP;
	http.tag = req;
	MemoryContextSwitchTo(old);

	http_async_start(&http);
	d->inflight++;
	run->inflight++;
}

static void
start_requests(Run *run)
{
	int			i;

	for (i = 0; i < run->ndests; i++)
	{
		Dest	   *d = run->dests[i];

		while (d->usable && d->open_until == 0 && d->qlen > 0 && d->inflight < d->max_conn)
			send_request(run, d);
	}
}

/* ---- outcomes ---- */

static void
add_outcome(Run *run, Dest *d, Delivery *item, const char *state, TimestampTz next_at,
			long status, const char *error, const char *response, TimestampTz at)
{
	Outcomes   *o = &run->out;
	MemoryContext old = MemoryContextSwitchTo(run->out_cxt);

	if (o->n == o->cap)
	{
		int			cap = o->cap ? o->cap * 2 : 1024;

#define GROW(f, T) o->f = o->f ? repalloc(o->f, sizeof(T) * cap) : palloc(sizeof(T) * cap)
		GROW(dest, Datum);
		GROW(event, Datum);
		GROW(state, Datum);
		GROW(next_at, Datum);
		GROW(next_null, bool);
		GROW(status, Datum);
		GROW(status_null, bool);
		GROW(error, Datum);
		GROW(error_null, bool);
		GROW(response, Datum);
		GROW(response_null, bool);
		GROW(at, Datum);
#undef GROW
		o->cap = cap;
	}
	o->dest[o->n] = Int64GetDatum(d->id);
	o->event[o->n] = CStringGetTextDatum(item->event_id);
	o->state[o->n] = CStringGetTextDatum(state);
	o->next_at[o->n] = TimestampTzGetDatum(next_at);
	o->next_null[o->n] = next_at == 0;
	o->status[o->n] = Int32GetDatum((int32) status);
	o->status_null[o->n] = status == 0;
	o->error[o->n] = error ? CStringGetTextDatum(error) : (Datum) 0;
	o->error_null[o->n] = error == NULL;
	o->response[o->n] = response ? CStringGetTextDatum(response) : (Datum) 0;
	o->response_null[o->n] = response == NULL;
	o->at[o->n] = TimestampTzGetDatum(at);
	o->n++;
	MemoryContextSwitchTo(old);
}

/* Exponential backoff with full jitter on its upper half. */
static TimestampTz
next_attempt(int attempts, double retry_after, TimestampTz now)
{
	double		ms;

	if (retry_after >= 0)
		ms = Min(retry_after * 1000.0, (double) converge_delivery_retry_max_ms);
	else
	{
		ms = Min((double) converge_delivery_retry_base_ms * pow(2.0, Min(attempts, 30)),
				 (double) converge_delivery_retry_max_ms);
		ms = ms / 2 + pg_prng_double(&pg_global_prng_state) * ms / 2;
	}
	return TimestampTzPlusMilliseconds(now, (int64) ms);
}

static char *
printable_response(const char *body, size_t len)
{
	char	   *s = pnstrdup(body, Min(len, (size_t) RESPONSE_KEEP));
	char	   *p;

	/* kept as text: anything that is not printable ASCII becomes '?' */
	for (p = s; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
			*p = (*p == '\n' || *p == '\t') ? ' ' : '?';
	return s;
}

static void
free_item(Delivery *item)
{
	pfree(item->event_id);
	pfree(item->body);
	pfree(item);
}

static void
release_queue(Run *run, Dest *d)
{
	int			i;

	/* not sent: no attempt is counted, the lease is simply given back */
	for (i = 0; i < d->qlen; i++)
	{
		add_outcome(run, d, d->queue[d->qhead + i], "unsent", 0, 0, NULL, NULL, GetCurrentTimestamp());
		free_item(d->queue[d->qhead + i]);
	}
	run->queued -= d->qlen;
	d->qhead = d->qlen = 0;
}

static void
free_request(Request *req)
{
	int			i;

	if (req->body != req->items[0]->body)
		pfree(req->body);
	for (i = 0; i < req->n; i++)
		free_item(req->items[i]);
	for (i = 0; req->headers[i] != NULL; i++)
		pfree(req->headers[i]);
	pfree(req->headers);
	pfree(req->items);
	pfree(req);
}

static void
handle_result(Run *run, HttpTransfer *t)
{
	Request    *req = (Request *) http_transfer_tag(t);
	const HttpResult *res = http_transfer_result(t);
	Dest	   *d = req->dest;
	TimestampTz now = GetCurrentTimestamp();
	long		status = res->status;
	bool		ok = res->curl_code == 0 && status >= 200 && status < 300;
	bool		retry = !ok && (res->curl_code != 0 || status == 408 || status == 429 || status >= 500);
	char	   *error = NULL;
	char	   *response = NULL;
	int			i;
	size_t		len;
	const char *body = http_transfer_body(t, &len);

	MemoryContext old = MemoryContextSwitchTo(run->out_cxt);	/* until the next flush */

	d->inflight--;
	run->inflight--;
	d->touched = true;
	if (!ok)
	{
		if (res->curl_code != 0)
			error = psprintf("%s%s", res->timed_out ? "timed out: " : "", res->error);
		else
			error = psprintf("HTTP %ld", status);
		if (res->curl_code == 0 && len > 0)
			response = printable_response(body, len);
		d->last_error = error;
	}

	for (i = 0; i < req->n; i++)
	{
		Delivery	   *item = req->items[i];

		if (ok)
			add_outcome(run, d, item, "delivered", 0, status, NULL, NULL, now);
		else if (retry && (item->first_attempt == 0 ||
						   now - item->first_attempt < (int64) converge_delivery_max_age_s * USECS_PER_SEC))
			add_outcome(run, d, item, "retrying", next_attempt(item->attempts, res->retry_after, now),
						status, error, response, now);
		else if (retry)
			add_outcome(run, d, item, "dead", 0, status,
						psprintf("%s (retried for longer than converge.delivery_max_age)", error), response, now);
		else
			add_outcome(run, d, item, "dead", 0, status, error, response, now);
	}
	if (ok)
	{
		d->failures = 0;
		d->fail_delta = 0;
		d->succeeded = true;
		d->last_success = now;
	}
	else
	{
		/* the endpoint answered: a refusal is the request's fault, not the endpoint's health */
		if (retry)
		{
			d->fail_delta++;
			if (++d->failures >= converge_circuit_breaker_failures && d->open_until == 0)
			{
				d->open_until = TimestampTzPlusMilliseconds(now, converge_circuit_breaker_cooldown_ms);
				d->opened = true;
				release_queue(run, d);
			}
		}
	}
	MemoryContextSwitchTo(old);
	http_transfer_free(t);
	free_request(req);
}

static void
flush(Run *run)
{
	static const char *outcomes_sql =
		"WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::int[],"
		"                                $6::text[], $7::text[], $8::timestamptz[])"
		"             AS r(d, e, state, next_at, status, error, response, at)) "
		"UPDATE converge.deliveries x"
		"   SET state = CASE WHEN r.state = 'unsent' THEN x.state ELSE r.state END,"
		"       attempts = x.attempts + CASE WHEN r.state = 'unsent' THEN 0 ELSE 1 END,"
		"       next_attempt_at = coalesce(r.next_at, x.next_attempt_at), leased_until = NULL,"
		"       last_status = CASE WHEN r.state = 'unsent' THEN x.last_status ELSE r.status END,"
		"       last_error = CASE WHEN r.state = 'unsent' THEN x.last_error ELSE r.error END,"
		"       last_response = CASE WHEN r.state = 'unsent' THEN x.last_response ELSE r.response END,"
		"       delivered_at = CASE WHEN r.state = 'delivered' THEN r.at END,"
		"       first_attempt_at = CASE WHEN r.state = 'unsent' THEN x.first_attempt_at"
		"                               ELSE coalesce(x.first_attempt_at, r.at) END"
		"  FROM r WHERE x.destination_id = r.d AND x.event_id = r.e";
	static const char *state_sql =
		"UPDATE converge.destination_state s"
		"   SET consecutive_failures = CASE WHEN r.reset THEN r.failures ELSE s.consecutive_failures + r.failures END,"
		"       circuit_open_until = CASE WHEN r.opened THEN clock_timestamp() + $6 * interval '1 millisecond'"
		"                                 WHEN r.reset AND r.failures = 0 THEN NULL ELSE s.circuit_open_until END,"
		"       last_success_at = coalesce(r.success, s.last_success_at),"
		"       last_error = coalesce(r.error, s.last_error),"
		"       last_error_at = CASE WHEN r.error IS NOT NULL AND r.error IS DISTINCT FROM s.last_error"
		"                            THEN clock_timestamp() ELSE s.last_error_at END"
		"  FROM unnest($1::bigint[], $2::int[], $3::boolean[], $4::timestamptz[], $5::text[], $7::boolean[])"
		"       AS r(d, failures, opened, success, error, reset)"
		" WHERE s.destination_id = r.d";
	Outcomes   *o = &run->out;
	int			i;
	int			nd = 0;
	MemoryContext old = MemoryContextSwitchTo(run->out_cxt);	/* reset below */

	if (o->n > 0)
	{
		Oid			types[8] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
		INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
		Datum		args[8];
		int			dims[1] = {o->n};
		int			lbs[1] = {1};

		args[0] = PointerGetDatum(construct_array(o->dest, o->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[1] = PointerGetDatum(construct_array(o->event, o->n, TEXTOID, -1, false, TYPALIGN_INT));
		args[2] = PointerGetDatum(construct_array(o->state, o->n, TEXTOID, -1, false, TYPALIGN_INT));
		args[3] = PointerGetDatum(construct_md_array(o->next_at, o->next_null, 1, dims, lbs, TIMESTAMPTZOID, 8,
													 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[4] = PointerGetDatum(construct_md_array(o->status, o->status_null, 1, dims, lbs, INT4OID, 4, true,
													 TYPALIGN_INT));
		args[5] = PointerGetDatum(construct_md_array(o->error, o->error_null, 1, dims, lbs, TEXTOID, -1, false,
													 TYPALIGN_INT));
		args[6] = PointerGetDatum(construct_md_array(o->response, o->response_null, 1, dims, lbs, TEXTOID, -1,
													 false, TYPALIGN_INT));
		args[7] = PointerGetDatum(construct_array(o->at, o->n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
												  TYPALIGN_DOUBLE));
		if (SPI_execute_with_args(outcomes_sql, 8, types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "converge: could not record deliveries");
		o->n = 0;
	}

	/* the destinations' health */
	{
		Datum	   *ids = palloc(sizeof(Datum) * Max(run->ndests, 1));
		Datum	   *failures = palloc(sizeof(Datum) * Max(run->ndests, 1));
		Datum	   *open = palloc(sizeof(Datum) * Max(run->ndests, 1));
		Datum	   *success = palloc(sizeof(Datum) * Max(run->ndests, 1));
		bool	   *success_null = palloc(sizeof(bool) * Max(run->ndests, 1));
		Datum	   *error = palloc(sizeof(Datum) * Max(run->ndests, 1));
		bool	   *error_null = palloc(sizeof(bool) * Max(run->ndests, 1));
		Datum	   *reset = palloc(sizeof(Datum) * Max(run->ndests, 1));

		for (i = 0; i < run->ndests; i++)
		{
			Dest	   *d = run->dests[i];

			if (!d->touched)
				continue;
			ids[nd] = Int64GetDatum(d->id);
			failures[nd] = Int32GetDatum(d->fail_delta);
			reset[nd] = BoolGetDatum(d->succeeded);
			open[nd] = BoolGetDatum(d->opened);
			success[nd] = TimestampTzGetDatum(d->last_success);
			success_null[nd] = d->last_success == 0;
			error[nd] = d->last_error ? CStringGetTextDatum(d->last_error) : (Datum) 0;
			error_null[nd] = d->last_error == NULL;
			d->touched = false;
			d->last_success = 0;
			d->last_error = NULL;
			d->fail_delta = 0;
			d->succeeded = false;
			d->opened = false;
			nd++;
		}
		if (nd > 0)
		{
			Oid			types[7] = {INT8ARRAYOID, INT4ARRAYOID, BOOLARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
			INT8OID, BOOLARRAYOID};
			Datum		args[7];
			int			dims[1] = {nd};
			int			lbs[1] = {1};

			args[0] = PointerGetDatum(construct_array(ids, nd, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			args[1] = PointerGetDatum(construct_array(failures, nd, INT4OID, 4, true, TYPALIGN_INT));
			args[2] = PointerGetDatum(construct_array(open, nd, BOOLOID, 1, true, TYPALIGN_CHAR));
			args[3] = PointerGetDatum(construct_md_array(success, success_null, 1, dims, lbs, TIMESTAMPTZOID, 8,
														 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			args[4] = PointerGetDatum(construct_md_array(error, error_null, 1, dims, lbs, TEXTOID, -1, false,
														 TYPALIGN_INT));
			args[5] = Int64GetDatum((int64) converge_circuit_breaker_cooldown_ms);
			args[6] = PointerGetDatum(construct_array(reset, nd, BOOLOID, 1, true, TYPALIGN_CHAR));
			if (SPI_execute_with_args(state_sql, 7, types, args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "converge: could not record the destinations' state");
		}
	}
	MemoryContextSwitchTo(old);
	/* an outcome lost in a crash means a resend, which at-least-once allows: no need to wait for the disk */
	converge_transaction_settings(true);
	commit();
	MemoryContextReset(run->out_cxt);
	memset(o, 0, sizeof(Outcomes));
}

static void
prune(Run *run)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(converge_delivery_retention_days)};

	if (SPI_execute_with_args("DELETE FROM converge.deliveries WHERE ctid = ANY (ARRAY("
							  "SELECT ctid FROM converge.deliveries WHERE state = 'delivered' "
							  "AND delivered_at < now() - make_interval(days => $1) LIMIT 10000))",
							  1, types, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "converge: could not prune old deliveries");
	commit();
}

static void
idle_wait(int ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static bool
anything_to_write(Run *run)
{
	int			i;

	if (run->out.n > 0)
		return true;
	for (i = 0; i < run->ndests; i++)
		if (run->dests[i]->touched)
			return true;
	return false;
}

static void
run_deliveries(Run *run, bool linger)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), converge_delivery_time_limit_ms);
	TimestampTz last_flush = GetCurrentTimestamp();
	TimestampTz last_claim = 0;
	bool		exhausted = false;

	prune(run);
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		bool		time_left = now < deadline;
		bool		idle = run->inflight == 0 && run->queued == 0;
		HttpTransfer *t;

		CHECK_FOR_INTERRUPTS();
		if (time_left && !exhausted && run->queued < CLAIM &&
			(idle || now - last_claim >= CLAIM_EVERY_MS * (int64) 1000))
		{
			last_claim = now;
			claim(run, &exhausted);
		}
		if (!time_left)
		{
			int			i;

			/* out of time: what was taken and not sent goes back */
			for (i = 0; i < run->ndests; i++)
				if (run->dests[i]->qlen > 0)
					release_queue(run, run->dests[i]);
		}
		start_requests(run);

		if (run->inflight == 0 && run->queued == 0)
		{
			if (anything_to_write(run))
				flush(run);
			last_flush = GetCurrentTimestamp();
			if (!time_left || (exhausted && !linger))
				break;
			if (exhausted)
			{
				/* lingering: look for new work now and then, until the time limit */
				idle_wait(Min(IDLE_POLL_MS, (int) ((deadline - GetCurrentTimestamp()) / 1000) + 1));
				exhausted = false;
			}
			continue;
		}

		t = http_async_next(run->queued > 0 && !exhausted ? CLAIM_EVERY_MS : 100);
		while (t != NULL)
		{
			handle_result(run, t);
			t = http_async_next(0);
		}
		if (run->out.n >= FLUSH_RESULTS ||
			(anything_to_write(run) && GetCurrentTimestamp() - last_flush >= FLUSH_MS * (int64) 1000))
		{
			flush(run);
			last_flush = GetCurrentTimestamp();
		}
	}
}

/* CALL converge.deliver(linger boolean DEFAULT false) */
Datum
converge_deliver(PG_FUNCTION_ARGS)
{
	bool		linger = !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);
	Run		   *run;

	if (!converge_is_nonatomic(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("converge.deliver() must commit as it goes"),
				 errdetail("It was called inside a transaction block or a function."),
				 errhint("Run CALL converge.deliver() on its own (autocommit), or from a procedure called that way.")));
	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	run = MemoryContextAllocZero(TopMemoryContext, sizeof(Run));
	run->cxt = AllocSetContextCreate(TopMemoryContext, "converge delivery", ALLOCSET_DEFAULT_SIZES);
	run->out_cxt = AllocSetContextCreate(run->cxt, "converge delivery outcomes", ALLOCSET_DEFAULT_SIZES);
	PG_TRY();
	{
		converge_transaction_settings(false);
		run_deliveries(run, linger);
	}
	PG_FINALLY();
	{
		/* requests still out are abandoned: their leases expire and they are sent again */
		http_abort_all();
		MemoryContextDelete(run->cxt);
		pfree(run);
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_VOID();
}
