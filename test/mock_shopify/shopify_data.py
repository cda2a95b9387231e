"""Store contents: the order model, deterministic generation and mutations.

Money is kept as integers in hundredths of the currency unit ("cents"); every
conversion or percentage uses decimal.Decimal or exact integer arithmetic,
never floats. JPY amounts are whole numbers (multiples of 100 cents).
Amounts are rendered like Shopify serializes a Decimal: "19.99", "20.0".

Orders, line items and refunds are copy-on-write: a mutation builds a new
Order (see Order.clone) and swaps it in, so a reader holding an old reference
(a running bulk export) sees a consistent snapshot without holding a lock.
"""

import bisect
import calendar
import random
import re
import time
import unicodedata
from decimal import Decimal, ROUND_HALF_UP

T_START = 1704067200   # 2024-01-01T00:00:00Z
T_END = 1793491199     # 2026-10-31T23:59:59Z
DAY = 86400

BIG = 2 ** 53 + 1      # 9007199254740993: ids above 2^53 start here

# Small and big id bases per resource type. Big ids of different types are
# spread across the int64 range so that a client that passes ids through a
# double, or into a 32-bit/53-bit integer, breaks visibly.
ID_BASES = {
    "order": (5_600_000_000_000, BIG),
    "line_item": (14_000_000_000_000, BIG + 10 ** 14),
    "refund": (900_000_000_000, BIG + 2 * 10 ** 14),
    "refund_line_item": (500_000_000_000, BIG + 3 * 10 ** 14),
    "customer": (7_000_000_000_000, 7_400_000_000_000_000_001),
    "product": (8_000_000_000_000, BIG + 5 * 10 ** 14),
    "variant": (44_000_000_000_000, BIG + 6 * 10 ** 14),
}

# ------------------------------------------------------------------ time

def iso(t):
    """Epoch seconds -> 'YYYY-MM-DDTHH:MM:SSZ' (None stays None)."""
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2}|UTC)?$")


def parse_time_exact(s):
    """Parse an ISO-8601 timestamp. Returns (seconds:int, fraction:Decimal, date_only)."""
    m = _TIME_RE.match(s.strip())
    if not m:
        raise ValueError("invalid timestamp: %r" % s)
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    t = calendar.timegm((int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0)))
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31):
        raise ValueError("invalid timestamp: %r" % s)
    if tz and tz not in ("Z", "z", "UTC"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        t -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return t, Decimal(frac) if frac else Decimal(0), hh is None


def parse_time(s):
    """Parse an ISO-8601 timestamp to whole epoch seconds (fraction dropped)."""
    return parse_time_exact(s)[0]


def now():
    return int(time.time())

# ----------------------------------------------------------------- money

# Units per EUR; used to derive shop prices and presentment prices.
RATES = {
    "EUR": Decimal("1"), "USD": Decimal("1.0825"), "GBP": Decimal("0.8571"),
    "SEK": Decimal("11.4312"), "JPY": Decimal("162.37"), "CAD": Decimal("1.4712"),
    "CHF": Decimal("0.9431"), "DKK": Decimal("7.4593"), "NOK": Decimal("11.6821"),
    "PLN": Decimal("4.3125"), "AUD": Decimal("1.6412"),
}
ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "HUF"}
PRESENTMENT_CHOICES = ["USD", "GBP", "SEK", "JPY"]


def step_of(currency):
    """Smallest amount in cents for a currency (100 for JPY)."""
    return 100 if currency in ZERO_DECIMAL else 1


def rate_between(src, dst):
    return RATES.get(dst, Decimal(1)) / RATES.get(src, Decimal(1))


