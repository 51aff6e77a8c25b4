"""mustache(text, data): golden outputs of the Go runtime's renderer (cbroglie/mustache v1.2).

The first table is the Go library's own test table (the cases that use maps, lists and
scalars, the only values a script can pass); the second covers what goja hands it from
JavaScript (booleans, null, numbers, objects) and the escaping of Go's
``template.HTMLEscape``. The last test goes through a real flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import Harness, app_doc, js, starter
from nflow.jsapi._mustache import MustacheError, render_mustache

GO_LIBRARY_CASES: list[tuple[str, Any, str]] = [
    ("hello world", None, "hello world"),
    ("hello {{name}}", {"name": "world"}, "hello world"),
    ("{{var}}", {"var": "5 > 2"}, "5 &gt; 2"),
    ("{{{var}}}", {"var": "5 > 2"}, "5 > 2"),
    ("{{var}}", {"var": '& " < >'}, "&amp; &#34; &lt; &gt;"),
    ("{{{var}}}", {"var": '& " < >'}, '& " < >'),
    ("{{a}}{{b}}{{c}}{{d}}", {"a": "a", "b": "b", "c": "c", "d": "d"}, "abcd"),
    ("0{{a}}1{{b}}23{{c}}456{{d}}89", {"a": "a", "b": "b", "c": "c", "d": "d"}, "0a1b23c456d89"),
    ("hello {{! comment }}world", {}, "hello world"),
    ("{{ a }}{{=<% %>=}}<%b %><%={{ }}=%>{{ c }}", {"a": "a", "b": "b", "c": "c"}, "abc"),
    ("{{ a }}{{= <% %> =}}<%b %><%= {{ }}=%>{{c}}", {"a": "a", "b": "b", "c": "c"}, "abc"),
    ("{{a}}{{#b}}{{b}}{{/b}}{{c}}", {"a": "a", "b": "b", "c": "c"}, "abc"),
    ("{{#A}}{{b}}{{/A}}", {"A": [{"b": "a"}, {"b": "b"}, {"b": "c"}]}, "abc"),
    ("{{#users}}gone{{Name}}{{/users}}", {"users": None}, ""),
    ("{{#users}}gone{{Name}}{{/users}}", {"users": []}, ""),
    ("{{#users}}\n{{Name}}\n{{/users}}", {"users": [{"Name": "Mike"}] * 2}, "Mike\nMike\n"),
    ("{{#users}}\r\n{{Name}}\r\n{{/users}}", {"users": [{"Name": "Mike"}] * 2}, "Mike\r\nMike\r\n"),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": None}, ""),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": False}, ""),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": 0}, ""),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": 0.0}, ""),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": ""}, ""),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": []}, ""),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": "\t"}, ""),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": [0]}, "Hi 0"),
    ("{{#a}}Hi {{.}}{{/a}}", {"a": "Rob"}, "Hi Rob"),
    ('"{{#list}}({{.}}){{/list}}"', {"list": ["a", "b", "c", "d", "e"]}, '"(a)(b)(c)(d)(e)"'),
    ('"{{#list}}({{.}}){{/list}}"', {"list": [1, 2, 3, 4, 5]}, '"(1)(2)(3)(4)(5)"'),
    (
        '"{{#list}}({{.}}){{/list}}"',
        {"list": [1.1, 2.2, 3.3, 4.4, 5.5]},
        '"(1.1)(2.2)(3.3)(4.4)(5.5)"',
    ),
    ("{{a}}{{^b}}b{{/b}}{{c}}", {"a": "a", "b": False, "c": "c"}, "abc"),
    ("{{^a}}b{{/a}}", {"a": False}, "b"),
    ("{{^a}}b{{/a}}", {"a": True}, ""),
    ("{{^a}}b{{/a}}", {"a": "nonempty string"}, ""),
    ("{{^a}}b{{/a}}", {"a": []}, "b"),
    ("{{a}}{{^b}}b{{/b}}{{c}}", {"a": "a", "c": "c"}, "abc"),
    ("hello {{#section}}{{name}}{{/section}}", {"section": {"name": "world"}}, "hello world"),
    (
        "hello {{#section}}{{name}}{{/section}}",
        {"name": "bob", "section": {"name": "world"}},
        "hello world",
    ),
    (
        "hello {{#bool}}{{#section}}{{name}}{{/section}}{{/bool}}",
        {"bool": True, "section": {"name": "world"}},
        "hello world",
    ),
    ("{{#users}}{{canvas}}{{/users}}", {"canvas": "hello", "users": [{"Name": "Mike"}]}, "hello"),
    (
        "{{#section}}{{#bool}}{{x}}{{/bool}}{{/section}}",
        {"x": "broken", "section": [{"x": "working", "bool": True}, {"x": "nope", "bool": False}]},
        "working",
    ),
    (
        "{{#section}}{{^bool}}{{x}}{{/bool}}{{/section}}",
        {"x": "broken", "section": [{"x": "working", "bool": False}, {"x": "nope", "bool": True}]},
        "working",
    ),
    (
        '"{{person.name}}" == "{{#person}}{{name}}{{/person}}"',
        {"person": {"name": "Joe"}},
        '"Joe" == "Joe"',
    ),
    (
        '"{{{person.name}}}" == "{{#person}}{{{name}}}{{/person}}"',
        {"person": {"name": "Joe"}},
        '"Joe" == "Joe"',
    ),
    (
        '"{{a.b.c.d.e.name}}" == "Phil"',
        {"a": {"b": {"c": {"d": {"e": {"name": "Phil"}}}}}},
        '"Phil" == "Phil"',
    ),
    (
        '"{{#a}}{{b.c.d.e.name}}{{/a}}" == "Phil"',
        {
            "a": {"b": {"c": {"d": {"e": {"name": "Phil"}}}}},
            "b": {"c": {"d": {"e": {"name": "Wrong"}}}},
        },
        '"Phil" == "Phil"',
    ),
    ("{{dne}}", {"name": "world"}, ""),
    ('"{{a.b.c}}" == ""', {}, '"" == ""'),
    (
        '"{{a.b.c.name}}" == ""',
        {"a": {"b": {}}, "c": {"name": "Jim"}},
        '"" == ""',
    ),
    ("{{#a}}{{b.c}}{{/a}}", {"a": {"b": {}}, "b": {"c": "ERROR"}}, ""),
]

JS_VALUE_CASES: list[tuple[str, Any, str]] = [
    # An attribute quoted with ' cannot be broken out of: both quotes are escaped.
    (
        "<a title='{{x}}'>",
        {"x": "' onmouseover='alert(1)"},
        "<a title='&#39; onmouseover=&#39;alert(1)'>",
    ),
    ('<a title="{{x}}">', {"x": '"><script>'}, '<a title="&#34;&gt;&lt;script&gt;">'),
    ("{{x}}", {"x": "a\x00b"}, "a\ufffdb"),
    ("{{t}} {{f}}", {"t": True, "f": False}, "true false"),
    ("[{{n}}] [{{{n}}}] [{{missing}}]", {"n": None}, "[&lt;nil&gt;] [<nil>] []"),
    (
        "{{i}} {{f}} {{big}} {{small}} {{huge}}",
        {"i": 42, "f": 0.5, "big": 1234567.5, "small": 0.00001, "huge": 1e21},
        "42 0.5 1.2345675e+06 1e-05 1e+21",
    ),
    ("{{n}} {{z}}", {"n": 3.0, "z": -0.0}, "3 -0"),
    ("{{o}}", {"o": {"b": [1, "x", None], "a": True}}, "map[a:true b:[1 x &lt;nil&gt;]]"),
    ("{{l}}", {"l": [1, 2.5, "s"]}, "[1 2.5 s]"),
    ("{{l.0}}", {"l": ["first"]}, ""),  # no index lookups in this library
    ("{{#o}}set{{/o}}{{^o}}unset{{/o}}", {"o": {}}, "set"),  # an empty object is not empty
    ("{{#s}}yes{{/s}}{{^s}}no{{/s}}", {"s": "  \n"}, "no"),
    ("{{#l}}[{{.}}]{{/l}}", {"l": [None, True]}, "[&lt;nil&gt;][true]"),
    ("{{#n}}{{.}}{{/n}}", {"n": 7}, "7"),
    ("a\n  {{#t}}\n  x\n  {{/t}}\nb", {"t": True}, "a\n  x\nb"),
    ("a\n  {{! note }}  \nb", {}, "a\nb"),
    ("a\n  {{! note }}  ", {}, "a\n    "),  # Go: only blanks up to the end: not standalone
    ("  {{> partial}}\nok", {}, "ok"),  # partials read no file
    ("{{&x}}|{{ x }}", {"x": "<b>"}, "<b>|&lt;b&gt;"),
]


@pytest.mark.parametrize(("template", "data", "expected"), GO_LIBRARY_CASES + JS_VALUE_CASES)
def test_golden(template: str, data: Any, expected: str) -> None:
    assert render_mustache(template, data) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{#a}}x", "line 1: Section a has no closing tag"),
        ("x\n{{/a}}", "line 2: unmatched close tag"),
        ("{{#a}}{{/b}}", "line 1: interleaved closing tag: b"),
        ("{{x", "line 1: unmatched open tag"),
        ("{{ }}", "line 1: empty tag"),
        ("{{=<% %>}}", "line 1: Invalid meta tag"),
    ],
)
def test_errors_worded_as_go(template: str, message: str) -> None:
    with pytest.raises(MustacheError) as info:
        render_mustache(template, {})
    assert str(info.value) == message


def test_mustache_in_a_flow(db_url: str, tmp_path: Path) -> None:
    doc = app_doc(
        s=starter("s", "/m", "a"),
        a=js(
            "a",
            """function main(){
  c.HTML(200, mustache("<a title='{{q}}'>{{ok}} {{n}} {{#items}}<i>{{.}}</i>{{/items}}</a>"
      + mustache("{{#a}}", {}), {q: "it's \\"x\\"", ok: true, n: 1000000, items: [1, 2.5]}))
}""",
        ),
    )
    h = Harness(db_url, tmp_path, apps=[doc])
    try:
        r = h.request("GET", "/m")
        assert r.status == 200
        assert r.text == "<a title='it&#39;s &#34;x&#34;'>true 1000000 <i>1</i><i>2.5</i></a>"
    finally:
        h.close()
