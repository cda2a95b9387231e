"""The slice of Shopify's Admin GraphQL schema the mock serves, with resolvers.

Each object type maps field names to a FieldDef. Scalar fields have a
one-argument `get(obj)` (fast path); object, list and connection fields have
`resolve(obj, plan, ctx)`. Field arguments are validated by gql_exec, and
`prepare` hooks turn them into ready-to-use values (decoded cursors,
compiled search filters) before any cost is charged.
"""

from operator import attrgetter, itemgetter

from gql_parser import GraphQLError
from paging import (OMIT, SORT_ATTRS, build_connection, decode_cursor, encode_cursor,
                    page_list)
from search_query import parse_search
from shopify_data import iso, money_str

SCALAR, OBJECT, LIST, CONNECTION, ABSTRACT = "scalar", "object", "list", "connection", "abstract"

MAX_PAGE = 250
DEFAULT_LIST_COST_SIZE = 10     # cost of a list of objects without `first` (refunds)

ENUMS = {
    "OrderSortKeys": {"CREATED_AT", "CUSTOMER_NAME", "DESTINATION", "FINANCIAL_STATUS",
                      "FULFILLMENT_STATUS", "ID", "ORDER_NUMBER", "PO_NUMBER", "PROCESSED_AT",
                      "RELEVANCE", "TOTAL_ITEMS_QUANTITY", "TOTAL_PRICE", "UPDATED_AT"},
    "BulkOperationType": {"QUERY", "MUTATION"},
}

# Interfaces / unions: abstract type -> possible concrete types
ABSTRACT_TYPES = {"Node": ("Order", "BulkOperation")}


class FieldDef:
    __slots__ = ("name", "kind", "type", "args", "get", "resolve", "prepare", "min_version",
                 "nonnull")

    def __init__(self, kind, type_, get=None, resolve=None, args=None, prepare=None,
                 min_version=None, nonnull=False):
        self.name = None
        self.kind = kind
        self.type = type_            # scalar type name, or object / node type name
        self.get = get
        self.resolve = resolve
        self.args = args or {}       # name -> (type string, default)
        self.prepare = prepare
        self.min_version = min_version
        self.nonnull = nonnull


def S(type_, get):
    return FieldDef(SCALAR, type_, get=get)


def A(name, type_="String"):
    """Scalar read from an attribute."""
    return FieldDef(SCALAR, type_, get=attrgetter(name))


def K(name, type_="String"):
    """Scalar read from a dict key."""
    return FieldDef(SCALAR, type_, get=itemgetter(name))


def gid(kind):
    prefix = "gid://shopify/%s/" % kind
    return lambda o: prefix + str(o.id)


def obj_field(type_, getter, args=None):
    """An object-valued field; getter(obj) returns the child or None."""
    def resolve(o, p, ctx):
        child = getter(o)
        if child is None:
            return None
        ctx.actual += 1
        return ctx.sel(p.children, child, ctx)
    return FieldDef(OBJECT, type_, resolve=resolve, args=args)


def money_field(getter):
    """A MoneyBag field; getter(obj) -> (shop cents, shop cur, pres cents, pres cur)."""
    return obj_field("MoneyBag", getter)


# --------------------------------------------------------- connection args

CONN_ARGS = {"first": ("Int", None), "last": ("Int", None), "after": ("String", None),
             "before": ("String", None), "reverse": ("Boolean", False)}


def prepare_connection(args, planner, is_time=False):
    first, last = args.get("first"), args.get("last")
    if planner.mode == "normal":
        if first is None and last is None:
            raise GraphQLError("you must provide one of first or last")
        for name in ("first", "last"):
            v = args.get(name)
            if v is not None and v > MAX_PAGE:
                raise GraphQLError(
                    "The %s argument exceeds the maximum page size of %d (got %d)." % (name, MAX_PAGE, v))
            if v is not None and v < 0:
                raise GraphQLError("The %s argument must be a non-negative integer." % name)
    else:
        # bulk operations and canonical exports ignore paging arguments
        args["first"] = args["last"] = args["after"] = args["before"] = None
    for name in ("after", "before"):
        if args.get(name) is not None:
            args[name] = decode_cursor(args[name], is_time)
    return args


