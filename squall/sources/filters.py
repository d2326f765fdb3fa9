"""Event source mapping ``FilterCriteria``: Lambda's event filtering (EventBridge's pattern grammar).

A mapping's ``FilterCriteria`` is ``{"Filters": [{"Pattern": "<JSON>"}, ...]}``. A record passes when
any pattern matches it (patterns are OR-ed); within a pattern every key must match (AND); a leaf is
an array of matchers, OR-ed. ``"$or": [pattern, ...]`` at any object level ORs whole sub-patterns.

Matchers: exact values (string, number, boolean, ``null``; ``""`` for empty), ``prefix`` and
``suffix`` (each also as ``{"equals-ignore-case": s}``), ``equals-ignore-case``, ``anything-but``
(a value, a list of values, or ``{"prefix"|"suffix"|"equals-ignore-case": ...}``), ``numeric``
(``["=", n]``, one comparison, or a lower and an upper bound) and ``exists``.

Semantics, as EventBridge documents them: a record's array is matched element by element (any
element may match); ``exists`` looks at leaves only, so an object where the pattern has a leaf
counts as absent; a missing field matches only ``{"exists": false}``; ``null`` is a present value.
Exact values compare by their JSON representation, so ``300`` and ``300.0`` differ (Lambda's note);
``{"numeric": ["=", 300]}`` compares numerically. ``wildcard`` and ``cidr`` are not in Lambda's
list of operators and are refused.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

MAX_FILTERS = 5  # Lambda's default quota (it can be raised to 10)
MAX_PATTERN_LENGTH = 4096

_MISSING: Any = object()
_LOWER, _UPPER = frozenset({">", ">="}), frozenset({"<", "<="})
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": lambda v, n: v == n, ">": lambda v, n: v > n, ">=": lambda v, n: v >= n,
    "<": lambda v, n: v < n, "<=": lambda v, n: v <= n,
}
_UNSUPPORTED = frozenset({"wildcard", "cidr"})

Test = Callable[[Any], bool]


class FilterError(ValueError):
    """An invalid ``FilterCriteria``; the message suits Lambda's ``InvalidParameterValueException``."""


@dataclass(frozen=True)
class _Leaf:
    tests: tuple[Test, ...]  # value matchers, OR-ed
    exists: frozenset[bool]  # {True} and/or {False} from ``exists`` matchers


@dataclass(frozen=True)
class _Node:
    fields: tuple[tuple[str, _Leaf | _Node], ...]
    ors: tuple[tuple[_Node, ...], ...] = ()


@dataclass(frozen=True)
class Filters:
    """A mapping's compiled filter patterns; no patterns lets every record through."""

    patterns: tuple[_Node, ...] = ()

    @classmethod
    def parse(cls, criteria: dict[str, Any] | None, *, max_filters: int = MAX_FILTERS) -> Filters:
        if criteria is None:
            return cls()
        if not isinstance(criteria, dict):
            raise FilterError("FilterCriteria must be an object.")
        filters = criteria.get("Filters") or []
        if not isinstance(filters, list):
            raise FilterError("FilterCriteria.Filters must be a list.")
        if len(filters) > max_filters:
            raise FilterError(f"The number of filters ({len(filters)}) exceeds the maximum of {max_filters}.")
        return cls(tuple(_parse_filter(i, f) for i, f in enumerate(filters, 1)))

    @property
    def empty(self) -> bool:
        return not self.patterns

    def matches(self, record: dict[str, Any]) -> bool:
        return not self.patterns or any(_match_node(p, record) for p in self.patterns)


def parse_pattern(pattern: Any) -> Filters:
    """One pattern on its own (an EventBridge rule's ``EventPattern``): the same grammar as one
    filter, plus EventBridge's ``wildcard`` (``*`` matches any run of characters, ``\\*`` a star);
    messages name it "Filter 1"."""
    return Filters((_parse_filter(1, {"Pattern": pattern}, eventbridge=True),))


def _parse_filter(index: int, entry: Any, eventbridge: bool = False) -> _Node:
    pattern = entry.get("Pattern") if isinstance(entry, dict) else None
    if not isinstance(pattern, str):
        raise FilterError(f"Filter {index}: Pattern is required and must be a string.")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise FilterError(f"Filter {index}: Pattern is longer than {MAX_PATTERN_LENGTH} characters.")
    try:
        document = orjson.loads(pattern)
    except orjson.JSONDecodeError as error:
        raise FilterError(f"Filter {index}: Pattern is not valid JSON ({error}).") from None
    if not isinstance(document, dict):
        raise FilterError(f"Filter {index}: Pattern must be a JSON object.")
    return _compile_node(document, f"Filter {index}", root=True, eventbridge=eventbridge)


