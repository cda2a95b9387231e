"""Bulk query operations: validation, background JSONL generation, status.

The JSONL file is written by a background thread from a snapshot of the
store's orders (orders are copy-on-write, so later mutations do not leak into
a running or finished export). It never holds the store lock while writing.

JSONL format, as Shopify writes it:
  * one JSON object per line, only the selected fields, connection wrappers
    (edges / node / nodes) removed;
  * the root object (an order) first, then each node of its nested
    connections on its own line with "__parentId" (the parent's GID) last;
    lists of objects (refunds) stay inline in the parent, without their
    connection fields, whose nodes become lines with the refund as parent;
  * all lines of orders with an odd id have their slashes escaped
    ("gid:\\/\\/shopify\\/Order\\/1"), which JSON allows and Shopify does.
"""

import hashlib
import hmac
import json
import os
import threading
import time
import zlib

from gql_exec import ExecContext, prepare
from gql_parser import GraphQLError
from gql_schema import CONNECTION
from shopify_data import iso

SIGNING_KEY = os.urandom(16)
RUNNING_STATES = ("CREATED", "RUNNING", "CANCELING")
CANCEL_DELAY = 0.1      # seconds a canceled operation stays CANCELING
FLUSH_EVERY = 500       # root objects per write


def sign(path):
    return hmac.new(SIGNING_KEY, path.encode(), hashlib.sha256).hexdigest()[:32]


class BulkUserError(Exception):
    def __init__(self, message, code="INVALID", field=("query",)):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = list(field) if field else None


class BulkOp:
    def __init__(self, n, query, fault, min_ms, path):
        self.n = n
        self.gid = "gid://shopify/BulkOperation/%d" % n
        self.query = query
        self.fault = fault                  # None or a bulk_* fault kind
        self.created_wall = time.time()
        self.created_mono = time.monotonic()
        self.min_done = self.created_mono + min_ms / 1000.0
        self.min_ms = min_ms
        self.path = path
        self.done = threading.Event()
        self.end_wall = None
        self.cancel_requested = None        # monotonic time of bulkOperationCancel
        self.object_count = 0
        self.root_count = 0
        self.file_size = 0
        self.internal_error = None

    def status(self, mono=None):
        mono = time.monotonic() if mono is None else mono
        if self.cancel_requested is not None:
            if self.done.is_set() and mono >= self.cancel_requested + CANCEL_DELAY:
                return "CANCELED"
            return "CANCELING"
        if not self.done.is_set() or mono < self.min_done:
            return "RUNNING"
        if self.internal_error or self.fault == "bulk_failed":
            return "FAILED"
        if self.fault == "bulk_expired":
            return "EXPIRED"
        if self.fault == "bulk_canceled":
            return "CANCELED"
        return "COMPLETED"


def check_bulk_rules(prepared):
    """Shopify's bulk query restrictions (loosely): one top-level connection,
    at most 5 connections, nested at most 2 levels."""
    if prepared.is_mutation:
        raise BulkUserError("Invalid bulk query: bulkOperationRunQuery only accepts queries.")
    plans = prepared.plans
    if len(plans) != 1:
        raise BulkUserError("Invalid bulk query: bulk queries must select exactly one top-level field.")
    if plans[0].kind != CONNECTION:
        raise BulkUserError("Invalid bulk query: the top-level field of a bulk query must be a connection.")

    def walk(ps, depth):
        count, deepest = 0, depth
        for p in ps:
            if p.kind == CONNECTION:
                c, d = walk(p.node_children, depth + 1)
                count, deepest = count + 1 + c, max(deepest, d)
            elif isinstance(p.children, dict):
                for sub in p.children.values():
                    c, d = walk(sub, depth)
                    count, deepest = count + c, max(deepest, d)
            elif p.children:
                c, d = walk(p.children, depth)
                count, deepest = count + c, max(deepest, d)
        return count, deepest

    count, depth = walk(plans, 0)
    if count > 5:
        raise BulkUserError("Invalid bulk query: bulk queries cannot contain more than 5 connections.")
    if depth > 2:
        raise BulkUserError("Invalid bulk query: bulk queries cannot contain connections with a "
                            "nesting depth greater than 2.")


