"""The Shopify-facing endpoints: token grant, GraphQL, bulk file download.

Each handler returns a Response; server.py turns it into bytes on the wire
(including the misbehaving ones: truncated bodies, reset connections).
"""

import json
import time
import urllib.parse

from gql_exec import ExecContext, MAX_QUERY_COST, execute, parse_cached, prepare
from gql_parser import Field, GraphQLError

SUPPORTED_VERSIONS = ("2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
INVALID_TOKEN_BODY = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
NOT_FOUND_BODY = {"errors": "Not Found"}
THROTTLED_ERROR = {"message": "Throttled",
                   "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}
INVALID_CLIENT = {"error": "invalid_client",
                  "error_description": "Client authentication failed due to unknown client, no client "
                                       "authentication included, or unsupported authentication method."}


class Response:
    __slots__ = ("status", "body", "content_type", "headers", "action", "file", "unlink")

    def __init__(self, status=200, body=b"", content_type="application/json; charset=utf-8",
                 headers=None, action=None, file=None, unlink=False):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []
        self.action = action      # None | "reset" | "truncate"
        self.file = file          # (path, offset, length, total) for file downloads
        self.unlink = unlink      # delete the file once sent (exports)


def json_response(status, obj, headers=None):
    return Response(status, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), headers=headers)


def api_version(requested):
    return requested if requested in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]

# ------------------------------------------------------------------ faults


def fault_response(store, fault, headers, cost=0):
    """The response for an injected HTTP-level fault (timeout is handled by the caller)."""
    kind = fault.kind
    body_style = fault.params.get("body")
    if kind in ("http_500", "http_502", "http_503"):
        code = int(kind[5:])
        text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}[code]
        html = body_style == "html" or (body_style is None and code != 500)
        if html:
            page = ("<!DOCTYPE html><html><head><title>%d %s</title></head><body><h1>%s</h1>"
                    "<p>There was a problem loading this website. Please try again.</p></body></html>"
                    % (code, text, text))
            return Response(code, page.encode(), "text/html; charset=utf-8")
        return json_response(code, {"errors": text})
    if kind == "http_429":
        return json_response(429, {"errors": "Exceeded 2 calls per second for api client. Reduce request rates "
                                             "to resume uninterrupted service."},
                             headers=[("Retry-After", fault.params.get("retry_after", "1.0"))])
    if kind == "http_401":
        token = headers.get("X-Shopify-Access-Token")
        if token:
            store.invalidate_token(token)   # the client must fetch a new token
        return json_response(401, INVALID_TOKEN_BODY)
    if kind == "throttled":
        store.count("throttled")
        return json_response(200, {"errors": [THROTTLED_ERROR], "extensions": {"cost": {
            "requestedQueryCost": cost, "actualQueryCost": None, "throttleStatus": store.bucket.status()}}})
    if kind == "malformed_json":
        return Response(200, b'{"data":{"orders":{"edges":[{"node":{"id":"gid://shopify/Order/1",'
                             b'"name":"#1001"}},{"node":{"id":\n<!-- upstream closed -->')
    if kind == "truncated":
        filler = json.dumps({"data": {"orders": {"edges": [
            {"node": {"id": "gid://shopify/Order/%d" % i, "name": "#%d" % (1000 + i)}} for i in range(1, 60)]}}})
        return Response(200, filler.encode(), action="truncate")
    if kind == "connection_reset":
        return Response(0, action="reset")
    raise AssertionError(kind)   # pragma: no cover


def take_fault(store, endpoint, shutdown_event):
    """The next fault for this request, after sleeping for a timeout fault."""
    fault = store.faults.take(endpoint)
    if fault is None:
        return None
    store.count("faults_injected")
    if fault.kind == "timeout":
        # Sleep without holding any lock, then answer normally (too late).
        shutdown_event.wait(fault.params.get("delay", 30.0))
        return None
    return fault

# ------------------------------------------------------------------ token


def parse_body_params(headers, body):
    ctype = (headers.get("Content-Type") or "").lower()
    text = body.decode("utf-8", "replace")
    if "json" in ctype or text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
            return obj if isinstance(obj, dict) else {}
        except ValueError:
            return {}
    return {k: v[-1] for k, v in urllib.parse.parse_qs(text).items()}


def handle_token(store, headers, body, query_string, shutdown_event):
    store.count("token")
    fault = take_fault(store, "token", shutdown_event)
    if fault:
        return fault_response(store, fault, headers)
    params = parse_body_params(headers, body)
    if not params and query_string:
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query_string).items()}
    s = store.settings
    if params.get("grant_type") != "client_credentials":
        return json_response(400, {"error": "unsupported_grant_type",
                                   "error_description": "The authorization grant type is not supported by the "
                                                        "authorization server."})
    if params.get("client_id") != s["client_id"] or params.get("client_secret") != s["client_secret"]:
        return json_response(400, INVALID_CLIENT)
    if not s["installed"]:
        return json_response(400, {"error": "invalid_request",
                                   "error_description": "This app is not installed on this shop"})
    token = store.issue_token()
    return json_response(200, {"access_token": token, "scope": s["scopes"], "expires_in": s["token_ttl"]})

# ---------------------------------------------------------------- graphql