def prepare_orders(args, planner):
    sort = args.get("sortKey") or "ID"
    if sort not in SORT_ATTRS:
        raise GraphQLError("Sort key %s is not supported by the mock (use ID, CREATED_AT, "
                           "UPDATED_AT, PROCESSED_AT or ORDER_NUMBER)." % sort)
    attr = SORT_ATTRS[sort]
    args["sort_attr"] = attr
    prepare_connection(args, planner, is_time=attr != "id")
    args["filter"] = parse_search(args.get("query"))
    return args


def item_cursor(it):
    return encode_cursor(it.id, it.id, False)


def nested_connection(getter, parent_gid):
    """A connection over a small list held by the parent (lineItems, refundLineItems)."""
    def resolve(o, p, ctx):
        items = getter(o)
        mode = ctx.mode
        if mode == "bulk":
            ctx.pending.append((parent_gid(o), p, items))
            return OMIT
        if mode == "canonical":
            return [ctx.sel(p.node_children, it, ctx) for it in items]
        page, has_next, has_prev = page_list(items, p.args)
        return build_connection(p, page, has_next, has_prev, item_cursor, ctx)
    return resolve


def list_field(type_, getter, args=None):
    def resolve(o, p, ctx):
        items = getter(o)
        first = p.args.get("first")
        if first is not None:
            items = items[:first]
        ctx.actual += 2
        out = []
        for it in items:
            ctx.actual += 1
            out.append(ctx.sel(p.children, it, ctx))
        return out
    return FieldDef(LIST, type_, resolve=resolve, args=args or {"first": ("Int", None)})

# ------------------------------------------------------------ root fields


def resolve_orders(_, p, ctx):
    a = p.args
    attr = a["sort_attr"]
    page, has_next, has_prev = ctx.store.index.page(
        attr, a.get("reverse"), a.get("first"), a.get("last"), a.get("after"),
        a.get("before"), a["filter"], ctx.min_created)
    if attr == "id":
        cursor_fn = item_cursor
    else:
        cursor_fn = lambda o: encode_cursor(getattr(o, attr), o.id, True)
    return build_connection(p, page, has_next, has_prev, cursor_fn, ctx)


def parse_gid(value):
    """('Order', 123) from 'gid://shopify/Order/123'; GraphQLError when malformed."""
    if isinstance(value, str) and value.startswith("gid://shopify/"):
        parts = value[len("gid://shopify/"):].split("/")
        if len(parts) == 2 and parts[1].isdigit():
            return parts[0], int(parts[1])
    raise GraphQLError("Invalid global id '%s'" % (value,),
                       extensions={"code": "argumentLiteralsIncompatible", "typeName": "CoercionError"})


def prepare_id(args, planner):
    args["_gid"] = parse_gid(args["id"])
    return args


def prepare_ids(args, planner):
    args["_gids"] = [parse_gid(v) for v in args["ids"]]
    return args


def visible_order(ctx, oid):
    o = ctx.store.index.get(oid)
    if o is None or (ctx.min_created is not None and o.created < ctx.min_created):
        return None
    return o


def lookup_node(ctx, kind, nid):
    if kind == "Order":
        return visible_order(ctx, nid)
    if kind == "BulkOperation":
        return ctx.store.bulk.snapshot(nid, ctx)
    return None


def resolve_order(_, p, ctx):
    kind, oid = p.args["_gid"]
    o = visible_order(ctx, oid) if kind == "Order" else None
    if o is None:
        return None
    ctx.actual += 1
    return ctx.sel(p.children, o, ctx)


def resolve_abstract(value, p, ctx):
    if value is None:
        return None
    typename = "BulkOperation" if isinstance(value, dict) else "Order"
    ctx.actual += 1
    return ctx.sel(p.children[typename], value, ctx)


def resolve_node(_, p, ctx):
    return resolve_abstract(lookup_node(ctx, *p.args["_gid"]), p, ctx)


def resolve_nodes(_, p, ctx):
    return [resolve_abstract(lookup_node(ctx, k, i), p, ctx) for k, i in p.args["_gids"]]


def resolve_shop(_, p, ctx):
    ctx.actual += 1
    return ctx.sel(p.children, ctx.store, ctx)


def resolve_bulk_operation(_, p, ctx):
    kind, nid = p.args["_gid"]
    snap = ctx.store.bulk.snapshot(nid, ctx) if kind == "BulkOperation" else None
    if snap is None:
        return None
    ctx.actual += 1
    return ctx.sel(p.children, snap, ctx)


