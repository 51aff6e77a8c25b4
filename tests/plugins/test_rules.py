"""rule_run: the rule language's grammar, its evaluation, and errors returned in ``err``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from plugin_support import PluginRuntime

from nflow.plugins import run_rules


def apply(input_: Any, *rules: str, output: Any = None) -> dict[str, Any]:
    return run_rules(input_, output if output is not None else {}, list(rules))


PERSON = {"age": 20, "country": "UY", "name": "Ana", "tags": ["a", "vip"], "vip": True}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('when input.age >= 18 and input.country == "UY" then output.adult = true', True),
        ('when input.age >= 21 or input.country != "UY" then output.adult = true', None),
        ("when not (input.age < 18) then output.adult = true", True),
        ('when !(input.age < 18) && input.name == "Ana" then output.adult = true', True),
        ("when input.age > 18 || false then output.adult = true", True),
        ('when "vip" in input.tags then output.adult = true', True),
        ('when input.country not in ["AR", "BR"] then output.adult = true', True),
        ('when "n" in input.name then output.adult = true', True),
        ("when input.missing == null then output.adult = true", True),
        ("when input.tags[1] == 'vip' and input['age'] == 20 then output.adult = true", True),
        ("when input.vip then output.adult = true", True),
        ("when input.age == 20.0 then output.adult = true", True),
        ("when input.vip == 1 then output.adult = true", None),  # true is not 1
        ('when "10" < "9" then output.adult = true', True),  # strings compare as strings
        ("when input.age * 2 - 1 == 39 and 7 % 4 == 3 then output.adult = true", True),
        ("when -input.age < -19 then output.adult = true", True),
        ("when 1 + 2 * 3 == 7 and (1 + 2) * 3 == 9 then output.adult = true", True),
        ("when [1, 2] == [1, 2.0] then output.adult = true", True),
    ],
)
def test_conditions(rule: str, expected: object) -> None:
    result = apply(PERSON, rule)
    assert result["err"] is None, result
    assert result["output"].get("adult") == expected


def test_actions_else_nesting_and_order() -> None:
    result = apply(
        {"total": 250, "first": "Ana", "last": "Paz"},
        'when input.total > 100 then output.discount = input.total * 0.1, output.tier = "gold" '
        "else output.discount = 0",
        'when output.tier == "gold" then output.customer.name = input.first + " " + input.last;'
        " output.customer.flags = [output.discount > 20, null]",
        "when input.total < 100 then output.never = true else output.small = false",
        output={"kept": 1},
    )
    assert result == {
        "output": {
            "kept": 1,
            "discount": 25,
            "tier": "gold",
            "customer": {"name": "Ana Paz", "flags": [True, None]},
            "small": False,
        },
        "err": None,
    }
    assert apply({"total": 5}, "when input.total > 100 then output.d = 1 else output.d = 0") == {
        "output": {"d": 0},
        "err": None,
    }


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "input.age > 1 then output.a = 1",
            'at column 1: expected "when" at the start of the rule',
        ),
        ("when input.age = 18 then output.a = 1", "at column 16: use == to compare (= assigns)"),
        ("when input.age > then output.a = 1", "at column 18: expected a value"),
        ("when input.age > 1 output.a = 1", 'at column 20: expected "then" or an operator'),
        ("when true then input.a = 1", "at column 16: expected an assignment to output"),
        ("when true then output = 1", "at column 16: assign to a field of output, not output"),
        ("when true then output.a = 1 output.b = 2", 'at column 29: expected "," between'),
        ("when true then output.a = (1", 'at column 29: expected ")", got end of rule'),
        ("when eval(1) then output.a = 1", "at column 6: expected input or output"),
        ("when true then output.a = 'x\\q'", "unknown escape \\q"),
        ("when true then output.a = 1 # no", "at column 29: unexpected '# no'"),
        ("when input.tags[1.5] then output.a = 1", "expected an index (a whole number)"),
    ],
)
def test_syntax_errors_name_rule_and_column(rule: str, message: str) -> None:
    result = apply(PERSON, "when true then output.first = 1", rule, output={"x": 1})
    assert result["output"] == {"x": 1}  # nothing applied: the rules are parsed first
    assert result["err"].startswith("rule 2 (")
    assert message in result["err"], result["err"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('when input.age > "18" then output.a = 1', 'cannot compare 20 > "18"'),
        ("when input.missing then output.a = 1", "the condition needs true or false, got null"),
        ("when input.age and true then output.a = 1", '"and" needs true or false, got 20'),
        ("when true then output.a = 1 / 0", "at column 29: division by zero"),
        ("when true then output.a = input.name * 2", 'cannot compute "Ana" * 2'),
        ("when 1 in input.age then output.a = 1", '"in" needs an array'),
        ("when true then output.name.first = 1", "cannot assign into"),
        ("when true then output.a = -input.name", 'cannot negate "Ana"'),
        ("when true then output.a = 1e308 * 10", "is not a finite number"),
    ],
)
def test_evaluation_errors_leave_output_unchanged(rule: str, message: str) -> None:
    result = apply(PERSON, "when true then output.first = 1", rule, output={"name": "x"})
    assert result["output"] == {"name": "x"}
    assert result["err"].startswith(f"rule 2 ({rule[:20]}")
    assert message in result["err"], result["err"]


def test_limits() -> None:
    deep = "when " + "(" * 100 + "true" + ")" * 100 + " then output.a = 1"
    assert "nested more than 64 deep" in apply({}, deep)["err"]
    assert "longer than 10000 characters" in apply({}, "when true " + " " * 10_000)["err"]
    assert (
        apply({}, *["when true then output.a = 1"] * 501)["err"] == "rule_run: more than 500 rules"
    )
    assert apply({}, "when true then output.a = 1", output=[1])["err"] == (
        "rule_run: output must be an object"
    )


def test_rule_run_from_javascript(plugin_rt: Callable[..., PluginRuntime]) -> None:
    rt = plugin_rt()
    code = """function main(){
  var input = {age: 17, country: "UY"};
  var ok = rule_run(input, {},
    'when input.age >= 18 then output.adult = true else output.adult = false',
    ['when input.country == "UY" then output.currency = "UYU"']);
  var bad = rule_run(input, {kept: true}, 'when input.age >= then output.adult = true');
  c.JSON(200, {ok: ok, bad: bad, nothing: rule_run(input)});
}"""
    out = rt.run(code)
    assert out["ok"] == {"output": {"adult": False, "currency": "UYU"}, "err": None}
    assert out["bad"]["output"] == {"kept": True}
    assert out["bad"]["err"].startswith(
        "rule 1 (when input.age >= then output.adult = true): at column 19: expected a value"
    )
    assert out["nothing"] == {"output": {}, "err": None}
