"""One mock shop: settings, data, tokens, bucket, counters, faults, mutations.

Every store has its own lock; requests to different stores never wait on
each other. Mutations are copy-on-write (see shopify_data) and keep the
sort indexes up to date.
"""

import re
import secrets
import threading
import time
import zlib

import shopify_data as sd
from bulk import BulkManager
from faults import FaultQueue
from gql_exec import ExecContext, exec_sel, prepare
from paging import OrderIndex
from ratelimit import LeakyBucket

HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SIXTY_DAYS = 60 * 86400

COUNTER_KEYS = ("token", "graphql", "graphql_orders", "graphql_bulk_start", "graphql_bulk_poll",
                "graphql_other", "bulk_download", "throttled", "faults_injected", "http_4xx",
                "http_5xx", "points_requested", "points_actual")

def _bool(v):
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean: %r" % v)


def _int(v):
    if isinstance(v, bool):
        raise ValueError("not an integer")
    return int(v)


def _scopes(v):
    if isinstance(v, (list, tuple)):
        v = ",".join(v)
    return ",".join(s.strip() for s in str(v).split(",") if s.strip())


# setting -> (parser, default(handle, settings so far))
SETTINGS = {
    "seed": (_int, lambda h, s: zlib.crc32(h.encode())),
    "orders": (_int, lambda h, s: 200),
    "client_id": (str, lambda h, s: "cid-%s" % h),
    "client_secret": (str, lambda h, s: "secret-%s" % h),
    "scopes": (_scopes, lambda h, s: "read_orders,read_all_orders"),
    "token_ttl": (_int, lambda h, s: 86399),
    "bucket_max": (float, lambda h, s: 2000.0),
    "restore_rate": (float, lambda h, s: 100.0),
    "currency": (lambda v: str(v).upper(), lambda h, s: "EUR"),
    "installed": (_bool, lambda h, s: True),
    "bulk_min_ms": (_int, lambda h, s: 300),
    "bulk_concurrency": (_int, lambda h, s: 0),     # 0: by API version (5 from 2026-01, else 1)
    "big_order_every": (_int, lambda h, s: sd.default_big_order_every(s["orders"])),
    "name": (str, lambda h, s: h.replace("-", " ").title()),
    "timezone": (str, lambda h, s: "Europe/Berlin"),
}
# Settings that may change on a live store (they do not affect generated data).
MUTABLE_SETTINGS = {"client_id", "client_secret", "scopes", "token_ttl", "bucket_max", "restore_rate",
                    "installed", "bulk_min_ms", "bulk_concurrency", "name", "timezone"}


def normalize_settings(handle, given):
    unknown = set(given) - set(SETTINGS)
    if unknown:
        raise ValueError("unknown store settings: %s" % ", ".join(sorted(unknown)))
    out = {}
    for key, (conv, default) in SETTINGS.items():
        if given.get(key) is not None:
            try:
                out[key] = conv(given[key])
            except (TypeError, ValueError):
                raise ValueError("bad value for %s: %r" % (key, given[key]))
        else:
            out[key] = default(handle, out)
    if out["orders"] < 0 or out["orders"] > 2_000_000:
        raise ValueError("orders must be between 0 and 2000000")
    if out["currency"] not in sd.RATES:
        raise ValueError("unsupported currency %s (known: %s)" % (out["currency"], ", ".join(sorted(sd.RATES))))
    return out


CANONICAL_QUERY = """
fragment Money on MoneyBag { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
fragment Address on MailingAddress {
  firstName lastName address1 address2 city province provinceCode country countryCodeV2 zip phone company
}
query Canonical($id: ID!) {
  order(id: $id) {
    id legacyResourceId name createdAt processedAt updatedAt cancelledAt cancelReason closedAt
    sourceName sourceIdentifier tags test email phone note currencyCode presentmentCurrencyCode
    confirmed displayFinancialStatus displayFulfillmentStatus customerAcceptsMarketing discountCodes
    totalPriceSet { ...Money } subtotalPriceSet { ...Money } totalTaxSet { ...Money }
    totalShippingPriceSet { ...Money } totalDiscountsSet { ...Money } currentTotalPriceSet { ...Money }
    totalRefundedSet { ...Money }
    customer { id legacyResourceId email phone firstName lastName numberOfOrders }
    billingAddress { ...Address }
    shippingAddress { ...Address }
    app { id name }
    lineItems {
      nodes {
        id sku name title variantTitle quantity currentQuantity vendor
        originalUnitPriceSet { ...Money } discountedUnitPriceSet { ...Money }
        product { id } variant { id }
      }
    }
    refunds {
      id legacyResourceId createdAt note totalRefundedSet { ...Money }
      refundLineItems {
        nodes {
          id quantity restockType
          lineItem { id sku name title variantTitle vendor product { id } variant { id } }
          priceSet { ...Money } subtotalSet { ...Money } totalTaxSet { ...Money }
        }
      }
    }
  }
}
"""

