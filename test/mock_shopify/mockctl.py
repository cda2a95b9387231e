#!/usr/bin/env python3
"""Command-line control of the mock Shopify server, for tests and scripts.

Base URL from --url or $MOCK_SHOPIFY_URL (e.g. http://127.0.0.1:5555).
Output is deterministic: JSON with sorted keys and indent 2, `key=value`
lines sorted by key, or bare values (ids, one per line). Errors go to stderr
with a non-zero exit status (1: the server refused, 2: no server/usage).

Run `mockctl.py -h` or see README.md for the commands.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

MUTATION_COMMANDS = ("add-order", "upsell", "tag", "refund", "cancel", "touch")
FAULT_KINDS = ("http_500", "http_502", "http_503", "http_429", "http_401", "throttled", "timeout",
               "malformed_json", "truncated", "connection_reset", "bulk_failed", "bulk_expired",
               "bulk_canceled", "bulk_in_progress")


class CtlError(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def request(base, method, path, body=None, stream_to=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if stream_to is not None:
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    stream_to.write(chunk)
                return None
            raw = resp.read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            msg = json.loads(raw).get("error") or raw.decode()
        except (ValueError, AttributeError):
            msg = raw.decode("utf-8", "replace")
        raise CtlError("mockctl: %s %s: HTTP %d: %s" % (method, path, e.code, msg))
    except (urllib.error.URLError, OSError) as e:
        raise CtlError("mockctl: cannot reach mock server at %s: %s" % (base, getattr(e, "reason", e)), 2)
    return json.loads(raw) if raw else None


def dump(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def kv(obj):
    for k in sorted(obj):
        v = obj[k]
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif v is None:
            v = ""
        elif isinstance(v, float) and v.is_integer():
            v = int(v)
        sys.stdout.write("%s=%s\n" % (k, v))


def store_path(handle, *rest):
    return "/_mock/stores/" + "/".join([handle] + [str(r) for r in rest])


def _coerce(value):
    """Values given as key=value on the command line: ints and booleans stay typed."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(value)
    except ValueError:
        return value

# --------------------------------------------------------- mutation specs


def mutation_spec(cmd, a):
    """The JSON mutation for a mutation command's parsed arguments."""
    spec = {}
    if getattr(a, "json", None):
        try:
            spec = json.loads(a.json)
        except ValueError:
            raise CtlError("mockctl: --json is not valid JSON", 2)
    if getattr(a, "updated_at", None):
        spec["updated_at"] = a.updated_at
    if cmd == "add-order":
        spec["op"] = "add_order"
        for key in ("source_name", "created_at", "processed_at", "customer_id", "email", "currency", "note",
                    "financial_status"):
            if getattr(a, key, None) is not None:
                spec[key] = getattr(a, key)
        if a.tags is not None:
            spec["tags"] = [t for t in a.tags.split(",") if t]
        if a.items is not None:
            spec["items"] = a.items
        if a.guest:
            spec["guest"] = True
        if a.test:
            spec["test"] = True
        if a.discount_code:
            spec["discount_codes"] = a.discount_code
        return spec
    spec["order_id"] = a.id
    if cmd == "upsell":
        spec["op"] = "upsell"
        if a.items is not None:
            spec["items"] = a.items
    elif cmd == "tag":
        spec["op"] = "tag"
        if not a.add and not a.remove:
            raise CtlError("mockctl: tag needs --add or --remove", 2)
        if a.add:
            spec["add"] = a.add
        if a.remove:
            spec["remove"] = a.remove
    elif cmd == "refund":
        spec["op"] = "refund"
        items = []
        for li in a.line_item or []:
            ref, _, qty = li.partition(":")
            items.append({"line_item_id": ref, "quantity": int(qty) if qty else 1})
        if items:
            spec["line_items"] = items
        if a.amount is not None:
            spec["amount"] = a.amount
        if a.shipping:
            spec["shipping"] = True
        for key in ("note", "created_at", "restock_type"):
            if getattr(a, key, None) is not None:
                spec[key] = getattr(a, key)
    elif cmd == "cancel":
        spec["op"] = "cancel"
        if a.reason:
            spec["reason"] = a.reason
        if a.refund:
            spec["refund"] = True
    elif cmd == "touch":
        spec["op"] = "touch"
    return spec


