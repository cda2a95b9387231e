/*-------------------------------------------------------------------------
 *
 * order_mapping.c
 *	  Which Shopify fields become which columns, and the GraphQL selections
 *	  that ask for exactly those fields.
 *
 * One table per stored entity lists its columns with the JSON path each one
 * comes from.  The same tables generate the GraphQL selections (for the bulk
 * export and for incremental pages), the upsert statements (ingest.c) and
 * drive the extraction, so a column cannot be stored without being asked
 * for, or asked for under another path than it is read from.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include "json.h"
#include "order_mapping.h"

#define OPT(col, kind, ...) {col, kind, {__VA_ARGS__}, false}
#define REQ(col, kind, ...) {col, kind, {__VA_ARGS__}, true}
#define PARENT(col) {col, FIELD_PARENT, {NULL}, false}
#define MONEY(col, set) \
	OPT(col, FIELD_NUMERIC, set, "presentmentMoney", "amount"), \
	OPT(col "_shop", FIELD_NUMERIC, set, "shopMoney", "amount")

static const FieldDef order_fields[] = {
	REQ("order_id", FIELD_ID, "id"),
	OPT("order_name", FIELD_TEXT, "name"),
	OPT("source_name", FIELD_TEXT, "sourceName"),
	OPT("test", FIELD_BOOL, "test"),
	REQ("created_at", FIELD_TIMESTAMPTZ, "createdAt"),
	OPT("processed_at", FIELD_TIMESTAMPTZ, "processedAt"),
	REQ("updated_at", FIELD_TIMESTAMPTZ, "updatedAt"),
	OPT("cancelled_at", FIELD_TIMESTAMPTZ, "cancelledAt"),
	OPT("cancel_reason", FIELD_TEXT, "cancelReason"),
	OPT("closed_at", FIELD_TIMESTAMPTZ, "closedAt"),
	OPT("financial_status", FIELD_TEXT, "displayFinancialStatus"),
	OPT("fulfillment_status", FIELD_TEXT, "displayFulfillmentStatus"),
	OPT("email", FIELD_TEXT, "email"),
	OPT("phone", FIELD_TEXT, "phone"),
	OPT("currency", FIELD_TEXT, "currencyCode"),
	OPT("presentment_currency", FIELD_TEXT, "presentmentCurrencyCode"),
	MONEY("total_price", "totalPriceSet"),
	MONEY("subtotal_price", "subtotalPriceSet"),
	MONEY("total_tax", "totalTaxSet"),
	MONEY("total_shipping", "totalShippingPriceSet"),
	MONEY("total_discounts", "totalDiscountsSet"),
	MONEY("total_refunded", "totalRefundedSet"),
	MONEY("current_total_price", "currentTotalPriceSet"),
	OPT("customer_id", FIELD_ID, "customer", "id"),
	OPT("customer_email", FIELD_TEXT, "customer", "email"),
	OPT("customer_first_name", FIELD_TEXT, "customer", "firstName"),
	OPT("customer_last_name", FIELD_TEXT, "customer", "lastName"),
	OPT("customer_phone", FIELD_TEXT, "customer", "phone"),
	OPT("billing_first_name", FIELD_TEXT, "billingAddress", "firstName"),
	OPT("billing_last_name", FIELD_TEXT, "billingAddress", "lastName"),
	OPT("billing_city", FIELD_TEXT, "billingAddress", "city"),
	OPT("billing_province_code", FIELD_TEXT, "billingAddress", "provinceCode"),
	OPT("billing_country_code", FIELD_TEXT, "billingAddress", "countryCodeV2"),
	OPT("billing_zip", FIELD_TEXT, "billingAddress", "zip"),
	OPT("shipping_city", FIELD_TEXT, "shippingAddress", "city"),
	OPT("shipping_province_code", FIELD_TEXT, "shippingAddress", "provinceCode"),
	OPT("shipping_country_code", FIELD_TEXT, "shippingAddress", "countryCodeV2"),
	OPT("shipping_zip", FIELD_TEXT, "shippingAddress", "zip"),
	OPT("app_name", FIELD_TEXT, "app", "name"),
};

/* Selected for the order's stored JSON only (tags and discount codes are columns made from it). */
static const char *const order_extra[] = {
	"legacyResourceId", "tags", "discountCodes", "note", "sourceIdentifier", "confirmed",
	"customerAcceptsMarketing", "app.id",
	"totalPriceSet.shopMoney.currencyCode", "totalPriceSet.presentmentMoney.currencyCode",
	"billingAddress.address1", "billingAddress.province", "billingAddress.country", "billingAddress.phone",
	"shippingAddress.firstName", "shippingAddress.lastName", "shippingAddress.address1",
	"shippingAddress.province", "shippingAddress.country", "shippingAddress.phone",
	NULL
};

