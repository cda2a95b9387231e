"""Tests of the mock Shopify server itself.

Run from the repo root:
    python3 -m unittest discover -s test/mock_shopify -p 'test_*.py'
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from server import MockShopify   # noqa: E402
import gql_parser                # noqa: E402
import shopify_data              # noqa: E402

TWO53 = 2 ** 53
VERSION = "2026-01"
MONEY_RE = re.compile(r"^\d+\.(\d|[0-9][1-9])$")
ORDER_FIELDS = """
  id legacyResourceId name createdAt processedAt updatedAt sourceName tags test
  totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
"""

APP = None


def setUpModule():
    global APP
    APP = MockShopify(quiet=True).start()


def tearDownModule():
    APP.stop()


# ------------------------------------------------------------------ helpers

def request(method, path, body=None, headers=None, timeout=20, base=None):
    u = urllib.parse.urlsplit(base or APP.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp, data
    finally:
        conn.close()


def ctl(method, path, body=None, expect=None):
    status, resp, data = request(method, "/_mock" + path, body)
    if expect is not None:
        assert status == expect, (status, data)
    is_json = (resp.getheader("Content-Type") or "").split(";")[0] == "application/json"
    return status, (json.loads(data) if is_json else data)


def create_store(handle, **settings):
    status, body = ctl("POST", "/stores", dict(settings, handle=handle, replace=True))
    assert status == 201, body
    return body


def get_token(handle, **extra):
    body = {"client_id": "cid-" + handle, "client_secret": "secret-" + handle,
            "grant_type": "client_credentials"}
    body.update(extra)
    status, _, data = request("POST", "/%s/admin/oauth/access_token" % handle, body)
    assert status == 200, data
    return json.loads(data)["access_token"]


class GQL:
    """A tiny client bound to one store."""

    def __init__(self, handle, token=None, version=VERSION):
        self.handle = handle
        self.token = token or get_token(handle)
        self.version = version

    def raw(self, query, variables=None, version=None, token=None, timeout=20):
        body = {"query": query}
        if variables is not None:
            body["variables"] = variables
        headers = {"X-Shopify-Access-Token": token if token is not None else self.token}
        return request("POST", "/%s/admin/api/%s/graphql.json" % (self.handle, version or self.version),
                       body, headers, timeout=timeout)

    def __call__(self, query, variables=None, **kw):
        status, resp, data = self.raw(query, variables, **kw)
        assert status == 200, (status, data)
        return json.loads(data)

    def data(self, query, variables=None, **kw):
        out = self(query, variables, **kw)
        assert "errors" not in out, out["errors"]
        return out["data"]


def set_bucket(handle, available):
    ctl("POST", "/stores/%s/bucket" % handle, {"available": available}, expect=200)


def page_all(gql, sort="ID", query=None, first=50, reverse=False, fields="id updatedAt"):
    q = """query($first: Int!, $after: String, $q: String, $sort: OrderSortKeys, $rev: Boolean) {
      orders(first: $first, after: $after, query: $q, sortKey: $sort, reverse: $rev) {
        edges { cursor node { %s } } pageInfo { hasNextPage hasPreviousPage endCursor } } }""" % fields
    after, nodes, pages = None, [], 0
    while True:
        set_bucket(gql.handle, 2000)
        d = gql.data(q, {"first": first, "after": after, "q": query, "sort": sort, "rev": reverse})
        conn = d["orders"]
        nodes.extend(e["node"] for e in conn["edges"])
        pages += 1
        if pages > 1:
            assert conn["pageInfo"]["hasPreviousPage"]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes
        after = conn["pageInfo"]["endCursor"]


def gid_num(gid):
    return int(gid.rsplit("/", 1)[1])


def export(handle):
    status, data = ctl("GET", "/stores/%s/export" % handle)
    assert status == 200
    return data


def export_orders(handle):
    return [json.loads(line) for line in export(handle).decode().splitlines()]


def run_bulk(gql, inner, version=None, timeout=30, group=True):
    q = 'mutation($q: String!, $g: Boolean) { bulkOperationRunQuery(query: $q, groupObjects: $g) { ' \
        'bulkOperation { id status } userErrors { field message code } } }'
    d = gql.data(q, {"q": inner, "g": group}, version=version)["bulkOperationRunQuery"]
    assert not d["userErrors"], d
    assert d["bulkOperation"]["status"] == "CREATED"
    return wait_bulk(gql, d["bulkOperation"]["id"], timeout)


def wait_bulk(gql, gid, timeout=30):
    deadline = time.time() + timeout
    q = """query($id: ID!) { bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount
              fileSize url partialDataUrl createdAt completedAt query type } }"""
    seen = []
    while time.time() < deadline:
        op = gql.data(q, {"id": gid})["bulkOperation"]
        seen.append(op["status"])
        if op["status"] not in ("CREATED", "RUNNING", "CANCELING"):
            op["_seen"] = seen
            return op
        time.sleep(0.05)
    raise AssertionError("bulk op did not finish: %s" % seen)


def download(url, headers=None):
    u = urllib.parse.urlsplit(url)
    status, resp, data = request("GET", u.path + "?" + u.query, headers=headers)
    return status, resp, data


BULK_INNER = '''{ orders { edges { node { id name updatedAt
    lineItems { edges { node { id sku quantity } } }
    refunds { id createdAt totalRefundedSet { shopMoney { amount } }
      refundLineItems { edges { node { id quantity lineItem { id } } } } } } } } }'''


# ==================================================================== tests

class TestParser(unittest.TestCase):
    def test_tokens_and_values(self):
        doc = gql_parser.parse('''
          # comment
          query Q($a: Int = 5, $b: [ID!]!) @include(if: true) {
            x: orders(first: $a, query: "up\\"d\\u00e9", f: 1.5e3, n: null, e: UPDATED_AT, l: [1, 2], o: {k: true}) {
              ... on OrderConnection { __typename }
              ...F
            }
            y: bulkOperationRunQuery(query: """
                { orders { edges { node { id } } } }
                  "quoted" \\""" end
            """)
          }
          fragment F on OrderConnection { nodes { id } }''')
        op = doc.get_operation()
        self.assertEqual(op.kind, "query")
        self.assertEqual([v.name for v in op.var_defs], ["a", "b"])
        self.assertEqual(op.var_defs[0].default, 5)
        f = op.selections[0]
        self.assertEqual((f.alias, f.name), ("x", "orders"))
        args = dict(f.args)
        self.assertEqual(args["query"], 'up"dé')
        self.assertEqual(args["f"], 1500.0)
        self.assertIsNone(args["n"])
        self.assertEqual(args["e"].name, "UPDATED_AT")
        self.assertEqual(args["l"], [1, 2])
        self.assertEqual(args["o"], {"k": True})
        block = dict(op.selections[1].args)["query"]
        self.assertEqual(block, '{ orders { edges { node { id } } } }\n  "quoted" """ end')
        self.assertIn("F", doc.fragments)

    def test_parse_error_location(self):
        with self.assertRaises(gql_parser.GraphQLError) as cm:
            gql_parser.parse("{\n  orders(first: 1) {\n  }\n}")
        self.assertTrue(cm.exception.message.startswith("Parse error on"))
        self.assertEqual(cm.exception.locations, [{"line": 3, "column": 3}])


class TestToken(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("tok", orders=120, seed=11)
        create_store("tok-short", orders=10, token_ttl=1)
        create_store("tok-off", orders=5, installed=False)
        create_store("tok-recent", orders=400, seed=5, scopes="read_orders")

    def token_req(self, handle, body, form=False):
        if form:
            data = urllib.parse.urlencode(body).encode()
            return request("POST", "/%s/admin/oauth/access_token" % handle, data,
                           {"Content-Type": "application/x-www-form-urlencoded"})
        return request("POST", "/%s/admin/oauth/access_token" % handle, body)

    def test_good_json_and_form(self):
        good = {"client_id": "cid-tok", "client_secret": "secret-tok", "grant_type": "client_credentials"}
        s1, _, d1 = self.token_req("tok", good)
        s2, _, d2 = self.token_req("tok", good, form=True)
        self.assertEqual((s1, s2), (200, 200))
        t1, t2 = json.loads(d1), json.loads(d2)
        self.assertRegex(t1["access_token"], r"^shpat_[0-9a-f]{32}$")
        self.assertNotEqual(t1["access_token"], t2["access_token"])
        self.assertEqual(t1["scope"], "read_orders,read_all_orders")
        self.assertEqual(t1["expires_in"], 86399)
        for t in (t1, t2):   # old tokens stay valid
            GQL("tok", t["access_token"]).data("{ shop { name } }")

    def test_bad_credentials(self):
        for body in ({"client_id": "cid-tok", "client_secret": "nope", "grant_type": "client_credentials"},
                     {"client_id": "other", "client_secret": "secret-tok", "grant_type": "client_credentials"},
                     {"grant_type": "client_credentials"}):
            status, _, data = self.token_req("tok", body)
            self.assertEqual(status, 400)
            self.assertEqual(json.loads(data)["error"], "invalid_client")
        status, _, data = self.token_req("tok", {"client_id": "cid-tok", "client_secret": "secret-tok",
                                                 "grant_type": "password"})
        self.assertEqual((status, json.loads(data)["error"]), (400, "unsupported_grant_type"))

    def test_unknown_store_and_not_installed(self):
        status, _, data = self.token_req("nope-store", {"grant_type": "client_credentials"})
        self.assertEqual(status, 404)
        status, _, data = request("POST", "/nope-store/admin/api/2026-01/graphql.json", {"query": "{shop{name}}"})
        self.assertEqual(status, 404)
        status, _, data = self.token_req("tok-off", {"client_id": "cid-tok-off", "client_secret": "secret-tok-off",
                                                     "grant_type": "client_credentials"})
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data), {"error": "invalid_request",
                                            "error_description": "This app is not installed on this shop"})

    def test_missing_bad_and_expired_token(self):
        g = GQL("tok-short")
        g.data("{ shop { name } }")
        for token in ("", "shpat_0000"):
            status, _, data = g.raw("{ shop { name } }", token=token)
            self.assertEqual(status, 401)
            self.assertEqual(json.loads(data)["errors"],
                             "[API] Invalid API key or access token (unrecognized login or wrong password)")
        time.sleep(1.05)
        status, _, _ = g.raw("{ shop { name } }")
        self.assertEqual(status, 401)
        # expire-tokens control
        g2 = GQL("tok")
        ctl("DELETE", "/stores/tok/tokens", expect=200)
        self.assertEqual(g2.raw("{ shop { name } }")[0], 401)

    def test_scope_without_read_all_orders(self):
        g = GQL("tok-recent")
        floor = time.time() - 60 * 86400
        all_orders = export_orders("tok-recent")
        recent = [o for o in all_orders if shopify_data.parse_time(o["createdAt"]) >= floor]
        old = [o for o in all_orders if shopify_data.parse_time(o["createdAt"]) < floor]
        self.assertTrue(old)
        seen = page_all(g, first=100)
        self.assertEqual([n["id"] for n in seen], [o["id"] for o in recent])
        self.assertIsNone(g.data('query($id: ID!) { order(id: $id) { id } }', {"id": old[0]["id"]})["order"])
        # a new order is visible
        res = ctl("POST", "/stores/tok-recent/mutations", {"op": "add_order"}, expect=200)[1]
        self.assertEqual(g.data('query($id: ID!) { order(id: $id) { id } }',
                                {"id": res["order"]["id"]})["order"]["id"], res["order"]["id"])
        # and the bulk export hides old orders too
        op = run_bulk(g, "{ orders { edges { node { id } } } }")
        if op["url"]:
            lines = download(op["url"])[2].decode().splitlines()
            ids = [json.loads(x)["id"] for x in lines]
        else:
            ids = []
        self.assertEqual(ids, [o["id"] for o in recent] + [res["order"]["id"]])
        status, _, data = request("POST", "/tok-recent/admin/oauth/access_token",
                                  {"client_id": "cid-tok-recent", "client_secret": "secret-tok-recent",
                                   "grant_type": "client_credentials"})
        self.assertEqual(json.loads(data)["scope"], "read_orders")

    def test_scope_without_read_orders(self):
        token = ctl("POST", "/stores/tok/tokens", {"scopes": "read_products"}, expect=201)[1]["access_token"]
        out = GQL("tok", token)("{ orders(first: 1) { nodes { id } } shop { name } }")
        self.assertIsNone(out["data"]["orders"])
        self.assertEqual(out["errors"][0]["extensions"]["code"], "ACCESS_DENIED")
        self.assertEqual(out["data"]["shop"]["name"], "Tok")


class TestPagingLogic(unittest.TestCase):
    """OrderIndex.page against a naive reference, with random windows and filters."""

    def test_against_reference(self):
        import random
        from paging import OrderIndex, page_list
        from search_query import parse_search
        from server import parse_store_spec
        self.assertEqual(parse_store_spec("acme:orders=5,scopes=read_orders,read_all_orders,seed=3"),
                         ("acme", {"orders": "5", "scopes": "read_orders,read_all_orders", "seed": "3"}))
        data = shopify_data.generate(5, 300)
        index = OrderIndex(data.orders)
        rng = random.Random(1)
        times = sorted(o.updated for o in data.orders)
        list_cases = 0
        for _ in range(1000):
            attr = rng.choice(["id", "updated", "created", "processed"])
            reverse = rng.random() < 0.5
            key = lambda o: (getattr(o, attr), o.id)
            seq = sorted(data.orders, key=key, reverse=reverse)
            q = ""
            if rng.random() < 0.6:
                fattr = rng.choice(["updated_at", "created_at"])
                t = shopify_data.iso(rng.choice(times))
                q = "%s:%s'%s'" % (fattr, rng.choice([">=", ">", "<", "<="]), t)
                if rng.random() < 0.3:
                    q += " test:false"
            filt = parse_search(q)
            min_created = rng.choice([None, shopify_data.T_START + 400 * 86400])
            pred = filt.predicate(min_created) or (lambda o: True)
            after = before = None
            if rng.random() < 0.5:
                after = key(rng.choice(data.orders))
            if rng.random() < 0.3:
                before = key(rng.choice(data.orders))
            first = last = None
            if rng.random() < 0.7:
                first = rng.randint(0, 40)
            else:
                last = rng.randint(0, 40)

            def is_after(o, c):      # strictly after cursor c, in sequence order
                return key(o) < c if reverse else key(o) > c

            def is_before(o, c):
                return key(o) > c if reverse else key(o) < c
            matches = [o for o in seq if pred(o)]
            window = [o for o in matches if (after is None or is_after(o, after)) and
                      (before is None or is_before(o, before))]
            if first is not None:
                page = window[:first]
                has_next = len(window) > first
                if page:
                    has_prev = matches.index(page[0]) > 0
                else:
                    has_prev = after is not None and any(not is_after(o, after) for o in matches)
            else:
                page = window[-last:] if last else []
                has_prev = len(window) > last
                if page:
                    has_next = matches.index(page[-1]) < len(matches) - 1
                else:
                    has_next = before is not None and any(not is_before(o, before) for o in matches)
            got, gn, gp = index.page(attr, reverse, first, last, after, before, filt, min_created)
            ctx = (attr, reverse, first, last, after, before, q, min_created)
            self.assertEqual([o.id for o in got], [o.id for o in page], ctx)
            self.assertEqual((gn, gp), (has_next, has_prev), ctx)
            if attr == "id" and not q and min_created is None:
                # nested connections (lineItems) page the same way
                got, gn, gp = page_list(sorted(data.orders, key=lambda o: o.id), {
                    "first": first, "last": last, "after": after, "before": before, "reverse": reverse})
                self.assertEqual(([o.id for o in got], gn, gp), ([o.id for o in page], has_next, has_prev), ctx)
                list_cases += 1
        self.assertGreater(list_cases, 20)


class TestPagination(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("pg", orders=300, seed=21)
        cls.g = GQL("pg")
        cls.orders = export_orders("pg")

    def expected(self, key, reverse=False, pred=None):
        rows = [o for o in self.orders if pred is None or pred(o)]
        rows.sort(key=lambda o: (o[key] if key != "id" else 0, gid_num(o["id"])), reverse=reverse)
        return [o["id"] for o in rows]

    def test_all_pages_every_sort(self):
        for sort, key in (("ID", "id"), ("UPDATED_AT", "updatedAt"), ("CREATED_AT", "createdAt"),
                          ("PROCESSED_AT", "processedAt")):
            for rev in (False, True):
                with self.subTest(sort=sort, reverse=rev):
                    got = [n["id"] for n in page_all(self.g, sort, first=37, reverse=rev)]
                    self.assertEqual(len(got), len(set(got)))
                    self.assertEqual(got, self.expected(key, rev))

    def test_updated_at_ties_exist(self):
        counts = {}
        for o in self.orders:
            counts[o["updatedAt"]] = counts.get(o["updatedAt"], 0) + 1
        self.assertTrue(any(c >= 3 for c in counts.values()))

    def test_updated_at_filter(self):
        ts = sorted(o["updatedAt"] for o in self.orders)[150]
        t = shopify_data.parse_time(ts)
        cases = [
            ("updated_at:>='%s'" % ts, lambda o: o >= t),
            ('updated_at:>"%s"' % ts, lambda o: o > t),
            ("updated_at:<%s" % ts, lambda o: o < t),
            ("updated_at:<='%s'" % ts, lambda o: o <= t),
            ("updated_at:'%s'" % ts, lambda o: o == t),
            ("updated_at:>='%s' AND status:any foo:bar" % ts, lambda o: o >= t),
            ("status:any updated_at:>=%s updated_at:<'2026-06-01T00:00:00Z'" % ts,
             lambda o: t <= o < shopify_data.parse_time("2026-06-01T00:00:00Z")),
        ]
        for q, pred in cases:
            with self.subTest(q=q):
                got = [n["id"] for n in page_all(self.g, "UPDATED_AT", q, first=40)]
                want = self.expected("updatedAt", pred=lambda o: pred(shopify_data.parse_time(o["updatedAt"])))
                self.assertEqual(got, want)
        got = [n["id"] for n in page_all(self.g, "ID", "created_at:>=2025-06-01 test:false", first=100)]
        want = self.expected("id", pred=lambda o: o["createdAt"] >= "2025-06-01" and not o["test"])
        self.assertEqual(got, want)

    def test_cursor_moves_updated_item(self):
        q = """query($after: String) { orders(first: 10, after: $after, sortKey: UPDATED_AT) {
                 edges { cursor node { id updatedAt } } pageInfo { hasNextPage endCursor } } }"""
        p1 = self.g.data(q)["orders"]
        moved = p1["edges"][3]["node"]["id"]
        ctl("POST", "/stores/pg/mutations", {"op": "touch", "order_id": moved, "updated_at": "2026-11-25T00:00:00Z"},
            expect=200)
        try:
            rest = page_all(self.g, "UPDATED_AT", first=50)
            ids = [n["id"] for n in rest]
            self.assertEqual(ids[-1], moved)
            after = self.g.data(q, {"after": p1["pageInfo"]["endCursor"]})["orders"]["edges"]
            self.assertNotIn(moved, [e["node"]["id"] for e in after])
        finally:
            create_store("pg", orders=300, seed=21)   # restore for other tests
            self.__class__.g = GQL("pg")

    def test_last_before_and_page_info(self):
        q = """query($before: String) { orders(last: 5, before: $before) {
                 nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
        d = self.g.data(q)["orders"]
        ids = self.expected("id")
        self.assertEqual([n["id"] for n in d["nodes"]], ids[-5:])
        self.assertEqual((d["pageInfo"]["hasNextPage"], d["pageInfo"]["hasPreviousPage"]), (False, True))
        d2 = self.g.data(q, {"before": d["pageInfo"]["startCursor"]})["orders"]
        self.assertEqual([n["id"] for n in d2["nodes"]], ids[-10:-5])

    def test_argument_errors(self):
        out = self.g("{ orders(first: 251) { nodes { id } } }")
        self.assertNotIn("data", out)
        self.assertIn("exceeds", out["errors"][0]["message"])
        self.assertIn("250", out["errors"][0]["message"])
        out = self.g("{ orders { nodes { id } } }")
        self.assertEqual(out["errors"][0]["message"], "you must provide one of first or last")
        out = self.g('{ orders(first: 2, after: "bm90IGEgY3Vyc29y") { nodes { id } } }')
        self.assertIn("cursor", out["errors"][0]["message"].lower())
        # a cursor of another sort key is rejected too
        c = self.g.data("{ orders(first: 1) { pageInfo { endCursor } } }")["orders"]["pageInfo"]["endCursor"]
        out = self.g('query($c: String) { orders(first: 2, after: $c, sortKey: UPDATED_AT) { nodes { id } } }', {"c": c})
        self.assertIn("errors", out)
        out = self.g('{ orders(first: "2") { nodes { id } } }')
        self.assertEqual(out["errors"][0]["extensions"]["code"], "argumentLiteralsIncompatible")
        out = self.g('{ orders(first: 2, sortKey: NOPE) { nodes { id } } }')
        self.assertEqual(out["errors"][0]["extensions"]["code"], "argumentLiteralsIncompatible")

    def test_cursor_is_opaque_base64(self):
        c = self.g.data("{ orders(first: 1, sortKey: UPDATED_AT) { edges { cursor } } }")["orders"]["edges"][0]["cursor"]
        obj = json.loads(base64.b64decode(c))
        self.assertEqual(set(obj), {"last_id", "last_value"})


class TestNested(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("nest", orders=200, seed=3)
        cls.g = GQL("nest")
        cls.orders = export_orders("nest")

    def test_big_order_line_items_paging(self):
        big = [o for o in self.orders if len(o["lineItems"]) > 250]
        self.assertGreaterEqual(len(big), 2)
        o = big[0]
        q = """query($id: ID!, $after: String) { order(id: $id) { lineItems(first: 250, after: $after) {
                 edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }"""
        p1 = self.g.data(q, {"id": o["id"]})["order"]["lineItems"]
        self.assertEqual(len(p1["edges"]), 250)
        self.assertTrue(p1["pageInfo"]["hasNextPage"])
        p2 = self.g.data(q, {"id": o["id"], "after": p1["pageInfo"]["endCursor"]})["order"]["lineItems"]
        self.assertFalse(p2["pageInfo"]["hasNextPage"])
        self.assertTrue(p2["pageInfo"]["hasPreviousPage"])
        ids = [e["node"]["id"] for e in p1["edges"] + p2["edges"]]
        self.assertEqual(ids, [li["id"] for li in o["lineItems"]])
        self.assertEqual(len(ids), 260)

    def test_nested_in_orders_page_and_refunds(self):
        q = """{ orders(first: 15, query: "updated_at:>2024-01-01") { nodes { id
                  lineItems(first: 2) { nodes { id quantity currentQuantity } pageInfo { hasNextPage } }
                  refunds(first: 3) { id legacyResourceId createdAt totalRefundedSet { shopMoney { amount } }
                    refundLineItems(first: 5) { nodes { id quantity restockType lineItem { id sku } }
                                                pageInfo { hasNextPage } } } } } }"""
        d = self.g.data(q)
        by_id = {o["id"]: o for o in self.orders}
        for n in d["orders"]["nodes"]:
            want = by_id[n["id"]]
            self.assertEqual([x["id"] for x in n["lineItems"]["nodes"]], [x["id"] for x in want["lineItems"][:2]])
            self.assertEqual(n["lineItems"]["pageInfo"]["hasNextPage"], len(want["lineItems"]) > 2)
            self.assertEqual([r["id"] for r in n["refunds"]], [r["id"] for r in want["refunds"][:3]])
            for r in n["refunds"]:
                self.assertEqual(r["legacyResourceId"], str(gid_num(r["id"])))


class TestCost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("cost", orders=100, seed=9)
        cls.g = GQL("cost")

    def test_requested_and_actual(self):
        set_bucket("cost", 2000)
        q = """{ orders(first: 5) { edges { node { id totalPriceSet { shopMoney { amount } }
                  lineItems(first: 3) { edges { node { id } } } } } } }"""
        out = self.g(q)
        cost = out["extensions"]["cost"]
        self.assertEqual(cost["requestedQueryCost"], 2 + 5 * (1 + 2 + (2 + 3 * 1)))
        nodes = [e["node"] for e in out["data"]["orders"]["edges"]]
        actual = 2 + sum(1 + 2 + 2 + len(n["lineItems"]["edges"]) for n in nodes)
        self.assertEqual(cost["actualQueryCost"], actual)
        ts = cost["throttleStatus"]
        self.assertEqual((ts["maximumAvailable"], ts["restoreRate"]), (2000.0, 100.0))
        self.assertAlmostEqual(ts["currentlyAvailable"], 2000 - actual, delta=2)
        # shop is an object: 1; a mutation costs 10
        self.assertEqual(self.g("{ shop { name } }")["extensions"]["cost"]["requestedQueryCost"], 1)
        out = self.g('mutation { bulkOperationCancel(id: "gid://shopify/BulkOperation/1") { userErrors { message } } }')
        self.assertEqual(out["extensions"]["cost"]["requestedQueryCost"], 10)

    def test_max_cost_exceeded(self):
        set_bucket("cost", 2000)
        q = "{ orders(first: 250) { edges { node { id lineItems(first: 10) { edges { node { id } } } } } } }"
        out = self.g(q)
        self.assertNotIn("data", out)
        err = out["errors"][0]
        self.assertEqual(err["extensions"]["code"], "MAX_COST_EXCEEDED")
        self.assertEqual(err["extensions"]["cost"], 2 + 250 * (1 + 2 + 10))
        self.assertEqual(err["extensions"]["maxCost"], 1000)
        self.assertEqual(err["message"], "Query cost is 3252, which exceeds the single query max cost limit (1000).")
        self.assertEqual(out["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"], 2000)

    def test_throttling_leaky_bucket(self):
        q = "{ orders(first: 50) { nodes { id } } }"      # requested 52
        set_bucket("cost", 10)
        c0 = ctl("GET", "/stores/cost/counters")[1]["throttled"]
        out = self.g(q)
        self.assertEqual(out["errors"][0]["extensions"]["code"], "THROTTLED")
        self.assertNotIn("data", out)
        cost = out["extensions"]["cost"]
        self.assertIsNone(cost["actualQueryCost"])
        self.assertEqual(cost["requestedQueryCost"], 52)
        self.assertLess(cost["throttleStatus"]["currentlyAvailable"], 52)
        self.assertEqual(ctl("GET", "/stores/cost/counters")[1]["throttled"], c0 + 1)
        # refills at restoreRate (100/s): after (52-10)/100 s the query passes
        time.sleep(0.5)
        out = self.g(q)
        self.assertNotIn("errors", out)
        set_bucket("cost", 2000)


class TestGraphQLFeatures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("feat", orders=60, seed=4, currency="USD")
        cls.g = GQL("feat")

    def test_unknown_field_and_parse_error(self):
        out = self.g("{ orders(first: 1) { edges { node { id foo } } } }")
        self.assertNotIn("data", out)
        err = out["errors"][0]
        self.assertEqual(err["message"], "Field 'foo' doesn't exist on type 'Order'")
        self.assertEqual(err["extensions"], {"code": "undefinedField", "typeName": "Order", "fieldName": "foo"})
        self.assertEqual(err["path"], ["query", "orders", "edges", "node", "foo"])
        self.assertEqual(err["locations"], [{"line": 1, "column": 40}])
        out = self.g("{ orders(first: 1) { edges { node { id } }")
        self.assertTrue(out["errors"][0]["message"].startswith("Parse error on") or
                        out["errors"][0]["message"] == "Unexpected end of document")
        out = self.g("{ shop { name { x } } }")
        self.assertEqual(out["errors"][0]["extensions"]["code"], "selectionMismatch")
        out = self.g("{ order { id } }")
        self.assertEqual(out["errors"][0]["extensions"]["code"], "missingRequiredArguments")
        out = self.g("query { order(id: $x) { id } }")
        self.assertEqual(out["errors"][0]["extensions"]["code"], "variableNotDefined")

    def test_bad_body(self):
        status, resp, data = request("POST", "/feat/admin/api/2026-01/graphql.json", b"not json",
                                     {"X-Shopify-Access-Token": self.g.token, "Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertIn("query", json.loads(data)["errors"])

    def test_versions(self):
        for asked, served in (("2026-04", "2026-04"), ("2025-10", "2025-10"), ("2024-01", "2025-10"),
                              ("unstable", "2025-10")):
            status, resp, _ = self.g.raw("{ shop { name } }", version=asked)
            self.assertEqual(resp.getheader("X-Shopify-API-Version"), served)
        out = self.g('{ bulkOperation(id: "gid://shopify/BulkOperation/1") { id } }', version="2025-10")
        self.assertEqual(out["errors"][0]["extensions"]["code"], "undefinedField")

    def test_aliases_typename_fragments_variables(self):
        q = """query Q($n: Int = 2, $skip: Boolean!) {
          a: orders(first: $n, sortKey: CREATED_AT, reverse: true) {
            __typename
            edges { __typename node { ...Basic  ... on Order { total: totalPriceSet { shopMoney { amount currencyCode } } }
                                     tags @skip(if: $skip) } } }
          s: shop { name myshopifyDomain currencyCode ianaTimezone __typename }
        }
        fragment Basic on Order { __typename oid: id name }"""
        d = self.g.data(q, {"skip": True})
        self.assertEqual(d["a"]["__typename"], "OrderConnection")
        node = d["a"]["edges"][0]["node"]
        self.assertEqual(list(node), ["__typename", "oid", "name", "total"])
        self.assertEqual(node["__typename"], "Order")
        self.assertEqual(node["total"]["shopMoney"]["currencyCode"], "USD")
        self.assertEqual(d["s"], {"name": "Feat", "myshopifyDomain": "feat.myshopify.com", "currencyCode": "USD",
                                  "ianaTimezone": "Europe/Berlin", "__typename": "Shop"})

    def test_node_nodes_order(self):
        orders = export_orders("feat")
        ids = [orders[0]["id"], orders[1]["id"], "gid://shopify/Order/1"]
        d = self.g.data("""query($ids: [ID!]!, $id: ID!) {
            nodes(ids: $ids) { __typename id ... on Order { name } }
            node(id: $id) { id ... on Order { legacyResourceId } }
            order(id: $id) { name } }""", {"ids": ids, "id": ids[1]})
        self.assertEqual(d["nodes"][0], {"__typename": "Order", "id": ids[0], "name": orders[0]["name"]})
        self.assertIsNone(d["nodes"][2])
        self.assertEqual(d["node"]["legacyResourceId"], str(gid_num(ids[1])))
        self.assertEqual(d["order"]["name"], orders[1]["name"])
        out = self.g('{ order(id: "42") { id } }')
        self.assertIn("Invalid global id", out["errors"][0]["message"])

    def test_keep_alive(self):
        u = urllib.parse.urlsplit(APP.base_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        for _ in range(3):
            conn.request("POST", "/feat/admin/api/2026-01/graphql.json", json.dumps({"query": "{ shop { name } }"}),
                         {"X-Shopify-Access-Token": self.g.token, "Content-Type": "application/json"})
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            json.loads(r.read())
        conn.close()


class TestData(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("data-a", orders=200, seed=42)
        create_store("data-b", orders=200, seed=42)
        create_store("data-c", orders=200, seed=43)
        create_store("data-jpy", orders=200, seed=44, currency="JPY")
        cls.raw = export("data-a")
        cls.orders = [json.loads(x) for x in cls.raw.decode().splitlines()]

    def test_determinism(self):
        self.assertEqual(self.raw, export("data-b"))
        self.assertNotEqual(self.raw, export("data-c"))
        a = shopify_data.generate(7, 500)
        b = shopify_data.generate(7, 500)
        self.assertEqual([(o.id, o.updated, o.total) for o in a.orders], [(o.id, o.updated, o.total) for o in b.orders])

    def test_channel_mix_and_features(self):
        sources = {o["sourceName"] for o in self.orders}
        for s in shopify_data.ALL_SOURCES:
            self.assertIn(s, sources)
        web = sum(o["sourceName"] == "web" for o in self.orders)
        self.assertGreater(web, 60)
        tags = {t for o in self.orders for t in o["tags"]}
        self.assertTrue({"Exclude", "exclude", "EXCLUDE"} <= tags)
        self.assertTrue(any(o["test"] for o in self.orders))
        self.assertTrue(any(o["cancelledAt"] and o["cancelReason"] for o in self.orders))
        self.assertTrue(any(o["customer"] is None and o["email"] for o in self.orders))
        self.assertTrue(any(o["discountCodes"] for o in self.orders))
        pres = sum(o["presentmentCurrencyCode"] != o["currencyCode"] for o in self.orders)
        self.assertTrue(15 <= pres <= 80, pres)
        refunded = [o for o in self.orders if o["refunds"]]
        statuses = {o["displayFinancialStatus"] for o in refunded}
        self.assertTrue({"REFUNDED", "PARTIALLY_REFUNDED"} <= statuses)
        self.assertTrue(any(len(o["refunds"]) >= 2 for o in refunded))
        self.assertTrue(any(len(r["refundLineItems"]) >= 2 for o in refunded for r in o["refunds"]))
        customers = {}
        for o in self.orders:
            if o["customer"]:
                customers.setdefault(o["customer"]["id"], []).append(o)
        self.assertTrue(any(len(v) >= 3 for v in customers.values()))
        for cid, os_ in customers.items():
            self.assertEqual(os_[0]["customer"]["numberOfOrders"], str(len(os_)))
        self.assertGreaterEqual(sum(len(o["lineItems"]) == 260 for o in self.orders), 2)

    def test_ids(self):
        def share_big(ids):
            return sum(i > TWO53 for i in ids) / len(ids)
        orders = [gid_num(o["id"]) for o in self.orders]
        lis = [gid_num(li["id"]) for o in self.orders for li in o["lineItems"]]
        refunds = [gid_num(r["id"]) for o in self.orders for r in o["refunds"]]
        customers = list({gid_num(o["customer"]["id"]) for o in self.orders if o["customer"]})
        for ids in (orders, lis, refunds, customers):
            self.assertGreaterEqual(share_big(ids), 0.2)
            self.assertTrue(any(i < TWO53 for i in ids))
        self.assertEqual(len(set(orders)), len(orders))
        self.assertEqual(len(set(lis)), len(lis))
        for o in self.orders:
            self.assertEqual(o["legacyResourceId"], str(gid_num(o["id"])))
        # > 2^53 ids survive the wire exactly (as strings and inside GIDs)
        g = GQL("data-a")
        big = [o for o in self.orders if gid_num(o["id"]) > TWO53 and gid_num(o["id"]) % 2 == 1][0]
        status, _, raw = g.raw('query($id: ID!) { order(id: $id) { id legacyResourceId } }', {"id": big["id"]})
        self.assertIn(str(gid_num(big["id"])).encode(), raw)
        self.assertNotEqual(int(float(big["legacyResourceId"])), gid_num(big["id"]))

    def test_money_and_totals(self):
        def amt(bag, which="shopMoney"):
            return Decimal(bag[which]["amount"])
        for orders in (self.orders, export_orders("data-jpy")):
            for o in orders:
                for which in ("shopMoney", "presentmentMoney"):
                    lines = o["lineItems"]
                    sub = sum(amt(li["discountedUnitPriceSet"], which) * li["quantity"] for li in lines)
                    disc = sum((amt(li["originalUnitPriceSet"], which) - amt(li["discountedUnitPriceSet"], which))
                               * li["quantity"] for li in lines)
                    self.assertEqual(amt(o["subtotalPriceSet"], which), sub)
                    self.assertEqual(amt(o["totalDiscountsSet"], which), disc)
                    self.assertEqual(amt(o["totalPriceSet"], which),
                                     sub + amt(o["totalShippingPriceSet"], which) + amt(o["totalTaxSet"], which))
                    refunded = sum(amt(r["totalRefundedSet"], which) for r in o["refunds"])
                    self.assertEqual(amt(o["totalRefundedSet"], which), refunded)
                    self.assertLessEqual(refunded, amt(o["totalPriceSet"], which))
                    for key, bag in o.items():
                        if key.endswith("Set"):
                            m = bag[which]
                            self.assertRegex(m["amount"], MONEY_RE)
                            if m["currencyCode"] == "JPY":
                                self.assertTrue(m["amount"].endswith(".0"), m)
                self.assertGreaterEqual(o["updatedAt"], o["createdAt"])
                self.assertGreaterEqual(o["processedAt"], o["createdAt"])
                self.assertTrue("2024-01-01T00:00:00Z" <= o["createdAt"] <= "2026-10-31T23:59:59Z")
                for r in o["refunds"]:
                    self.assertGreater(r["createdAt"], o["createdAt"])
                    self.assertGreaterEqual(o["updatedAt"], r["createdAt"])
        self.assertEqual(shopify_data.money_str(2000), "20.0")
        self.assertEqual(shopify_data.money_str(150000), "1500.0")
        self.assertEqual(shopify_data.money_str(1999), "19.99")
        self.assertEqual(shopify_data.money_str(1990), "19.9")

    def test_store_creation_speed(self):
        t = time.time()
        create_store("data-speed", orders=3000, seed=1)
        self.assertLess(time.time() - t, 3.0)
        ctl("DELETE", "/stores/data-speed", expect=200)


class TestBulk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("bulk", orders=200, seed=13, bulk_min_ms=300)
        cls.g = GQL("bulk")

    def test_ungrouped_children_after_every_order(self):
        # from 2026-01 groupObjects defaults to false: children are not under their parent
        op = run_bulk(self.g, BULK_INNER, version="2026-01", group=None)
        status, resp, data = download(op["url"])
        lines = [json.loads(x) for x in data.decode().splitlines()]
        kinds = ["child" if "__parentId" in x else "root" for x in lines]
        first_child = kinds.index("child")
        self.assertNotIn("root", kinds[first_child:])
        self.assertEqual(op["objectCount"], str(len(lines)))
        # before 2026-01 grouping was the default
        op = run_bulk(self.g, BULK_INNER, version="2025-10", group=None)
        status, resp, data = download(op["url"])
        kinds = ["child" if "__parentId" in json.loads(x) else "root" for x in data.decode().splitlines()]
        self.assertEqual(kinds[0], "root")
        self.assertIn("root", kinds[kinds.index("child"):])

    def test_lifecycle_and_jsonl(self):
        op = run_bulk(self.g, BULK_INNER)
        self.assertEqual(op["status"], "COMPLETED")
        self.assertIn("RUNNING", op["_seen"])
        self.assertIsNone(op["errorCode"])
        self.assertIsNone(op["partialDataUrl"])
        self.assertEqual(op["type"], "QUERY")
        self.assertEqual(op["query"], BULK_INNER)
        self.assertTrue(op["completedAt"])
        status, resp, data = download(op["url"])
        self.assertEqual(status, 200)
        self.assertEqual(op["fileSize"], str(len(data)))
        text = data.decode()
        self.assertIn("gid:\\/\\/shopify\\/Order\\/", text)      # escaped slashes on some lines
        self.assertIn('"gid://shopify/Order/', text)
        lines = [json.loads(x) for x in text.splitlines()]
        self.assertEqual(op["objectCount"], str(len(lines)))
        roots = [x for x in lines if "__parentId" not in x]
        self.assertEqual(op["rootObjectCount"], str(len(roots)))
        canon = export_orders("bulk")
        self.assertEqual([r["id"] for r in roots], [o["id"] for o in canon])     # id order
        by_id = {o["id"]: o for o in canon}
        current = None
        refund_parents = {}
        li_children = {}
        rli_children = {}
        for x in lines:
            if "__parentId" not in x:
                current = x
                self.assertEqual(list(x), ["id", "name", "updatedAt", "refunds"])
                for r in x["refunds"]:
                    self.assertNotIn("refundLineItems", r)
                    refund_parents[r["id"]] = x["id"]
                continue
            self.assertEqual(list(x)[-1], "__parentId")
            if "/LineItem/" in x["id"]:
                self.assertEqual(x["__parentId"], current["id"])
                li_children.setdefault(x["__parentId"], []).append(x["id"])
            else:
                self.assertIn("/RefundLineItem/", x["id"])
                self.assertEqual(refund_parents[x["__parentId"]], current["id"])
                rli_children.setdefault(x["__parentId"], []).append(x["id"])
        for oid, o in by_id.items():
            self.assertEqual(li_children.get(oid, []), [li["id"] for li in o["lineItems"]])
            for r in o["refunds"]:
                self.assertEqual(rli_children.get(r["id"], []), [x["id"] for x in r["refundLineItems"]])
        self.assertTrue(rli_children)

        # Range download resumes exactly
        size = len(data)
        status, resp, part = download(op["url"], {"Range": "bytes=%d-" % (size // 3)})
        self.assertEqual(status, 206)
        self.assertEqual(resp.getheader("Content-Range"), "bytes %d-%d/%d" % (size // 3, size - 1, size))
        self.assertEqual(data[:size // 3] + part, data)
        status, _, _ = download(op["url"], {"Range": "bytes=%d-" % (size + 10)})
        self.assertEqual(status, 416)
        # a bad signature is refused
        self.assertEqual(download(op["url"].replace("sig=", "sig=0"))[0], 403)
        # mutations after completion do not change the file
        ctl("POST", "/stores/bulk/mutations", {"op": "touch", "order_id": roots[0]["id"]}, expect=200)
        self.assertEqual(download(op["url"])[2], data)

    def test_current_and_node_poll_and_counters(self):
        create_store("bulk-poll", orders=50, seed=13, bulk_min_ms=100)
        g = GQL("bulk-poll")
        ctl("DELETE", "/stores/bulk-poll/counters", expect=200)
        op = run_bulk(g, "{ orders(query: \"created_at:>=2025-01-01\") { edges { node { id } } } }")
        d = g.data("{ currentBulkOperation { id status url } }")["currentBulkOperation"]
        self.assertEqual(d["id"], op["id"])
        d = g.data('query($id: ID!) { node(id: $id) { id ... on BulkOperation { status objectCount } } }',
                   {"id": op["id"]}, version="2025-10")
        self.assertEqual(d["node"]["status"], "COMPLETED")
        download(op["url"])
        c = ctl("GET", "/stores/bulk-poll/counters")[1]
        self.assertEqual((c["graphql_bulk_start"], c["graphql_bulk_poll"], c["bulk_download"], c["graphql_orders"]),
                         (1, len(op["_seen"]) + 2, 1, 0))

    def test_empty_result(self):
        op = run_bulk(self.g, '{ orders(query: "created_at:<2000-01-01") { edges { node { id } } } }')
        self.assertEqual((op["status"], op["url"], op["objectCount"], op["fileSize"]), ("COMPLETED", None, "0", None))

    def test_in_progress_and_concurrency(self):
        create_store("bulk-conc", orders=20, seed=1, bulk_min_ms=1500)
        g = GQL("bulk-conc")
        q = 'mutation { bulkOperationRunQuery(query: "{ orders { edges { node { id } } } }") { bulkOperation { id status } userErrors { field message code } } }'
        first = g.data(q, version="2025-10")["bulkOperationRunQuery"]
        self.assertEqual(first["bulkOperation"]["status"], "CREATED")
        second = g.data(q, version="2025-10")["bulkOperationRunQuery"]
        self.assertIsNone(second["bulkOperation"])
        self.assertEqual(second["userErrors"], [{
            "field": None, "code": "OPERATION_IN_PROGRESS",
            "message": "A bulk query operation for this app and shop is already in progress: %s."
                       % first["bulkOperation"]["id"]}])
        # 2026-01 and later: five at once
        results = [g.data(q, version="2026-01")["bulkOperationRunQuery"] for _ in range(5)]
        self.assertEqual([bool(r["bulkOperation"]) for r in results], [True, True, True, True, False])

    def test_cancel(self):
        create_store("bulk-cancel", orders=20, seed=1, bulk_min_ms=2000)
        g = GQL("bulk-cancel")
        d = g.data('mutation { bulkOperationRunQuery(query: "{ orders { edges { node { id } } } }") { bulkOperation { id } } }')
        gid = d["bulkOperationRunQuery"]["bulkOperation"]["id"]
        c = g.data('mutation($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { id status } userErrors { field message } } }',
                   {"id": gid})["bulkOperationCancel"]
        self.assertEqual(c["bulkOperation"]["status"], "CANCELING")
        self.assertEqual(wait_bulk(g, gid)["status"], "CANCELED")

    def test_invalid_bulk_queries(self):
        q = 'mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id } userErrors { field message code } } }'
        for inner in ("{ orders { edges { node { id foo } } } }", "{ shop { name } }", "{ orders { edges { node { id } } ",
                      "{ shop { name } orders { edges { node { id } } } }"):
            d = self.g.data(q, {"q": inner})["bulkOperationRunQuery"]
            self.assertIsNone(d["bulkOperation"], inner)
            self.assertEqual(d["userErrors"][0]["code"], "INVALID")

    def test_bulk_faults(self):
        create_store("bulk-f", orders=100, seed=2, bulk_min_ms=50)
        g = GQL("bulk-f")
        ctl("POST", "/stores/bulk-f/faults", {"kind": "bulk_failed"}, expect=201)
        op = run_bulk(g, "{ orders { edges { node { id } } } }")
        self.assertEqual((op["status"], op["errorCode"], op["url"]), ("FAILED", "INTERNAL_SERVER_ERROR", None))
        status, _, part = download(op["partialDataUrl"])
        self.assertEqual(status, 200)
        self.assertEqual(len(part.decode().splitlines()), 50)
        for kind, st in (("bulk_expired", "EXPIRED"), ("bulk_canceled", "CANCELED")):
            ctl("POST", "/stores/bulk-f/faults", {"kind": kind}, expect=201)
            op = run_bulk(g, "{ orders { edges { node { id } } } }")
            self.assertEqual((op["status"], op["url"]), (st, None))
        ctl("POST", "/stores/bulk-f/faults", {"kind": "bulk_in_progress"}, expect=201)
        d = g.data('mutation { bulkOperationRunQuery(query: "{ orders { edges { node { id } } } }") { bulkOperation { id } userErrors { code message } } }')
        self.assertEqual(d["bulkOperationRunQuery"]["userErrors"][0]["code"], "OPERATION_IN_PROGRESS")
        # download faults
        op = run_bulk(g, "{ orders { edges { node { id } } } }")
        full = download(op["url"])[2]
        ctl("POST", "/stores/bulk-f/faults", {"kind": "truncated", "endpoint": "bulk_download"}, expect=201)
        with self.assertRaises(http.client.IncompleteRead):
            download(op["url"])
        ctl("POST", "/stores/bulk-f/faults", {"kind": "http_503", "endpoint": "bulk_download"}, expect=201)
        self.assertEqual(download(op["url"])[0], 503)
        self.assertEqual(download(op["url"])[2], full)


class TestFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("flt", orders=30, seed=6)
        cls.g = GQL("flt")

    def fault(self, **spec):
        ctl("POST", "/stores/flt/faults", spec, expect=201)

    def test_http_errors(self):
        q = "{ shop { name } }"
        self.fault(kind="http_500")
        status, resp, data = self.g.raw(q)
        self.assertEqual(status, 500)
        json.loads(data)
        self.fault(kind="http_502")
        status, resp, data = self.g.raw(q)
        self.assertEqual(status, 502)
        self.assertIn(b"<html>", data)
        self.fault(kind="http_503", body="json")
        self.assertEqual(self.g.raw(q)[0], 503)
        self.fault(kind="http_429", retry_after="2.5")
        status, resp, data = self.g.raw(q)
        self.assertEqual((status, resp.getheader("Retry-After")), (429, "2.5"))
        self.assertEqual(self.g.raw(q)[0], 200)

    def test_fifo_count_list_clear(self):
        self.fault(kind="http_500", count=2)
        self.fault(kind="http_429")
        faults = ctl("GET", "/stores/flt/faults")[1]["faults"]
        self.assertEqual([(f["kind"], f["count"]) for f in faults], [("http_500", 2), ("http_429", 1)])
        codes = [self.g.raw("{ shop { name } }")[0] for _ in range(4)]
        self.assertEqual(codes, [500, 500, 429, 200])
        self.fault(kind="http_500", count=5)
        ctl("DELETE", "/stores/flt/faults", expect=200)
        self.assertEqual(self.g.raw("{ shop { name } }")[0], 200)
        self.assertEqual(ctl("POST", "/stores/flt/faults", {"kind": "nope"})[0], 400)

    def test_throttled_fault(self):
        set_bucket("flt", 2000)
        self.fault(kind="throttled")
        out = self.g("{ orders(first: 10) { nodes { id } } }")
        self.assertEqual(out["errors"][0]["extensions"]["code"], "THROTTLED")
        self.assertEqual(out["extensions"]["cost"]["requestedQueryCost"], 12)
        self.assertIsNone(out["extensions"]["cost"]["actualQueryCost"])
        self.assertGreaterEqual(out["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"], 1999)

    def test_timeout_does_not_block_others(self):
        self.fault(kind="timeout", delay=1.0)
        t0 = time.time()
        with self.assertRaises((socket.timeout, TimeoutError)):
            self.g.raw("{ shop { name } }", timeout=0.3)
        # meanwhile the server answers other requests at once
        self.assertEqual(self.g.raw("{ shop { name } }")[0], 200)
        self.assertLess(time.time() - t0, 0.9)

    def test_malformed_truncated_reset(self):
        self.fault(kind="malformed_json")
        status, _, data = self.g.raw("{ shop { name } }")
        self.assertEqual(status, 200)
        with self.assertRaises(ValueError):
            json.loads(data)
        self.fault(kind="truncated")
        with self.assertRaises(http.client.IncompleteRead):
            self.g.raw("{ shop { name } }")
        self.fault(kind="connection_reset")
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            self.g.raw("{ shop { name } }")
        self.assertEqual(self.g.raw("{ shop { name } }")[0], 200)

    def test_http_401_invalidates_token(self):
        g = GQL("flt")
        self.fault(kind="http_401")
        self.assertEqual(g.raw("{ shop { name } }")[0], 401)
        self.assertEqual(g.raw("{ shop { name } }")[0], 401)     # the token is gone
        self.assertEqual(GQL("flt").raw("{ shop { name } }")[0], 200)

    def test_token_endpoint_faults(self):
        self.fault(kind="http_503", endpoint="token")
        status, _, _ = request("POST", "/flt/admin/oauth/access_token",
                               {"client_id": "cid-flt", "client_secret": "secret-flt", "grant_type": "client_credentials"})
        self.assertEqual(status, 503)
        self.fault(kind="http_500", endpoint="any")
        status, _, _ = request("POST", "/flt/admin/oauth/access_token",
                               {"client_id": "cid-flt", "client_secret": "secret-flt", "grant_type": "client_credentials"})
        self.assertEqual(status, 500)
        get_token("flt")

    def test_counters(self):
        ctl("DELETE", "/stores/flt/counters", expect=200)
        set_bucket("flt", 2000)
        g = GQL("flt")
        g.data("{ orders(first: 2) { nodes { id } } }")
        g.data("{ shop { name } }")
        self.fault(kind="http_502")
        g.raw("{ orders(first: 2) { nodes { id } } }")
        g.raw("{ orders(first: 2) { nodes { id } } }", token="bad")
        c = ctl("GET", "/stores/flt/counters")[1]
        self.assertEqual((c["token"], c["graphql"], c["graphql_orders"], c["graphql_other"]), (1, 4, 3, 1))
        self.assertEqual((c["faults_injected"], c["http_5xx"], c["http_4xx"]), (1, 1, 1))
        self.assertEqual(c["points_requested"], 4 + 1)
        self.assertEqual(c["points_actual"], 4 + 1)


class TestMutations(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_store("mut", orders=80, seed=8)
        cls.g = GQL("mut")

    def mutate(self, **spec):
        status, res = ctl("POST", "/stores/mut/mutations", spec)
        self.assertEqual(status, 200, res)
        return res

    def test_add_order(self):
        before = ctl("GET", "/stores/mut")[1]["orders"]
        res = self.mutate(op="add_order", source_name="2329312", tags=["vip", "Exclude"], items=3,
                          created_at="2026-11-01T10:00:00Z", email="new.buyer@example.com", currency="GBP")
        o = res["order"]
        self.assertEqual(o["sourceName"], "2329312")
        self.assertEqual(o["tags"], ["Exclude", "vip"])
        self.assertEqual(len(o["lineItems"]), 3)
        self.assertEqual(o["createdAt"], "2026-11-01T10:00:00Z")
        self.assertEqual((o["currencyCode"], o["presentmentCurrencyCode"]), ("EUR", "GBP"))
        self.assertEqual(o["customer"]["email"], "new.buyer@example.com")
        self.assertGreater(gid_num(o["id"]), TWO53)
        self.assertEqual(ctl("GET", "/stores/mut")[1]["orders"], before + 1)
        d = self.g.data('{ orders(first: 1, sortKey: UPDATED_AT, reverse: true) { nodes { id } } }')
        self.assertEqual(d["orders"]["nodes"][0]["id"], o["id"])
        # by existing customer id: numberOfOrders grows
        res2 = self.mutate(op="add_order", customer_id=o["customer"]["id"])
        self.assertEqual(res2["order"]["customer"]["numberOfOrders"], "2")
        self.assertEqual(ctl("GET", "/stores/mut/orders/%s" % res2["order_id"])[1]["id"], res2["order"]["id"])

    def test_upsell_tag_refund_cancel_touch(self):
        oid = [o for o in export_orders("mut") if not o["refunds"] and not o["cancelledAt"]][3]["id"]
        base = ctl("GET", "/stores/mut/orders/%s" % gid_num(oid))[1]
        up = self.mutate(op="upsell", order_id=oid, items=2, updated_at="2026-11-02T00:00:00Z")["order"]
        self.assertEqual(len(up["lineItems"]), len(base["lineItems"]) + 2)
        self.assertGreater(Decimal(up["totalPriceSet"]["shopMoney"]["amount"]),
                           Decimal(base["totalPriceSet"]["shopMoney"]["amount"]))
        self.assertEqual(up["updatedAt"], "2026-11-02T00:00:00Z")
        t = self.mutate(op="tag", order_id=oid, add=["EXCLUDE"], remove=["nonexistent"])["order"]
        self.assertIn("EXCLUDE", t["tags"])
        t = self.mutate(op="tag", order_id=oid, add=["exclude"])["order"]      # case-insensitive: no dup
        self.assertEqual(sum(x.lower() == "exclude" for x in t["tags"]), 1)
        t = self.mutate(op="tag", order_id=oid, remove=["Exclude"])["order"]
        self.assertNotIn("exclude", [x.lower() for x in t["tags"]])
        r = self.mutate(op="refund", order_id=oid)
        o = r["order"]
        self.assertEqual(o["refunds"][-1]["id"], "gid://shopify/Refund/%s" % r["refund_id"])
        rli = o["refunds"][-1]["refundLineItems"]
        self.assertEqual((len(rli), rli[0]["quantity"]), (1, 1))
        self.assertEqual(o["displayFinancialStatus"], "PARTIALLY_REFUNDED")
        li = o["lineItems"][-1]
        r2 = self.mutate(op="refund", order_id=oid, line_items=[{"line_item_id": li["id"], "quantity": 1}],
                         note="returned")["order"]
        self.assertEqual(r2["refunds"][-1]["note"], "returned")
        r3 = self.mutate(op="refund", order_id=oid, amount="1.5", note="goodwill")["order"]
        self.assertEqual((r3["refunds"][-1]["refundLineItems"], r3["refunds"][-1]["totalRefundedSet"]["shopMoney"]["amount"]),
                         ([], "1.5"))
        self.assertEqual(ctl("POST", "/stores/mut/mutations", {"op": "refund", "order_id": oid,
                                                              "amount": "999999.0"})[0], 400)
        c = self.mutate(op="cancel", order_id=oid, reason="FRAUD", refund=True)["order"]
        self.assertEqual((c["cancelReason"], c["displayFinancialStatus"]), ("FRAUD", "REFUNDED"))
        self.assertEqual(c["totalRefundedSet"], c["totalPriceSet"])
        self.assertEqual(ctl("POST", "/stores/mut/mutations", {"op": "cancel", "order_id": oid})[0], 409)
        before = ctl("GET", "/stores/mut/orders/%s" % gid_num(oid))[1]
        after = self.mutate(op="touch", order_id=oid, updated_at="2026-11-20T12:00:00Z")["order"]
        self.assertEqual(after["updatedAt"], "2026-11-20T12:00:00Z")
        before.pop("updatedAt"), after.pop("updatedAt")
        self.assertEqual(before, after)
        self.assertEqual(ctl("POST", "/stores/mut/mutations", {"op": "touch", "order_id": "123"})[0], 404)

    def test_scheduled_mutation(self):
        create_store("sched", orders=50, seed=8)
        g = GQL("sched")
        target = export_orders("sched")[5]["id"]
        ctl("POST", "/stores/sched/scheduled", {"after": 2, "mutation": {"op": "tag", "order_id": target,
                                                                         "add": ["late"]}}, expect=201)
        q = 'query($id: ID!) { order(id: $id) { tags } }'
        self.assertNotIn("late", g.data(q, {"id": target})["order"]["tags"])     # 1st orders request
        g.data("{ shop { name } }")                                              # not an orders request
        self.assertIn("late", g.data(q, {"id": target})["order"]["tags"])        # applied just before the 2nd
        s = ctl("GET", "/stores/sched/scheduled")[1]
        self.assertEqual((s["scheduled"], s["applied"][0]["ok"]), ([], True))


class TestProcessAndCli(unittest.TestCase):
    def test_server_process_and_mockctl(self):
        tmp = tempfile.mkdtemp()
        try:
            port_file = os.path.join(tmp, "port")
            proc = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), "--port", "0",
                                     "--port-file", port_file, "--quiet", "--store", "cli:orders=40,seed=7",
                                     "--store", "cli2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = proc.stdout.readline().decode()
            with open(port_file) as f:
                port = f.read()
            self.assertRegex(port, r"^\d+\n$")
            self.assertEqual(line, "mock shopify listening on http://127.0.0.1:%s\n" % port.strip())
            env = dict(os.environ, MOCK_SHOPIFY_URL="http://127.0.0.1:%s" % port.strip())

            def ctl_cli(*args, check=True):
                r = subprocess.run([sys.executable, os.path.join(HERE, "mockctl.py")] + list(args),
                                   env=env, capture_output=True, text=True, timeout=30)
                if check:
                    self.assertEqual(r.returncode, 0, r.stderr)
                return r
            ctl_cli("wait-ready")
            self.assertEqual(ctl_cli("stores").stdout, "cli\ncli2\n")
            oid = ctl_cli("add-order", "cli", "--source-name", "pos", "--tags", "a,b", "--items", "2").stdout.strip()
            self.assertTrue(oid.isdigit())
            self.assertEqual(len(ctl_cli("upsell", "cli", oid, "--items", "3").stdout.split()), 3)
            self.assertTrue(ctl_cli("refund", "cli", oid).stdout.strip().isdigit())
            ctl_cli("tag", "cli", oid, "--add", "Exclude")
            ctl_cli("cancel", "cli", oid)
            ctl_cli("touch", "cli", oid, "--updated-at", "2026-11-01T00:00:00Z")
            order = json.loads(ctl_cli("order", "cli", oid).stdout)
            self.assertEqual(order["updatedAt"], "2026-11-01T00:00:00Z")
            self.assertEqual(len(ctl_cli("export", "cli").stdout.splitlines()), 41)
            ctl_cli("fault", "cli", "http_429", "--count", "2", "--retry-after", "0.5")
            self.assertEqual(len(json.loads(ctl_cli("faults", "cli").stdout)), 1)
            ctl_cli("clear-faults", "cli")
            ctl_cli("schedule", "cli", "--after", "1", "tag", oid, "--add", "later")
            self.assertEqual(len(json.loads(ctl_cli("scheduled", "cli").stdout)["scheduled"]), 1)
            self.assertEqual(ctl_cli("counters", "cli", "graphql").stdout, "0\n")
            self.assertIn("graphql_orders=0\n", ctl_cli("counters", "cli").stdout)
            self.assertEqual(ctl_cli("bucket", "cli", "--available", "0").stdout.splitlines()[0], "currentlyAvailable=0")
            ctl_cli("create-store", "cli3", "--orders", "5", "--not-installed", "-q")
            self.assertIn('"installed": false', ctl_cli("store", "cli3").stdout)
            ctl_cli("settings", "cli3", "installed=true", "client_secret=rotated")
            self.assertEqual(json.loads(ctl_cli("store", "cli3").stdout)["settings"]["client_secret"], "rotated")
            r = ctl_cli("order", "nope", "1", check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("unknown store", r.stderr)
            r = subprocess.run([sys.executable, os.path.join(HERE, "mockctl.py"), "--url", "http://127.0.0.1:1",
                                "stores"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=10), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            shutil.rmtree(tmp, ignore_errors=True)

    @unittest.skipUnless(shutil.which("openssl"), "openssl not installed")
    def test_tls(self):
        import ssl
        tmp = tempfile.mkdtemp()
        try:
            cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
            app = MockShopify(stores=["tls:orders=5"], tls_cert=cert, tls_key=key).start()
            try:
                self.assertTrue(app.base_url.startswith("https://"))
                ctx = ssl.create_default_context(cafile=cert)
                ctx.check_hostname = False
                conn = http.client.HTTPSConnection("127.0.0.1", app.port, context=ctx, timeout=10)
                conn.request("POST", "/tls/admin/oauth/access_token",
                             json.dumps({"client_id": "cid-tls", "client_secret": "secret-tls",
                                         "grant_type": "client_credentials"}), {"Content-Type": "application/json"})
                self.assertEqual(conn.getresponse().status, 200)
                conn.close()
            finally:
                app.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class TestPerformance(unittest.TestCase):
    def test_page_latency(self):
        create_store("perf", orders=3000, seed=77)
        g = GQL("perf")
        q = "{ orders(first: 250, sortKey: UPDATED_AT) { edges { cursor node { id legacyResourceId name updatedAt } } pageInfo { hasNextPage endCursor } } }"
        g.data(q)
        t = time.perf_counter()
        for _ in range(5):
            set_bucket("perf", 2000)
            g.data(q)
        self.assertLess((time.perf_counter() - t) / 5, 0.15)


if __name__ == "__main__":
    unittest.main()


class TestReceiver(unittest.TestCase):
    """The event receivers converge delivers to in its tests."""

    def sign(self, secret, body, t=None):
        import hashlib
        import hmac as hm
        t = int(time.time()) if t is None else t
        return "t=%d,v1=%s" % (t, hm.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest())

    def setUp(self):
        request("POST", "/_mock/receivers", {"name": "r1", "secret": "s3cret"})

    def received(self):
        return ctl("GET", "/receivers/r1/requests", expect=200)[1]["requests"]

    def test_records_and_checks_signatures(self):
        body = b'{"event_name":"Placed Order","event_id":"e1"}'
        st, _, _ = request("POST", "/_receiver/r1", body, {"Converge-Signature": self.sign("s3cret", body),
                                                           "Idempotency-Key": "e1"})
        self.assertEqual(st, 200)
        request("POST", "/_receiver/r1", body, {"Converge-Signature": self.sign("other", body)})
        request("POST", "/_receiver/r1", body, {"Converge-Signature": self.sign("s3cret", body, t=1000)})
        got = self.received()
        self.assertEqual([(r["signature_valid"], r["signature_fresh"]) for r in got],
                         [(True, True), (False, True), (True, False)])
        self.assertEqual(got[0]["idempotency_key"], "e1")
        self.assertEqual(got[0]["keys"], ["event_name", "event_id"])

    def test_faults_in_order(self):
        request("POST", "/_mock/receivers/r1/faults", {"kind": "http_500"})
        request("POST", "/_mock/receivers/r1/faults", {"kind": "http_429", "retry_after": "7"})
        request("POST", "/_mock/receivers/r1/faults", {"kind": "http_400"})
        st1, _, _ = request("POST", "/_receiver/r1", b"{}")
        st2, h2, _ = request("POST", "/_receiver/r1", b"{}")
        st3, _, _ = request("POST", "/_receiver/r1", b"{}")
        st4, _, _ = request("POST", "/_receiver/r1", b"{}")
        self.assertEqual((st1, st2, st3, st4), (500, 429, 400, 200))
        self.assertEqual(h2.getheader("Retry-After"), "7")

    def test_down_resets_connections(self):
        request("PATCH", "/_mock/receivers/r1", {"down": True})
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            request("POST", "/_receiver/r1", b"{}")
        request("PATCH", "/_mock/receivers/r1", {"down": False})
        self.assertEqual(request("POST", "/_receiver/r1", b"{}")[0], 200)

    def test_unknown_receiver_and_fault(self):
        self.assertEqual(request("POST", "/_receiver/nobody", b"{}")[0], 404)
        self.assertEqual(request("POST", "/_mock/receivers/r1/faults", {"kind": "explode"})[0], 400)
