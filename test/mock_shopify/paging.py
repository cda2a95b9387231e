"""Cursor pagination: opaque cursors, sorted order indexes, connection pages.

A cursor encodes (sort value, id) of an item, like Shopify's
base64('{"last_id":..,"last_value":..}'). The next page starts strictly after
that key, so an order that is updated after it was fetched moves to a later
position in an UPDATED_AT sort (exactly like real Shopify).
"""

import base64
import binascii
import calendar
import json
import math
import time
from bisect import bisect_left, bisect_right

from gql_parser import GraphQLError

OMIT = object()     # a field value left out of a bulk JSONL object

SORT_ATTRS = {"ID": "id", "ORDER_NUMBER": "id", "CREATED_AT": "created",
              "UPDATED_AT": "updated", "PROCESSED_AT": "processed"}
TIME_ATTRS = ("created", "updated", "processed")


# ----------------------------------------------------------------- cursors


def cursor_bounds(keys, lo, hi, after, before, reverse):
    """Narrow [lo, hi) of sorted keys to what lies strictly after `after` and before `before`."""
    if after is not None:
        if reverse:
            hi = min(hi, bisect_left(keys, after))
        else:
            lo = max(lo, bisect_right(keys, after))
    if before is not None:
        if reverse:
            lo = max(lo, bisect_right(keys, before))
        else:
            hi = min(hi, bisect_left(keys, before))
    return lo, hi

def encode_cursor(value, id_, is_time):
    if is_time:
        value = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime(value))
    else:
        value = str(value)
    raw = '{"last_id":%d,"last_value":"%s"}' % (id_, value)
    return base64.b64encode(raw.encode()).decode()


def decode_cursor(cursor, is_time):
    """(value, id) from a cursor; GraphQLError if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        obj = json.loads(base64.b64decode(padded, validate=True).decode())
        id_ = obj["last_id"]
        value = obj["last_value"]
        if not isinstance(id_, int) or isinstance(id_, bool):
            raise ValueError
        if is_time:
            t = time.strptime(str(value).split(".")[0], "%Y-%m-%d %H:%M:%S")
            value = calendar.timegm(t)
        else:
            value = int(value)
        return value, id_
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError, AttributeError):
        raise GraphQLError("Invalid cursor for current pagination sort.")


# ------------------------------------------------------------ order index

class OrderIndex:
    """Orders sorted by each sort key, as parallel lists of keys and orders.

    Keys are (value, id) tuples so ties are broken by id. Mutations replace
    an order object (copy-on-write) with replace(); add() inserts."""

    def __init__(self, orders):
        self.by_id = {o.id: o for o in orders}
        self.idx = {}
        ordered = sorted(orders, key=lambda o: o.id)
        self.idx["id"] = ([(o.id, o.id) for o in ordered], ordered)
        for attr in TIME_ATTRS:
            objs = sorted(ordered, key=lambda o, a=attr: (getattr(o, a), o.id))
            self.idx[attr] = ([(getattr(o, attr), o.id) for o in objs], objs)

    def __len__(self):
        return len(self.by_id)

    def all(self):
        """Snapshot of all orders in id order."""
        return list(self.idx["id"][1])

    def get(self, oid):
        return self.by_id.get(oid)

    def add(self, o):
        self.by_id[o.id] = o
        for attr, (keys, objs) in self.idx.items():
            k = (getattr(o, attr), o.id)
            j = bisect_left(keys, k)
            keys.insert(j, k)
            objs.insert(j, o)

    def replace(self, old, new):
        self.by_id[new.id] = new
        for attr, (keys, objs) in self.idx.items():
            k_old = (getattr(old, attr), old.id)
            i = bisect_left(keys, k_old)
            if i >= len(keys) or keys[i] != k_old:   # pragma: no cover
                raise RuntimeError("order index out of sync")
            k_new = (getattr(new, attr), new.id)
            if k_new == k_old:
                objs[i] = new
            else:
                del keys[i]
                del objs[i]
                j = bisect_left(keys, k_new)
                keys.insert(j, k_new)
                objs.insert(j, new)

    def page(self, attr, reverse, first, last, after, before, filt, min_created):
        """One page: (orders, has_next, has_previous)."""
        keys, objs = self.idx[attr]
        flo, fhi = 0, len(keys)
        if filt.empty:
            return [], False, False
        r = filt.ranges.get(attr)
        if r:
            flo = bisect_left(keys, (r[0], -math.inf))
            fhi = bisect_right(keys, (r[1], math.inf))
        lo, hi = cursor_bounds(keys, flo, fhi, after, before, reverse)
        # Keep both boundaries inside the filtered range but do not collapse
        # them onto each other: when the window is empty, the after-side
        # boundary decides hasPreviousPage and the before-side one hasNextPage.
        lo, hi = min(lo, fhi), max(hi, flo)
        pred = filt.predicate(min_created, skip_attr=attr)
        return _page_positions(objs, pred, flo, fhi, lo, hi, reverse, first, last)


def _fwd(a, b, reverse):
    """Positions of ascending interval [a, b) in the sequence's order."""
    return range(b - 1, a - 1, -1) if reverse else range(a, b)


