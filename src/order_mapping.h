/*-------------------------------------------------------------------------
 *
 * order_mapping.h
 *	  Which Shopify fields become which columns, and the GraphQL selections
 *	  that ask for exactly those fields.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONVERGE_ORDER_MAPPING_H
#define CONVERGE_ORDER_MAPPING_H

#include "utils/jsonb.h"

typedef enum FieldKind
{
	FIELD_TEXT,
	FIELD_TIMESTAMPTZ,
	FIELD_NUMERIC,
	FIELD_BOOL,
	FIELD_INT,
	FIELD_ID,					/* a GID, stored as its numeric id */
	FIELD_PARENT,				/* filled in by the caller, not from JSON */
} FieldKind;

#define FIELD_PATH_MAX 4

typedef struct FieldDef
{
	const char *column;
	FieldKind	kind;
	const char *path[FIELD_PATH_MAX];	/* NULL-terminated JSON path */
	bool		required;
} FieldDef;

typedef struct TableMapping
{
	const char *table;
	const char *key;			/* the conflict key after source_id */
	const FieldDef *fields;
	int			nfields;
	const char *const *extra;	/* fields selected only for the stored JSON */
} TableMapping;

extern const TableMapping order_mapping;
extern const TableMapping line_item_mapping;
extern const TableMapping refund_mapping;
extern const TableMapping refund_line_item_mapping;

extern Oid	field_type(FieldKind kind);
extern char *mapping_selection(const TableMapping *m);
extern bool extract_row(const TableMapping *m, JsonbValue *obj,
						Datum *values, bool *nulls, char **error);
extern bool parse_timestamptz(const char *s, TimestampTz *result);

#endif							/* CONVERGE_ORDER_MAPPING_H */