def add_mutation_parsers(sub):
    def common(p, with_id=True):
        p.add_argument("handle")
        if with_id:
            p.add_argument("id", help="order id, GID or #name")
        p.add_argument("--updated-at", help="updatedAt to set (default: now)")
        p.add_argument("--json", help="extra mutation fields as a JSON object")
        p.add_argument("--print-json", action="store_true", help="print the canonical order")
        return p

    p = common(sub.add_parser("add-order", help="add an order; prints its id"), with_id=False)
    p.add_argument("--source-name")
    p.add_argument("--tags", help="comma separated")
    p.add_argument("--items", type=int, help="number of line items (default 1)")
    p.add_argument("--created-at")
    p.add_argument("--processed-at")
    p.add_argument("--customer-id")
    p.add_argument("--email", help="customer email (existing customer or a new one)")
    p.add_argument("--guest", action="store_true", help="no customer (use with --email for a guest email)")
    p.add_argument("--currency", help="presentment (buyer's) currency")
    p.add_argument("--test", action="store_true")
    p.add_argument("--discount-code", action="append")
    p.add_argument("--note")
    p.add_argument("--financial-status")
    p = common(sub.add_parser("upsell", help="add line items to an order; prints the new line item ids"))
    p.add_argument("--items", type=int, default=1)
    p = common(sub.add_parser("tag", help="add or remove tags"))
    p.add_argument("--add", action="append", help="tag to add (repeatable)")
    p.add_argument("--remove", action="append", help="tag to remove (repeatable)")
    p = common(sub.add_parser("refund", help="refund; prints the refund id"))
    p.add_argument("--line-item", action="append", metavar="ID[:QTY]", help="line item to refund (repeatable)")
    p.add_argument("--amount", help="amount in shop currency, e.g. 12.50")
    p.add_argument("--shipping", action="store_true", help="also refund the remaining shipping")
    p.add_argument("--note")
    p.add_argument("--created-at")
    p.add_argument("--restock-type", choices=("RETURN", "NO_RESTOCK", "CANCEL"))
    p = common(sub.add_parser("cancel", help="cancel an order"))
    p.add_argument("--reason", choices=("CUSTOMER", "FRAUD", "INVENTORY", "DECLINED", "OTHER", "STAFF"))
    p.add_argument("--refund", action="store_true", help="refund everything left")
    common(sub.add_parser("touch", help="set updatedAt only"))


def print_mutation_result(cmd, a, res):
    if getattr(a, "print_json", False):
        dump(res["order"])
    elif cmd == "add-order":
        print(res["order_id"])
    elif cmd == "upsell":
        for i in res.get("line_item_ids", []):
            print(i)
    elif cmd == "refund" or (cmd == "cancel" and res.get("refund_id")):
        print(res["refund_id"])

# -------------------------------------------------------------------- main


