"""Validation, planning, cost and execution of GraphQL operations.

A request goes: parse (cached by query text) -> plan (validate against the
schema, resolve variables and arguments, run `prepare` hooks) -> requested
cost (static, from the plan) -> execute (resolvers build the response and
count the actual cost as they go).

Cost model (documented in README.md):
  scalar / enum field          0
  object field                 1 + cost of its selection
  connection (first/last: n)   2 + n * (1 + cost of the node selection)
  list of objects (refunds)    2 + n * (1 + cost of the item selection),
                               n = `first` if given, else 10
  nodes(ids:)                  len(ids) * (1 + cost of the selection)
  each mutation field          10
  pageInfo, edges, cursor      0
The actual cost uses the same formula with what was really returned.
"""

import functools

from gql_parser import (EnumValue, Field, GraphQLError, InlineFragment,
                        Variable, parse, type_to_str)
from gql_schema import (ABSTRACT, ABSTRACT_TYPES, CONNECTION, CONNECTION_TYPE_NAMES,
                        DEFAULT_LIST_COST_SIZE, ENUMS, LIST, OBJECT, SCALAR, TYPES)
from paging import OMIT

MUTATION_COST = 10
MAX_QUERY_COST = 1000
ORDER_ROOT_FIELDS = ("orders", "order")


class FieldPlan:
    __slots__ = ("key", "name", "fdef", "kind", "args", "children", "node_children", "conn",
                 "getter", "resolve", "pos", "path")


class ExecContext:
    """Per-request state shared by resolvers."""
    __slots__ = ("store", "mode", "min_created", "version", "actual", "sel", "pending",
                 "scopes", "base_url", "now", "errors")

    def __init__(self, store, mode="normal", min_created=None, version=None, scopes=(),
                 base_url="", now=None):
        self.store = store
        self.mode = mode
        self.min_created = min_created
        self.version = version
        self.actual = 0
        self.sel = exec_sel_bulk if mode == "bulk" else exec_sel
        self.pending = []
        self.scopes = scopes
        self.base_url = base_url
        self.now = now
        self.errors = []


def exec_sel(plans, obj, ctx):
    out = {}
    for p in plans:
        g = p.getter
        out[p.key] = g(obj) if g is not None else p.resolve(obj, p, ctx)
    return out


def exec_sel_bulk(plans, obj, ctx):
    """Like exec_sel, but nested connections are emitted as separate JSONL lines."""
    out = {}
    for p in plans:
        g = p.getter
        v = g(obj) if g is not None else p.resolve(obj, p, ctx)
        if v is not OMIT:
            out[p.key] = v
    return out


@functools.lru_cache(maxsize=512)
def parse_cached(query):
    return parse(query)

# ------------------------------------------------------------- input types


def _parse_type_str(s):
    if s.endswith("!"):
        return ("nonnull", _parse_type_str(s[:-1]))
    if s.startswith("["):
        return ("list", _parse_type_str(s[1:-1]))
    return ("named", s)


_SCALAR_INPUTS = {"Int", "Float", "String", "ID", "Boolean", "DateTime", "URL", "Decimal",
                  "UnsignedInt64", "Money"}


def coerce_input(value, t):
    """Coerce a JSON variable value to a GraphQL input type; ValueError if invalid."""
    kind, inner = t
    if kind == "nonnull":
        if value is None:
            raise ValueError("Expected value to not be null")
        return coerce_input(value, inner)
    if value is None:
        return None
    if kind == "list":
        if not isinstance(value, list):
            value = [value]
        return [coerce_input(v, inner) for v in value]
    name = inner
    if name == "Int":
        if isinstance(value, bool) or not isinstance(value, int) or not -2**31 <= value < 2**31:
            raise ValueError("Could not coerce value %s to Int" % _show(value))
        return value
    if name == "Float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("Could not coerce value %s to Float" % _show(value))
        return value
    if name == "Boolean":
        if not isinstance(value, bool):
            raise ValueError("Could not coerce value %s to Boolean" % _show(value))
        return value
    if name == "ID":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("Could not coerce value %s to ID" % _show(value))
        return str(value)
    if name in ENUMS:
        if value not in ENUMS[name]:
            raise ValueError("Expected %s to be one of: %s" % (_show(value), ", ".join(sorted(ENUMS[name]))))
        return value
    if name in _SCALAR_INPUTS:
        if not isinstance(value, str):
            raise ValueError("Could not coerce value %s to %s" % (_show(value), name))
        return value
    raise ValueError("unknown type")