_canonical_plan = None


def canonical_plan():
    global _canonical_plan
    if _canonical_plan is None:
        prepared = prepare(CANONICAL_QUERY, {"id": "gid://shopify/Order/1"}, mode="canonical")
        _canonical_plan = prepared.plans[0].children
    return _canonical_plan


class MutationError(Exception):
    """A control-API mutation that cannot be applied (HTTP 400/404)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class Store:
    def __init__(self, handle, settings, workdir):
        if not HANDLE_RE.match(handle or ""):
            raise ValueError("invalid store handle %r: lowercase letters, digits and hyphens" % handle)
        self.handle = handle
        self.settings = normalize_settings(handle, settings or {})
        self.lock = threading.RLock()
        s = self.settings
        self.data = sd.generate(s["seed"], s["orders"], s["currency"], s["big_order_every"])
        self.index = OrderIndex(self.data.orders)
        self.shop_id = 60_000_000_000 + zlib.crc32(handle.encode()) % 1_000_000_000
        self.tokens = {}             # token -> (expires_at wall seconds, scopes tuple)
        self.bucket = LeakyBucket(s["bucket_max"], s["restore_rate"])
        self.counters = dict.fromkeys(COUNTER_KEYS, 0)
        self.faults = FaultQueue()
        self.scheduled = []          # [remaining, seq, mutation spec]
        self.scheduled_seq = 0
        self.scheduled_log = []      # results of applied scheduled mutations
        self.bulk = BulkManager(self, workdir)

    @property
    def shop_name(self):
        return self.settings["name"]

    # ------------------------------------------------------------ counters
    def count(self, key, n=1):
        with self.lock:
            self.counters[key] += n

    def count_status(self, status):
        if 400 <= status < 500:
            self.count("http_4xx")
        elif status >= 500:
            self.count("http_5xx")

    def reset_counters(self):
        with self.lock:
            self.counters = dict.fromkeys(COUNTER_KEYS, 0)

    # -------------------------------------------------------------- tokens
    def issue_token(self, scopes=None):
        token = "shpat_" + secrets.token_hex(16)
        scopes = tuple(_scopes(scopes if scopes is not None else self.settings["scopes"]).split(","))
        with self.lock:
            self.tokens[token] = (time.time() + self.settings["token_ttl"], scopes)
        return token

    def token_scopes(self, token):
        """Scopes of a valid token, or None (unknown or expired)."""
        with self.lock:
            entry = self.tokens.get(token or "")
            if entry is None:
                return None
            if time.time() >= entry[0]:
                del self.tokens[token]
                return None
            return entry[1]

    def invalidate_token(self, token):
        with self.lock:
            self.tokens.pop(token or "", None)

    def expire_tokens(self):
        with self.lock:
            n = len(self.tokens)
            self.tokens.clear()
            return n

    def visibility_floor(self, scopes):
        """Without read_all_orders only the last 60 days of orders are visible."""
        if "read_all_orders" in scopes:
            return None
        return int(time.time()) - SIXTY_DAYS

    # ------------------------------------------------------------ summary
    def summary(self):
        with self.lock:
            orders = self.index.all()
            return {
                "handle": self.handle,
                "orders": len(orders),
                "line_items": sum(len(o.line_items) for o in orders),
                "refunds": sum(len(o.refunds) for o in orders),
                "customers": len(self.data.customers),
                "settings": dict(self.settings),
                "bulk_operations": self.bulk.list(),
                "tokens": len(self.tokens),
                "faults": self.faults.list(),
                "scheduled": [{"id": seq, "remaining": r, "mutation": m} for r, seq, m in self.scheduled],
                "scheduled_applied": list(self.scheduled_log),
            }

    def update_settings(self, changes):
        bad = set(changes) - MUTABLE_SETTINGS
        if bad:
            raise ValueError("settings that cannot change on a live store: %s" % ", ".join(sorted(bad)))
        merged = dict(self.settings)
        merged.update({k: v for k, v in changes.items()})
        new = normalize_settings(self.handle, merged)
        with self.lock:
            self.settings = new
            self.bucket.configure(new["bucket_max"], new["restore_rate"])
        return new

    # ---------------------------------------------------------- canonical
    def canonical(self, order):
        ctx = ExecContext(self, mode="canonical")
        return exec_sel(canonical_plan(), order, ctx)

    def find_order(self, ref):
        """An order by legacy id, GID or name ('#1001')."""
        s = str(ref).strip()
        if s.startswith("gid://shopify/Order/"):
            s = s.rsplit("/", 1)[1]
        if s.startswith("#"):
            try:
                number = int(s[1:])
            except ValueError:
                raise MutationError("bad order name %r" % ref)
            for o in self.index.by_id.values():
                if o.number == number:
                    return o
            raise MutationError("order %s not found" % ref, 404)
        try:
            oid = int(s)
        except ValueError:
            raise MutationError("bad order id %r" % ref)
        o = self.index.get(oid)
        if o is None:
            raise MutationError("order %s not found" % ref, 404)
        return o

    # ---------------------------------------------------------- mutations
    def mutate(self, spec):
        """Apply one mutation spec; returns a result dict with the canonical order."""
        if not isinstance(spec, dict):
            raise MutationError("mutation must be a JSON object")
        op = spec.get("op")
        fn = MUTATIONS.get(op)
        if fn is None:
            raise MutationError("unknown mutation op %r (known: %s)" % (op, ", ".join(sorted(MUTATIONS))))
        with self.lock:
            updated = spec.get("updated_at")
            try:
                t_updated = sd.parse_time(updated) if updated else sd.now()
            except ValueError as e:
                raise MutationError(str(e))
            result = fn(self, spec, t_updated)
            order = result.pop("_order")
            result["order_id"] = str(order.id)
            result["order"] = self.canonical(order)
            return result

    def _replace(self, old, new):
        self.index.replace(old, new)

    def schedule(self, after, mutation):
        if isinstance(after, bool) or not isinstance(after, int) or after < 1:
            raise MutationError("after must be a positive integer")
        if not isinstance(mutation, dict) or mutation.get("op") not in MUTATIONS:
            raise MutationError("mutation must be an object with a known op")
        with self.lock:
            self.scheduled_seq += 1
            self.scheduled.append([after, self.scheduled_seq, mutation])
            return self.scheduled_seq

    def clear_scheduled(self):
        with self.lock:
            n = len(self.scheduled)
            self.scheduled = []
            return n

    def run_scheduled(self):
        """Called just before answering an `orders` request (store lock held)."""
        if not self.scheduled:
            return
        due = []
        for entry in self.scheduled:
            entry[0] -= 1
            if entry[0] == 0:
                due.append(entry)
        if not due:
            return
        self.scheduled = [e for e in self.scheduled if e[0] > 0]
        for _, seq, mutation in due:
            try:
                res = self.mutate(mutation)
                self.scheduled_log.append({"id": seq, "ok": True, "order_id": res["order_id"]})
            except MutationError as e:
                self.scheduled_log.append({"id": seq, "ok": False, "error": str(e)})


# ----------------------------------------------------------- mutation ops

def _variants_for(store, spec):
    """Line item templates from a spec: {"items": N} or {"line_items": [...]}."""
    cat = store.data.catalog
    rng = store.data.mut_rng
    items = spec.get("line_items")
    out = []
    if items is not None:
        if not isinstance(items, list) or not items:
            raise MutationError("line_items must be a non-empty list")
        for it in items:
            if not isinstance(it, dict):
                raise MutationError("each line item must be an object")
            v = cat[rng.randrange(len(cat))]
            qty = it.get("quantity", 1)
            if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
                raise MutationError("quantity must be a positive integer")
            if any(k in it for k in ("title", "price", "sku", "vendor", "variant_title")):
                try:
                    price = sd.parse_money(it["price"], store.data.currency) if "price" in it else v.price
                except ValueError as e:
                    raise MutationError(str(e))
                pres = {c: sd.convert(price, sd.rate_between(store.data.currency, c), sd.step_of(c))
                        for c in v.pres}
                v = sd.Variant(v.product_id, v.variant_id, it.get("sku", v.sku), it.get("title", v.title),
                               it.get("variant_title", v.variant_title), it.get("vendor", v.vendor), price, pres)
            out.append((v, qty))
        return out
    n = spec.get("items", spec.get("line_items_count", 1))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > 1000:
        raise MutationError("items must be an integer between 1 and 1000")
    for _ in range(n):
        out.append((cat[rng.randrange(len(cat))], 1))
    return out


def _tags(value):
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [t.strip() for t in value if str(t).strip()]


def _add_tags(existing, new):
    have = {t.lower() for t in existing}
    out = list(existing)
    for t in new:
        if t.lower() not in have:    # Shopify tags are case-insensitive
            out.append(t)
            have.add(t.lower())
    return tuple(sorted(out, key=str.lower))


def _time_arg(spec, key, default):
    v = spec.get(key)
    if v is None:
        return default
    try:
        return sd.parse_time(v)
    except ValueError as e:
        raise MutationError(str(e))


def m_add_order(store, spec, t_updated):
    data = store.data
    rng = data.mut_rng
    pres = (spec.get("presentment_currency") or spec.get("currency") or data.currency).upper()
    if pres != data.currency and pres not in data.pres_currencies:
        raise MutationError("presentment currency must be one of %s" % ", ".join(
            [data.currency] + data.pres_currencies))
    created = _time_arg(spec, "created_at", sd.now())
    o = sd.Order()
    o.id = data.next_id("order")
    data.last_number += 1
    o.number = data.last_number
    o.created = created
    o.processed = _time_arg(spec, "processed_at", created)
    o.updated = t_updated if spec.get("updated_at") else max(t_updated, created)
    o.cancelled = o.cancel_reason = o.closed = None
    o.source_name = spec.get("source_name", "web")
    o.source_identifier = spec.get("source_identifier")
    o.tags = _add_tags((), _tags(spec.get("tags")))
    o.test = bool(spec.get("test", False))
    o.note = spec.get("note")
    o.currency = data.currency
    o.pres_currency = pres
    o.confirmed = True
    o.financial = spec.get("financial_status", "PAID")
    o.fulfillment = spec.get("fulfillment_status", "UNFULFILLED")
    o.accepts_marketing = bool(spec.get("accepts_marketing", False))
    codes = spec.get("discount_codes") or []
    if isinstance(codes, str):
        codes = [c for c in codes.split(",") if c]
    o.discount_codes = tuple(codes)
    pct = 0
    for code in codes:
        pct = dict(sd.DISCOUNTS).get(code, 10)
    # customer: existing by id, by email, or a new one; or a guest
    customer = None
    if spec.get("customer_id") is not None:
        cid = str(spec["customer_id"]).rsplit("/", 1)[-1]
        customer = data.customers_by_id.get(int(cid)) if cid.isdigit() else None
        if customer is None:
            raise MutationError("customer %s not found" % spec["customer_id"], 404)
    elif spec.get("email") and not spec.get("guest"):
        customer = data.customers_by_email.get(spec["email"])
        if customer is None:
            first = spec.get("first_name") or "New"
            last = spec.get("last_name") or "Customer"
            customer = sd.Customer(data.next_id("customer"), spec["email"], spec.get("phone"), first, last,
                                   sd.make_address(rng, first, last, 0))
            data.customers.append(customer)
            data.customers_by_id[customer.id] = customer
            data.customers_by_email[customer.email] = customer
    elif not spec.get("guest"):
        customer = data.customers[rng.randrange(len(data.customers))] if data.customers else None
    if customer is not None:
        customer.order_count += 1
        o.customer = customer
        o.email = customer.email
        o.phone = spec.get("phone", customer.phone)
        addr = customer.address
    else:
        o.customer = None
        o.email = spec.get("email")
        o.phone = spec.get("phone")
        addr = sd.make_address(rng, spec.get("first_name") or "Guest", spec.get("last_name") or "Buyer", 0)
    o.billing = o.shipping_address = addr
    o.tax_rate = sd.TAX_BY_COUNTRY.get(addr.country_code, 190)
    o.line_items = [sd.make_line_item(data, rng, v, q, pct, o.tax_rate, pres)
                    for v, q in _variants_for(store, spec)]
    sh, sh_pres = data.shipping_rates[1]
    o.shipping, o.shipping_p = sh, sh_pres[pres]
    o.refunds = []
    o.recompute()
    store.index.add(o)
    return {"_order": o, "line_item_ids": [str(li.id) for li in o.line_items]}


def m_upsell(store, spec, t_updated):
    """Add line items, as an accepted post-purchase offer does (totals rise)."""
    old = store.find_order(spec.get("order_id"))
    o = old.clone()
    pct = 0
    new = [sd.make_line_item(store.data, store.data.mut_rng, v, q, pct, o.tax_rate, o.pres_currency)
           for v, q in _variants_for(store, spec)]
    o.line_items = o.line_items + new
    o.updated = t_updated
    o.recompute()
    store._replace(old, o)
    return {"_order": o, "line_item_ids": [str(li.id) for li in new]}


def m_tag(store, spec, t_updated):
    old = store.find_order(spec.get("order_id"))
    o = old.clone()
    tags = o.tags
    add, remove = _tags(spec.get("add")), {t.lower() for t in _tags(spec.get("remove"))}
    if not add and not remove:
        raise MutationError("tag needs add or remove")
    tags = _add_tags(tags, add)
    tags = tuple(t for t in tags if t.lower() not in remove)
    o.tags = tags
    o.updated = t_updated
    store._replace(old, o)
    return {"_order": o}


def m_refund(store, spec, t_updated):
    old = store.find_order(spec.get("order_id"))
    o = old.clone()
    created = _time_arg(spec, "created_at", t_updated)
    by_id = {li.id: li for li in o.line_items}
    parts = []
    amount = spec.get("amount")
    if spec.get("line_items"):
        for item in spec["line_items"]:
            ref = str(item.get("line_item_id", item.get("id", ""))).rsplit("/", 1)[-1]
            li = by_id.get(int(ref)) if ref.isdigit() else None
            if li is None:
                raise MutationError("line item %s not found on order %s" % (ref, o.id), 404)
            qty = item.get("quantity", 1)
            if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
                raise MutationError("quantity must be a positive integer")
            if qty > li.current_quantity:
                raise MutationError("cannot refund %d of line item %s: only %d left" % (qty, li.id, li.current_quantity))
            parts.append((li, qty))
    elif amount is None:
        open_lis = [li for li in o.line_items if li.current_quantity > 0]
        if not open_lis:
            raise MutationError("nothing left to refund on order %s" % o.id)
        parts.append((open_lis[0], 1))
    extra = 0
    if amount is not None:
        try:
            extra = sd.parse_money(amount, o.currency)
        except ValueError as e:
            raise MutationError(str(e))
        if extra <= 0:
            raise MutationError("amount must be positive")
    refundable = o.total - o.refunded
    if extra > refundable:
        raise MutationError("refund of %s exceeds the refundable amount %s" % (
            sd.money_str(extra), sd.money_str(refundable)))
    r = sd.make_refund(store.data, o, created, parts, store.data.mut_rng,
                       shipping=bool(spec.get("shipping")), extra=extra, note=spec.get("note"),
                       restock_type=spec.get("restock_type", "RETURN"))
    o.updated = max(t_updated, created) if not spec.get("updated_at") else t_updated
    store._replace(old, o)
    return {"_order": o, "refund_id": str(r.id)}


def m_cancel(store, spec, t_updated):
    old = store.find_order(spec.get("order_id"))
    if old.cancelled is not None:
        raise MutationError("order %s is already cancelled" % old.id, 409)
    o = old.clone()
    o.cancelled = _time_arg(spec, "cancelled_at", t_updated)
    reason = spec.get("reason", "CUSTOMER")
    if reason not in sd.CANCEL_REASONS + ["STAFF"]:
        raise MutationError("reason must be one of %s" % ", ".join(sd.CANCEL_REASONS + ["STAFF"]))
    o.cancel_reason = reason
    o.closed = o.cancelled
    refund_id = None
    if spec.get("refund"):
        parts = [(li, li.current_quantity) for li in o.line_items if li.current_quantity > 0]
        r = sd.make_refund(store.data, o, o.cancelled, parts, store.data.mut_rng, shipping=True,
                           restock_type="CANCEL")
        refund_id = str(r.id)
    o.updated = t_updated
    store._replace(old, o)
    res = {"_order": o}
    if refund_id:
        res["refund_id"] = refund_id
    return res


def m_touch(store, spec, t_updated):
    old = store.find_order(spec.get("order_id"))
    o = old.clone()
    o.updated = t_updated
    store._replace(old, o)
    return {"_order": o}


MUTATIONS = {"add_order": m_add_order, "upsell": m_upsell, "tag": m_tag, "refund": m_refund,
             "cancel": m_cancel, "touch": m_touch}