def convert(cents, rate, step):
    """cents * rate rounded half-up to a multiple of step (exact, Decimal)."""
    q = (Decimal(cents) * rate / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(q) * step


def rdiv(num, den, step=1):
    """round(num / den) half-up to a multiple of step, for num >= 0 (integers)."""
    return (2 * num + den * step) // (2 * den * step) * step


def money_str(cents):
    """Shopify's Decimal rendering: 1999 -> '19.99', 2000 -> '20.0', 150000 -> '1500.0'."""
    neg = cents < 0
    whole, frac = divmod(abs(cents), 100)
    if frac == 0:
        s = "%d.0" % whole
    elif frac % 10 == 0:
        s = "%d.%d" % (whole, frac // 10)
    else:
        s = "%d.%02d" % (whole, frac)
    return "-" + s if neg else s


def parse_money(s, currency):
    """'12.5' -> 1250 cents (exact). Raises ValueError."""
    d = Decimal(str(s))
    if d < 0:
        raise ValueError("negative amount")
    cents = d * 100
    step = step_of(currency)
    if cents != cents.to_integral_value() or int(cents) % step:
        raise ValueError("amount %s has too many decimals for %s" % (s, currency))
    return int(cents)

# ----------------------------------------------------------- reference data

FIRST_NAMES = [
    "Anna", "Lukas", "Sofia", "Jonas", "Emma", "Noah", "Mia", "Elias", "Léa", "Jürgen",
    "Åsa", "Øystein", "Zoë", "Chloé", "Liam", "Olivia", "Mateo", "Sara", "Hannah", "Felix",
    "Yuki", "Haruto", "Aoife", "Sean", "Marta", "Piotr", "Giulia", "Luca", "Ines", "Tom",
]
LAST_NAMES = [
    "Müller", "Schmidt", "Dubois", "Martin", "Jansen", "de Vries", "Andersson", "Nilsson",
    "Smith", "Jones", "O'Brien", "García", "Rossi", "Kowalski", "Tanaka", "Sato", "Johnson",
    "Brown", "Lefèvre", "Hansen", "Novak", "Weber", "Fischer", "Bianchi", "López",
]
# (country, code, tax per mille, [(city, province, provinceCode, zip template)])
COUNTRIES = [
    ("Germany", "DE", 190, [("Berlin", None, None, "10{:03d}"), ("München", None, None, "80{:03d}"),
                            ("Hamburg", None, None, "20{:03d}"), ("Köln", None, None, "50{:03d}")]),
    ("France", "FR", 200, [("Paris", None, None, "75{:03d}"), ("Lyon", None, None, "69{:03d}")]),
    ("Netherlands", "NL", 210, [("Amsterdam", None, None, "10{:02d} AB"), ("Utrecht", None, None, "35{:02d} CD")]),
    ("Sweden", "SE", 250, [("Stockholm", None, None, "11{:1d} 22"), ("Malmö", None, None, "21{:1d} 45")]),
    ("United Kingdom", "GB", 200, [("London", "England", "ENG", "SW1A {:1d}AA"), ("Edinburgh", "Scotland", "SCT", "EH{:1d} 1YZ")]),
    ("United States", "US", 0, [("San Francisco", "California", "CA", "941{:02d}"), ("New York", "New York", "NY", "100{:02d}"),
                                ("Austin", "Texas", "TX", "787{:02d}")]),
    ("Japan", "JP", 100, [("Tokyo", "Tōkyō", "JP-13", "100-00{:02d}")]),
    ("Italy", "IT", 220, [("Milano", "Milano", "MI", "201{:02d}")]),
    ("Spain", "ES", 210, [("Madrid", "Madrid", "M", "280{:02d}")]),
    ("Poland", "PL", 230, [("Kraków", None, None, "30-{:03d}")]),
    ("Switzerland", "CH", 81, [("Zürich", "Zürich", "ZH", "80{:02d}")]),
    ("Norway", "NO", 250, [("Oslo", None, None, "01{:02d}")]),
]
STREETS = ["Hauptstraße", "Rue de la Paix", "Keizersgracht", "Drottninggatan", "Baker Street",
           "Market Street", "Via Roma", "Calle Mayor", "ul. Floriańska", "Bahnhofstrasse", "Main St"]
COUNTRY_WEIGHTS = [30, 12, 10, 8, 10, 12, 3, 4, 4, 3, 2, 2]

# Products: (title, vendor, [(variant title or None, price in EUR cents)])
PRODUCTS = [
    ("Classic Tee", "Northwind Apparel", [("S / Black", 2500), ("M / Black", 2500), ("L / White", 2500), ("XL / Navy", 2700)]),
    ("Merino Beanie", "Fjord Knitwear", [(None, 3900)]),
    ("Trail Running Shoe", "Peak Motion", [("41", 12999), ("42", 12999), ("43", 12999), ("44", 13499)]),
    ("Ceramic Mug", "Kiln & Co", [("Sand", 1999), ("Ocean", 1999)]),
    ("Espresso Beans 1kg", "Roastery 47", [("Whole Bean", 2890), ("Ground", 2890)]),
    ("Linen Shirt", "Northwind Apparel", [("M", 5900), ("L", 5900)]),
    ("Gift Card", "Shop", [("25", 2500), ("50", 5000), ("100", 10000)]),
    ("Leather Wallet", "Atelier Brun", [(None, 7450)]),
    ("Yoga Mat", "Peak Motion", [("Purple", 4000), ("Grey", 4000)]),
    ("Wool Socks 3-Pack", "Fjord Knitwear", [("36-40", 1895), ("41-46", 1895)]),
    ("Scented Candle", "Kiln & Co", [("Fig", 2400), ("Cedar", 2400), ("Amber", 2600)]),
    ("Rain Jacket", "Northwind Apparel", [("S", 14900), ("M", 14900), ("L", 14900)]),
    ("Espresso Machine", "Roastery 47", [(None, 150000)]),
    ("Water Bottle", "Peak Motion", [("500 ml", 2000), ("750 ml", 2250)]),
    ("Notebook A5", "Paperworks", [("Dotted", 1250), ("Lined", 1250), ("Blank", 1250)]),
    ("Sunglasses", "Atelier Brun", [(None, 8900)]),
    ("Canvas Tote", "Paperworks", [(None, 1500)]),
    ("Subscription Box", "Roastery 47", [("Monthly", 3500)]),
    ("Silk Scarf", "Atelier Brun", [("Rose", 6950), ("Navy", 6950)]),
    ("Hoodie", "Northwind Apparel", [("S", 6500), ("M", 6500), ("L", 6500), ("XL", 6500)]),
]

# Every sourceName of the product's sales-channel table, plus unknown ones and null.
CHANNEL_SOURCES = ["web", "subscription_contract", "shopify_draft_order", "pos", "12875497473",
                   "Edit Order", "3890849", "2329312", "4383523", "3009811", "amazon"]
OTHER_SOURCES = ["iphone", "android", "5551234", "some_custom_app", None]
ALL_SOURCES = CHANNEL_SOURCES + OTHER_SOURCES
SOURCE_WEIGHTS = [520, 60, 40, 80, 30, 10, 50, 30, 30, 20, 30, 15, 15, 10, 10, 20]

# The app that created the order (OrderApp), by sourceName.
APPS = {
    "web": (580111, "Online Store"),
    "pos": (129785, "Point of Sale"),
    "shopify_draft_order": (1354745, "Draft Orders"),
    "iphone": (6167201, "Shopify Mobile for iPhone"),
    "android": (6167211, "Shopify Mobile for Android"),
    "subscription_contract": (294517, "Recharge Subscriptions"),
    "12875497473": (12875497473, "Headless"),
    "3890849": (3890849, "Shop"),
    "2329312": (2329312, "Facebook & Instagram"),
    "4383523": (4383523, "TikTok"),
    "3009811": (3009811, "Pinterest"),
    "amazon": (5021297, "Amazon by Codisto"),
    "5551234": (5551234, "Wholesale Connector"),
    "some_custom_app": (88123457, "Some Custom App"),
    "Edit Order": None,
    None: None,
}

DISCOUNTS = [("WELCOME10", 10), ("SUMMER15", 15), ("VIP20", 20)]
OTHER_TAGS = ["vip", "wholesale", "gift", "Summer Sale"]
EXCLUDE_TAGS = ["Exclude", "exclude", "EXCLUDE"]
NOTES = ["Please gift wrap", "Leave at the door", "Call before delivery", "Birthday present"]
REFUND_NOTES = [None, None, "Damaged item", "Customer changed mind", "Wrong size"]
SHIPPING_EUR = [0, 495, 690, 990, 1490]
CANCEL_REASONS = ["CUSTOMER", "FRAUD", "INVENTORY", "DECLINED", "OTHER"]


def ascii_slug(s):
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower().replace(" ", "").replace("'", "")

# ------------------------------------------------------------------ model

class Address:
    __slots__ = ("first_name", "last_name", "address1", "address2", "city", "province",
                 "province_code", "country", "country_code", "zip", "phone", "company")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def name(self):
        return " ".join(p for p in (self.first_name, self.last_name) if p) or None


class Customer:
    __slots__ = ("id", "email", "phone", "first_name", "last_name", "address", "order_count")

    def __init__(self, id, email, phone, first_name, last_name, address):
        self.id = id
        self.email = email
        self.phone = phone
        self.first_name = first_name
        self.last_name = last_name
        self.address = address
        self.order_count = 0


class Variant:
    """A catalog entry: one product variant with its prices."""
    __slots__ = ("product_id", "variant_id", "sku", "title", "variant_title", "vendor",
                 "price", "pres")

    def __init__(self, product_id, variant_id, sku, title, variant_title, vendor, price, pres):
        self.product_id = product_id
        self.variant_id = variant_id
        self.sku = sku
        self.title = title
        self.variant_title = variant_title
        self.vendor = vendor
        self.price = price    # shop currency cents
        self.pres = pres      # {currency: cents}


class LineItem:
    __slots__ = ("id", "product_id", "variant_id", "sku", "title", "variant_title", "vendor",
                 "quantity", "unit", "unit_p", "disc_unit", "disc_unit_p", "tax", "tax_p",
                 "refunded_qty", "refunded_tax", "refunded_tax_p", "currency", "pres_currency")

    def copy(self):
        li = LineItem.__new__(LineItem)
        for k in LineItem.__slots__:
            setattr(li, k, getattr(self, k))
        return li

    @property
    def name(self):
        return "%s - %s" % (self.title, self.variant_title) if self.variant_title else self.title

    @property
    def current_quantity(self):
        return self.quantity - self.refunded_qty


class RefundLineItem:
    __slots__ = ("id", "line_item", "quantity", "restock_type", "price", "price_p",
                 "subtotal", "subtotal_p", "tax", "tax_p")


class Refund:
    __slots__ = ("id", "created", "note", "line_items", "shipping", "shipping_p",
                 "extra", "extra_p", "currency", "pres_currency")

    @property
    def total(self):
        return sum(r.subtotal + r.tax for r in self.line_items) + self.shipping + self.extra

    @property
    def total_p(self):
        return sum(r.subtotal_p + r.tax_p for r in self.line_items) + self.shipping_p + self.extra_p


class Order:
    __slots__ = (
        "id", "number", "created", "processed", "updated", "cancelled", "cancel_reason", "closed",
        "source_name", "source_identifier", "tags", "test", "email", "phone", "note",
        "currency", "pres_currency", "confirmed", "financial", "fulfillment", "accepts_marketing",
        "discount_codes", "customer", "billing", "shipping_address", "line_items", "refunds",
        "shipping", "shipping_p", "tax_rate",
        # derived, see recompute()
        "subtotal", "subtotal_p", "discounts", "discounts_p", "total_tax", "total_tax_p",
        "total", "total_p", "refunded", "refunded_p",
    )

    def recompute(self):
        """Recompute totals from line items and refunds (exact integer cents)."""
        sub = sub_p = disc = disc_p = tax = tax_p = 0
        for li in self.line_items:
            q = li.quantity
            sub += li.disc_unit * q
            sub_p += li.disc_unit_p * q
            disc += (li.unit - li.disc_unit) * q
            disc_p += (li.unit_p - li.disc_unit_p) * q
            tax += li.tax
            tax_p += li.tax_p
        self.subtotal, self.subtotal_p = sub, sub_p
        self.discounts, self.discounts_p = disc, disc_p
        self.total_tax, self.total_tax_p = tax, tax_p
        self.total = sub + self.shipping + tax
        self.total_p = sub_p + self.shipping_p + tax_p
        self.refunded = sum(r.total for r in self.refunds)
        self.refunded_p = sum(r.total_p for r in self.refunds)

    def clone(self):
        """Deep-enough copy for copy-on-write mutations."""
        o = Order.__new__(Order)
        for k in Order.__slots__:
            setattr(o, k, getattr(self, k))
        mapping = {}
        new_lis = []
        for li in self.line_items:
            c = li.copy()
            mapping[li.id] = c
            new_lis.append(c)
        o.line_items = new_lis
        new_refunds = []
        for r in self.refunds:
            nr = Refund.__new__(Refund)
            for k in Refund.__slots__:
                setattr(nr, k, getattr(r, k))
            rlis = []
            for rli in r.line_items:
                n = RefundLineItem.__new__(RefundLineItem)
                for k in RefundLineItem.__slots__:
                    setattr(n, k, getattr(rli, k))
                n.line_item = mapping.get(rli.line_item.id, rli.line_item)
                rlis.append(n)
            nr.line_items = rlis
            new_refunds.append(nr)
        o.refunds = new_refunds
        return o

    # -- derived display values
    @property
    def name(self):
        return "#%d" % self.number

    @property
    def display_financial_status(self):
        if self.refunds:
            return "REFUNDED" if self.refunded >= self.total else "PARTIALLY_REFUNDED"
        if self.cancelled is not None and self.financial in ("PENDING", "AUTHORIZED"):
            return "VOIDED"
        return self.financial

    @property
    def app(self):
        return APPS.get(self.source_name)


# ------------------------------------------------------------ store data

class StoreData:
    """All orders and customers of one store, plus id allocation."""

    def __init__(self, seed, currency):
        self.seed = seed
        self.currency = currency
        self.orders = []            # in id order (ids only grow)
        self.customers = []
        self.customers_by_id = {}
        self.customers_by_email = {}
        self.catalog = []
        self.last_ids = {}          # type -> last allocated id
        self.last_number = 1000
        self.generating = False
        # Mutations draw from their own generator so that the same sequence of
        # mutations yields the same ids whatever the wall clock says.
        self.mut_rng = random.Random(seed * 7919 + 17)

    def next_id(self, kind, rng=None):
        """Allocate a new id of a type, above every id of that type so far."""
        rng = rng or self.mut_rng
        last = self.last_ids.get(kind) or ID_BASES[kind][0]
        if not self.generating and last < ID_BASES[kind][1]:
            # objects created by mutations live in the big id space
            last = ID_BASES[kind][1] - 1
        nid = last + rng.randint(501, 2999)
        self.last_ids[kind] = nid
        return nid


def build_catalog(data, currency):
    """Deterministic product catalog priced in the shop currency."""
    rng = random.Random(data.seed ^ 0xCA7A)
    step = step_of(currency)
    pres_currencies = [c for c in PRESENTMENT_CHOICES if c != currency] + (
        ["EUR"] if currency in PRESENTMENT_CHOICES else [])
    shop_rate = rate_between("EUR", currency)
    n_variants = sum(len(p[2]) for p in PRODUCTS)
    k = 0
    pid_small, pid_big = ID_BASES["product"]
    vid_small, vid_big = ID_BASES["variant"]
    for pi, (title, vendor, variants) in enumerate(PRODUCTS):
        big = pi >= len(PRODUCTS) * 2 // 3
        product_id = (pid_big if big else pid_small) + pi * 1009 + rng.randint(0, 999)
        for vi, (vtitle, eur) in enumerate(variants):
            big_v = k >= n_variants * 2 // 3
            variant_id = (vid_big if big_v else vid_small) + k * 1013 + rng.randint(0, 999)
            price = convert(eur, shop_rate, step)
            pres = {currency: price}
            for c in pres_currencies:
                pres[c] = convert(price, rate_between(currency, c), step_of(c))
            sku = None if title == "Gift Card" else "%s-%03d-%d" % (
                "".join(w[0] for w in vendor.split()).upper(), pi, vi)
            data.catalog.append(Variant(product_id, variant_id, sku, title, vtitle, vendor, price, pres))
            k += 1
    data.shipping_rates = []
    for eur in SHIPPING_EUR:
        sh = convert(eur, shop_rate, step)
        pres = {currency: sh}
        for c in pres_currencies:
            pres[c] = convert(sh, rate_between(currency, c), step_of(c))
        data.shipping_rates.append((sh, pres))
    data.pres_currencies = pres_currencies


def make_address(rng, first, last, country_idx=None):
    if country_idx is None:
        country_idx = rng.choices(range(len(COUNTRIES)), COUNTRY_WEIGHTS)[0]
    country, code, _, cities = COUNTRIES[country_idx]
    city, province, pcode, ztmpl = cities[rng.randrange(len(cities))]
    return Address(
        first_name=first, last_name=last,
        address1="%s %d" % (STREETS[rng.randrange(len(STREETS))], rng.randint(1, 180)),
        address2=("Apt %d" % rng.randint(1, 40)) if rng.random() < 0.15 else None,
        city=city, province=province, province_code=pcode, country=country, country_code=code,
        zip=ztmpl.format(rng.randint(0, 9 if "{:1d}" in ztmpl else 99)),
        phone=("+%d%09d" % (rng.choice([44, 49, 33, 31, 46, 1]), rng.randint(0, 999_999_999)))
        if rng.random() < 0.5 else None,
        company="Acme GmbH" if rng.random() < 0.05 else None,
    )


TAX_BY_COUNTRY = {c[1]: c[2] for c in COUNTRIES}


def make_line_item(data, rng, variant, quantity, pct, tax_rate, pres_currency, kind_rng=None):
    """A line item priced from a catalog variant, discount pct and tax rate (per mille)."""
    li = LineItem()
    li.id = data.next_id("line_item", kind_rng or rng)
    li.product_id = variant.product_id
    li.variant_id = variant.variant_id
    li.sku = variant.sku
    li.title = variant.title
    li.variant_title = variant.variant_title
    li.vendor = variant.vendor
    li.quantity = quantity
    step, step_p = step_of(data.currency), step_of(pres_currency)
    li.unit = variant.price
    li.unit_p = variant.pres[pres_currency]
    li.disc_unit = li.unit - rdiv(li.unit * pct, 100, step) if pct else li.unit
    li.disc_unit_p = li.unit_p - rdiv(li.unit_p * pct, 100, step_p) if pct else li.unit_p
    li.tax = rdiv(li.disc_unit * quantity * tax_rate, 1000, step)
    li.tax_p = rdiv(li.disc_unit_p * quantity * tax_rate, 1000, step_p)
    li.refunded_qty = 0
    li.refunded_tax = 0
    li.refunded_tax_p = 0
    li.currency = data.currency
    li.pres_currency = pres_currency
    return li


def make_refund(data, order, created, parts, rng=None, shipping=False, extra=0, note=None,
                restock_type="RETURN"):
    """Append a refund to `order` (already cloned). parts: [(LineItem, qty)]."""
    r = Refund()
    r.id = data.next_id("refund", rng)
    r.created = created
    r.note = note
    r.currency = order.currency
    r.pres_currency = order.pres_currency
    step = step_of(order.currency)
    step_p = step_of(order.pres_currency)
    rlis = []
    for li, qty in parts:
        rli = RefundLineItem()
        rli.id = data.next_id("refund_line_item", rng)
        rli.line_item = li
        rli.quantity = qty
        rli.restock_type = restock_type
        rli.price, rli.price_p = li.disc_unit, li.disc_unit_p
        rli.subtotal, rli.subtotal_p = li.disc_unit * qty, li.disc_unit_p * qty
        if li.refunded_qty + qty >= li.quantity:
            # last units: refund exactly the remaining tax, so sums match the order
            rli.tax = li.tax - li.refunded_tax
            rli.tax_p = li.tax_p - li.refunded_tax_p
        else:
            rli.tax = rdiv(li.tax * qty, li.quantity, step)
            rli.tax_p = rdiv(li.tax_p * qty, li.quantity, step_p)
        li.refunded_qty += qty
        li.refunded_tax += rli.tax
        li.refunded_tax_p += rli.tax_p
        rlis.append(rli)
    r.line_items = rlis
    if shipping:
        refunded_ship = sum(x.shipping for x in order.refunds)
        refunded_ship_p = sum(x.shipping_p for x in order.refunds)
        r.shipping = order.shipping - refunded_ship
        r.shipping_p = order.shipping_p - refunded_ship_p
    else:
        r.shipping = r.shipping_p = 0
    r.extra = extra
    r.extra_p = convert(extra, rate_between(order.currency, order.pres_currency), step_p) if extra else 0
    # Never refund more than was paid (e.g. items refunded after an appeasement
    # refund): the excess becomes a negative adjustment, as on Shopify.
    refunded = sum(x.total for x in order.refunds)
    refunded_p = sum(x.total_p for x in order.refunds)
    excess = refunded + r.total - order.total
    if excess > 0:
        r.extra -= excess
    excess_p = refunded_p + r.total_p - order.total_p
    if excess_p > 0:
        r.extra_p -= excess_p
    order.refunds.append(r)
    order.recompute()
    return r


# ------------------------------------------------------------- generation

# Forced features: each appears at least once in any store of >= ~40 orders.
FORCED_FEATURES = [
    ("tag", "Exclude"), ("tag", "exclude"), ("tag", "EXCLUDE"), ("test",), ("test",),
    ("cancel", False), ("cancel", True), ("refund", "partial"), ("refund", "full"),
    ("refund", "multi"), ("refund", "multi_lines"), ("refund", "partial"), ("guest",),
    ("discount",), ("presentment",), ("presentment",), ("same_second",),
]


def default_big_order_every(n):
    return max(97, n // 100)


def generate(seed, n, currency="EUR", big_order_every=None):
    """Generate a store's data. Same arguments => identical data."""
    if big_order_every is None:
        big_order_every = default_big_order_every(n)
    rng = random.Random(seed)
    data = StoreData(seed, currency)
    data.generating = True
    build_catalog(data, currency)
    catalog = data.catalog
    n_cat = len(catalog)
    pres_choices = data.pres_currencies

    # Customers: a pool smaller than the orders so that many repeat.
    pool_n = max(8, n // 3)
    c_small, c_big = ID_BASES["customer"]
    cid = c_small
    for k in range(pool_n):
        if k == int(pool_n * 0.65):
            cid = c_big
        cid += rng.randint(501, 2999)
        first = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
        last = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        email = "%s.%s%d@example.com" % (ascii_slug(first), ascii_slug(last), k)
        phone = "+49151%08d" % rng.randint(0, 99_999_999) if rng.random() < 0.6 else None
        c = Customer(cid, email, phone, first, last, make_address(rng, first, last))
        data.customers.append(c)
        data.customers_by_id[cid] = c
        data.customers_by_email[email] = c
    data.last_ids["customer"] = cid

    # Forced positions: every sourceName and every special feature occurs.
    forced_src = {}
    forced_feat = {}
    order_positions = random.Random(seed ^ 0xF00D).sample(range(n), min(n, len(ALL_SOURCES) + len(FORCED_FEATURES)))
    for k, pos in enumerate(order_positions):
        if k < len(ALL_SOURCES):
            forced_src[pos] = ALL_SOURCES[k]
        else:
            forced_feat[pos] = FORCED_FEATURES[k - len(ALL_SOURCES)]

    created = sorted(rng.randint(T_START, T_END) for _ in range(n))
    # "Batch update" instants: many orders share one updatedAt second, so the
    # id tie-break of the UPDATED_AT sort matters.
    batch_times = sorted(rng.randint(T_START, T_END) for _ in range(max(4, n // 50)))
    split = int(n * 0.65)
    o_small, o_big = ID_BASES["order"]
    li_small, li_big = ID_BASES["line_item"]
    oid = o_small
    data.last_ids["line_item"] = li_small
    data.last_ids["refund"] = ID_BASES["refund"][0]
    data.last_ids["refund_line_item"] = ID_BASES["refund_line_item"][0]
    sources_w = SOURCE_WEIGHTS
    randint = rng.randint
    rand = rng.random
    shipping_rates = data.shipping_rates
    orders = data.orders
    qty_choices = (1, 1, 1, 1, 1, 1, 1, 2, 2, 3)
    n_items_choices = (1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 5, 5, 6, 6)

    for i in range(n):
        if i == split:
            oid = o_big
            data.last_ids["line_item"] = max(data.last_ids["line_item"], li_big)
            data.last_ids["refund"] = max(data.last_ids["refund"], ID_BASES["refund"][1])
            data.last_ids["refund_line_item"] = max(data.last_ids["refund_line_item"],
                                                    ID_BASES["refund_line_item"][1])
        oid += randint(501, 2999)
        feat = forced_feat.get(i)
        o = Order()
        o.id = oid
        o.number = 1001 + i
        c_t = created[i]
        o.created = c_t
        o.processed = c_t if rand() < 0.8 else c_t + randint(1, 30)
        src = forced_src[i] if i in forced_src else rng.choices(ALL_SOURCES, sources_w)[0]
        o.source_name = src
        if src == "pos":
            o.source_identifier = "%d-%d-%d" % (randint(1, 9), randint(1, 4), 1000 + i)
        elif src == "amazon":
            o.source_identifier = "%03d-%07d-%07d" % (randint(100, 999), randint(0, 9999999), randint(0, 9999999))
        else:
            o.source_identifier = None
        o.currency = currency
        pres = currency
        if (feat and feat[0] == "presentment") or rand() < 0.2:
            pres = pres_choices[randint(0, len(pres_choices) - 1)]
        o.pres_currency = pres

        # customer / guest
        guest = (feat and feat[0] == "guest") or rand() < 0.1
        if guest:
            first = FIRST_NAMES[randint(0, len(FIRST_NAMES) - 1)]
            last = LAST_NAMES[randint(0, len(LAST_NAMES) - 1)]
            o.customer = None
            o.email = None if (src == "pos" and rand() < 0.5) else "%s.%s.g%d@example.net" % (
                ascii_slug(first), ascii_slug(last), i)
            o.phone = None
            addr = make_address(rng, first, last)
        else:
            c = data.customers[int(pool_n * rand() ** 2)]
            c.order_count += 1
            o.customer = c
            o.email = c.email
            o.phone = c.phone
            addr = c.address
        o.billing = addr
        if src == "pos":
            o.shipping_address = None
            if rand() < 0.5:
                o.billing = None
        elif rand() < 0.12:
            o.shipping_address = make_address(rng, FIRST_NAMES[randint(0, len(FIRST_NAMES) - 1)], addr.last_name)
        else:
            o.shipping_address = addr
        country = (o.shipping_address or o.billing or addr).country_code
        o.tax_rate = TAX_BY_COUNTRY.get(country, 190)

        # tags, test, discounts
        tags = []
        if feat and feat[0] == "tag":
            tags.append(feat[1])
        elif rand() < 0.1:
            tags.append(EXCLUDE_TAGS[randint(0, 2)])
        if rand() < 0.3:
            for t in rng.sample(OTHER_TAGS, randint(1, 2)):
                tags.append(t)
        o.tags = tuple(sorted(tags, key=str.lower))
        o.test = bool(feat and feat[0] == "test") or rand() < 0.02
        pct = 0
        o.discount_codes = ()
        if (feat and feat[0] == "discount") or rand() < 0.15:
            code, pct = DISCOUNTS[randint(0, len(DISCOUNTS) - 1)]
            o.discount_codes = (code,)
        o.note = NOTES[randint(0, len(NOTES) - 1)] if rand() < 0.05 else None
        o.accepts_marketing = rand() < 0.4
        o.confirmed = True

        # line items
        big_order = big_order_every and (i + 1) % big_order_every == 0
        if big_order:
            n_items = 260
        else:
            n_items = n_items_choices[randint(0, 19)]
            if feat and feat[0] == "refund" and feat[1] == "multi_lines" and n_items < 2:
                n_items = 3
        lis = []
        start = randint(0, n_cat - 1)
        for k in range(n_items):
            v = catalog[(start + k * 7) % n_cat] if big_order else catalog[randint(0, n_cat - 1)]
            q = 1 if big_order else qty_choices[randint(0, 9)]
            lis.append(make_line_item(data, rng, v, q, pct, o.tax_rate, pres))
        o.line_items = lis
        sh, sh_pres = shipping_rates[0 if src == "pos" else randint(0, len(shipping_rates) - 1)]
        o.shipping, o.shipping_p = sh, sh_pres[pres]
        o.refunds = []
        o.recompute()

        # statuses and lifecycle
        r = rand()
        o.financial = "PENDING" if (r < 0.03 or (src == "shopify_draft_order" and r < 0.2)) else (
            "AUTHORIZED" if r < 0.05 else "PAID")
        r = rand()
        o.fulfillment = "FULFILLED" if r < 0.82 else ("UNFULFILLED" if r < 0.94 else "PARTIALLY_FULFILLED")
        last_event = c_t
        o.cancelled = None
        o.cancel_reason = None
        cancel = None
        if feat and feat[0] == "cancel":
            cancel = feat[1]
        elif not (feat and feat[0] == "refund") and rand() < 0.03:
            cancel = rand() < 0.5
        if cancel is not None:
            o.cancelled = min(T_END, c_t + randint(600, 3 * DAY))
            o.cancel_reason = CANCEL_REASONS[randint(0, len(CANCEL_REASONS) - 1)]
            o.fulfillment = "UNFULFILLED"
            last_event = o.cancelled
            if cancel:   # cancelled and refunded in full
                o.financial = "PAID"
                make_refund(data, o, o.cancelled, [(li, li.quantity) for li in o.line_items], rng,
                            shipping=True, restock_type="CANCEL", note=None)
            elif o.financial == "PAID":
                o.financial = "AUTHORIZED"
        else:
            kind = None
            if feat and feat[0] == "refund":
                kind = feat[1]
                o.financial = "PAID"
            elif rand() < 0.06 and o.financial == "PAID":
                kind = ("partial", "partial", "full", "multi", "multi_lines")[randint(0, 4)]
            if kind:
                last_event = _generate_refunds(data, rng, o, kind)
        # updatedAt: some just after creation, some much later, some shared
        r = rand()
        if feat and feat[0] == "same_second" or r < 0.15:
            j = bisect.bisect_left(batch_times, last_event)
            upd = batch_times[j] if j < len(batch_times) else last_event
        elif r < 0.5:
            upd = last_event + randint(0, 5)
        elif r < 0.85:
            upd = last_event + randint(60, 30 * DAY)
        else:
            upd = last_event + randint(30 * DAY, 400 * DAY)
        o.updated = max(min(upd, T_END), last_event)
        o.closed = None
        if o.cancelled is not None:
            o.closed = o.cancelled
        elif o.fulfillment == "FULFILLED" and o.financial == "PAID" and rand() < 0.5:
            o.closed = o.updated
        orders.append(o)
    data.last_ids["order"] = oid
    data.last_number = 1000 + n
    data.generating = False
    return data


def _generate_refunds(data, rng, o, kind):
    """Generated refunds of a kind; returns the time of the last one."""
    t = o.created
    if kind == "full":
        t = min(T_END, t + rng.randint(DAY, 40 * DAY))
        make_refund(data, o, t, [(li, li.quantity) for li in o.line_items], rng,
                    shipping=True, note=REFUND_NOTES[rng.randint(0, 4)])
    elif kind == "partial":
        li = o.line_items[rng.randint(0, len(o.line_items) - 1)]
        t = min(T_END, t + rng.randint(DAY, 40 * DAY))
        make_refund(data, o, t, [(li, 1)], rng, note=REFUND_NOTES[rng.randint(0, 4)],
                    restock_type=("RETURN", "NO_RESTOCK")[rng.randint(0, 1)])
    elif kind == "multi":
        for _ in range(rng.randint(2, 3)):
            open_lis = [li for li in o.line_items if li.current_quantity > 0]
            t = min(T_END, t + rng.randint(3600, 20 * DAY))
            if open_lis:
                li = open_lis[rng.randint(0, len(open_lis) - 1)]
                make_refund(data, o, t, [(li, 1)], rng, note=REFUND_NOTES[rng.randint(0, 4)])
            else:   # an appeasement refund without line items
                make_refund(data, o, t, [], rng, extra=min(500, max(0, o.total - o.refunded)),
                            note="Appeasement")
    else:  # multi_lines: one refund with several refund line items
        t = min(T_END, t + rng.randint(DAY, 40 * DAY))
        parts = [(li, li.quantity) for li in o.line_items[:max(2, len(o.line_items) - 1)]]
        make_refund(data, o, t, parts, rng, note="Returned items")
    return t