class BulkManager:
    """The bulk operations of one store."""

    def __init__(self, store, workdir):
        self.store = store
        self.workdir = workdir
        self.ops = {}
        self.order = []
        # Operation numbers are deterministic per store and differ between stores.
        self.base_n = (zlib.crc32(store.handle.encode()) % 900000 + 100000) * 1000
        self.lock = threading.Lock()

    # -- urls
    def file_name(self, op):
        return "%d.jsonl" % op.n

    def url(self, op, base_url):
        rel = "%s/%s" % (self.store.handle, self.file_name(op))
        return "%s/_bulk/%s?sig=%s" % (base_url, rel, sign(rel))

    def file_for(self, name, sig):
        """(path, size) of a finished operation's file if the signature is valid."""
        rel = "%s/%s" % (self.store.handle, name)
        if not sig or not hmac.compare_digest(sign(rel), sig):
            return None
        for op in self.ops.values():
            if self.file_name(op) == name and op.done.is_set() and os.path.exists(op.path):
                return op.path, os.path.getsize(op.path)
        return None

    # -- GraphQL-facing operations (called under the store lock)
    def _running(self, mono):
        return [op for op in self.order if op.status(mono) in RUNNING_STATES]

    def _concurrency(self, version):
        configured = self.store.settings.get("bulk_concurrency")
        if configured:
            return configured
        return 5 if (version or "") >= "2026-01" else 1

    def _in_progress_error(self, gid):
        return {"bulkOperation": None, "userErrors": [{
            "field": None,
            "message": "A bulk query operation for this app and shop is already in progress: %s." % gid,
            "code": "OPERATION_IN_PROGRESS"}]}

    def start(self, query, ctx, group=True):
        store = self.store
        mono = time.monotonic()
        fault = store.faults.take_bulk()
        if fault:
            store.count("faults_injected")
        fault_kind = fault.kind if fault else None
        with self.lock:
            if fault_kind == "bulk_in_progress":
                running = self._running(mono)
                gid = running[0].gid if running else "gid://shopify/BulkOperation/%d" % (self.base_n + 999)
                return self._in_progress_error(gid)
            running = self._running(mono)
            if len(running) >= self._concurrency(ctx.version):
                return self._in_progress_error(running[0].gid)
            try:
                prepared = prepare(query, version=ctx.version, mode="bulk")
                check_bulk_rules(prepared)
            except GraphQLError as e:
                return {"bulkOperation": None, "userErrors": [
                    {"field": ["query"], "message": "Invalid bulk query: " + e.message, "code": "INVALID"}]}
            except BulkUserError as e:
                return {"bulkOperation": None, "userErrors": [
                    {"field": e.field, "message": e.message, "code": e.code}]}
            n = self.base_n + len(self.order) + 1
            op = BulkOp(n, query, fault_kind, store.settings["bulk_min_ms"],
                        os.path.join(self.workdir, "%s-%d.jsonl" % (store.handle, n)))
            op.group = group
            self.ops[n] = op
            self.order.append(op)
        root = prepared.plans[0]
        keys, objs = store.index.idx[root.args["sort_attr"]]
        snapshot = list(objs)          # consistent thanks to copy-on-write orders
        t = threading.Thread(target=self._run, name="bulk-%d" % n, daemon=True,
                             args=(op, root, snapshot, ctx.min_created, ctx.version))
        t.start()
        return {"bulkOperation": self._snapshot(op, ctx.base_url, status="CREATED"), "userErrors": []}

    def snapshot(self, n, ctx):
        op = self.ops.get(n)
        return self._snapshot(op, ctx.base_url) if op else None

    def current(self, type_, ctx):
        if type_ != "QUERY" or not self.order:
            return None
        return self._snapshot(self.order[-1], ctx.base_url)

    def cancel(self, n, ctx):
        op = self.ops.get(n) if n is not None else None
        if op is None:
            return {"bulkOperation": None, "userErrors": [
                {"field": ["id"], "message": "Bulk operation does not exist"}]}
        st = op.status()
        if st not in ("CREATED", "RUNNING"):
            return {"bulkOperation": self._snapshot(op, ctx.base_url), "userErrors": [
                {"field": None, "message": "A bulk operation cannot be canceled when it is %s" % st.lower()}]}
        op.cancel_requested = time.monotonic()
        return {"bulkOperation": self._snapshot(op, ctx.base_url), "userErrors": []}

    def _snapshot(self, op, base_url, status=None):
        st = status or op.status()
        completed = st == "COMPLETED"
        has_data = op.object_count > 0
        completed_at = None
        if completed:
            completed_at = iso(int(max(op.end_wall, op.created_wall + op.min_ms / 1000.0)))
        return {
            "id": op.gid,
            "status": st,
            "errorCode": "INTERNAL_SERVER_ERROR" if st == "FAILED" else None,
            "createdAt": iso(int(op.created_wall)),
            "completedAt": completed_at,
            "objectCount": str(op.object_count if status is None else 0),
            "rootObjectCount": str(op.root_count if status is None else 0),
            "fileSize": str(op.file_size) if completed and has_data else None,
            "url": self.url(op, base_url) if completed and has_data else None,
            "partialDataUrl": self.url(op, base_url) if st == "FAILED" and has_data else None,
            "query": op.query,
            "type": "QUERY",
        }

    def list(self):
        return [{"id": op.gid, "status": op.status(), "objectCount": op.object_count,
                 "rootObjectCount": op.root_count} for op in self.order]

    def cleanup(self):
        for op in self.order:
            op.cancel_requested = op.cancel_requested or time.monotonic()
            try:
                os.unlink(op.path)
            except OSError:
                pass

    # -- the background writer
    def _run(self, op, root, orders, min_created, version):
        try:
            self._write(op, root, orders, min_created, version)
        except Exception as e:   # a bug in the mock shows up as a FAILED operation
            op.internal_error = repr(e)
        finally:
            op.end_wall = time.time()
            op.done.set()

    def _write(self, op, root, orders, min_created, version):
        ctx = ExecContext(self.store, mode="bulk", min_created=min_created, version=version)
        sel = ctx.sel
        children = root.node_children
        pred = root.args["filter"].predicate(min_created)
        if root.args.get("reverse"):
            orders.reverse()
        # bulk_failed: the operation dies half way, leaving a partial file
        limit = len(orders) // 2 if op.fault == "bulk_failed" else len(orders)
        encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
        count = roots = 0
        buf = []
        ungrouped = []      # without groupObjects: every child after all the orders
        with open(op.path, "wb") as f:
            for idx in range(limit):
                o = orders[idx]
                if pred is not None and not pred(o):
                    continue
                if op.cancel_requested is not None:
                    break
                ctx.pending = []
                lines = [encode(sel(children, o, ctx))]
                for parent_gid, cp, items in ctx.pending:   # grows while we iterate (deeper levels)
                    node_children = cp.node_children
                    for it in items:
                        d = sel(node_children, it, ctx)
                        d["__parentId"] = parent_gid
                        lines.append(encode(d))
                if not getattr(op, "group", True):
                    count += len(lines) - 1
                    ungrouped.extend(lines[1:])
                    lines = lines[:1]
                text = "\n".join(lines) + "\n"
                if o.id & 1:
                    text = text.replace("/", "\\/")
                buf.append(text)
                count += len(lines)
                roots += 1
                if len(buf) >= FLUSH_EVERY:
                    f.write("".join(buf).encode())
                    buf = []
                    op.object_count, op.root_count = count, roots
            if buf:
                f.write("".join(buf).encode())
            if ungrouped:
                f.write(("\n".join(reversed(ungrouped)) + "\n").encode())
        op.object_count, op.root_count = count, roots
        op.file_size = os.path.getsize(op.path)