def classify(query):
    """Counter bucket of a request, from its root fields."""
    try:
        op = parse_cached(query).operations[0]
    except (GraphQLError, IndexError, TypeError):
        return "graphql_other"
    names = {f.name for f in op.selections if isinstance(f, Field)}
    if "bulkOperationRunQuery" in names:
        return "graphql_bulk_start"
    if names & {"orders", "order"}:
        return "graphql_orders"
    if names & {"bulkOperation", "currentBulkOperation", "bulkOperationCancel"}:
        return "graphql_bulk_poll"
    if names & {"node", "nodes"}:
        return "graphql_bulk_poll" if "BulkOperation" in query else "graphql_orders"
    return "graphql_other"


def handle_graphql(store, version, headers, body, base_url, shutdown_event):
    served = api_version(version)
    vh = [("X-Shopify-API-Version", served)]
    store.count("graphql")
    ctype = (headers.get("Content-Type") or "").lower()
    request = None
    if "application/graphql" in ctype:
        request = {"query": body.decode("utf-8", "replace")}
    else:
        try:
            request = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            request = None
    query = request.get("query") if isinstance(request, dict) else None
    klass = classify(query) if isinstance(query, str) else "graphql_other"
    store.count(klass)

    fault = take_fault(store, "graphql", shutdown_event)
    if fault:
        cost = 0
        if fault.kind == "throttled" and isinstance(query, str):
            try:
                cost = prepare(query, request.get("variables"), request.get("operationName"), served).cost
            except (GraphQLError, AttributeError):
                pass
        resp = fault_response(store, fault, headers, cost)
        resp.headers.extend(vh)
        return resp

    scopes = store.token_scopes(headers.get("X-Shopify-Access-Token"))
    if scopes is None:
        return json_response(401, INVALID_TOKEN_BODY, vh)
    if not isinstance(query, str) or not query.strip():
        return json_response(400, {"errors": {"query": "Required parameter missing or invalid"}}, vh)
    variables = request.get("variables") or {}
    if isinstance(variables, str):       # some clients send variables as a JSON string
        try:
            variables = json.loads(variables) or {}
        except ValueError:
            variables = None
    if not isinstance(variables, dict):
        return json_response(400, {"errors": {"variables": "Variables must be a JSON object"}}, vh)

    try:
        prepared = prepare(query, variables, request.get("operationName"), served)
    except GraphQLError as e:
        return json_response(200, {"errors": [e.to_dict()]}, vh)

    requested = prepared.cost
    if requested > MAX_QUERY_COST:
        return json_response(200, {
            "errors": [{"message": "Query cost is %d, which exceeds the single query max cost limit (%d)." % (
                requested, MAX_QUERY_COST),
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST,
                               "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                    "throttleStatus": store.bucket.status()}}}, vh)

    with store.lock:
        if not store.bucket.try_take(requested):
            store.counters["throttled"] += 1
            return json_response(200, {"errors": [THROTTLED_ERROR], "extensions": {"cost": {
                "requestedQueryCost": requested, "actualQueryCost": None,
                "throttleStatus": store.bucket.status()}}}, vh)
        if klass == "graphql_orders":
            store.run_scheduled()     # "just before answering the Nth next orders request"
        ctx = ExecContext(store, mode="normal", min_created=store.visibility_floor(scopes), version=served,
                          scopes=scopes, base_url=base_url, now=time.time())
        data, errors = execute(prepared, ctx)
        actual = ctx.actual
        if requested > actual:
            store.bucket.give_back(requested - actual)
        store.counters["points_requested"] += requested
        store.counters["points_actual"] += actual
        out = {}
        if errors:
            out["errors"] = errors
        out["data"] = data
        out["extensions"] = {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                                      "throttleStatus": store.bucket.status()}}
    return json_response(200, out, vh)

# ----------------------------------------------------------- bulk download


def parse_range(header, size):
    """(start, end_inclusive) for 'bytes=N-' / 'bytes=N-M' / 'bytes=-K', None if absent, 'bad' if unsatisfiable."""
    if not header:
        return None
    h = header.strip()
    if not h.startswith("bytes=") or "," in h:
        return None      # unsupported forms: serve the whole file, as servers may
    a, _, b = h[6:].partition("-")
    try:
        if a == "":
            k = int(b)
            if k <= 0:
                return "bad"
            return max(0, size - k), size - 1
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


def handle_bulk_download(store, name, sig, headers, shutdown_event):
    store.count("bulk_download")
    found = store.bulk.file_for(name, sig)
    if found is None:
        return Response(403, b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                             b'<Message>Access denied.</Message></Error>', "application/xml; charset=UTF-8")
    path, size = found
    fault = take_fault(store, "bulk_download", shutdown_event)
    rng = parse_range(headers.get("Range"), size)
    if rng == "bad":
        return Response(416, b"", "application/jsonl", headers=[("Content-Range", "bytes */%d" % size)])
    if fault:
        if fault.kind == "truncated":
            start, end = rng if rng else (0, size - 1)
            status = 206 if rng else 200
            hdrs = [("Accept-Ranges", "bytes")]
            if rng:
                hdrs.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
            return Response(status, b"", "application/jsonl", headers=hdrs, action="truncate",
                            file=(path, start, end - start + 1, size))
        return fault_response(store, fault, headers)
    hdrs = [("Accept-Ranges", "bytes")]
    if rng:
        start, end = rng
        hdrs.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
        return Response(206, b"", "application/jsonl", headers=hdrs, file=(path, start, end - start + 1, size))
    return Response(200, b"", "application/jsonl", headers=hdrs, file=(path, 0, size, size))