def _compile_node(obj: dict[str, Any], where: str, *, root: bool = False, eventbridge: bool = False) -> _Node:
    if not obj and not root:
        raise FilterError(f"{where}: an object in a pattern must not be empty.")
    fields: list[tuple[str, _Leaf | _Node]] = []
    ors: list[tuple[_Node, ...]] = []
    for key, value in obj.items():
        path = f"{where}: {key}" if root else f"{where}.{key}"
        if key == "$or":
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                raise FilterError(f"{path} must be a non-empty array of objects.")
            ors.append(tuple(_compile_node(v, path, eventbridge=eventbridge) for v in value))
        elif isinstance(value, dict):
            fields.append((key, _compile_node(value, path, eventbridge=eventbridge)))
        elif isinstance(value, list):
            fields.append((key, _compile_leaf(value, path, eventbridge)))
        else:
            raise FilterError(f"{path}: the value of a field must be an array of matchers or an object.")
    return _Node(tuple(fields), tuple(ors))


def _compile_leaf(items: list[Any], where: str, eventbridge: bool = False) -> _Leaf:
    if not items:
        raise FilterError(f"{where}: an array of matchers must not be empty.")
    tests: list[Test] = []
    exists: set[bool] = set()
    for item in items:
        if isinstance(item, dict):
            if len(item) != 1:
                raise FilterError(f"{where}: a matcher object must have exactly one operator.")
            ((op, arg),) = item.items()
            if op == "exists":
                if not isinstance(arg, bool):
                    raise FilterError(f"{where}: 'exists' takes true or false.")
                exists.add(arg)
            else:
                tests.append(_wildcard(arg, where) if eventbridge and op == "wildcard"
                             else _compile_operator(op, arg, where))
        elif isinstance(item, list):
            raise FilterError(f"{where}: arrays cannot be nested in an array of matchers.")
        else:
            tests.append(lambda v, want=item: _same(v, want))
    return _Leaf(tuple(tests), frozenset(exists))


def _compile_operator(op: str, arg: Any, where: str) -> Test:
    if op in ("prefix", "suffix"):
        return _affix(op, arg, where)
    if op == "equals-ignore-case":
        text = _string(arg, op, where).lower()
        return lambda v: isinstance(v, str) and v.lower() == text
    if op == "anything-but":
        return _anything_but(arg, where)
    if op == "numeric":
        return _numeric(arg, where)
    if op in _UNSUPPORTED:
        raise FilterError(f"{where}: {op!r} is not supported by Lambda event filtering.")
    raise FilterError(f"{where}: unknown operator {op!r}.")


def _wildcard(arg: Any, where: str) -> Test:
    """EventBridge's ``wildcard``: ``*`` is any run of characters (``\\*`` a literal star); two
    stars in a row are refused, as EventBridge does."""
    text = _string(arg, "wildcard", where)
    if "**" in text.replace("\\*", ""):
        raise FilterError(f"{where}: 'wildcard' cannot have consecutive '*' characters.")
    parts, literal = [], ""
    i = 0
    while i < len(text):
        if text.startswith("\\*", i):
            literal += "*"
            i += 2
        elif text[i] == "*":
            parts.append(re.escape(literal) + ".*")
            literal = ""
            i += 1
        else:
            literal += text[i]
            i += 1
    compiled = re.compile("".join(parts) + re.escape(literal), re.DOTALL)
    return lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None


def _affix(op: str, arg: Any, where: str) -> Test:
    fold = isinstance(arg, dict)
    if fold and list(arg) != ["equals-ignore-case"]:
        raise FilterError(f"{where}: {op!r} takes a string or {{\"equals-ignore-case\": string}}.")
    text = _string(arg["equals-ignore-case"] if fold else arg, op, where)
    if fold:
        text = text.lower()
    ends = str.startswith if op == "prefix" else str.endswith
    return lambda v: isinstance(v, str) and ends(v.lower() if fold else v, text)