static const FieldDef line_item_fields[] = {
	REQ("line_item_id", FIELD_ID, "id"),
	PARENT("order_id"),
	PARENT("position"),
	OPT("product_id", FIELD_ID, "product", "id"),
	OPT("variant_id", FIELD_ID, "variant", "id"),
	OPT("sku", FIELD_TEXT, "sku"),
	OPT("name", FIELD_TEXT, "name"),
	OPT("title", FIELD_TEXT, "title"),
	OPT("variant_title", FIELD_TEXT, "variantTitle"),
	OPT("vendor", FIELD_TEXT, "vendor"),
	REQ("quantity", FIELD_INT, "quantity"),
	OPT("current_quantity", FIELD_INT, "currentQuantity"),
	MONEY("price", "originalUnitPriceSet"),
	MONEY("discounted_price", "discountedUnitPriceSet"),
};

static const FieldDef refund_fields[] = {
	REQ("refund_id", FIELD_ID, "id"),
	PARENT("order_id"),
	REQ("created_at", FIELD_TIMESTAMPTZ, "createdAt"),
	OPT("note", FIELD_TEXT, "note"),
	MONEY("total_refunded", "totalRefundedSet"),
	OPT("currency", FIELD_TEXT, "totalRefundedSet", "presentmentMoney", "currencyCode"),
};

static const FieldDef refund_line_item_fields[] = {
	REQ("refund_line_item_id", FIELD_ID, "id"),
	PARENT("refund_id"),
	PARENT("order_id"),
	OPT("line_item_id", FIELD_ID, "lineItem", "id"),
	REQ("quantity", FIELD_INT, "quantity"),
	OPT("restock_type", FIELD_TEXT, "restockType"),
	MONEY("price", "priceSet"),
	MONEY("subtotal", "subtotalSet"),
	MONEY("total_tax", "totalTaxSet"),
};

const TableMapping order_mapping = {"orders", "order_id", order_fields, lengthof(order_fields), order_extra};
const TableMapping line_item_mapping = {"line_items", "line_item_id", line_item_fields, lengthof(line_item_fields), NULL};
const TableMapping refund_mapping = {"refunds", "refund_id", refund_fields, lengthof(refund_fields), NULL};
const TableMapping refund_line_item_mapping = {"refund_line_items", "refund_line_item_id",
refund_line_item_fields, lengthof(refund_line_item_fields), NULL};

Oid
field_type(FieldKind kind)
{
	switch (kind)
	{
		case FIELD_TEXT:
			return TEXTOID;
		case FIELD_TIMESTAMPTZ:
			return TIMESTAMPTZOID;
		case FIELD_NUMERIC:
			return NUMERICOID;
		case FIELD_BOOL:
			return BOOLOID;
		case FIELD_INT:
			return INT4OID;
		case FIELD_ID:
		case FIELD_PARENT:
			return INT8OID;
	}
	return InvalidOid;
}

/* ---- GraphQL selections ---- */

typedef struct SelNode
{
	char	   *name;
	struct SelNode *child;		/* first child */
	struct SelNode *next;		/* next sibling */
} SelNode;

static void
sel_add(SelNode *root, const char *const *path, int depth)
{
	SelNode   **link = &root->child;
	SelNode    *n;

	for (n = root->child; n != NULL; n = n->next)
	{
		if (strcmp(n->name, path[0]) == 0)
			break;
		link = &n->next;
	}
	if (n == NULL)
	{
		n = palloc0(sizeof(SelNode));
		n->name = pstrdup(path[0]);
		*link = n;
	}
	if (depth > 1)
		sel_add(n, path + 1, depth - 1);
}

static void
sel_print(StringInfo buf, SelNode *n)
{
	for (; n != NULL; n = n->next)
	{
		appendStringInfo(buf, "%s ", n->name);
		if (n->child)
		{
			appendStringInfoString(buf, "{ ");
			sel_print(buf, n->child);
			appendStringInfoString(buf, "} ");
		}
	}
}

/* The selection set (without braces) that fetches every mapped field. */
char *
mapping_selection(const TableMapping *m)
{
	SelNode		root = {0};
	StringInfoData buf;
	int			i;
	const char *const *e;

	for (i = 0; i < m->nfields; i++)
	{
		int			depth = 0;

		if (m->fields[i].kind == FIELD_PARENT)
			continue;
		while (depth < FIELD_PATH_MAX && m->fields[i].path[depth])
			depth++;
		sel_add(&root, m->fields[i].path, depth);
	}
	for (e = m->extra; e && *e; e++)
	{
		char	   *copy = pstrdup(*e);
		const char *path[FIELD_PATH_MAX + 1] = {0};
		int			depth = 0;
		char	   *tok;
		char	   *save;

		for (tok = strtok_r(copy, ".", &save); tok && depth < FIELD_PATH_MAX;
			 tok = strtok_r(NULL, ".", &save))
			path[depth++] = tok;
		sel_add(&root, path, depth);
	}
	initStringInfo(&buf);
	sel_print(&buf, root.child);
	return buf.data;
}

/* ---- extraction ---- */

static int
digits(const char **s, int n)
{
	int			v = 0;

	while (n-- > 0)
	{
		if (**s < '0' || **s > '9')
			return -1;
		v = v * 10 + (*(*s)++ - '0');
	}
	return v;
}