def _show(v):
    import json
    return json.dumps(v)


def _literal_ok(value, t):
    """Is an AST literal (variables already substituted) valid for type t?"""
    kind, inner = t
    if kind == "nonnull":
        return value is not None and _literal_ok(value, inner)
    if value is None:
        return True
    if kind == "list":
        if isinstance(value, list):
            return all(_literal_ok(v, inner) for v in value)
        return _literal_ok(value, inner)
    name = inner
    if name in ENUMS:
        return isinstance(value, EnumValue) and value.name in ENUMS[name] or (
            isinstance(value, _FromVar) and value.value in ENUMS[name])
    if isinstance(value, _FromVar):
        return True   # variables were coerced to their declared type already
    if name == "Int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "Float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "Boolean":
        return isinstance(value, bool)
    if name == "ID":
        return isinstance(value, (str, int)) and not isinstance(value, bool)
    return isinstance(value, str)


class _FromVar:
    """Marks an argument value that came from a variable (already coerced)."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _unwrap(value):
    if isinstance(value, _FromVar):
        return value.value
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _show_literal(value):
    if isinstance(value, _FromVar):
        return _show(value.value)
    if isinstance(value, EnumValue):
        return value.name
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _show(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show_literal(v) for v in value) + "]"
    return str(value)

# ------------------------------------------------------------------ planner


class Planner:
    """Validates an operation against the schema and builds its plan."""

    def __init__(self, doc, op, variables, version, mode="normal"):
        self.doc = doc
        self.op = op
        self.version = version
        self.mode = mode
        self.root_label = op.kind + (" " + op.name if op.name else "")
        self.variables = self._coerce_variables(variables or {})

    # -- errors
    def _err(self, message, node=None, path=None, extensions=None):
        locs = [self.doc.location(node.pos)] if node is not None else None
        return GraphQLError(message, locations=locs, path=path, extensions=extensions)

    def _coerce_variables(self, variables):
        out = {}
        for vd in self.op.var_defs:
            tname = vd.type
            base = tname
            while base[0] != "named":
                base = base[1]
            if base[1] not in ENUMS and base[1] not in _SCALAR_INPUTS:
                raise self._err("%s isn't a defined input type (on $%s)" % (base[1], vd.name), vd,
                                [self.root_label], {"code": "variableRequiresValidType",
                                                    "typeName": base[1], "variableName": vd.name})
            if vd.name in variables:
                value = variables[vd.name]
            elif vd.has_default:
                value = _unwrap(vd.default)
            else:
                value = None
            try:
                out[vd.name] = coerce_input(value, tname)
            except ValueError as e:
                raise self._err(
                    "Variable $%s of type %s was provided invalid value" % (vd.name, type_to_str(tname)),
                    vd, None, {"value": value, "problems": [{"path": [], "explanation": str(e)}]})
        return out

    def _value(self, v, path, node):
        if isinstance(v, Variable):
            if v.name not in self.variables:
                raise self._err("Variable $%s is used by %s but not declared" % (
                    v.name, self.op.name or "anonymous " + self.op.kind), node, path,
                    {"code": "variableNotDefined", "variableName": v.name})
            return _FromVar(self.variables[v.name])
        if isinstance(v, list):
            return [self._value(x, path, node) for x in v]
        if isinstance(v, dict):
            return {k: self._value(x, path, node) for k, x in v.items()}
        return v

    def _directives_allow(self, directives, node):
        for name, args in directives:
            if name in ("include", "skip"):
                vals = dict(args)
                if "if" not in vals:
                    raise self._err("Directive '%s' is missing required arguments: if" % name, node)
                cond = _unwrap(self._value(vals["if"], None, node))
                if not isinstance(cond, bool):
                    raise self._err("Argument 'if' on Directive '%s' has an invalid value" % name, node)
                if (name == "include") != cond:
                    return False
            else:
                raise self._err("Directive @%s is not defined" % name, node, None,
                                {"code": "undefinedDirective", "directiveName": name})
        return True

    # -- selection collection
    def _type_applies(self, cond, type_name):
        return cond == type_name or type_name in ABSTRACT_TYPES.get(cond, ())

    def _collect(self, type_name, selections, out, path, context=None, seen=()):
        """Group the fields of a selection set by response key, flattening fragments.

        context: (name, possible types) of the enclosing type; a fragment whose
        condition is possible there but not `type_name` is skipped silently."""
        context = context or (type_name, (type_name,))
        for sel in selections:
            if not self._directives_allow(sel.directives, sel):
                continue
            if isinstance(sel, Field):
                out.setdefault(sel.key, []).append(sel)
                continue
            if isinstance(sel, InlineFragment):
                cond, subsel = sel.type_condition, sel.selections
            else:
                frag = self.doc.fragments.get(sel.name)
                if frag is None:
                    raise self._err("Fragment %s was used, but not defined" % sel.name, sel, path,
                                    {"code": "useAndDefineFragment", "fragmentName": sel.name})
                if sel.name in seen:
                    raise self._err("Fragment %s contains an infinite loop" % sel.name, sel, path,
                                    {"code": "infiniteLoop", "fragmentName": sel.name})
                cond, subsel = frag.type_condition, frag.selections
                seen = seen + (sel.name,)
            if cond is None or self._type_applies(cond, type_name):
                self._collect(type_name, subsel, out, path, context, seen)
            elif cond not in TYPES and cond not in ABSTRACT_TYPES and cond not in CONNECTION_TYPE_NAMES.values():
                raise self._err("No such type %s, so it can't be a fragment condition" % cond, sel, path,
                                {"code": "undefinedType", "typeName": cond})
            elif cond not in context[1]:
                raise self._err("Fragment on %s can't be spread inside %s" % (cond, context[0]), sel,
                                path, {"code": "cannotSpreadFragment", "typeName": cond,
                                       "parentName": context[0]})

    def plan_selection_set(self, type_name, selections, path):
        if type_name in ABSTRACT_TYPES:
            return self._plan_abstract(type_name, selections, path)
        grouped = {}
        self._collect(type_name, selections, grouped, path)
        return self._plan_fields(type_name, grouped, path)

    def _plan_abstract(self, abstract, selections, path):
        possible = ABSTRACT_TYPES[abstract]
        # fields selected directly on the interface must exist on it
        for sel in selections:
            if isinstance(sel, Field) and sel.name != "__typename" and sel.name not in TYPES[abstract]:
                raise self._undefined(abstract, sel, path + [sel.key])
        context = (abstract, possible + (abstract,))
        out = {}
        for t in possible:
            grouped = {}
            self._collect(t, selections, grouped, path, context)
            out[t] = self._plan_fields(t, grouped, path)
        return out

    def _undefined(self, type_name, f, path):
        return self._err("Field '%s' doesn't exist on type '%s'" % (f.name, type_name), f, path,
                         {"code": "undefinedField", "typeName": type_name, "fieldName": f.name})

    def _plan_fields(self, type_name, grouped, path):
        plans = []
        for key, fields in grouped.items():
            f = fields[0]
            for other in fields[1:]:
                if other.name != f.name:
                    raise self._err("Field '%s' has a field conflict: %s or %s?" % (key, f.name, other.name),
                                    other, path + [key], {"code": "fieldConflict", "fieldName": key})
            merged = None
            for x in fields:
                if x.selections:
                    merged = (merged or []) + x.selections
            plans.append(self._plan_field(type_name, f, merged, path + [key]))
        return plans

    def _plan_field(self, type_name, f, selections, path):
        p = FieldPlan()
        p.key = f.key
        p.name = f.name
        p.pos = f.pos
        p.path = path
        p.args = {}
        p.children = p.node_children = p.conn = None
        p.resolve = None
        if f.name == "__typename":
            if selections:
                raise self._err("Selections can't be made on scalars (field '__typename' returns String! "
                                "but has selections [%s])" % ", ".join(s.key for s in selections
                                                                      if isinstance(s, Field)),
                                f, path, {"code": "selectionMismatch", "nodeName": "field '__typename'"})
            p.fdef = None
            p.kind = SCALAR
            p.getter = lambda o, t=type_name: t
            return p
        fdef = TYPES.get(type_name, {}).get(f.name)
        if fdef is None or (fdef.min_version and (self.version or "9999") < fdef.min_version):
            raise self._undefined(type_name, f, path)
        p.fdef = fdef
        p.kind = fdef.kind
        p.getter = fdef.get
        p.resolve = fdef.resolve
        p.args = self._plan_args(fdef, f, path)
        if fdef.kind == SCALAR:
            if selections:
                raise self._err(
                    "Selections can't be made on scalars (field '%s' returns %s but has selections [%s])" % (
                        f.name, fdef.type, ", ".join(s.key for s in selections if isinstance(s, Field))),
                    f, path, {"code": "selectionMismatch", "nodeName": "field '%s'" % f.name})
        else:
            if not selections:
                rtype = CONNECTION_TYPE_NAMES.get(fdef.type, fdef.type) if fdef.kind == CONNECTION else fdef.type
                raise self._err(
                    "Field must have selections (field '%s' returns %s but has no selections. "
                    "Did you mean '%s { ... }'?)" % (f.name, rtype, f.name),
                    f, path, {"code": "selectionMismatch", "nodeName": "field '%s'" % f.name})
            if fdef.kind == CONNECTION:
                self._plan_connection(p, fdef, selections, path)
            else:
                p.children = self.plan_selection_set(fdef.type, selections, path)
        if fdef.prepare:
            try:
                p.args = fdef.prepare(p.args, self)
            except GraphQLError as e:
                e.locations = e.locations or [self.doc.location(f.pos)]
                e.path = e.path or path
                raise
        return p

    def _plan_args(self, fdef, f, path):
        args = {}
        for name, value in f.args:
            if name not in fdef.args:
                raise self._err("Field '%s' doesn't accept argument '%s'" % (f.name, name), f, path,
                                {"code": "argumentNotAccepted", "name": f.name, "typeName": "Field",
                                 "argumentName": name})
            v = self._value(value, path, f)
            tstr = fdef.args[name][0]
            if not _literal_ok(v, _parse_type_str(tstr)):
                raise self._err(
                    "Argument '%s' on Field '%s' has an invalid value (%s). Expected type '%s'." % (
                        name, f.name, _show_literal(v), tstr), f, path,
                    {"code": "argumentLiteralsIncompatible", "typeName": "Field", "argumentName": name})
            args[name] = _unwrap(v)
        missing = [n for n, (t, _) in fdef.args.items() if t.endswith("!") and args.get(n) is None]
        if missing:
            raise self._err("Field '%s' is missing required arguments: %s" % (f.name, ", ".join(missing)),
                            f, path, {"code": "missingRequiredArguments", "className": "Field",
                                      "name": f.name, "arguments": ", ".join(missing)})
        for n, (t, default) in fdef.args.items():
            if args.get(n) is None and default is not None:
                args[n] = default
        return args

    def _plan_connection(self, p, fdef, selections, path):
        conn_type = CONNECTION_TYPE_NAMES[fdef.type]
        edge_type = conn_type.replace("Connection", "Edge")
        grouped = {}
        self._collect(conn_type, selections, grouped, path)
        parts = []
        node_children = None
        for key, fields in grouped.items():
            f = fields[0]
            sub = [s for x in fields for s in (x.selections or [])]
            kpath = path + [key]
            if f.name == "edges":
                if not sub:
                    raise self._err("Field must have selections (field 'edges' returns [%s!]! but has no "
                                    "selections. Did you mean 'edges { ... }'?)" % edge_type, f, kpath,
                                    {"code": "selectionMismatch", "nodeName": "field 'edges'"})
                g2 = {}
                self._collect(edge_type, sub, g2, kpath)
                eparts = []
                for k2, fs2 in g2.items():
                    f2 = fs2[0]
                    sub2 = [s for x in fs2 for s in (x.selections or [])]
                    if f2.name == "node":
                        if not sub2:
                            raise self._err("Field must have selections (field 'node' returns %s! but has no "
                                            "selections. Did you mean 'node { ... }'?)" % fdef.type, f2,
                                            kpath + [k2], {"code": "selectionMismatch", "nodeName": "field 'node'"})
                        children = self.plan_selection_set(fdef.type, sub2, kpath + [k2])
                        eparts.append((k2, "node", children))
                        node_children = node_children or children
                    elif f2.name in ("cursor", "__typename"):
                        if sub2:
                            raise self._err("Selections can't be made on scalars (field '%s' returns String! "
                                            "but has selections)" % f2.name, f2, kpath + [k2],
                                            {"code": "selectionMismatch"})
                        eparts.append((k2, f2.name, edge_type))
                    else:
                        raise self._undefined(edge_type, f2, kpath + [k2])
                parts.append((key, "edges", eparts))
            elif f.name == "nodes":
                if not sub:
                    raise self._err("Field must have selections (field 'nodes' returns [%s!]! but has no "
                                    "selections. Did you mean 'nodes { ... }'?)" % fdef.type, f, kpath,
                                    {"code": "selectionMismatch", "nodeName": "field 'nodes'"})
                children = self.plan_selection_set(fdef.type, sub, kpath)
                parts.append((key, "nodes", children))
                node_children = node_children or children
            elif f.name == "pageInfo":
                g3 = {}
                self._collect("PageInfo", sub, g3, kpath)
                pparts = []
                for k3, fs3 in g3.items():
                    if fs3[0].name not in ("hasNextPage", "hasPreviousPage", "startCursor", "endCursor",
                                           "__typename"):
                        raise self._undefined("PageInfo", fs3[0], kpath + [k3])
                    pparts.append((k3, fs3[0].name))
                if not pparts:
                    raise self._err("Field must have selections (field 'pageInfo' returns PageInfo!)", f, kpath)
                parts.append((key, "pageInfo", pparts))
            elif f.name == "__typename":
                parts.append((key, "__typename", conn_type))
            else:
                raise self._undefined(conn_type, f, kpath)
        p.conn = parts
        p.node_children = node_children or []

    def plan(self):
        if self.op.kind == "subscription":
            raise self._err("Subscriptions are not supported", self.op)
        if not self._directives_allow(self.op.directives, self.op):
            return []
        root = "QueryRoot" if self.op.kind == "query" else "Mutation"
        return self.plan_selection_set(root, self.op.selections, [self.root_label])

# --------------------------------------------------------------------- cost


def selection_cost(plans):
    total = 0
    for p in plans:
        total += field_cost(p)
    return total


def _children_cost(p):
    if isinstance(p.children, dict):
        return max(selection_cost(c) for c in p.children.values())
    return selection_cost(p.children)


def field_cost(p):
    kind = p.kind
    if kind == SCALAR:
        return 0
    if kind in (OBJECT, ABSTRACT):
        return 1 + _children_cost(p)
    if kind == LIST:
        if p.name == "nodes":
            return len(p.args.get("ids") or ()) * (1 + _children_cost(p))
        n = p.args.get("first")
        if n is None:
            n = DEFAULT_LIST_COST_SIZE
        return 2 + n * (1 + _children_cost(p))
    if kind == CONNECTION:
        first, last = p.args.get("first"), p.args.get("last")
        n = min(x for x in (first, last) if x is not None) if (first is not None or last is not None) else 0
        node = 0
        for key, part, payload in p.conn:
            if part == "nodes":
                node = max(node, selection_cost(payload))
            elif part == "edges":
                for _, kind2, pl2 in payload:
                    if kind2 == "node":
                        node = max(node, selection_cost(pl2))
        return 2 + n * (1 + node)
    return 0


def requested_cost(plans, is_mutation):
    if is_mutation:
        return MUTATION_COST * len(plans)
    return selection_cost(plans)

# ------------------------------------------------------------------ execute


class Prepared:
    """A validated operation ready to run."""
    __slots__ = ("doc", "op", "plans", "is_mutation", "cost", "root_fields")

    def __init__(self, doc, op, plans):
        self.doc = doc
        self.op = op
        self.plans = plans
        self.is_mutation = op.kind == "mutation"
        self.cost = requested_cost(plans, self.is_mutation)
        self.root_fields = [p.name for p in plans]


def prepare(query, variables=None, operation_name=None, version=None, mode="normal"):
    """Parse + validate + plan. Raises GraphQLError."""
    doc = parse_cached(query)
    op = doc.get_operation(operation_name)
    planner = Planner(doc, op, variables, version, mode)
    return Prepared(doc, op, planner.plan())


def execute(prepared, ctx):
    """Run a prepared operation. Returns (data, errors); ctx.actual holds the cost."""
    data = {}
    errors = []
    can_read_orders = "read_orders" in ctx.scopes or "write_orders" in ctx.scopes
    for p in prepared.plans:
        if p.name in ORDER_ROOT_FIELDS and not can_read_orders:
            data[p.key] = None
            errors.append({
                "message": "Access denied for %s field. Required access: `read_orders` access scope." % p.name,
                "locations": [prepared.doc.location(p.pos)], "path": [p.key],
                "extensions": {"code": "ACCESS_DENIED",
                               "documentation": "https://shopify.dev/api/usage/access-scopes",
                               "requiredAccess": "`read_orders` access scope."}})
            continue
        try:
            data[p.key] = p.getter(None) if p.getter else p.resolve(None, p, ctx)
        except GraphQLError as e:
            data[p.key] = None
            e.path = e.path or [p.key]
            errors.append(e.to_dict())
    if prepared.is_mutation:
        ctx.actual = MUTATION_COST * len(prepared.plans)
    return data, errors
