#!/usr/bin/env python3
"""Timings of the mock (not a test): generation, page latency, bulk export, download.

    python3 test/mock_shopify/bench_mock.py [--orders 100000]
"""

import argparse
import http.client
import json
import os
import resource
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gql_exec import ExecContext, execute, prepare   # noqa: E402
from server import MockShopify                         # noqa: E402

TYPICAL_NODE = """
  id legacyResourceId name createdAt processedAt updatedAt cancelledAt cancelReason sourceName tags test
  email phone currencyCode presentmentCurrencyCode displayFinancialStatus discountCodes
  totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
  totalTaxSet { shopMoney { amount } presentmentMoney { amount } }
  totalShippingPriceSet { shopMoney { amount } presentmentMoney { amount } }
  totalDiscountsSet { shopMoney { amount } presentmentMoney { amount } }
  customer { id email firstName lastName }
  shippingAddress { city countryCodeV2 provinceCode zip }
  lineItems(first: %d) { nodes { id sku name title variantTitle quantity vendor
      originalUnitPriceSet { presentmentMoney { amount } } product { id } variant { id } }
    pageInfo { hasNextPage endCursor } }
"""

BULK = """{ orders { edges { node { %s
  lineItems { edges { node { id sku name title variantTitle quantity vendor
      originalUnitPriceSet { shopMoney { amount } presentmentMoney { amount } } product { id } variant { id } } } }
  refunds { id createdAt totalRefundedSet { shopMoney { amount } presentmentMoney { amount } }
    refundLineItems { edges { node { id quantity lineItem { id } subtotalSet { shopMoney { amount } } } } } }
} } } }""" % TYPICAL_NODE.split("lineItems(")[0]


def post(base, path, body, headers=None):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    conn.request("POST", path, json.dumps(body), dict(headers or {}, **{"Content-Type": "application/json"}))
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=100000)
    args = ap.parse_args()
    app = MockShopify(quiet=True).start()
    base = app.base_url
    try:
        t = time.perf_counter()
        store = app.create_store("big", {"orders": args.orders, "seed": 1})
        s = store.summary()
        print("generate %d orders (%d line items, %d refunds): %.2f s, max RSS %.0f MB" % (
            s["orders"], s["line_items"], s["refunds"], time.perf_counter() - t, rss_mb()))
        t = time.perf_counter()
        app.create_store("mid", {"orders": 3000, "seed": 1})
        print("generate 3000 orders: %.3f s" % (time.perf_counter() - t))

        # executor only (the 1000-point cost limit forbids this page over HTTP, like Shopify)
        for n_li in (3, 5):
            q = "{ orders(first: 250, sortKey: UPDATED_AT) { edges { cursor node { %s } } pageInfo { hasNextPage endCursor } } }" % (
                TYPICAL_NODE % n_li)
            prepared = prepare(q, version="2026-01")
            best = 1e9
            for _ in range(10):
                t = time.perf_counter()
                ctx = ExecContext(store, scopes=("read_orders", "read_all_orders"), version="2026-01")
                data, _ = execute(prepared, ctx)
                json.dumps(data, separators=(",", ":"))
                best = min(best, time.perf_counter() - t)
            print("250-order page, typical selection, lineItems(first: %d), execute+encode: %.1f ms "
                  "(requested cost would be %d)" % (n_li, best * 1000, prepared.cost))

        _, tok = post(base, "/big/admin/oauth/access_token", {"client_id": "cid-big", "client_secret": "secret-big",
                                                            "grant_type": "client_credentials"})
        hdr = {"X-Shopify-Access-Token": tok["access_token"]}
        for first, sel in ((250, "id legacyResourceId name updatedAt"), (10, TYPICAL_NODE % 5)):
            q = "{ orders(first: %d, sortKey: UPDATED_AT, query: \"updated_at:>='2025-01-01T00:00:00Z'\") { edges { cursor node { %s } } pageInfo { hasNextPage endCursor } } }" % (first, sel)
            times = []
            for _ in range(10):
                store.bucket.set_available(2000)
                t = time.perf_counter()
                status, out = post(base, "/big/admin/api/2026-01/graphql.json", {"query": q}, hdr)
                times.append(time.perf_counter() - t)
                assert "errors" not in out, out
            print("HTTP page first=%d (%s selection, cost %d): median %.1f ms" % (
                first, "small" if first == 250 else "typical", out["extensions"]["cost"]["requestedQueryCost"],
                sorted(times)[5] * 1000))

        t = time.perf_counter()
        status, out = post(base, "/big/admin/api/2026-01/graphql.json", {
            "query": "mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id } userErrors { message } } }",
            "variables": {"q": BULK}}, hdr)
        gid = out["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
        while True:
            status, out = post(base, "/big/admin/api/2026-01/graphql.json", {
                "query": "query($id: ID!) { bulkOperation(id: $id) { status objectCount fileSize url } }",
                "variables": {"id": gid}}, hdr)
            op = out["data"]["bulkOperation"]
            if op["status"] != "RUNNING":
                break
            time.sleep(0.1)
        print("bulk export %s: %s objects, %.1f MB in %.2f s" % (
            op["status"], op["objectCount"], int(op["fileSize"]) / 1e6, time.perf_counter() - t))
        u = urllib.parse.urlsplit(op["url"])
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        t = time.perf_counter()
        conn.request("GET", u.path + "?" + u.query)
        r = conn.getresponse()
        n = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
        dt = time.perf_counter() - t
        print("download %.1f MB in %.2f s: %.0f MB/s" % (n / 1e6, dt, n / 1e6 / dt))
        t = time.perf_counter()
        u = urllib.parse.urlsplit(base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        conn.request("GET", "/_mock/stores/big/export")
        r = conn.getresponse()
        n = sum(len(c) for c in iter(lambda: r.read(1 << 20), b""))
        print("canonical export %.1f MB in %.2f s" % (n / 1e6, time.perf_counter() - t))
        print("max RSS %.0f MB" % rss_mb())
    finally:
        app.stop()


if __name__ == "__main__":
    main()
