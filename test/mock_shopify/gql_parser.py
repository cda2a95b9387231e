"""A small GraphQL parser (executable documents only).

Supports what Shopify clients send: one or more operations (query / mutation /
anonymous `{...}`), variable definitions with defaults, aliases, arguments,
nested selections, directives (@include/@skip), inline fragments and named
fragments. Values: variables, ints, floats, strings (with escapes), block
strings, booleans, null, enums, lists and input objects. Comments are skipped.

Errors are raised as GraphQLError with graphql-ruby style messages, which is
what Shopify answers with ("Parse error on ...").
"""

import bisect
import json
import re


class GraphQLError(Exception):
    """An error reported in the `errors` array of a GraphQL response."""

    def __init__(self, message, locations=None, path=None, extensions=None):
        super().__init__(message)
        self.message = message
        self.locations = locations
        self.path = path
        self.extensions = extensions

    def to_dict(self):
        d = {"message": self.message}
        if self.locations:
            d["locations"] = self.locations
        if self.path is not None:
            d["path"] = self.path
        if self.extensions:
            d["extensions"] = self.extensions
        return d


# --------------------------------------------------------------------- AST

class Variable:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "$" + self.name


class EnumValue:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name

    def __eq__(self, other):
        return isinstance(other, EnumValue) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


class Field:
    __slots__ = ("alias", "name", "args", "directives", "selections", "pos")

    def __init__(self, alias, name, args, directives, selections, pos):
        self.alias = alias
        self.name = name
        self.args = args              # list of (name, value) in source order
        self.directives = directives  # list of (name, args)
        self.selections = selections  # list or None
        self.pos = pos

    @property
    def key(self):
        return self.alias or self.name


class InlineFragment:
    __slots__ = ("type_condition", "directives", "selections", "pos")

    def __init__(self, type_condition, directives, selections, pos):
        self.type_condition = type_condition
        self.directives = directives
        self.selections = selections
        self.pos = pos


class FragmentSpread:
    __slots__ = ("name", "directives", "pos")

    def __init__(self, name, directives, pos):
        self.name = name
        self.directives = directives
        self.pos = pos


class VariableDef:
    __slots__ = ("name", "type", "default", "has_default", "pos")

    def __init__(self, name, type_, default, has_default, pos):
        self.name = name
        self.type = type_    # ("named", "Int") | ("list", t) | ("nonnull", t)
        self.default = default
        self.has_default = has_default
        self.pos = pos


class Operation:
    __slots__ = ("kind", "name", "var_defs", "directives", "selections", "pos")

    def __init__(self, kind, name, var_defs, directives, selections, pos):
        self.kind = kind    # "query" | "mutation" | "subscription"
        self.name = name
        self.var_defs = var_defs
        self.directives = directives
        self.selections = selections
        self.pos = pos


class FragmentDef:
    __slots__ = ("name", "type_condition", "directives", "selections", "pos")

    def __init__(self, name, type_condition, directives, selections, pos):
        self.name = name
        self.type_condition = type_condition
        self.directives = directives
        self.selections = selections
        self.pos = pos


class Document:
    __slots__ = ("source", "operations", "fragments", "_line_starts")

    def __init__(self, source, operations, fragments):
        self.source = source
        self.operations = operations
        self.fragments = fragments
        self._line_starts = None

    def location(self, pos):
        return location(self.source, pos, self)

    def get_operation(self, name=None):
        if name:
            for op in self.operations:
                if op.name == name:
                    return op
            raise GraphQLError('No operation named "%s"' % name)
        if len(self.operations) > 1:
            raise GraphQLError("An operation name is required")
        return self.operations[0]


def type_to_str(t):
    kind, inner = t
    if kind == "named":
        return inner
    if kind == "list":
        return "[%s]" % type_to_str(inner)
    return type_to_str(inner) + "!"


def location(source, pos, cache_holder=None):
    """{line, column} (1-based) of a character offset."""
    starts = getattr(cache_holder, "_line_starts", None) if cache_holder else None
    if starts is None:
        starts = [0] + [m.end() for m in re.finditer(r"\r\n|\n|\r", source)]
        if cache_holder is not None:
            cache_holder._line_starts = starts
    line = bisect.bisect_right(starts, pos)
    return {"line": line, "column": pos - starts[line - 1] + 1}


# ---------------------------------------------------------------- tokenizer

_TOKEN_RE = re.compile(r"""
    (?P<ws>(?:[\s,\ufeff]+|\#[^\n\r]*)+)
  | (?P<block>\"\"\")
  | (?P<string>"(?:\\.|[^"\\\n\r])*")
  | (?P<float>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))
  | (?P<int>-?(?:0|[1-9][0-9]*))
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&():=@\[\]{|}])
""", re.X)

