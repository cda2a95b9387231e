/*-------------------------------------------------------------------------
 *
 * ingest.h
 *	  Orders and their children, normalized and upserted in batches.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONVERGE_INGEST_H
#define CONVERGE_INGEST_H

#include "utils/jsonb.h"

typedef struct RowSet
{
	int			nrows;
	int			cap;
	int			mark;			/* first row of the order being assembled */
	Datum	   *values;			/* nrows x nfields */
	bool	   *nulls;
} RowSet;

typedef struct IngestBatch
{
	int64		source_id;
	MemoryContext cxt;			/* everything the batch holds; reset by flush */
	RowSet		orders;
	RowSet		line_items;
	RowSet		refunds;
	RowSet		refund_line_items;
	int64		order_id;		/* the order being assembled, -1 if none */
	int			position;		/* of its next line item */
	int64		orders_stored;	/* totals over all flushes */
	int64		refunds_stored;
	int64		bad_rows;
} IngestBatch;

extern void ingest_begin(IngestBatch *b, int64 source_id);
extern bool ingest_order(IngestBatch *b, Jsonb *doc, JsonbContainer *order, JsonbValue *tree,
						 bool with_refunds, char **error);
extern bool ingest_refund(IngestBatch *b, JsonbContainer *refund, char **error);
extern bool ingest_line_item(IngestBatch *b, JsonbValue *item, char **error);
extern bool ingest_refund_line_item(IngestBatch *b, int64 refund_id, JsonbValue *item, char **error);
extern void ingest_discard_order(IngestBatch *b);
extern void ingest_end_order(IngestBatch *b);
extern int	ingest_pending(IngestBatch *b);
extern void ingest_flush(IngestBatch *b);
extern void ingest_end(IngestBatch *b);

extern void record_sync_error(int64 source_id, const char *kind, const char *message,
							  const char *detail, const char *payload, int payload_len);

#endif							/* CONVERGE_INGEST_H */
