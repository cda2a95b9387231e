"""The control API for tests, under /_mock/ (JSON in, JSON out).

  GET    /_mock/health
  GET    /_mock/stores                          list of handles
  POST   /_mock/stores                          {"handle": h, <settings>..., "replace": false}
  POST   /_mock/reset                           delete all stores, recreate the --store ones
  GET    /_mock/stores/{h}                      summary
  DELETE /_mock/stores/{h}
  PATCH  /_mock/stores/{h}/settings             change credentials, scopes, installed, bucket...
  GET    /_mock/stores/{h}/orders/{id}          one order, canonical form (id, GID or #name)
  GET    /_mock/stores/{h}/export               all orders, canonical JSONL, id order
  POST   /_mock/stores/{h}/mutations            {"op": add_order|upsell|tag|refund|cancel|touch, ...}
  POST   /_mock/stores/{h}/orders               add_order (body = spec)
  POST   /_mock/stores/{h}/orders/{id}/{op}     upsell|tag|refund|cancel|touch (body = spec)
  GET|POST|DELETE /_mock/stores/{h}/faults      list | add {"kind",...} | clear
  GET|POST|DELETE /_mock/stores/{h}/scheduled   list | add {"after": N, "mutation": {...}} | clear
  GET|DELETE /_mock/stores/{h}/counters         read | reset (POST /counters/reset too)
  GET|POST /_mock/stores/{h}/bucket             read | {"available": N}
  POST   /_mock/stores/{h}/tokens               issue a token directly {"scopes": "..."}
  DELETE /_mock/stores/{h}/tokens               expire every token
  GET    /_mock/stores/{h}/bulk                 bulk operations and their states
"""

import json
import os
import tempfile

from api import Response, json_response
from receiver import Receiver
from store import MutationError

MUTATION_OPS = ("upsell", "tag", "refund", "cancel", "touch")


class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _body(body):
    if not body or not body.strip():
        return {}
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ControlError(400, "body is not valid JSON")
    if not isinstance(obj, dict):
        raise ControlError(400, "body must be a JSON object")
    return obj


def handle(app, method, parts, query, body):
    """Route a control request; parts are the path segments after /_mock/."""
    try:
        return _route(app, method, parts, query, body)
    except ControlError as e:
        return json_response(e.status, {"error": e.message})
    except MutationError as e:
        return json_response(e.status, {"error": str(e)})
    except ValueError as e:
        return json_response(400, {"error": str(e)})


def _store(app, handle):
    store = app.get_store(handle)
    if store is None:
        raise ControlError(404, "unknown store %r" % handle)
    return store