/*
 * ISO 8601 as Shopify writes it: YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM).
 * Strict and fast; false for anything else.
 */
bool
parse_timestamptz(const char *s, TimestampTz *result)
{
	int			y, mo, d, h, mi, sec;
	int64		usec = 0;
	int			off = 0;

	if ((y = digits(&s, 4)) < 0 || *s++ != '-' || (mo = digits(&s, 2)) < 0 || *s++ != '-' ||
		(d = digits(&s, 2)) < 0 || (*s != 'T' && *s != ' ') || (s++, (h = digits(&s, 2)) < 0) ||
		*s++ != ':' || (mi = digits(&s, 2)) < 0 || *s++ != ':' || (sec = digits(&s, 2)) < 0)
		return false;
	if (*s == '.')
	{
		int64		scale = 100000;

		s++;
		if (*s < '0' || *s > '9')
			return false;
		for (; *s >= '0' && *s <= '9'; s++)
		{
			usec += (*s - '0') * scale;
			scale /= 10;
		}
	}
	if (*s == 'Z')
		s++;
	else if (*s == '+' || *s == '-')
	{
		int			sign = (*s++ == '-') ? -1 : 1;
		int			oh = digits(&s, 2);
		int			om;

		if (oh < 0)
			return false;
		if (*s == ':')
			s++;
		om = digits(&s, 2);
		if (om < 0 || oh > 14 || om > 59)
			return false;
		off = sign * (oh * 3600 + om * 60);
	}
	else
		return false;
	if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > day_tab[isleap(y)][mo - 1] ||
		h > 23 || mi > 59 || sec > 60 || y < 1)
		return false;

	*result = ((int64) (date2j(y, mo, d) - POSTGRES_EPOCH_JDATE) * SECS_PER_DAY +
			   h * 3600 + mi * 60 + sec - off) * USECS_PER_SEC + usec;
	return true;
}

static bool
extract_field(const FieldDef *f, JsonbValue *obj, Datum *value, bool *isnull, char **error)
{
	JsonbValue	bufs[FIELD_PATH_MAX];
	JsonbValue *v = obj;
	int			depth;
	char	   *s;

	*isnull = true;
	if (f->kind == FIELD_PARENT)
		return true;			/* the caller fills it in */
	for (depth = 0; depth < FIELD_PATH_MAX && f->path[depth] != NULL && v != NULL; depth++)
		v = json_node_get(v, f->path[depth], &bufs[depth]);
	if (v == NULL)
	{
		if (f->required)
		{
			*error = psprintf("%s is missing", f->path[0]);
			return false;
		}
		return true;
	}

	switch (f->kind)
	{
		case FIELD_TEXT:
			s = json_node_text(v);
			if (s == NULL)
				break;
			*value = CStringGetTextDatum(s);
			*isnull = false;
			return true;
		case FIELD_BOOL:
			if (v->type != jbvBool)
				break;
			*value = BoolGetDatum(v->val.boolean);
			*isnull = false;
			return true;
		case FIELD_NUMERIC:
			if (!json_node_number(v, value))
				break;
			*isnull = false;
			return true;
		case FIELD_TIMESTAMPTZ:
			{
				TimestampTz ts;

				if (v->type != jbvString || !parse_timestamptz(json_node_text(v), &ts))
					break;
				*value = TimestampTzGetDatum(ts);
				*isnull = false;
				return true;
			}
		case FIELD_INT:
			{
				char	   *end;
				long		n;

				if (v->type != jbvNumeric)
					break;
				s = json_node_text(v);
				errno = 0;
				n = strtol(s, &end, 10);
				if (errno != 0 || *end != '\0' || n < PG_INT32_MIN || n > PG_INT32_MAX)
					break;
				*value = Int32GetDatum((int32) n);
				*isnull = false;
				return true;
			}
		case FIELD_ID:
			{
				int64		id = gid_to_id(json_node_text(v));

				if (id < 0)
					break;
				*value = Int64GetDatum(id);
				*isnull = false;
				return true;
			}
		case FIELD_PARENT:
			return true;
	}
	*error = psprintf("%s has an invalid value", f->path[depth - 1]);
	return false;
}

/*
 * Fill values/nulls (one per field of the mapping, FIELD_PARENT left NULL)
 * from a JSON object (a value tree, or jsonb wrapped as jbvBinary).  false with *error set when a required field is
 * missing or any present field is malformed: such a row is never half-stored.
 */
bool
extract_row(const TableMapping *m, JsonbValue *obj, Datum *values, bool *nulls, char **error)
{
	int			i;

	for (i = 0; i < m->nfields; i++)
	{
		if (!extract_field(&m->fields[i], obj, &values[i], &nulls[i], error))
		{
			char	   *path = pstrdup(m->fields[i].path[0] ? m->fields[i].path[0] : m->fields[i].column);
			int			j;

			for (j = 1; j < FIELD_PATH_MAX && m->fields[i].path[j]; j++)
				path = psprintf("%s.%s", path, m->fields[i].path[j]);
			*error = psprintf("%s: %s", path, *error);
			return false;
		}
	}
	return true;
}