def _anything_but(arg: Any, where: str) -> Test:
    if isinstance(arg, dict):
        if len(arg) != 1 or next(iter(arg)) not in ("prefix", "suffix", "equals-ignore-case"):
            raise FilterError(f"{where}: 'anything-but' takes a value, a list, or one of prefix, suffix, "
                              "equals-ignore-case.")
        ((op, inner),) = arg.items()
        if op == "equals-ignore-case":
            words = inner if isinstance(inner, list) and inner else [inner]
            folded = {_string(w, "anything-but equals-ignore-case", where).lower() for w in words}
            return lambda v: isinstance(v, str) and v.lower() not in folded
        test = _affix(op, inner, where)
        return lambda v: isinstance(v, str) and not test(v)
    values = arg if isinstance(arg, list) else [arg]
    strings = all(isinstance(v, str) for v in values)
    if not values or not (strings or all(_is_number(v) for v in values)):
        raise FilterError(f"{where}: 'anything-but' takes strings only or numbers only.")
    return lambda v: not any(_same(v, x) for x in values)


def _numeric(arg: Any, where: str) -> Test:
    bad = FilterError(f"{where}: 'numeric' takes [\"=\", n], [op, n] or a lower and an upper bound "
                      "([\">\"|\">=\", n, \"<\"|\"<=\", m] with n < m).")
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise bad
    pairs = [(arg[i], arg[i + 1]) for i in range(0, len(arg), 2)]
    if any(not isinstance(op, str) or op not in _COMPARE or not _is_number(n) for op, n in pairs):
        raise bad
    if len(pairs) == 2:
        ops = {pairs[0][0], pairs[1][0]}
        if "=" in ops or not (ops & _LOWER and ops & _UPPER):
            raise bad
        low, high = sorted(pairs, key=lambda p: p[0] in _UPPER)
        if not low[1] < high[1]:
            raise bad
    checks = [(_COMPARE[op], n) for op, n in pairs]
    return lambda v: _is_number(v) and all(check(v, n) for check, n in checks)


def _string(value: Any, op: str, where: str) -> str:
    if not isinstance(value, str):
        raise FilterError(f"{where}: {op!r} takes a string.")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(value: Any, want: Any) -> bool:
    """Exact match by JSON representation: no number/bool/string coercion; 5 and 5.0 differ."""
    return type(value) is type(want) and value == want


def _leaf_values(value: Any) -> list[Any]:
    """A record's scalar values at a leaf: arrays flattened, objects skipped (not leaves)."""
    if value is _MISSING or isinstance(value, dict):
        return []
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaf_values(item)]
    return [value]


def _match_leaf(leaf: _Leaf, value: Any) -> bool:
    values = _leaf_values(value)
    if bool(values) in leaf.exists:
        return True
    return any(test(v) for test in leaf.tests for v in values)


def _match_node(node: _Node, obj: Any) -> bool:
    for key, sub in node.fields:
        value = obj.get(key, _MISSING) if isinstance(obj, dict) else _MISSING
        if isinstance(sub, _Leaf):
            if not _match_leaf(sub, value):
                return False
        elif isinstance(value, list):  # an array of objects: some element must match the sub-pattern
            if not any(_match_node(sub, item) for item in value if isinstance(item, dict)):
                return False
        elif value is not _MISSING and not isinstance(value, dict):
            return False  # the pattern expects an object where the record has a plain value
        elif not _match_node(sub, value):
            return False
    return all(any(_match_node(alt, obj) for alt in group) for group in node.ors)


def _json_container(text: str) -> Any:
    """``text`` parsed when it is a JSON object or array; ``_MISSING`` otherwise."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _MISSING
    return parsed if isinstance(parsed, (dict, list)) else _MISSING


def sqs_view(record: dict[str, Any]) -> dict[str, Any]:
    """An SQS record as filters see it: a JSON object/array ``body`` parsed, a plain body kept."""
    view = dict(record)
    body = view.get("body")
    if isinstance(body, str) and (parsed := _json_container(body)) is not _MISSING:
        view["body"] = parsed
    return view


def kinesis_view(record: dict[str, Any]) -> dict[str, Any]:
    """A Kinesis record as filters see it: the fields of ``kinesis`` lifted beside the record's own.

    Lambda's Kinesis patterns name ``data`` and ``partitionKey`` at the top (``{"data": {...}}``),
    not under ``kinesis``; ``data`` is base64-decoded and parsed when it is a JSON object or array,
    and left as the base64 text otherwise (so only metadata and plain matching apply).
    """
    view = {key: value for key, value in record.items() if key != "kinesis"}
    if isinstance(record.get("kinesis"), dict):
        view.update(record["kinesis"])
    data = view.get("data")
    if isinstance(data, str):
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError
            return view
        if (parsed := _json_container(text)) is not _MISSING:
            view["data"] = parsed
    return view