def _bwd(a, b, reverse):
    return range(a, b) if reverse else range(b - 1, a - 1, -1)


def _exists(objs, pred, positions):
    if pred is None:
        return len(positions) > 0
    for i in positions:
        if pred(objs[i]):
            return True
    return False


def _page_positions(objs, pred, flo, fhi, lo, hi, reverse, first, last):
    res = []
    if last is None or first is not None:
        limit = first
        has_next = False
        for i in _fwd(lo, hi, reverse):
            if pred is None or pred(objs[i]):
                if len(res) == limit:
                    has_next = True
                    break
                res.append(i)
        if last is not None and len(res) > last:   # first + last: take the tail
            res = res[-last:]
        # anything matching before the page (in sequence order)?
        if res:
            x = res[0]
            region = (x + 1, fhi) if reverse else (flo, x)
        else:
            region = (hi, fhi) if reverse else (flo, lo)
        has_prev = _exists(objs, pred, _bwd(region[0], region[1], reverse))
    else:
        has_prev = False
        for i in _bwd(lo, hi, reverse):
            if pred is None or pred(objs[i]):
                if len(res) == last:
                    has_prev = True
                    break
                res.append(i)
        res.reverse()
        if res:
            x = res[-1]
            region = (flo, x) if reverse else (x + 1, fhi)
        else:
            region = (flo, lo) if reverse else (hi, fhi)
        has_next = _exists(objs, pred, _fwd(region[0], region[1], reverse))
    return [objs[i] for i in res], has_next, has_prev


def page_list(items, args):
    """Page a small list already sorted by id (nested connections)."""
    lo, hi = 0, len(items)
    reverse = args.get("reverse")
    after, before = args.get("after"), args.get("before")
    if after is not None or before is not None:
        keys = [(it.id, it.id) for it in items]
        lo, hi = cursor_bounds(keys, lo, hi, after, before, reverse)
    return _page_positions(items, None, 0, len(items), lo, hi, reverse, args.get("first"), args.get("last"))


# ------------------------------------------------------ connection output

def build_connection(p, items, has_next, has_prev, cursor_fn, ctx):
    """Render a connection selection (edges / nodes / pageInfo) for a page.

    Actual cost: 2 for the connection + (1 + fields) per node; when both
    `edges { node }` and `nodes` are selected the nodes are paid once."""
    ctx.actual += 2
    out = {}
    spent = None
    sel = ctx.sel
    for key, kind, payload in p.conn:
        if kind == "edges":
            before = ctx.actual
            edges = []
            for it in items:
                e = {}
                for k2, kind2, pl2 in payload:
                    if kind2 == "node":
                        ctx.actual += 1
                        e[k2] = sel(pl2, it, ctx)
                    elif kind2 == "cursor":
                        e[k2] = cursor_fn(it)
                    else:
                        e[k2] = pl2
                edges.append(e)
            out[key] = edges
        elif kind == "nodes":
            before = ctx.actual
            nodes = []
            for it in items:
                ctx.actual += 1
                nodes.append(sel(payload, it, ctx))
            out[key] = nodes
        elif kind == "pageInfo":
            info = {}
            for k2, name in payload:
                if name == "hasNextPage":
                    info[k2] = has_next
                elif name == "hasPreviousPage":
                    info[k2] = has_prev
                elif name == "startCursor":
                    info[k2] = cursor_fn(items[0]) if items else None
                elif name == "endCursor":
                    info[k2] = cursor_fn(items[-1]) if items else None
                else:
                    info[k2] = "PageInfo"
            out[key] = info
            continue
        else:
            out[key] = payload
            continue
        delta = ctx.actual - before
        if spent is None:
            spent = delta
        else:
            extra = max(0, delta - spent)
            ctx.actual = before + extra
            spent += extra
    return out
