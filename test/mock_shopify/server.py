#!/usr/bin/env python3
"""Mock Shopify Admin API server for converge's tests.

    python3 test/mock_shopify/server.py --host 127.0.0.1 --port 0 --port-file PATH \\
        [--store acme:orders=3000,seed=7 ...] [--tls-cert F --tls-key F] [--quiet]

Routes (stores are addressed by handle, as a path prefix):
    POST /{handle}/admin/oauth/access_token
    POST /{handle}/admin/api/{version}/graphql.json
    GET  /_bulk/{handle}/{n}.jsonl?sig=...      bulk operation results (Range supported)
    *    /_mock/...                             control API (see control.py / README.md)
    POST /_receiver/{name}                      event receivers for converge's deliveries (receiver.py)
"""

import argparse
import os
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import api       # noqa: E402
import control   # noqa: E402
from store import Store   # noqa: E402

MAX_BODY = 64 * 1024 * 1024
SEND_CHUNK = 4 * 1024 * 1024


def parse_store_spec(spec):
    """'acme:orders=3000,seed=7' -> ('acme', {'orders': '3000', 'seed': '7'})."""
    handle, _, rest = spec.partition(":")
    settings = {}
    last = None
    for item in filter(None, (x.strip() for x in rest.split(","))):
        k, sep, v = item.partition("=")
        if not sep:
            # a value with commas: 'scopes=read_orders,read_all_orders'
            if last is None:
                raise ValueError("bad store setting %r (expected key=value)" % item)
            settings[last] += "," + item
            continue
        last = k.strip()
        settings[last] = v.strip()
    if "scopes" in settings:     # also accept scopes=read_orders+read_all_orders
        settings["scopes"] = settings["scopes"].replace("+", ",").replace(";", ",")
    return handle.strip(), settings


