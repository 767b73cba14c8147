"""Reading a server's form (elicitation schema) and checking answers typed for it: the
worst a schema or a person can hold."""

from __future__ import annotations

import pytest

from assistant.mcp.elicit import MAX_FIELDS, Field, Unsupported, fields_from_schema, missing, parse


@pytest.mark.parametrize("schema", [None, [], "form", {"properties": ["a"]},
                                    {"properties": {"a": "string"}}, {"required": "a"}])
def test_malformed_schemas_give_no_fields_and_no_crash(schema):
    if schema is None or isinstance(schema, (list, str)):
        with pytest.raises(Unsupported):
            fields_from_schema(schema)
    else:
        assert fields_from_schema(schema) == ()


def test_bad_bounds_and_defaults_are_ignored():
    (field,) = fields_from_schema({"properties": {"n": {
        "type": "integer", "minimum": "zero", "maximum": True, "default": "7"}},
        "required": "n"})
    assert (field.minimum, field.maximum, field.default, field.required) == (None, None, None,
                                                                            False)


def test_too_many_fields_or_a_required_nested_one_is_unsupported():
    with pytest.raises(Unsupported, match="at most"):
        fields_from_schema({"properties": {f"f{i}": {"type": "string"}
                                           for i in range(MAX_FIELDS + 1)}})
    with pytest.raises(Unsupported, match="'where'"):
        fields_from_schema({"properties": {"where": {"type": "object"}}, "required": ["where"]})


def test_titled_choices_and_enum_names():
    one_of, names = fields_from_schema({"properties": {
        "size": {"type": "string", "oneOf": [{"const": "s", "title": "Small"},
                                             {"const": "l", "title": "Large"}]},
        "c": {"type": "string", "enum": ["r", "g"], "enumNames": ["Red", "Green"],
              "default": "g"}}})
    assert (one_of.choices, one_of.labels) == (("s", "l"), ("Small", "Large"))
    assert parse(one_of, "large") == "l" and parse(one_of, "1") == "s"
    assert names.default == "g" and parse(names, "Red") == "r"
    with pytest.raises(ValueError, match="choose one of: Red, Green"):
        parse(names, "blue")
    with pytest.raises(ValueError):
        parse(names, "3")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "1_000x", "0x10"])
def test_numbers_must_be_finite_numbers(text):
    field = Field("n", "number", "n")
    with pytest.raises(ValueError):
        parse(field, text)


def test_integer_bounds_lengths_and_booleans():
    age = Field("age", "integer", "age", minimum=0, maximum=150)
    assert parse(age, " 41 ") == 41 and parse(age, "") is None
    for bad in ("41.5", "-1", "151", "x" * 10_000):
        with pytest.raises(ValueError):
            parse(age, bad)
    code = Field("code", "string", "code", min_length=2, max_length=4)
    with pytest.raises(ValueError, match="at most 4"):
        parse(code, "abcde")
    assert parse(code, "abc") == "abc"
    yes = Field("ok", "boolean", "ok")
    assert (parse(yes, "Y"), parse(yes, "no")) == (True, False)
    with pytest.raises(ValueError):
        parse(yes, "maybe")
    assert missing((Field("a", "string", "A", required=True), code), {"code": "ab"}) == ["A"]
