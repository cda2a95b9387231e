"""Shopify search syntax for the `query:` argument of `orders`.

Supported terms (joined by spaces or AND; everything else is ignored, like
Shopify ignores unknown terms):
  updated_at / created_at / processed_at : comparisons > >= < <= = (or none, meaning =)
  id                                     : integer comparisons
  test:true|false, tag:X (case-insensitive), source_name:X
  status:any (ignored)
Values may be quoted with ' or " or unquoted. Timestamps are ISO-8601; a bare
date with '=' means the whole (UTC) day.

The result is a Filter: integer ranges [lo, hi] (inclusive) for the timestamp
and id fields, plus simple predicates.
"""

import math
import re

from shopify_data import parse_time_exact

TIME_FIELDS = {"updated_at": "updated", "created_at": "created", "processed_at": "processed"}

_TERM_RE = re.compile(r"""
    \s*(?P<neg>-)?(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*:\s*
    (?P<op>>=|<=|>|<|=)?\s*
    (?P<value>'[^']*'|"[^"]*"|[^\s()]+)
  | \s*(?P<word>\(|\)|[^\s()]+)
""", re.X)


class Filter:
    __slots__ = ("ranges", "test", "tags", "source_names", "empty")

    def __init__(self):
        self.ranges = {}        # attr -> [lo, hi]
        self.test = None
        self.tags = []
        self.source_names = []
        self.empty = False      # a contradiction: matches nothing

    def narrow(self, attr, lo, hi):
        cur = self.ranges.get(attr, [-math.inf, math.inf])
        cur = [max(cur[0], lo), min(cur[1], hi)]
        if cur[0] > cur[1]:
            self.empty = True
        self.ranges[attr] = cur

    def is_trivial(self):
        return not (self.ranges or self.test is not None or self.tags or self.source_names or self.empty)

    def predicate(self, min_created=None, skip_attr=None):
        """A function order -> bool, or None if everything matches.

        skip_attr: a range already applied by bisecting the sort index."""
        if self.empty:
            return lambda o: False
        checks = []
        for attr, (lo, hi) in self.ranges.items():
            if attr == skip_attr:
                continue
            checks.append((attr, lo, hi))
        if min_created is not None:
            checks.append(("created", min_created, math.inf))
        test = self.test
        tags = [t.lower() for t in self.tags]
        sources = self.source_names
        if not checks and test is None and not tags and not sources:
            return None

        def pred(o):
            for attr, lo, hi in checks:
                v = getattr(o, attr)
                if v < lo or v > hi:
                    return False
            if test is not None and o.test != test:
                return False
            if tags:
                have = {t.lower() for t in o.tags}
                for t in tags:
                    if t not in have:
                        return False
            if sources and o.source_name not in sources:
                return False
            return True
        return pred


def _time_bounds(op, value):
    """Inclusive integer-second bounds for `field:<op><value>`, or None if invalid."""
    try:
        secs, frac, date_only = parse_time_exact(value)
    except ValueError:
        return None
    if op in ("=", None):
        if date_only:
            return secs, secs + 86399
        return (secs, secs) if not frac else (1, 0)     # (1, 0): empty
    # exact value v = secs + frac; stored timestamps are whole seconds
    if op == ">=":
        return (secs + 1 if frac else secs), math.inf
    if op == ">":
        return secs + 1, math.inf
    if op == "<=":
        return -math.inf, secs
    if op == "<":
        return -math.inf, (secs if frac else secs - 1)
    return None


def _int_bounds(op, value):
    try:
        v = int(value.rsplit("/", 1)[-1])   # accept a GID too
    except ValueError:
        return None
    return {"=": (v, v), None: (v, v), ">=": (v, math.inf), ">": (v + 1, math.inf),
            "<=": (-math.inf, v), "<": (-math.inf, v - 1)}[op]


def parse_search(text):
    """Parse a search string into a Filter (never raises: bad terms are ignored)."""
    f = Filter()
    if not text:
        return f
    pos = 0
    while pos < len(text):
        m = _TERM_RE.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        field = m.group("field")
        if not field or m.group("neg"):
            continue     # bare words, AND/OR, parentheses, negations: ignored
        field = field.lower()
        op = m.group("op")
        value = m.group("value")
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        if field in TIME_FIELDS:
            b = _time_bounds(op, value)
            if b:
                f.narrow(TIME_FIELDS[field], *b)
        elif field == "id":
            b = _int_bounds(op, value)
            if b:
                f.narrow("id", *b)
        elif field == "test":
            if value.lower() in ("true", "false"):
                f.test = value.lower() == "true"
        elif field == "tag":
            f.tags.append(value)
        elif field == "source_name":
            f.source_names.append(value)
        # status:any and unknown fields: ignored
    return f