def resolve_current_bulk(_, p, ctx):
    snap = ctx.store.bulk.current(p.args.get("type") or "QUERY", ctx)
    if snap is None:
        return None
    ctx.actual += 1
    return ctx.sel(p.children, snap, ctx)


def resolve_bulk_run(_, p, ctx):
    # groupObjects defaults to false from 2026-01 (true before): ungrouped files
    # put children anywhere, not after their parent
    group = p.args.get("groupObjects")
    if group is None:
        group = ctx.version < "2026-01"
    payload = ctx.store.bulk.start(p.args["query"], ctx, group=bool(group))
    return ctx.sel(p.children, payload, ctx)


def resolve_bulk_cancel(_, p, ctx):
    kind, nid = p.args["_gid"]
    payload = ctx.store.bulk.cancel(nid if kind == "BulkOperation" else None, ctx)
    return ctx.sel(p.children, payload, ctx)


def payload_object(type_, key):
    def resolve(o, p, ctx):
        v = o.get(key)
        if v is None:
            return None
        return ctx.sel(p.children, v, ctx)
    return FieldDef(OBJECT, type_, resolve=resolve)


def payload_list(type_, key):
    def resolve(o, p, ctx):
        return [ctx.sel(p.children, v, ctx) for v in o.get(key) or []]
    return FieldDef(LIST, type_, resolve=resolve)


# ------------------------------------------------------------------ types

def _order_money(total_attr, pres_attr):
    ga, gp = attrgetter(total_attr), attrgetter(pres_attr)
    return money_field(lambda o: (ga(o), o.currency, gp(o), o.pres_currency))


def _li_money(shop, pres, mult=False):
    ga, gp = attrgetter(shop), attrgetter(pres)
    if mult:
        return money_field(lambda li: (ga(li) * li.quantity, li.currency, gp(li) * li.quantity, li.pres_currency))
    return money_field(lambda li: (ga(li), li.currency, gp(li), li.pres_currency))


