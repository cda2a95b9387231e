"""Injected failures, consumed by the next matching requests in FIFO order."""

import threading

ENDPOINTS = ("graphql", "token", "bulk_download", "any")

# Kinds answered at the HTTP level (before the request is processed).
HTTP_KINDS = {"http_500", "http_502", "http_503", "http_429", "http_401", "timeout",
              "malformed_json", "truncated", "connection_reset"}
# Kinds that change what the next bulkOperationRunQuery does.
BULK_KINDS = {"bulk_failed", "bulk_expired", "bulk_canceled", "bulk_in_progress"}
ALL_KINDS = HTTP_KINDS | BULK_KINDS | {"throttled"}

# Which HTTP-level kinds apply to which endpoint.
ENDPOINT_KINDS = {
    "graphql": HTTP_KINDS | {"throttled"},
    "token": HTTP_KINDS,
    "bulk_download": HTTP_KINDS,
}

PARAMS = {"retry_after": str, "delay": float, "body": str}


class Fault:
    __slots__ = ("seq", "kind", "count", "endpoint", "params")

    def __init__(self, seq, kind, count, endpoint, params):
        self.seq = seq
        self.kind = kind
        self.count = count
        self.endpoint = endpoint
        self.params = params

    def to_dict(self):
        d = {"id": self.seq, "kind": self.kind, "count": self.count, "endpoint": self.endpoint}
        d.update(self.params)
        return d


class FaultQueue:
    def __init__(self):
        self._faults = []
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, spec):
        """Validate and queue a fault spec; ValueError on a bad spec."""
        if not isinstance(spec, dict):
            raise ValueError("fault must be a JSON object")
        kind = spec.get("kind")
        if kind not in ALL_KINDS:
            raise ValueError("unknown fault kind %r (known: %s)" % (kind, ", ".join(sorted(ALL_KINDS))))
        count = spec.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        endpoint = spec.get("endpoint") or "graphql"
        if endpoint not in ENDPOINTS:
            raise ValueError("endpoint must be one of %s" % ", ".join(ENDPOINTS))
        if kind in BULK_KINDS and endpoint not in ("graphql", "any"):
            raise ValueError("%s faults apply to bulkOperationRunQuery (endpoint graphql)" % kind)
        if kind == "throttled" and endpoint not in ("graphql", "any"):
            raise ValueError("throttled faults apply to the graphql endpoint only")
        params = {}
        for k, conv in PARAMS.items():
            if spec.get(k) is not None:
                try:
                    params[k] = conv(spec[k])
                except (TypeError, ValueError):
                    raise ValueError("bad value for %s" % k)
        unknown = set(spec) - {"kind", "count", "endpoint"} - set(PARAMS)
        if unknown:
            raise ValueError("unknown fault keys: %s" % ", ".join(sorted(unknown)))
        if kind == "http_429":
            params.setdefault("retry_after", "1.0")
        if kind == "timeout":
            params.setdefault("delay", 30.0)
        with self._lock:
            self._seq += 1
            f = Fault(self._seq, kind, count, endpoint, params)
            self._faults.append(f)
        return f

    def _take(self, match):
        with self._lock:
            for f in self._faults:
                if match(f):
                    f.count -= 1
                    if f.count == 0:
                        self._faults.remove(f)
                    return Fault(f.seq, f.kind, 1, f.endpoint, dict(f.params))
        return None

    def take(self, endpoint):
        """The next HTTP-level fault for a request to `endpoint`, or None."""
        allowed = ENDPOINT_KINDS[endpoint]
        return self._take(lambda f: f.kind in allowed and f.endpoint in (endpoint, "any"))

    def take_bulk(self):
        """The next bulk-operation fault (at bulkOperationRunQuery), or None."""
        return self._take(lambda f: f.kind in BULK_KINDS)

    def list(self):
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def clear(self):
        with self._lock:
            n = len(self._faults)
            self._faults = []
            return n