class MockShopify:
    """The application: stores and the HTTP server around them."""

    def __init__(self, host="127.0.0.1", port=0, stores=(), tls_cert=None, tls_key=None, quiet=True):
        self.workdir = tempfile.mkdtemp(prefix="mock-shopify-")
        self.stores = {}
        self.receivers = {}
        self.lock = threading.Lock()
        self.shutdown_event = threading.Event()
        self.quiet = quiet
        self.startup = [parse_store_spec(s) if isinstance(s, str) else s for s in stores]
        for handle, settings in self.startup:
            self.create_store(handle, settings)
        server_cls = ThreadingHTTPServer
        if ":" in host:
            class V6(ThreadingHTTPServer):
                address_family = socket.AF_INET6
            server_cls = V6
        server_cls.daemon_threads = True
        server_cls.request_queue_size = 256     # many clients connect at once (deliveries)
        self.httpd = server_cls((host, port), Handler)
        self.httpd.app = self
        self.scheme = "http"
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            # the handshake happens in the handler thread (see Handler.setup)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
            self.scheme = "https"
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread = None

    @property
    def base_url(self):
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d" % (self.scheme, host, self.port)

    # -- stores
    def get_store(self, handle):
        return self.stores.get(handle)

    def create_store(self, handle, settings, replace=False):
        with self.lock:
            if handle in self.stores and not replace:
                raise control.ControlError(409, "store %r already exists" % handle)
        store = Store(handle, settings, self.workdir)     # generation outside the global lock
        with self.lock:
            old = self.stores.get(handle)
            if old is not None and not replace:
                raise control.ControlError(409, "store %r already exists" % handle)
            self.stores[handle] = store
        if old is not None:
            old.bulk.cleanup()
        return store

    def delete_store(self, handle):
        with self.lock:
            store = self.stores.pop(handle, None)
        if store is not None:
            store.bulk.cleanup()
        return store is not None

    def reset(self):
        with self.lock:
            old = list(self.stores.values())
            self.stores = {}
        for s in old:
            s.bulk.cleanup()
        for handle, settings in self.startup:
            self.create_store(handle, settings, replace=True)

    # -- lifecycle
    def start(self):
        """Serve in a background thread (for in-process tests)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="mock-shopify", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.shutdown_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for s in list(self.stores.values()):
            s.bulk.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-shopify/1.0"
    sys_version = ""

    def setup(self):
        super().setup()
        conn = self.connection
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if isinstance(conn, ssl.SSLSocket):
            conn.settimeout(10)
            try:
                conn.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
            conn.settimeout(None)

    def log_message(self, fmt, *args):
        if not self.server.app.quiet:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = lambda self: self.dispatch()

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def dispatch(self):
        app = self.server.app
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(api.json_response(400, {"errors": "Bad Request"}))
            return
        split = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in split.path.split("/") if p]
        method = self.command
        store = None
        try:
            if parts and parts[0] == "_mock":
                resp = control.handle(app, method, parts[1:], split.query, body)
            elif len(parts) == 2 and parts[0] == "_receiver":
                rcv = app.receivers.get(parts[1])
                if rcv is None:
                    resp = api.json_response(404, {"error": "no receiver %r" % parts[1]})
                elif method != "POST":
                    resp = api.json_response(405, {"error": "POST events here"})
                else:
                    resp = rcv.handle(self.headers, body, app.shutdown_event)
            elif parts and parts[0] == "_bulk" and len(parts) == 3:
                store = app.get_store(parts[1])
                if store is None:
                    resp = api.json_response(404, api.NOT_FOUND_BODY)
                else:
                    sig = urllib.parse.parse_qs(split.query).get("sig", [""])[-1]
                    resp = api.handle_bulk_download(store, parts[2], sig, self.headers, app.shutdown_event)
            elif len(parts) == 4 and parts[1:] == ["admin", "oauth", "access_token"]:
                store = app.get_store(parts[0])
                if store is None:
                    resp = api.json_response(404, api.NOT_FOUND_BODY)
                elif method != "POST":
                    resp = api.json_response(405, {"errors": "Method Not Allowed"})
                else:
                    resp = api.handle_token(store, self.headers, body, split.query, app.shutdown_event)
            elif len(parts) == 5 and parts[1:3] == ["admin", "api"] and parts[4] == "graphql.json":
                store = app.get_store(parts[0])
                if store is None:
                    resp = api.json_response(404, api.NOT_FOUND_BODY)
                elif method != "POST":
                    resp = api.json_response(405, {"errors": "Method Not Allowed"},
                                             [("X-Shopify-API-Version", api.api_version(parts[3]))])
                else:
                    resp = api.handle_graphql(store, parts[3], self.headers, body, app.base_url,
                                              app.shutdown_event)
            else:
                resp = api.json_response(404, api.NOT_FOUND_BODY)
        except Exception as e:   # a bug in the mock: answer 500 and say why
            import traceback
            traceback.print_exc()
            resp = api.json_response(500, {"errors": "mock internal error: %r" % (e,)})
        if store is not None and resp.action != "reset":
            store.count_status(resp.status)
        self._send(resp)

    # -- output
    def _send(self, resp):
        try:
            if resp.action == "reset":
                self._reset()
                return
            self.log_request(resp.status)
            length = resp.file[2] if resp.file else len(resp.body)
            lines = ["HTTP/1.1 %d %s" % (resp.status, self.responses.get(resp.status, ("",))[0]),
                     "Date: " + formatdate(usegmt=True),
                     "Content-Type: " + resp.content_type,
                     "Content-Length: %d" % length,
                     "X-Request-Id: %x" % (id(resp) ^ int(time.time() * 1000))]
            lines += ["%s: %s" % kv for kv in resp.headers]
            if resp.action == "truncate" or self.close_connection:
                lines.append("Connection: close")
                self.close_connection = True
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            if resp.file:
                self.wfile.write(head)
                path, offset, count, _ = resp.file
                if resp.action == "truncate":
                    count = count // 2
                with open(path, "rb") as f:
                    if count > 0:
                        self.connection.sendfile(f, offset, count)
            elif resp.action == "truncate":
                self.wfile.write(head + resp.body[:len(resp.body) // 2])
            else:
                self.wfile.write(head + resp.body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True     # the client went away (e.g. after a timeout fault)
        finally:
            if resp.unlink and resp.file:
                try:
                    os.unlink(resp.file[0])
                except OSError:
                    pass

    def _reset(self):
        """Close the socket with RST and without answering."""
        self.close_connection = True
        conn = self.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # close the descriptor itself: the socket object is still referenced by
        # rfile/wfile, and socketserver's shutdown(SHUT_WR) would send a FIN first
        os.close(conn.detach())


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Mock Shopify Admin API server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--store", action="append", default=[], metavar="SPEC",
                    help="handle[:key=value,...], e.g. acme:orders=3000,seed=7 (repeatable)")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    try:
        app = MockShopify(args.host, args.port, args.store, args.tls_cert, args.tls_key, args.quiet)
    except (ValueError, control.ControlError, OSError) as e:
        sys.stderr.write("mock shopify: %s\n" % (getattr(e, "message", None) or e))
        return 2
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app.start()
    if args.port_file:
        write_port_file(args.port_file, app.port)
    print("mock shopify listening on %s" % app.base_url, flush=True)
    while not stop.wait(0.5):
        pass
    app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
