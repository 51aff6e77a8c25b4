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
            'at column 1: input.age is a path of nflow\'s rule syntax, which starts with "when"',
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


# Rules written for the Go runtime's engine (sazito/mosalat): bare names, "cond | assignments".


def test_go_engine_example_runs_as_is() -> None:
    # The Go engine's README example, with its functions now() and days() left out: rule_run
    # never had any (rule_add_fx could not register one from JavaScript).
    result = apply(
        {"registered_date": 100, "sales_amount": 2000000},
        'registered_date + 14 * 86400 < 1300000 && plan_name == "premium_1" | plan_name = "free"',
        'plan_name == "premium_1" | plan_name = "free"',
        'plan_name == "free" | feature_1 = true',
        output={"plan_name": "premium_1"},
    )
    assert result == {"output": {"plan_name": "free", "feature_1": True}, "err": None}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("age >= 18 | adult = true", True),
        ("age > 30 | adult = true", None),
        ('country == "UY" && !vip | adult = true', None),
        ("vip || age > 30 && age < 10 | adult = true", None),  # (vip || age > 30) && age < 10
        ("age < 10 && age > 30 || vip | adult = true", True),  # (age < 10 && age > 30) || vip
        ("(age - 2) % 7 == 4 | adult = true", True),
        ("age + 2 % 4 == 2 | adult = true", True),  # % binds loosest: (age + 2) % 4
        ("2 + 3 * 4 == 14 | adult = true", True),
        ("name | adult = true", True),  # truthiness: a non-empty string
        ("empty | adult = true", None),
        ("zero || tags | adult = true", True),
        ("!zero | adult = true", True),
        ("age == 20.0 | adult = true", True),  # numbers compare by value
        ('country != "AR" | adult = true', True),
    ],
)
def test_go_conditions(rule: str, expected: object) -> None:
    person = {**PERSON, "empty": "", "zero": 0}
    result = apply(person, rule)
    assert result["err"] is None, result
    assert result["output"].get("adult") == expected


def test_go_actions_without_condition_and_names_assigned_before() -> None:
    result = apply(
        {"price": 10, "qty": 3},
        'total = price * qty, label = "n=" + "3"',
        "total > 20 | discount = total / 10",
        "1 == 2 | later = true",
        "later | never = true",  # declared by the rule above, which did not run: null
        output={"total": 0},
    )
    assert result == {
        "output": {"total": 30, "label": "n=3", "discount": 3},
        "err": None,
    }


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("missing > 1 | a = 1", "at column 1: unknown name missing (not a key of input or output"),
        ("age > 1 | age = 1", "at column 11: cannot assign to age, a key of input"),
        ("both | a = 1", "at column 1: both is a key of both input and output"),
        ("now() > 1 | a = 1", "at column 1: now() is a function; rule_run has none"),
        ("age > 1 > 0 | a = 1", "chained comparison; join them with &&"),
        ("age > 1 |", "expected an assignment (name = value), got end of rule"),
        ("age > 1 | a == 1", 'expected "=" after a, got "=="'),
        ("age > 1 | a = 1 b = 2", 'expected "," between assignments or the end of the rule'),
        ("input.age > 1 | a = 1", "at column 1: input.age is a path of nflow's rule syntax"),
        ('age > 1 | kept = "text"', 'at column 11: kept holds a number; cannot assign "text"'),
    ],
)
def test_go_rules_refused_with_a_clear_error(rule: str, message: str) -> None:
    result = apply({**PERSON, "both": 1}, rule, output={"kept": 1, "both": 2})
    assert result["output"] == {"kept": 1, "both": 2}
    assert result["err"].startswith("rule 1 ("), result["err"]
    assert message in result["err"], result["err"]


def test_go_rules_from_javascript(plugin_rt: Callable[..., PluginRuntime]) -> None:
    out = PluginRuntime.run(
        plugin_rt(),
        """function main(){
  c.JSON(200, rule_run({sales: 2000}, {plan: "premium_1"},
    'sales > 1000 && plan == "premium_1" | plan = "free", bonus = sales / 100',
    'plan == "free" | feature_1 = true'));
}""",
    )
    assert out == {"output": {"plan": "free", "bonus": 20, "feature_1": True}, "err": None}