# graphql-ruby token names, used in parse error messages
_PUNCT_NAMES = {
    "{": "LCURLY", "}": "RCURLY", "(": "LPAREN", ")": "RPAREN", "[": "LBRACKET",
    "]": "RBRACKET", ":": "COLON", "$": "VAR_SIGN", "!": "BANG", "=": "EQUALS",
    "@": "DIR_SIGN", "&": "AMP", "|": "PIPE",
}

EOF = "EOF"


def _block_string_value(raw):
    """GraphQL BlockStringValue(): dedent and trim blank first/last lines."""
    raw = raw.replace('\\"""', '"""')
    lines = re.split(r"\r\n|\n|\r", raw)
    common = None
    for line in lines[1:]:
        stripped = line.lstrip(" \t")
        if stripped:
            indent = len(line) - len(stripped)
            if common is None or indent < common:
                common = indent
    if common:
        lines = [lines[0]] + [ln[common:] for ln in lines[1:]]
    while lines and not lines[0].strip(" \t"):
        lines.pop(0)
    while lines and not lines[-1].strip(" \t"):
        lines.pop()
    return "\n".join(lines)


def tokenize(source):
    """List of (kind, value, pos). kinds: name int float string punct spread EOF."""
    tokens = []
    append = tokens.append
    pos = 0
    n = len(source)
    match = _TOKEN_RE.match
    while pos < n:
        m = match(source, pos)
        if m is None:
            ch = source[pos]
            raise GraphQLError(
                'Parse error on "%s" (error) at [%d, %d]' % (
                    ch, *location(source, pos).values()),
                locations=[location(source, pos)])
        kind = m.lastgroup
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "block":
            # Find the closing """ that is not escaped as \"""
            i = pos + 3
            while True:
                j = source.find('"""', i)
                if j < 0:
                    raise GraphQLError(
                        "Parse error on unterminated block string at [%d, %d]" % tuple(
                            location(source, pos).values()),
                        locations=[location(source, pos)])
                if source[j - 1] == "\\":
                    i = j + 3
                    continue
                break
            append(("string", _block_string_value(source[pos + 3:j]), pos))
            pos = j + 3
            continue
        text = m.group()
        if kind == "string":
            try:
                value = json.loads(text, strict=False)
            except ValueError:
                raise GraphQLError(
                    'Parse error on bad Unicode escape sequence: %s at [%d, %d]' % (
                        text, *location(source, pos).values()),
                    locations=[location(source, pos)])
            append(("string", value, pos))
        elif kind == "int":
            append(("int", int(text), pos))
        elif kind == "float":
            append(("float", float(text), pos))
        else:
            append((kind, text, pos))
        pos = m.end()
    append((EOF, None, n))
    return tokens


# ------------------------------------------------------------------ parser