def build_parser():
    ap = argparse.ArgumentParser(prog="mockctl.py", description="Control the mock Shopify server.")
    ap.add_argument("--url", default=os.environ.get("MOCK_SHOPIFY_URL"),
                    help="base URL (default $MOCK_SHOPIFY_URL)")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("wait-ready", help="wait until the server answers")
    p.add_argument("--timeout", type=float, default=30.0)
    sub.add_parser("stores", help="list store handles")
    sub.add_parser("reset", help="delete all stores, recreate the --store ones")

    p = sub.add_parser("create-store", help="create a store")
    p.add_argument("handle")
    for flag, typ in (("--orders", int), ("--seed", int), ("--scopes", str), ("--client-id", str),
                      ("--client-secret", str), ("--token-ttl", int), ("--bucket-max", float),
                      ("--restore-rate", float), ("--currency", str), ("--bulk-min-ms", int),
                      ("--bulk-concurrency", int), ("--big-order-every", int), ("--name", str),
                      ("--timezone", str)):
        p.add_argument(flag, type=typ)
    p.add_argument("--not-installed", action="store_true")
    p.add_argument("--replace", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing")

    for name, helptext in (("delete-store", "delete a store"), ("store", "store summary (JSON)"),
                           ("export", "all orders, canonical JSONL, to stdout"),
                           ("faults", "pending faults (JSON)"), ("clear-faults", "drop pending faults"),
                           ("scheduled", "scheduled mutations (JSON)"),
                           ("clear-scheduled", "drop scheduled mutations"),
                           ("reset-counters", "zero the counters"), ("expire-tokens", "expire every token"),
                           ("bulk", "bulk operations (JSON)")):
        sub.add_parser(name, help=helptext).add_argument("handle")

    p = sub.add_parser("settings", help="change live settings: key=value ... (prints them all)")
    p.add_argument("handle")
    p.add_argument("pairs", nargs="*", metavar="key=value")
    p = sub.add_parser("order", help="one order, canonical form (JSON)")
    p.add_argument("handle")
    p.add_argument("id")
    add_mutation_parsers(sub)
    p = sub.add_parser("fault", help="inject a fault")
    p.add_argument("handle")
    p.add_argument("kind", choices=FAULT_KINDS)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--endpoint", choices=("graphql", "token", "bulk_download", "any"))
    p.add_argument("--retry-after", help="Retry-After for http_429 (default 1.0)")
    p.add_argument("--delay", type=float, help="seconds for timeout (default 30)")
    p.add_argument("--body", choices=("html", "json"), help="body style of http_5xx")
    p = sub.add_parser("schedule", help="apply a mutation just before the Nth next orders request")
    p.add_argument("handle")
    p.add_argument("--after", type=int, required=True, metavar="N")
    p.add_argument("mutation", choices=MUTATION_COMMANDS)
    p.add_argument("args", nargs=argparse.REMAINDER, help="the mutation's arguments (without HANDLE)")
    p = sub.add_parser("counters", help="counters as key=value, or one value")
    p.add_argument("handle")
    p.add_argument("key", nargs="?")
    p = sub.add_parser("bucket", help="show or set the leaky bucket")
    p.add_argument("handle")
    p.add_argument("--available", type=float)
    p = sub.add_parser("receiver", help="create (or replace) an event receiver at /_receiver/NAME; prints its URL")
    p.add_argument("name")
    p.add_argument("--secret", help="check Converge-Signature with this secret")
    p.add_argument("--status", type=int, default=200, help="normal answer (200 or 204)")
    p = sub.add_parser("received", help="what a receiver got: one JSON object per request (JSONL)")
    p.add_argument("name")
    p.add_argument("--clear", action="store_true", help="forget them afterwards")
    p = sub.add_parser("receiver-fault", help="queue faults for a receiver's next requests")
    p.add_argument("name")
    p.add_argument("kind", help="http_500 http_503 http_429 http_400 http_408 hang reset")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--retry-after")
    p.add_argument("--delay", type=float, help="hang: seconds")
    p = sub.add_parser("receiver-down", help="a receiver resets every connection (on) or answers again (off)")
    p.add_argument("name")
    p.add_argument("state", choices=("on", "off"))
    p = sub.add_parser("token", help="issue an access token directly; prints it")
    p.add_argument("handle")
    p.add_argument("--scopes")
    return ap


def run(argv):
    ap = build_parser()
    a = ap.parse_args(argv)
    base = a.url
    if not base:
        raise CtlError("mockctl: set MOCK_SHOPIFY_URL or pass --url", 2)
    cmd = a.cmd
    h = getattr(a, "handle", None)

    if cmd == "wait-ready":
        deadline = time.monotonic() + a.timeout
        while True:
            try:
                request(base, "GET", "/_mock/health", timeout=2)
                return 0
            except CtlError as e:
                if time.monotonic() >= deadline:
                    raise CtlError("mockctl: server not ready after %.0fs: %s" % (a.timeout, e), 2)
                time.sleep(0.1)
    if cmd == "stores":
        for s in request(base, "GET", "/_mock/stores")["stores"]:
            print(s)
    elif cmd == "reset":
        request(base, "POST", "/_mock/reset", {})
    elif cmd == "create-store":
        body = {"handle": h, "replace": a.replace}
        for key in ("orders", "seed", "scopes", "client_id", "client_secret", "token_ttl", "bucket_max",
                    "restore_rate", "currency", "bulk_min_ms", "bulk_concurrency", "big_order_every",
                    "name", "timezone"):
            if getattr(a, key) is not None:
                body[key] = getattr(a, key)
        if a.not_installed:
            body["installed"] = False
        res = request(base, "POST", "/_mock/stores", body)
        if not a.quiet:
            kv({k: res[k] for k in ("handle", "orders", "line_items", "refunds", "customers")})
    elif cmd == "delete-store":
        request(base, "DELETE", store_path(h))
    elif cmd == "store":
        dump(request(base, "GET", store_path(h)))
    elif cmd == "settings":
        changes = {}
        for pair in a.pairs:
            k, sep, v = pair.partition("=")
            if not sep:
                raise CtlError("mockctl: expected key=value, got %r" % pair, 2)
            changes[k] = v if k in ("client_id", "client_secret", "scopes", "name", "timezone") else _coerce(v)
        kv(request(base, "PATCH", store_path(h, "settings"), changes)["settings"])
    elif cmd == "order":
        dump(request(base, "GET", store_path(h, "orders", a.id.replace("#", "%23"))))
    elif cmd == "export":
        request(base, "GET", store_path(h, "export"), stream_to=sys.stdout.buffer, timeout=600)
        sys.stdout.buffer.flush()
    elif cmd in MUTATION_COMMANDS:
        res = request(base, "POST", store_path(h, "mutations"), mutation_spec(cmd, a))
        print_mutation_result(cmd, a, res)
    elif cmd == "fault":
        body = {"kind": a.kind, "count": a.count}
        for key in ("endpoint", "retry_after", "delay", "body"):
            if getattr(a, key) is not None:
                body[key] = getattr(a, key)
        request(base, "POST", store_path(h, "faults"), body)
    elif cmd == "faults":
        dump(request(base, "GET", store_path(h, "faults"))["faults"])
    elif cmd == "clear-faults":
        request(base, "DELETE", store_path(h, "faults"))
    elif cmd == "schedule":
        rest = a.args[1:] if a.args[:1] == ["--"] else a.args
        sub_a = ap.parse_args([a.mutation, h] + rest)
        request(base, "POST", store_path(h, "scheduled"),
                {"after": a.after, "mutation": mutation_spec(a.mutation, sub_a)})
    elif cmd == "scheduled":
        dump(request(base, "GET", store_path(h, "scheduled")))
    elif cmd == "clear-scheduled":
        request(base, "DELETE", store_path(h, "scheduled"))
    elif cmd == "counters":
        counters = request(base, "GET", store_path(h, "counters"))
        if a.key:
            if a.key not in counters:
                raise CtlError("mockctl: unknown counter %r (known: %s)" % (a.key, ", ".join(sorted(counters))))
            print(counters[a.key])
        else:
            kv(counters)
    elif cmd == "reset-counters":
        request(base, "DELETE", store_path(h, "counters"))
    elif cmd == "bucket":
        if a.available is not None:
            kv(request(base, "POST", store_path(h, "bucket"), {"available": a.available}))
        else:
            kv(request(base, "GET", store_path(h, "bucket")))
    elif cmd == "receiver":
        body = {"name": a.name, "status": a.status}
        if a.secret is not None:
            body["secret"] = a.secret
        request(base, "POST", "/_mock/receivers", body)
        print("%s/_receiver/%s" % (base.rstrip("/"), a.name))
    elif cmd == "received":
        reqs = request(base, "GET", "/_mock/receivers/%s/requests" % a.name)["requests"]
        for r in reqs:
            sys.stdout.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
        if a.clear:
            request(base, "DELETE", "/_mock/receivers/%s/requests" % a.name)
    elif cmd == "receiver-fault":
        body = {"kind": a.kind, "count": a.count}
        if a.retry_after is not None:
            body["retry_after"] = a.retry_after
        if a.delay is not None:
            body["delay"] = a.delay
        request(base, "POST", "/_mock/receivers/%s/faults" % a.name, body)
    elif cmd == "receiver-down":
        request(base, "PATCH", "/_mock/receivers/%s" % a.name, {"down": a.state == "on"})
    elif cmd == "token":
        body = {"scopes": a.scopes} if a.scopes else {}
        print(request(base, "POST", store_path(h, "tokens"), body)["access_token"])
    elif cmd == "expire-tokens":
        request(base, "DELETE", store_path(h, "tokens"))
    elif cmd == "bulk":
        dump(request(base, "GET", store_path(h, "bulk"))["bulk_operations"])
    return 0


def main(argv=None):
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except CtlError as e:
        sys.stderr.write(str(e) + "\n")
        return e.code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