TYPES = {
    "QueryRoot": {
        "orders": FieldDef(CONNECTION, "Order", resolve=resolve_orders, prepare=prepare_orders,
                           args=dict(CONN_ARGS, query=("String", None), sortKey=("OrderSortKeys", "ID"),
                                     savedSearchId=("ID", None))),
        "order": FieldDef(OBJECT, "Order", resolve=resolve_order, prepare=prepare_id,
                          args={"id": ("ID!", None)}),
        "node": FieldDef(ABSTRACT, "Node", resolve=resolve_node, prepare=prepare_id,
                         args={"id": ("ID!", None)}),
        "nodes": FieldDef(LIST, "Node", resolve=resolve_nodes, prepare=prepare_ids,
                          args={"ids": ("[ID!]!", None)}),
        "shop": FieldDef(OBJECT, "Shop", resolve=resolve_shop),
        "bulkOperation": FieldDef(OBJECT, "BulkOperation", resolve=resolve_bulk_operation,
                                  prepare=prepare_id, args={"id": ("ID!", None)},
                                  min_version="2026-01"),
        "currentBulkOperation": FieldDef(OBJECT, "BulkOperation", resolve=resolve_current_bulk,
                                         args={"type": ("BulkOperationType", "QUERY")}),
    },
    "Mutation": {
        "bulkOperationRunQuery": FieldDef(OBJECT, "BulkOperationRunQueryPayload", resolve=resolve_bulk_run,
                                          args={"query": ("String!", None), "groupObjects": ("Boolean", None)}),
        "bulkOperationCancel": FieldDef(OBJECT, "BulkOperationCancelPayload", resolve=resolve_bulk_cancel,
                                        prepare=prepare_id, args={"id": ("ID!", None)}),
    },
    "Order": {
        "id": S("ID", gid("Order")),
        "legacyResourceId": S("UnsignedInt64", lambda o: str(o.id)),
        "name": S("String", lambda o: "#%d" % o.number),
        "createdAt": S("DateTime", lambda o: iso(o.created)),
        "processedAt": S("DateTime", lambda o: iso(o.processed)),
        "updatedAt": S("DateTime", lambda o: iso(o.updated)),
        "cancelledAt": S("DateTime", lambda o: iso(o.cancelled)),
        "cancelReason": A("cancel_reason", "OrderCancelReason"),
        "closedAt": S("DateTime", lambda o: iso(o.closed)),
        "closed": S("Boolean", lambda o: o.closed is not None),
        "sourceName": A("source_name"),
        "sourceIdentifier": A("source_identifier"),
        "tags": S("[String!]!", lambda o: list(o.tags)),
        "test": A("test", "Boolean"),
        "email": A("email"),
        "phone": A("phone"),
        "note": A("note"),
        "currencyCode": A("currency", "CurrencyCode"),
        "presentmentCurrencyCode": A("pres_currency", "CurrencyCode"),
        "confirmed": A("confirmed", "Boolean"),
        "displayFinancialStatus": S("OrderDisplayFinancialStatus", lambda o: o.display_financial_status),
        "displayFulfillmentStatus": A("fulfillment", "OrderDisplayFulfillmentStatus"),
        "customerAcceptsMarketing": A("accepts_marketing", "Boolean"),
        "discountCodes": S("[String!]!", lambda o: list(o.discount_codes)),
        "discountCode": S("String", lambda o: o.discount_codes[0] if o.discount_codes else None),
        "totalPriceSet": _order_money("total", "total_p"),
        "subtotalPriceSet": _order_money("subtotal", "subtotal_p"),
        "totalTaxSet": _order_money("total_tax", "total_tax_p"),
        "totalShippingPriceSet": _order_money("shipping", "shipping_p"),
        "totalDiscountsSet": _order_money("discounts", "discounts_p"),
        "currentTotalPriceSet": money_field(
            lambda o: (max(0, o.total - o.refunded), o.currency, max(0, o.total_p - o.refunded_p), o.pres_currency)),
        "totalRefundedSet": _order_money("refunded", "refunded_p"),
        "customer": obj_field("Customer", attrgetter("customer")),
        "billingAddress": obj_field("MailingAddress", attrgetter("billing")),
        "shippingAddress": obj_field("MailingAddress", attrgetter("shipping_address")),
        "app": obj_field("OrderApp", lambda o: o.app),
        "lineItems": FieldDef(CONNECTION, "LineItem", args=dict(CONN_ARGS), prepare=prepare_connection,
                              resolve=nested_connection(attrgetter("line_items"), gid("Order"))),
        "refunds": list_field("Refund", attrgetter("refunds")),
    },
    "Customer": {
        "id": S("ID", gid("Customer")),
        "legacyResourceId": S("UnsignedInt64", lambda c: str(c.id)),
        "email": A("email"),
        "phone": A("phone"),
        "firstName": A("first_name"),
        "lastName": A("last_name"),
        "displayName": S("String", lambda c: " ".join(x for x in (c.first_name, c.last_name) if x) or c.email),
        "numberOfOrders": S("UnsignedInt64", lambda c: str(c.order_count)),
    },
    "MailingAddress": {
        "firstName": A("first_name"), "lastName": A("last_name"),
        "name": S("String", lambda a: a.name),
        "address1": A("address1"), "address2": A("address2"), "city": A("city"),
        "province": A("province"), "provinceCode": A("province_code"), "country": A("country"),
        "countryCodeV2": A("country_code", "CountryCode"), "zip": A("zip"), "phone": A("phone"),
        "company": A("company"),
    },
    "OrderApp": {
        "id": S("ID", lambda a: "gid://shopify/App/%d" % a[0]),
        "name": S("String", itemgetter(1)),
    },
    "MoneyBag": {
        "shopMoney": obj_field("MoneyV2", lambda m: (m[0], m[1])),
        "presentmentMoney": obj_field("MoneyV2", lambda m: (m[2], m[3])),
    },
    "MoneyV2": {
        "amount": S("Decimal", lambda m: money_str(m[0])),
        "currencyCode": S("CurrencyCode", itemgetter(1)),
    },
    "LineItem": {
        "id": S("ID", gid("LineItem")),
        "sku": A("sku"),
        "name": S("String", lambda li: li.name),
        "title": A("title"),
        "variantTitle": A("variant_title"),
        "quantity": A("quantity", "Int"),
        "currentQuantity": S("Int", lambda li: li.quantity - li.refunded_qty),
        "vendor": A("vendor"),
        "originalUnitPriceSet": _li_money("unit", "unit_p"),
        "discountedUnitPriceSet": _li_money("disc_unit", "disc_unit_p"),
        "originalTotalSet": _li_money("unit", "unit_p", mult=True),
        "discountedTotalSet": _li_money("disc_unit", "disc_unit_p", mult=True),
        "totalDiscountSet": money_field(lambda li: ((li.unit - li.disc_unit) * li.quantity, li.currency,
                                                    (li.unit_p - li.disc_unit_p) * li.quantity, li.pres_currency)),
        "product": obj_field("Product", lambda li: li.product_id and li),
        "variant": obj_field("ProductVariant", lambda li: li.variant_id and li),
    },
    "Product": {
        "id": S("ID", lambda li: "gid://shopify/Product/%d" % li.product_id),
        "legacyResourceId": S("UnsignedInt64", lambda li: str(li.product_id)),
        "title": A("title"),
        "vendor": A("vendor"),
    },
    "ProductVariant": {
        "id": S("ID", lambda li: "gid://shopify/ProductVariant/%d" % li.variant_id),
        "legacyResourceId": S("UnsignedInt64", lambda li: str(li.variant_id)),
        "sku": A("sku"),
        "title": S("String", lambda li: li.variant_title or "Default Title"),
    },
    "Refund": {
        "id": S("ID", gid("Refund")),
        "legacyResourceId": S("UnsignedInt64", lambda r: str(r.id)),
        "createdAt": S("DateTime", lambda r: iso(r.created)),
        "note": A("note"),
        "totalRefundedSet": money_field(lambda r: (r.total, r.currency, r.total_p, r.pres_currency)),
        "refundLineItems": FieldDef(CONNECTION, "RefundLineItem", args=dict(CONN_ARGS), prepare=prepare_connection,
                                    resolve=nested_connection(attrgetter("line_items"), gid("Refund"))),
    },
    "RefundLineItem": {
        "id": S("ID", gid("RefundLineItem")),
        "quantity": A("quantity", "Int"),
        "restockType": A("restock_type", "RefundLineItemRestockType"),
        "restocked": S("Boolean", lambda r: r.restock_type != "NO_RESTOCK"),
        "lineItem": obj_field("LineItem", attrgetter("line_item")),
        "priceSet": money_field(lambda r: (r.price, r.line_item.currency, r.price_p, r.line_item.pres_currency)),
        "subtotalSet": money_field(lambda r: (r.subtotal, r.line_item.currency, r.subtotal_p, r.line_item.pres_currency)),
        "totalTaxSet": money_field(lambda r: (r.tax, r.line_item.currency, r.tax_p, r.line_item.pres_currency)),
    },
    "Shop": {
        "id": S("ID", lambda s: "gid://shopify/Shop/%d" % s.shop_id),
        "name": S("String", lambda s: s.shop_name),
        "myshopifyDomain": S("String", lambda s: "%s.myshopify.com" % s.handle),
        "url": S("URL", lambda s: "https://%s.myshopify.com" % s.handle),
        "currencyCode": S("CurrencyCode", lambda s: s.settings["currency"]),
        "ianaTimezone": S("String", lambda s: s.settings["timezone"]),
    },
    "BulkOperation": {
        "id": K("id", "ID"), "status": K("status", "BulkOperationStatus"),
        "errorCode": K("errorCode", "BulkOperationErrorCode"), "createdAt": K("createdAt", "DateTime"),
        "completedAt": K("completedAt", "DateTime"), "objectCount": K("objectCount", "UnsignedInt64"),
        "rootObjectCount": K("rootObjectCount", "UnsignedInt64"), "fileSize": K("fileSize", "UnsignedInt64"),
        "url": K("url", "URL"), "partialDataUrl": K("partialDataUrl", "URL"), "query": K("query"),
        "type": K("type", "BulkOperationType"),
    },
    "BulkOperationRunQueryPayload": {
        "bulkOperation": payload_object("BulkOperation", "bulkOperation"),
        "userErrors": payload_list("BulkOperationUserError", "userErrors"),
    },
    "BulkOperationCancelPayload": {
        "bulkOperation": payload_object("BulkOperation", "bulkOperation"),
        "userErrors": payload_list("UserError", "userErrors"),
    },
    "BulkOperationUserError": {"field": K("field", "[String!]"), "message": K("message"),
                               "code": K("code", "BulkOperationUserErrorCode")},
    "UserError": {"field": K("field", "[String!]"), "message": K("message")},
    "Node": {"id": S("ID", None)},   # interface: only `id` (and __typename) without a fragment
}

for _tname, _fields in TYPES.items():
    for _fname, _fd in _fields.items():
        _fd.name = _fname

CONNECTION_TYPE_NAMES = {"Order": "OrderConnection", "LineItem": "LineItemConnection",
                         "RefundLineItem": "RefundLineItemConnection"}
