"""Event receivers: stand-ins for the destinations converge delivers to.

A receiver, addressed by name (POST /_receiver/{name}), records every request
it gets (headers that matter, the body, whether the Converge-Signature is
valid and fresh) and answers 200, unless told otherwise: queued faults (500,
429 with Retry-After, 400, a hang, a reset connection) or "down" (every
connection reset until it is up again).
"""

import hashlib
import hmac
import json
import threading
import time
from collections import deque

from api import Response, json_response

FAULT_KINDS = ("http_500", "http_503", "http_429", "http_400", "http_408", "hang", "reset")
SIGNATURE_TOLERANCE = 300       # seconds a signature's timestamp may be off


def verify_signature(secret, header, body, now=None):
    """(valid, fresh) for a Converge-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    if not header:
        return False, False
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    t, v1 = fields.get("t", ""), fields.get("v1", "")
    if not t.isdigit() or not v1:
        return False, False
    expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    valid = hmac.compare_digest(expected, v1)
    fresh = abs((now or time.time()) - int(t)) <= SIGNATURE_TOLERANCE
    return valid, fresh


class Receiver:
    def __init__(self, name, secret=None, status=200):
        self.name = name
        self.secret = secret
        self.status = status
        self.down = False
        self.lock = threading.Lock()
        self.faults = deque()
        self.requests = []

    def add_fault(self, spec):
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError("unknown receiver fault %r (known: %s)" % (kind, ", ".join(FAULT_KINDS)))
        count = int(spec.get("count", 1))
        with self.lock:
            for _ in range(count):
                self.faults.append(dict(spec))

    def handle(self, headers, body, shutdown_event):
        with self.lock:
            fault = None if self.down else (self.faults.popleft() if self.faults else None)
            down = self.down
        record = {
            "at": time.time(),
            "content_type": headers.get("Content-Type"),
            "idempotency_key": headers.get("Idempotency-Key"),
            "user_agent": headers.get("User-Agent"),
            "signature": headers.get("Converge-Signature"),
        }
        if self.secret is not None:
            record["signature_valid"], record["signature_fresh"] = verify_signature(
                self.secret, headers.get("Converge-Signature"), body)
        try:
            record["body"] = json.loads(body.decode("utf-8"))
            first = record["body"][0] if isinstance(record["body"], list) and record["body"] else record["body"]
            record["keys"] = list(first.keys()) if isinstance(first, dict) else None   # as sent, in order
        except (ValueError, UnicodeDecodeError):
            record["body"] = None
            record["raw_body"] = body.decode("utf-8", "replace")

        kind = "down" if down else (fault["kind"] if fault else None)
        record["answer"] = kind or str(self.status)
        with self.lock:
            self.requests.append(record)
        if kind in ("down", "reset"):
            return Response(0, action="reset")
        if kind == "hang":
            shutdown_event.wait(float(fault.get("delay", 30)))
            return json_response(200, {"ok": True, "late": True})
        if kind == "http_429":
            return json_response(429, {"error": "slow down"},
                                 [("Retry-After", str(fault.get("retry_after", "1")))])
        if kind in ("http_500", "http_503", "http_408", "http_400"):
            status = int(kind[5:])
            return json_response(status, {"error": "refused by the receiver (%s)" % kind})
        if self.status == 204:
            return Response(204, b"")
        return json_response(self.status, {"ok": True})

    def summary(self):
        with self.lock:
            return {"name": self.name, "requests": len(self.requests), "down": self.down,
                    "faults": len(self.faults), "signed": self.secret is not None}

    def take_requests(self, clear=False):
        with self.lock:
            out = list(self.requests)
            if clear:
                self.requests.clear()
            return out