class Parser:
    def __init__(self, source):
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0

    # -- helpers
    def peek(self):
        return self.tokens[self.i]

    def advance(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, tok=None):
        tok = tok or self.peek()
        kind, value, pos = tok
        loc = location(self.source, pos)
        if kind == EOF:
            msg = "Unexpected end of document"
        else:
            if kind == "punct":
                tname = _PUNCT_NAMES.get(value, "PUNCT")
            elif kind == "spread":
                tname = "ELLIPSIS"
            elif kind == "name":
                tname = "IDENTIFIER" if value not in ("query", "mutation", "fragment", "on",
                                                      "true", "false", "null") else value.upper()
            elif kind == "string":
                tname = "STRING"
                value = json.dumps(value)[1:-1]
            else:
                tname = kind.upper()
            msg = 'Parse error on "%s" (%s) at [%d, %d]' % (value, tname, loc["line"], loc["column"])
        return GraphQLError(msg, locations=[loc])

    def expect_punct(self, p):
        tok = self.advance()
        if tok[0] != "punct" or tok[1] != p:
            raise self.error(tok)
        return tok

    def at_punct(self, p):
        tok = self.tokens[self.i]
        return tok[0] == "punct" and tok[1] == p

    def expect_name(self):
        tok = self.advance()
        if tok[0] != "name":
            raise self.error(tok)
        return tok[1]

    # -- grammar
    def parse_document(self):
        operations = []
        fragments = {}
        while self.peek()[0] != EOF:
            kind, value, pos = self.peek()
            if kind == "punct" and value == "{":
                operations.append(Operation("query", None, [], [], self.parse_selection_set(), pos))
            elif kind == "name" and value in ("query", "mutation", "subscription"):
                operations.append(self.parse_operation())
            elif kind == "name" and value == "fragment":
                frag = self.parse_fragment_def()
                if frag.name in fragments:
                    raise GraphQLError('Fragment name "%s" must be unique' % frag.name,
                                       locations=[location(self.source, frag.pos)])
                fragments[frag.name] = frag
            else:
                raise self.error()
        if not operations:
            raise GraphQLError("Unexpected end of document" if not self.source.strip()
                               else "No operations in query document",
                               locations=[])
        return Document(self.source, operations, fragments)

    def parse_operation(self):
        _, kind, pos = self.advance()
        name = None
        if self.peek()[0] == "name":
            name = self.advance()[1]
        var_defs = []
        if self.at_punct("("):
            self.advance()
            while not self.at_punct(")"):
                var_defs.append(self.parse_var_def())
            self.advance()
        directives = self.parse_directives()
        return Operation(kind, name, var_defs, directives, self.parse_selection_set(), pos)

    def parse_var_def(self):
        pos = self.peek()[2]
        self.expect_punct("$")
        name = self.expect_name()
        self.expect_punct(":")
        type_ = self.parse_type()
        default, has_default = None, False
        if self.at_punct("="):
            self.advance()
            default = self.parse_value(const=True)
            has_default = True
        self.parse_directives()
        return VariableDef(name, type_, default, has_default, pos)

    def parse_type(self):
        if self.at_punct("["):
            self.advance()
            t = ("list", self.parse_type())
            self.expect_punct("]")
        else:
            t = ("named", self.expect_name())
        if self.at_punct("!"):
            self.advance()
            t = ("nonnull", t)
        return t

    def parse_fragment_def(self):
        pos = self.advance()[2]
        name = self.expect_name()
        if name == "on":
            raise self.error(self.tokens[self.i - 1])
        if self.expect_name() != "on":
            raise self.error(self.tokens[self.i - 1])
        type_condition = self.expect_name()
        directives = self.parse_directives()
        return FragmentDef(name, type_condition, directives, self.parse_selection_set(), pos)

    def parse_directives(self):
        directives = []
        while self.at_punct("@"):
            self.advance()
            name = self.expect_name()
            args = self.parse_arguments() if self.at_punct("(") else []
            directives.append((name, args))
        return directives

    def parse_selection_set(self):
        self.expect_punct("{")
        selections = []
        while True:
            kind, value, pos = self.peek()
            if kind == "punct" and value == "}":
                self.advance()
                break
            if kind == "spread":
                self.advance()
                nk, nv, _ = self.peek()
                if nk == "name" and nv != "on":
                    self.advance()
                    selections.append(FragmentSpread(nv, self.parse_directives(), pos))
                else:
                    type_condition = None
                    if nk == "name":
                        self.advance()
                        type_condition = self.expect_name()
                    directives = self.parse_directives()
                    selections.append(InlineFragment(type_condition, directives,
                                                     self.parse_selection_set(), pos))
            elif kind == "name":
                selections.append(self.parse_field())
            else:
                raise self.error()
        if not selections:
            raise self.error(self.tokens[self.i - 1])
        return selections

    def parse_field(self):
        _, name, pos = self.advance()
        alias = None
        if self.at_punct(":"):
            self.advance()
            alias = name
            name = self.expect_name()
        args = self.parse_arguments() if self.at_punct("(") else []
        directives = self.parse_directives()
        selections = self.parse_selection_set() if self.at_punct("{") else None
        return Field(alias, name, args, directives, selections, pos)

    def parse_arguments(self):
        self.expect_punct("(")
        args = []
        while not self.at_punct(")"):
            name = self.expect_name()
            self.expect_punct(":")
            args.append((name, self.parse_value()))
        self.advance()
        if not args:
            raise self.error(self.tokens[self.i - 1])
        return args

    def parse_value(self, const=False):
        tok = self.advance()
        kind, value, pos = tok
        if kind in ("int", "float", "string"):
            return value
        if kind == "name":
            if value == "true":
                return True
            if value == "false":
                return False
            if value == "null":
                return None
            return EnumValue(value)
        if kind == "punct":
            if value == "$" and not const:
                return Variable(self.expect_name())
            if value == "[":
                items = []
                while not self.at_punct("]"):
                    items.append(self.parse_value(const))
                self.advance()
                return items
            if value == "{":
                obj = {}
                while not self.at_punct("}"):
                    k = self.expect_name()
                    self.expect_punct(":")
                    obj[k] = self.parse_value(const)
                self.advance()
                return obj
        raise self.error(tok)


def parse(source):
    """Parse a GraphQL document. Raises GraphQLError."""
    if not isinstance(source, str):
        raise GraphQLError("Query must be a string")
    return Parser(source).parse_document()
