"""What a server asks the user during a tool call (``elicitation/create``), without the SDK.

A form request carries a flat JSON schema of primitive fields (string, number, integer,
boolean, a string enum); a URL request carries a page the user may choose to open. The
front ends (a modal in the chat app, questions on the terminal for ``ask``) build their
questions from ``Field`` and hand back an ``Answer``; nothing here talks to a server, so
both front ends and the host share one reading of the schema and one set of checks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

KINDS = ("string", "number", "integer", "boolean", "enum")
MAX_FIELDS = 50  # a form longer than this is not a question for a person


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # one of KINDS
    title: str
    description: str = ""
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()  # for "enum": the values to send
    labels: tuple[str, ...] = ()  # for "enum": what the user sees, same order
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Elicitation:
    server: str
    message: str
    fields: tuple[Field, ...] = ()
    url: str | None = None  # URL mode: the page to open, and no fields


@dataclass(frozen=True)
class Answer:
    action: str  # accept | decline | cancel
    content: dict | None = None  # the values, for an accepted form


DECLINE = Answer("decline")
CANCEL = Answer("cancel")

# The front end's question: called on a worker thread, it returns when the user answers
# or when the event is set (the call timed out or was stopped), then with anything.
Elicitor = Callable[[Elicitation, threading.Event], Answer]


class Unsupported(ValueError):
    """A form asks for something this client cannot ask for (say, a nested object)."""


def fields_from_schema(schema: dict) -> tuple[Field, ...]:
    """The form's fields, in the schema's order. Raises ``Unsupported`` for a required
    field of a kind this client cannot ask for; such an optional field is left out."""
    if not isinstance(schema, dict):
        raise Unsupported("the form has no schema")
    props = schema.get("properties") or {}
    if isinstance(props, dict) and len(props) > MAX_FIELDS:
        raise Unsupported(f"the form has {len(props):,} fields; at most {MAX_FIELDS} are asked")
    required = schema.get("required") or ()
    required = {r for r in required if isinstance(r, str)} if isinstance(required, list) \
        else set()
    fields = []
    for name, prop in props.items() if isinstance(props, dict) else ():
        field = _field(str(name), prop if isinstance(prop, dict) else {}, name in required)
        if field is None:
            if name in required:
                raise Unsupported(f"the form asks for {name!r} in a shape this app cannot "
                                  "ask for")
            continue
        fields.append(field)
    return tuple(fields)


def _field(name: str, prop: dict, required: bool) -> Field | None:
    kind = prop.get("type")
    common = dict(title=str(prop.get("title") or name), required=required,
                  description=str(prop.get("description") or ""))
    choices = prop.get("enum")
    one_of = prop.get("oneOf") or prop.get("anyOf")
    if kind == "string" and isinstance(one_of, list) and one_of \
            and all(isinstance(o, dict) and "const" in o for o in one_of):
        values = tuple(str(o["const"]) for o in one_of)
        labels = tuple(str(o.get("title") or o["const"]) for o in one_of)
        return Field(name, "enum", choices=values, labels=labels,
                     default=_default(prop, values), **common)
    if kind == "string" and isinstance(choices, list) and choices:
        values = tuple(str(c) for c in choices)
        names = prop.get("enumNames")
        labels = tuple(str(n) for n in names) if isinstance(names, list) \
            and len(names) == len(values) else values
        return Field(name, "enum", choices=values, labels=labels,
                     default=_default(prop, values), **common)
    if kind == "boolean":
        default = prop.get("default")
        return Field(name, "boolean", default=default if isinstance(default, bool) else None,
                     **common)
    if kind in ("number", "integer"):
        bounds = {k: v for k, v in (("minimum", prop.get("minimum")),
                                    ("maximum", prop.get("maximum")))
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        default = prop.get("default")
        ok = isinstance(default, (int, float)) and not isinstance(default, bool)
        return Field(name, kind, default=default if ok else None, **bounds, **common)
    if kind == "string":
        lengths = {k: v for k, v in (("min_length", prop.get("minLength")),
                                     ("max_length", prop.get("maxLength")))
                   if isinstance(v, int) and not isinstance(v, bool)}
        default = prop.get("default")
        return Field(name, "string", default=default if isinstance(default, str) else None,
                     **lengths, **common)
    return None


def _default(prop: dict, values: tuple[str, ...]):
    default = prop.get("default")
    return default if default in values else None


def parse(field: Field, text: str):
    """The value typed for ``field``, or None for an empty answer. Raises ``ValueError``
    with a line for the user when it does not fit the field."""
    text = text.strip()
    if not text:
        return None
    if field.kind == "boolean":
        lowered = text.lower()
        if lowered in ("y", "yes", "true", "1", "on"):
            return True
        if lowered in ("n", "no", "false", "0", "off"):
            return False
        raise ValueError("answer yes or no")
    if field.kind == "enum":
        if text in field.choices:
            return text
        for value, label in zip(field.choices, field.labels):
            if text.lower() in (value.lower(), label.lower()):
                return value
        if text.isdigit() and 1 <= int(text) <= len(field.choices):
            return field.choices[int(text) - 1]
        raise ValueError(f"choose one of: {', '.join(field.labels)}")
    if field.kind in ("number", "integer"):
        try:
            value = int(text) if field.kind == "integer" else float(text)
        except ValueError:
            raise ValueError("a whole number" if field.kind == "integer"
                             else "a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a finite number")
        if field.minimum is not None and value < field.minimum:
            raise ValueError(f"at least {field.minimum:g}")
        if field.maximum is not None and value > field.maximum:
            raise ValueError(f"at most {field.maximum:g}")
        return value
    if field.min_length is not None and len(text) < field.min_length:
        raise ValueError(f"at least {field.min_length} characters")
    if field.max_length is not None and len(text) > field.max_length:
        raise ValueError(f"at most {field.max_length} characters")
    return text


def missing(fields: tuple[Field, ...], content: dict) -> list[str]:
    """The titles of required fields without a value."""
    return [f.title for f in fields if f.required and content.get(f.name) is None]