def _route(app, method, parts, query, body):
    if parts == ["health"]:
        return json_response(200, {"ok": True, "stores": sorted(app.stores)})
    if parts == ["reset"] and method == "POST":
        app.reset()
        return json_response(200, {"ok": True, "stores": sorted(app.stores)})
    if parts == ["stores"]:
        if method == "GET":
            return json_response(200, {"stores": sorted(app.stores)})
        if method == "POST":
            spec = _body(body)
            handle = spec.pop("handle", None)
            replace = bool(spec.pop("replace", False))
            if not handle:
                raise ControlError(400, "handle is required")
            store = app.create_store(handle, spec, replace=replace)
            return json_response(201, store.summary())
    if parts and parts[0] == "receivers":
        return _receivers(app, method, parts[1:], query, body)
    if len(parts) < 2 or parts[0] != "stores":
        raise ControlError(404, "no such control endpoint")
    store = _store(app, parts[1])
    rest = parts[2:]
    if not rest:
        if method == "GET":
            return json_response(200, store.summary())
        if method == "DELETE":
            app.delete_store(store.handle)
            return json_response(200, {"deleted": store.handle})
    elif rest == ["settings"] and method in ("PATCH", "POST"):
        return json_response(200, {"settings": store.update_settings(_body(body))})
    elif rest == ["export"] and method == "GET":
        return _export(app, store)
    elif rest == ["mutations"] and method == "POST":
        return json_response(200, store.mutate(_body(body)))
    elif rest == ["orders"] and method == "POST":
        spec = _body(body)
        spec["op"] = "add_order"
        return json_response(201, store.mutate(spec))
    elif len(rest) == 2 and rest[0] == "orders" and method == "GET":
        with store.lock:
            order = store.find_order(rest[1])
            return json_response(200, store.canonical(order))
    elif len(rest) == 3 and rest[0] == "orders" and rest[2] in MUTATION_OPS and method == "POST":
        spec = _body(body)
        spec["op"] = rest[2]
        spec["order_id"] = rest[1]
        return json_response(200, store.mutate(spec))
    elif rest == ["faults"]:
        if method == "GET":
            return json_response(200, {"faults": store.faults.list()})
        if method == "POST":
            f = store.faults.add(_body(body))
            return json_response(201, f.to_dict())
        if method == "DELETE":
            return json_response(200, {"cleared": store.faults.clear()})
    elif rest == ["scheduled"]:
        if method == "GET":
            s = store.summary()
            return json_response(200, {"scheduled": s["scheduled"], "applied": s["scheduled_applied"]})
        if method == "POST":
            spec = _body(body)
            seq = store.schedule(spec.get("after"), spec.get("mutation"))
            return json_response(201, {"id": seq})
        if method == "DELETE":
            return json_response(200, {"cleared": store.clear_scheduled()})
    elif rest == ["counters"]:
        if method == "GET":
            with store.lock:
                return json_response(200, dict(store.counters))
        if method == "DELETE":
            store.reset_counters()
            return json_response(200, {"ok": True})
    elif rest == ["counters", "reset"] and method == "POST":
        store.reset_counters()
        return json_response(200, {"ok": True})
    elif rest == ["bucket"]:
        if method == "POST":
            spec = _body(body)
            if "available" in spec:
                try:
                    store.bucket.set_available(float(spec["available"]))
                except (TypeError, ValueError):
                    raise ControlError(400, "available must be a number")
        if method in ("GET", "POST"):
            return json_response(200, store.bucket.status())
    elif rest == ["tokens"]:
        if method == "POST":
            spec = _body(body)
            token = store.issue_token(spec.get("scopes"))
            return json_response(201, {"access_token": token, "scope": ",".join(store.token_scopes(token))})
        if method == "DELETE":
            return json_response(200, {"expired": store.expire_tokens()})
    elif rest == ["bulk"] and method == "GET":
        return json_response(200, {"bulk_operations": store.bulk.list()})
    raise ControlError(404 if method == "GET" else 405, "no such control endpoint: %s %s" % (
        method, "/".join(parts)))


def _export(app, store):
    """Canonical JSONL of every order (id order), streamed from a temp file."""
    with store.lock:
        orders = store.index.all()
    fd, path = tempfile.mkstemp(prefix="export-%s-" % store.handle, suffix=".jsonl", dir=app.workdir)
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
    with os.fdopen(fd, "wb") as f:
        buf = []
        for o in orders:
            buf.append(encode(store.canonical(o)))
            if len(buf) >= 1000:
                f.write(("\n".join(buf) + "\n").encode())
                buf = []
        if buf:
            f.write(("\n".join(buf) + "\n").encode())
    size = os.path.getsize(path)
    return Response(200, b"", "application/jsonl; charset=utf-8", file=(path, 0, size, size), unlink=True)


def _receivers(app, method, parts, query, body):
    """/_mock/receivers[/{name}[/requests|/faults]]"""
    if not parts:
        if method == "GET":
            return json_response(200, {"receivers": [r.summary() for r in app.receivers.values()]})
        if method == "POST":
            spec = _body(body)
            name = spec.get("name")
            if not name:
                raise ControlError(400, "name is required")
            rcv = Receiver(name, spec.get("secret"), int(spec.get("status", 200)))
            with app.lock:
                app.receivers[name] = rcv
            return json_response(201, rcv.summary())
        raise ControlError(405, "GET or POST")
    rcv = app.receivers.get(parts[0])
    if rcv is None:
        raise ControlError(404, "unknown receiver %r" % parts[0])
    rest = parts[1:]
    if not rest:
        if method == "GET":
            return json_response(200, rcv.summary())
        if method in ("PATCH", "POST"):
            spec = _body(body)
            if "down" in spec:
                rcv.down = bool(spec["down"])
            if "status" in spec:
                rcv.status = int(spec["status"])
            return json_response(200, rcv.summary())
        if method == "DELETE":
            with app.lock:
                app.receivers.pop(rcv.name, None)
            return json_response(200, {"deleted": rcv.name})
    elif rest == ["requests"]:
        if method == "GET":
            return json_response(200, {"requests": rcv.take_requests()})
        if method == "DELETE":
            rcv.take_requests(clear=True)
            return json_response(200, {"cleared": True})
    elif rest == ["faults"] and method == "POST":
        rcv.add_fault(_body(body))
        return json_response(200, rcv.summary())
    elif rest == ["faults"] and method == "DELETE":
        with rcv.lock:
            rcv.faults.clear()
        return json_response(200, rcv.summary())
    raise ControlError(404, "no such control endpoint")
