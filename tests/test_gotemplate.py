"""The Go html/template port renders nFlow pages as the Go runtime does.

Expected strings follow Go's html/template and text/template sources (escape.go,
transition.go, html.go, url.go, js.go, css.go, exec.go, funcs.go).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nflow.golang.template import (
    HTML,
    CompiledTemplate,
    TemplateError,
    compile_template,
    render,
)

PLAYBOOKS = Path(__file__).resolve().parents[1].parent / "shared" / "compat" / "playbooks"
NEXT = "012715af-7917-4a12-8afc-b5f5406d4094"


def _page_data(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "form_code": "<div><input name='nombre'/></div>",
        "action": "/nflow/node/run/Home/x",
        "next": NEXT,
        "payload": {"nombre": "Ana", "tipo": "celular", "cantidad": 1500, "tasa": 1.5},
        "profile": {"username": "ana"},
        "url": "/pepe11",
        "name": "Datos Personales",
    }
    data.update(overrides)
    return data


def _templates() -> dict[str, str]:
    out: dict[str, str] = {}
    for fname in ("templates_app_sqlite.json", "templates_initsql.json"):
        doc = json.loads((PLAYBOOKS / "support" / fname).read_text(encoding="utf-8"))
        for t in doc["templates"]:
            out[f"{fname}:{t['name']}"] = t["content"]
    return out


TEMPLATES = _templates()


def _wizard_forms() -> dict[str, str]:
    doc = json.loads(
        (PLAYBOOKS / "home_pepe11_multistep_form_wizard.json").read_text(encoding="utf-8")
    )
    forms: dict[str, str] = {}
    for tab in doc["drawflow"].values():
        for node_id, node in tab["data"].items():
            html_form = node.get("data", {}).get("html_form")
            if html_form is not None:
                forms[node_id] = html_form
    return forms


WIZARD_FORMS = _wizard_forms()


def _tpl(name: str) -> str:
    return TEMPLATES[f"templates_app_sqlite.json:{name}"]


# ---------------------------------------------------------------------------------------------
# The real nFlow templates


def test_fixture_templates_are_present() -> None:
    assert len(TEMPLATES) == 10
    assert len(WIZARD_FORMS) == 5


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_every_stored_template_parses_and_renders(key: str) -> None:
    name = key.split(":", 1)[1]
    out = render(TEMPLATES[key], _page_data(), name=name)
    assert "{{" not in out
    # unescapeHTML passes the inner form through untouched.
    assert "<div><input name='nombre'/></div>" in out
    if "index .profile" in TEMPLATES[key]:
        assert ">ana</p>" in out or "Username:ana " in out
    if "{{.next}}" in TEMPLATES[key]:
        assert NEXT in out


def test_form_tracking_url_without_next_matches_go() -> None:
    out = render(
        _tpl("formTrackingUrlWithoutNext"), _page_data(), name="formTrackingUrlWithoutNext"
    )
    assert '<form method="post" id="form_main" action="/pepe11/nftk/Datos%20Personales">' in out
    assert f'<input type="hidden" name="nflow_next_node_run" value="{NEXT}" />' in out
    assert "             <div><input name='nombre'/></div> \n        </form>" in out
    assert "<p>ana</p>" in out
    # html/template drops JS comments from <script> bodies but keeps the code.
    assert "//sessionStorage" not in out
    assert "// Agrega un estado" not in out
    assert 'history.pushState({ page: 1 }, "state1", "?f=run");' in out
    # CSS is static text and stays as written.
    assert ".profile-container input[type='submit'] {" in out


def test_form_tracking_url_escapes_each_url_part() -> None:
    out = render(_tpl("formTrackingUrl"), _page_data(name="Paso 2"), name="formTrackingUrl")
    assert f'action="/pepe11/nftk/Paso%202/nfnext/{NEXT}"' in out


def test_form_single_url_and_login_templates() -> None:
    out = render(_tpl("formSingleURL"), _page_data(), name="formSingleURL")
    assert 'action="/pepe11" >' in out
    login = render(_tpl("login_template"), _page_data(next="60135809"), name="login_template")
    assert "<input type='hidden' name='nflow_next_node_run' value='60135809' />" in login


def test_payload_html_in_text_context_is_escaped() -> None:
    page = "<p>{{.payload.nombre}}</p>"
    out = render(page, _page_data(payload={"nombre": "<script>alert(1)</script>"}))
    assert out == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"


def test_form_code_through_unescape_html_is_raw_but_plain_values_are_not() -> None:
    page = "{{.form_code | unescapeHTML}}|{{unescapeHTML .form_code}}|{{.form_code}}"
    out = render(page, {"form_code": "<b>x</b>"})
    assert out == "<b>x</b>|<b>x</b>|&lt;b&gt;x&lt;/b&gt;"


def test_javascript_href_is_filtered() -> None:
    out = render('<a href="{{.u}}">x</a>', {"u": "javascript:alert(1)"})
    assert out == '<a href="#ZgotmplZ">x</a>'


def test_quote_in_attribute_is_escaped() -> None:
    out = render("<input value=\"{{.v}}\"><input value='{{.v}}'>", {"v": "a\"b'c"})
    assert out == "<input value=\"a&#34;b&#39;c\"><input value='a&#34;b&#39;c'>"


def test_string_in_script_is_js_escaped() -> None:
    out = render("<script>var n = {{.n}}; var s = '{{.n}}';</script>", {"n": "</script>'x"})
    assert out == (
        '<script>var n = "\\u003c/script\\u003e\'x"; '
        "var s = '\\u003c\\/script\\u003e\\u0027x';</script>"
    )


@pytest.mark.parametrize("node_id", sorted(WIZARD_FORMS))
def test_wizard_inner_forms_render_in_both_steps(node_id: str) -> None:
    html_form = WIZARD_FORMS[node_id]
    inner = render(html_form, _page_data(), name="html_form")
    # The form module renders html_form first, then the page with the result as form_code.
    page = render(
        _tpl("formTrackingUrlWithoutNext"),
        _page_data(form_code=inner),
        name="formTrackingUrlWithoutNext",
    )
    assert inner in page
    # HTML comments in template text are dropped, like Go does.
    assert "<!--" not in inner
    assert "<input" in inner


def test_wizard_step2_script_keeps_code_and_drops_comments() -> None:
    step2 = WIZARD_FORMS["012715af-7917-4a12-8afc-b5f5406d4094"]
    out = render(step2, {})
    assert "document.getElementById('celular').required = (tipo === 'celular');" in out
    assert "// Aquí podrías" not in out
    assert 'onchange="toggleInput()"' in out


# ---------------------------------------------------------------------------------------------
# Language features


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        ("{{.a}}", {"a": "x"}, "x"),
        ("{{.a.b.c}}", {"a": {"b": {"c": 7}}}, "7"),
        ("{{.missing}}|{{.a.missing}}", {"a": {}}, "|"),
        ("{{.nil}}", {"nil": None}, ""),
        ("{{.}}", {"k": "v"}, "map[k:v]"),
        ("{{$}}", {"k": [1, "a"]}, "map[k:[1 a]]"),
        ('{{index .m "k"}}', {"m": {"k": "v"}}, "v"),
        ('{{index .m "nope"}}', {"m": {"k": "v"}}, ""),
        ("{{index .l 1}}", {"l": ["a", "b"]}, "b"),
        ("{{index .l 1 0}}", {"l": [[1], [2, 3]]}, "2"),
        ('{{index . "a" "b"}}', {"a": {"b": True}}, "true"),
        ('{{.a | printf "%s-%d" .b}}', {"a": 2, "b": "x"}, "x-2"),
        (
            '{{printf "%v|%5.2f|%-4s|%03d|%q|%x|%t" .l 3.14159 "a" 7 "q" 255 true}}',
            {"l": [1, 2]},
            "[1 2]| 3.14|a   |007|&#34;q&#34;|ff|true",
        ),
        ('{{printf "%d" "s"}}', {}, "%!d(string=s)"),
        ('{{printf "%s %s" "a"}}', {}, "a %!s(MISSING)"),
        ('{{printf "%s" "a" 1}}', {}, "a%!(EXTRA int=1)"),
        ('{{print 1 2 "a" 3 .x}}', {"x": None}, "1 2a3 &lt;nil&gt;"),
        ('{{println 1 "a"}}', {}, "1 a\n"),
        ("{{len .s}} {{len .l}} {{len .m}}", {"s": "ñu", "l": [1, 2], "m": {}}, "3 2 0"),
        (
            "{{slice .l 1 3}} {{slice .s 1}} {{slice .l}}",
            {"l": [1, 2, 3, 4], "s": "abc"},
            "[2 3] bc [1 2 3 4]",
        ),
        ("{{if .t}}T{{end}}{{if .f}}F{{end}}", {"t": 1, "f": 0}, "T"),
        ("{{if .a}}A{{else if .b}}B{{else}}C{{end}}", {"a": "", "b": [1]}, "B"),
        ("{{if .a}}A{{else if .b}}B{{else}}C{{end}}", {"a": {}, "b": []}, "C"),
        ("{{if not .x}}empty{{end}}", {"x": 0.0}, "empty"),
        ("{{if and .a .b}}y{{else}}n{{end}}", {"a": 1, "b": None}, "n"),
        ('{{or .a .b "dflt"}}', {"a": "", "b": 0}, "dflt"),
        ("{{and 1 2}} {{or 0 3}}", {}, "2 3"),
        ("{{and .missing (index .missing 1)}}", {}, ""),
        ("{{range .l}}[{{.}}]{{end}}", {"l": ["a", "b"]}, "[a][b]"),
        ("{{range .l}}x{{else}}none{{end}}", {"l": []}, "none"),
        ("{{range .missing}}x{{else}}none{{end}}", {}, "none"),
        ("{{range $i, $v := .l}}{{$i}}={{$v}};{{end}}", {"l": ["a", "b"]}, "0=a;1=b;"),
        ("{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}", {"m": {"b": 2, "a": 1}}, "a=1;b=2;"),
        ("{{range $v := .l}}{{$v}}{{end}}", {"l": [3, 4]}, "34"),
        ("{{range 3}}{{.}}{{end}}", {}, "012"),
        (
            "{{range .l}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}",
            {"l": [1, 2, 3, 4, 5]},
            "13",
        ),
        ("{{with .a}}{{.b}}{{end}}", {"a": {"b": "in"}}, "in"),
        ("{{with .a}}x{{else}}none{{end}}", {"a": ""}, "none"),
        ("{{with .a}}A{{else with .b}}{{.}}{{end}}", {"b": "B"}, "B"),
        ('{{$x := .a}}{{$x}}{{$x = "z"}}{{$x}}', {"a": "y"}, "yz"),
        ("{{with $x := .a}}{{$x}}{{end}}", {"a": "w"}, "w"),
        ("{{range .l}}{{$.top}}{{end}}", {"l": [1, 2], "top": "T"}, "TT"),
        ("a{{/* comment */}}b", {}, "ab"),
        ("a  {{- .x -}}  \n b", {"x": 1}, "a1b"),
        ("a {{- /* c */ -}} b", {}, "ab"),
        ('{{"dq\\t\\u00e9"}}{{`raw\\n`}}', {}, "dq\té" + "raw\\n"),
        ("{{1}} {{-2}} {{0x1F}} {{1.5}} {{1e3}} {{'a'}}", {}, "1 -2 31 1.5 1000 97"),
        ("{{true}} {{false}}", {}, "true false"),
        ('{{(.a)}} {{(index .m "k").x}}', {"a": 1, "m": {"k": {"x": 2}}}, "1 2"),
        ('{{if eq .a "x" "y"}}in{{end}}', {"a": "y"}, "in"),
        (
            '{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1.5 2.5}}',
            {},
            "true true true true false",
        ),
        ('{{eq .n 3}} {{eq .missing "x"}} {{eq .missing nil}}', {"n": 3}, "true false true"),
        (
            '{{html "<a&b>"}} {{js "it\'s <x>"}} {{urlquery "a b&c/é"}}',
            {},
            "&lt;a&amp;b&gt; it\\&#39;s \\u003Cx\\u003E a&#43;b%26c%2F%C3%A9",
        ),
    ],
)
def test_language(text: str, data: dict[str, object], expected: str) -> None:
    assert render(text, data) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        (-42, "-42"),
        (1.5, "1.5"),
        # html/template escapes "+" as "&#43;" in text.
        (1e21, "1e&#43;21"),
        (1e20, "1e&#43;20"),
        (123456.0, "123456"),
        (1234567.5, "1.2345675e&#43;06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-0.0, "-0"),
        (float("inf"), "&#43;Inf"),
        (True, "true"),
        (None, ""),
        ([1, "a", None, [2.5]], "[1 a &lt;nil&gt; [2.5]]"),
        ({"b": {"c": 1}, "a": False}, "map[a:false b:map[c:1]]"),
    ],
)
def test_values_print_like_go(value: object, expected: str) -> None:
    assert render("{{.v}}", {"v": value}) == expected


# ---------------------------------------------------------------------------------------------
# Contextual escaping


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        # HTML text.
        ("<b>{{.v}}</b>", {"v": "<&>\"'+\x00"}, "<b>&lt;&amp;&gt;&#34;&#39;&#43;\ufffd</b>"),
        # Static text: a stray "<" is escaped, a doctype is not, comments are dropped.
        ("<!DOCTYPE html>a < b <!-- c --> d", {}, "<!DOCTYPE html>a &lt; b  d"),
        # Quoted and unquoted attributes.
        ('<p title="{{.v}}">', {"v": "a b<"}, '<p title="a b&lt;">'),
        ("<p title={{.v}}>", {"v": 'a b="c"'}, "<p title=a&#32;b&#61;&#34;c&#34;>"),
        # An empty unquoted value is replaced (Go 1.20.4+, CVE-2023-29400).
        ("<p title={{.v}}>", {"v": ""}, "<p title=ZgotmplZ>"),
        # HTML content in an attribute loses its tags.
        ('<p title="{{.v | unescapeHTML}}">', {"v": "<b>bold</b> & co"}, '<p title="bold & co">'),
        # URLs: filter unsafe schemes, normalise the path, query-escape after "?".
        ('<a href="{{.u}}">', {"u": "http://x.org/a b?c=d"}, '<a href="http://x.org/a%20b?c=d">'),
        ('<a href="{{.u}}">', {"u": "MAILTO:x@y.z"}, '<a href="MAILTO:x@y.z">'),
        ('<a href="{{.u}}">', {"u": "data:text/html,x"}, '<a href="#ZgotmplZ">'),
        (
            '<a href="/s?q={{.q}}&x=1">',
            {"q": "a b&c=d/é"},
            '<a href="/s?q=a%20b%26c%3dd%2f%c3%a9&x=1">',
        ),
        ('<a href="/p/{{.p}}">', {"p": "a/b c%41"}, '<a href="/p/a/b%20c%41">'),
        ("<a href={{.u}}>", {"u": "/a b"}, "<a href=/a%20b>"),
        (
            '<form action="{{.u}}"><button formaction="{{.u}}">',
            {"u": "javascript:x"},
            '<form action="#ZgotmplZ"><button formaction="#ZgotmplZ">',
        ),
        (
            '<img src="{{.u}}" data-url="{{.u}}">',
            {"u": "vbscript:x"},
            '<img src="#ZgotmplZ" data-url="#ZgotmplZ">',
        ),
        (
            '<img srcset="{{.s}}">',
            {"s": "/a.png 2x, javascript:x 1x"},
            '<img srcset="/a.png 2x,#ZgotmplZ">',
        ),
        # Scripts: values become JS literals, strings in quotes are JS-string escaped.
        ("<script>x = {{.v}};</script>", {"v": 42}, "<script>x =  42 ;</script>"),
        ("<script>x = {{.v}};</script>", {"v": True}, "<script>x =  true ;</script>"),
        ("<script>x = {{.v}};</script>", {"v": None}, "<script>x =  null ;</script>"),
        ("<script>x = {{.v}};</script>", {"v": 1.5}, "<script>x =  1.5 ;</script>"),
        (
            "<script>x = {{.v}};</script>",
            {"v": {"b": [1, "<"], "a": None}},
            '<script>x = {"a":null,"b":[1,"\\u003c"]};</script>',
        ),
        (
            "<script>x = {{.v}};</script>",
            {"v": "a\u2028b&"},
            '<script>x = "a\\u2028b\\u0026";</script>',
        ),
        (
            '<script>x = "{{.v}}";</script>',
            {"v": '"\\/\n\x01'},
            '<script>x = "\\u0022\\\\\\/\\n\\u0001";</script>',
        ),
        (
            "<script>x = `a{{.v}}`;</script>",
            {"v": "${x}`"},
            "<script>x = `a\\u0024\\u007bx\\u007d\\u0060`;</script>",
        ),
        ("<script>x = /{{.v}}/;</script>", {"v": "a.b*"}, "<script>x = /a\\.b\\*/;</script>"),
        (
            "<script>// {{.v}}\nx();/* y */z()</script>",
            {"v": "gone"},
            "<script>\nx(); z()</script>",
        ),
        ("<script>var s = '</script>';</script>", {}, "<script>var s = '\\x3C/script>';</script>"),
        ('<button onclick="f({{.v}})">', {"v": "it's"}, '<button onclick="f(&#34;it&#39;s&#34;)">'),
        (
            '<script type="text/template"><b>{{.v}}</b></script>',
            {"v": "<i>"},
            '<script type="text/template"><b>&lt;i&gt;</b></script>',
        ),
        # Styles.
        ("<style>p { color: {{.c}} }</style>", {"c": "red"}, "<style>p { color: red }</style>"),
        (
            "<style>p { color: {{.c}} }</style>",
            {"c": "expression(x)"},
            "<style>p { color: ZgotmplZ }</style>",
        ),
        (
            '<p style="color: {{.c}}">',
            {"c": "#fff;background:url(x)"},
            '<p style="color: ZgotmplZ">',
        ),
        (
            '<style>p { font-family: "{{.f}}" }</style>',
            {"f": 'a"b<'},
            '<style>p { font-family: "a\\22 b\\3c " }</style>',
        ),
        ("<style>/* c */p{}</style>", {}, "<style> p{}</style>"),
        # RCDATA elements.
        (
            "<title>{{.t}}</title><textarea>{{.t}}</textarea>",
            {"t": "<b>&"},
            "<title>&lt;b&gt;&amp;</title><textarea>&lt;b&gt;&amp;</textarea>",
        ),
        ("<title>{{.t}}</title>", {"t": HTML("<b>x</b>")}, "<title>&lt;b&gt;x&lt;/b&gt;</title>"),
        # Attribute names and values interpolated into a tag.
        ("<input {{.a}}>", {"a": "checked"}, "<input checked>"),
        ("<input {{.a}}>", {"a": "onclick"}, "<input ZgotmplZ>"),
        # Values inside HTML comments are dropped with the comment.
        ("a<!-- {{.v}} -->b", {"v": "x"}, "ab"),
        # Predefined escapers merge with the contextual ones instead of double-escaping.
        ("{{.v | html}}", {"v": "<a>"}, "&lt;a&gt;"),
        ('<a href="/?q={{.v | urlquery}}">', {"v": "a b"}, '<a href="/?q=a&#43;b">'),
        ("{{html .v .w}}", {"v": "<", "w": 1}, "&lt;1"),
        # Branches may end in a nudged and an unnudged attribute context.
        ("<p title={{if .c}}{{.v}}{{end}}>", {"c": True, "v": "x y"}, "<p title=x&#32;y>"),
    ],
)
def test_contextual_escaping(text: str, data: dict[str, object], expected: str) -> None:
    assert render(text, data) == expected


# ---------------------------------------------------------------------------------------------
# Cases from Go's own html/template tests (escape_test.go TestEscape / TestErrors)

GO_DATA: dict[str, object] = {
    "F": False,
    "T": True,
    "C": "<Cincinnati>",
    "G": "<Goodbye>",
    "H": "<Hello>",
    "A": ["<a>", "<b>"],
    "E": [],
    "N": 42,
    "U": None,
    "W": HTML('&iexcl;<b class="foo">Hello</b>, <textarea>O\'World</textarea>!'),
    "I": "${ asd `` }",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{with .C}}{{$msg := .}}Hello, {{$msg}}!{{end}}", "Hello, &lt;Cincinnati&gt;!"),
        ('<a href="/search?q={{"\'a<b\'"}}">', '<a href="/search?q=%27a%3cb%27">'),
        ("<a b=1 c={{.H}}>", "<a b=1 c=&lt;Hello&gt;>"),
        ("<a href='{{\"/foo/bar?a=b&c=d\"}}'>", "<a href='/foo/bar?a=b&amp;c=d'>"),
        ("<a href='  {{\"javascript:alert(%22pwned%22)\"}}'>", "<a href='  #ZgotmplZ'>"),
        ('<a href="{{"/javascript:80/foo/bar"}}">', '<a href="/javascript:80/foo/bar">'),
        (
            '<a href={{"mailto:Muhammed \\"The Greatest\\" Ali <m.ali@example.com>"}}>',
            "<a href=mailto:Muhammed%20%22The%20Greatest%22%20Ali%20%3cm.ali@example.com%3e>",
        ),
        ("<a href='/faq#{{.H}}'>", "<a href='/faq#%3cHello%3e'>"),
        (
            '<a href="{{if .T}}/foo?a={{else}}/bar#{{end}}{{.C}}">',
            '<a href="/foo?a=%3cCincinnati%3e">',
        ),
        (
            "<button onclick='alert({{.H}})'>",
            "<button onclick='alert(&#34;\\u003cHello\\u003e&#34;)'>",
        ),
        ("<button onclick='alert(typeof{{.U}})'>", "<button onclick='alert(typeof null )'>"),
        (
            "<script>alert({{.A}})</script>",
            '<script>alert(["\\u003ca\\u003e","\\u003cb\\u003e"])</script>',
        ),
        (
            "<button onclick='alert({{.C | urlquery}})'>",
            "<button onclick='alert(&#34;%3CCincinnati%3E&#34;)'>",
        ),
        (
            '<button onclick=\'alert(/{{"foo+bar"}}/.test(""))\'>',
            "<button onclick='alert(/foo\\u002bbar/.test(\"\"))'>",
        ),
        (
            '<p style="width: {{"  e\\\\78preS\\x00Sio/**/n(alert(1337))"}}">',
            '<p style="width: ZgotmplZ">',
        ),
        (
            '<p style="background: url(/img?name={{"O\'Reilly Animal(1)<2>.png"}})">',
            '<p style="background: url(/img?name=O%27Reilly%20Animal%281%29%3c2%3e.png)">',
        ),
        (
            '<a style="background: \'{{"http://oreilly.com/O\'Reilly Animals(1)<2>;{}.html"}}\'">',
            "<a style=\"background: 'http\\3a\\2f\\2foreilly.com\\2fO\\27Reilly Animals\\28 1\\29\\3c 2\\3e\\3b\\7b\\7d.html'\">",
        ),
        ("a<<!-- --><!-- -->b", "a&lt;b"),
        ('<!{{"DOCTYPE"}}', "&lt;!DOCTYPE"),
        (
            "<b>Hello, <!-- name of {{if .T}}city -->{{.C}}{{else}}world -->{{.W}}{{end}}</b>",
            "<b>Hello, &lt;Cincinnati&gt;</b>",
        ),
        (
            "<script>for (;;) { if (c()) break/* foo not a label\n */foo({{.T}});}</script>",
            "<script>for (;;) { if (c()) break\nfoo( true );}</script>",
        ),
        (
            "<script>before <!-- beep\nbetween\nbefore-->boop\n</script>",
            "<script>before \nbetween\nbefore\n</script>",
        ),
        (
            "<script>var a = /<!-- <ScripT </ScripT/</script>",
            "<script>var a = /\\x3C!-- \\x3CScripT \\x3C/ScripT/</script>",
        ),
        (
            '<a onclick="f(&quot;&quot;); /* alert({{.H}}) */">',
            '<a onclick="f(&quot;&quot;); /* alert() */">',
        ),
        ('<div title="{{.W}}">', '<div title="&iexcl;Hello, O&#39;World!">'),
        (
            "<textarea>{{.W}}</textarea>",
            "<textarea>&iexcl;&lt;b class=&#34;foo&#34;&gt;Hello&lt;/b&gt;, &lt;textarea&gt;O&#39;World&lt;/textarea&gt;!</textarea>",
        ),
        ('<textarea><{{"/textarea "}}...</textarea>', "<textarea>&lt;/textarea ...</textarea>"),
        (
            '<img class="{{"iconClass"}}"{{if .T}} id="{{"<iconId>"}}"{{end}} src={{if .T}}"?{{"<iconPath>"}}"'
            '{{else}}"images/cleardot.gif"{{end}}{{if .T}}title="{{"<title>"}}"{{end}} alt="{{if .T}}'
            '{{"<alt>"}}{{else}}{{if .F}}{{"<title>"}}{{end}}{{end}}">',
            '<img class="iconClass" id="&lt;iconId&gt;" src="?%3ciconPath%3e"title="&lt;title&gt;" alt="&lt;alt&gt;">',
        ),
        ('<input {{if .T}}{{"checked"}} {{end}}name=n>', "<input checked name=n>"),
        ('<img on{{"load"}}="alert({{"loaded"}})">', '<img onload="alert(&#34;loaded&#34;)">'),
        (
            '<div {{"sTyle"}}="{{"color: expression(alert(1337))"}}">',
            '<div ZgotmplZ="color: expression(alert(1337))">',
        ),
        ('<h{{3}}><table><t{{"head"}}>...</h{{3}}>', "<h3><table><thead>...</h3>"),
        ('<{{"script"}}>{{"doEvil()"}}</{{"script"}}>', "&lt;script>doEvil()&lt;/script>"),
        (
            '<img srcset="{{"/not-an-image#,javascript:alert(1)"}}">',
            '<img srcset="/not-an-image#,#ZgotmplZ">',
        ),
        ("<p href={{.U}}>", "<p href=ZgotmplZ>"),
        (
            "<script>var a = `${ `{{.I}}` }`</script>",
            "<script>var a = `${ `\\u0024\\u007b asd \\u0060\\u0060 \\u007d` }`</script>",
        ),
        (
            '<script>var a = `${ var a = "{{"a \\" d"}}" }`</script>',
            '<script>var a = `${ var a = "a \\u0022 d" }`</script>',
        ),
    ],
)
def test_go_escape_table(text: str, expected: str) -> None:
    assert render(text, GO_DATA) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<a {{if .Cond}}href='{{else}}title='{{end}}{{.X}}'>", "z:1:8: {{if}} branches"),
        ("{{range .Items}}<a{{end}}", 'z:1: on range loop re-entry: "<" in attribute name: "<a"'),
        ("\n{{range .Items}} x='<a{{end}}", "z:2:8: on range loop re-entry: {{range}} branches"),
        (
            "{{range .Items}}<a{{if .X}}{{break}}{{end}}>{{end}}",
            "z:1:29: at range loop break: {{range}} branches end in different contexts",
        ),
        ("<script>foo();", "z: ends in a non-text context: {stateJS"),
        ("<a onclick='alert(/x+\\", 'unfinished escape sequence in JS string: "x+\\\\"'),
        ('<a onclick="/foo[\\]/', 'unfinished JS regexp charset: "foo[\\\\]/"'),
        (
            '<script>{{if false}}var x = 1{{end}}/-{{"1.5"}}/i.test(x)</script>',
            "'/' could start a division or regexp: \"/-\"",
        ),
        ("<input type=button value= 1+1=2>", 'html/template:z: "=" in unquoted attr: "1+1=2"'),
        ("<a=foo>", ': expected space, attr name, or end of tag, but got "=foo>"'),
        ("Hello, {{. | urlquery | html}}!", 'predefined escaper "urlquery" disallowed in template'),
        ("<div class={{. | html}}>Hello<div>", 'predefined escaper "html" disallowed in template'),
        (
            "<script>var a = `{{if .X}}a{{else}}`{{end}}",
            "{{if}} branches end in different contexts",
        ),
    ],
)
def test_go_error_table(text: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as ei:
        render(text, {}, name="z")
    assert fragment in str(ei.value)
    assert ei.value.phase == "escape"


@pytest.mark.parametrize(
    "text",
    [
        "{{range .Items}}<a{{if .X}}{{end}}>{{if .X}}{{break}}{{end}}{{end}}",
        "<a href='/foo?{{range .Items}}&{{.K}}={{.V}}{{end}}'>",
        "<script>var tmpl = `${ let a = {1:1} {{.}} }`;</script>",
        "<script>var a = `{{if .X}}a{{else}}b{{end}}`</script>",
    ],
)
def test_go_templates_that_escape_cleanly(text: str) -> None:
    render(text, {"Items": [{"X": 1, "K": "k", "V": "v"}]})


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("<p>\n{{foo .x}}", 'template: t:2: function "foo" not defined', 2),
        ("a\n\n{{.x", "template: t:3: unclosed action", 3),
        ("{{.x\n\n", "template: t:3: unclosed action started at t:1", 3),
        ("ok\n{{end}}", "template: t:2: unexpected {{end}}", 2),
        ("{{if .x}}\nabc\n", "template: t:3: unexpected EOF", 3),
        ("{{else}}", "template: t:1: unexpected {{else}}", 1),
        ("{{range .l}}{{end}}{{break}}", "template: t:1: {{break}} outside {{range}}", 1),
        ("{{$x}}", 'template: t:1: undefined variable "$x"', 1),
        ("{{}}", "template: t:1: missing value for command", 1),
        ("{{.x | 1}}", "template: t:1: non executable command in pipeline stage 2", 1),
        ('{{"unterminated}}', "template: t:1: unterminated quoted string", 1),
        ("{{/* c", "template: t:1: unclosed comment", 1),
        ('{{template "x"}}', "template: t:1: {{template}} is not supported", 1),
    ],
)
def test_parse_errors(text: str, message: str, line: int) -> None:
    with pytest.raises(TemplateError) as ei:
        compile_template(text, name="t")
    err = ei.value
    assert str(err) == message
    assert (err.name, err.line, err.phase, err.output) == ("t", line, "parse", "")


@pytest.mark.parametrize(
    ("text", "data", "message", "output"),
    [
        (
            "ab\n{{index .l 3}}",
            {"l": [1]},
            'template: t:2:2: executing "t" at <index .l 3>: '
            "error calling index: index out of range: 3",
            "ab\n",
        ),
        (
            "x{{.a.b}}",
            {"a": None},
            # Go positions a field chain at its last field.
            'template: t:1:5: executing "t" at <.a.b>: nil pointer evaluating interface {}.b',
            "x",
        ),
        (
            "{{.a.b}}",
            {"a": "s"},
            'template: t:1:4: executing "t" at <.a.b>: can\'t evaluate field b in type '
            "interface {}",
            "",
        ),
        (
            "{{eq .n 1.5}}",
            {"n": 1},
            'template: t:1:2: executing "t" at <eq .n 1.5>: error calling eq: '
            "incompatible types for comparison",
            "",
        ),
        (
            "{{lt .m 1}}",
            {"m": {}},
            'template: t:1:2: executing "t" at <lt .m 1>: error calling lt: '
            "invalid type for comparison",
            "",
        ),
        (
            "{{index .missing 1}}",
            {},
            'template: t:1:2: executing "t" at <index .missing 1>: error calling index: '
            "index of untyped nil",
            "",
        ),
        (
            "{{.missing | unescapeHTML}}",
            {},
            'template: t:1:13: executing "t" at <unescapeHTML>: invalid value; expected string',
            "",
        ),
        (
            "{{range .s}}{{end}}",
            {"s": "abc"},
            'template: t:1:8: executing "t" at <.s>: range can\'t iterate over abc',
            "",
        ),
        (
            "{{len 3}}",
            {},
            'template: t:1:2: executing "t" at <len 3>: error calling len: len of type int',
            "",
        ),
        (
            "{{not}}",
            {},
            'template: t:1:2: executing "t" at <not>: wrong number of args for not: want 1 got 0',
            "",
        ),
    ],
)
def test_exec_errors_keep_partial_output(
    text: str, data: dict[str, object], message: str, output: str
) -> None:
    with pytest.raises(TemplateError) as ei:
        render(text, data, name="t")
    err = ei.value
    assert str(err) == message
    assert err.phase == "exec"
    assert err.output == output
    assert err.line == text[: text.find("{{")].count("\n") + 1


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        (
            "<title>{{.x}}",
            "html/template:t: ends in a non-text context: "
            "{stateRCDATA delimNone urlPartNone jsCtxRegexp attrNone elementTitle <nil>}",
            0,
        ),
        (
            '{{if .c}}<a href="{{else}}<b>{{end}}x',
            "html/template:t:1:5: {{if}} branches end "
            "in different contexts: {stateURL delimDoubleQuote urlPartNone jsCtxRegexp attrURL "
            "elementNone <nil>}, {stateText delimNone urlPartNone jsCtxRegexp attrNone elementNone "
            "<nil>}",
            1,
        ),
        (
            '<a href="{{if .c}}/p?{{end}}{{.x}}">',
            "html/template:t:1:30: {{.x}} appears in an ambiguous context within a URL",
            1,
        ),
        (
            "\n{{.x | html | print}}",
            'html/template:t:2:2: predefined escaper "html" disallowed in template',
            2,
        ),
        ("<a title=x{{.y}}'>", 'html/template:t: "\'" in unquoted attr: "\'"', 0),
    ],
)
def test_escape_errors_are_reported_at_render_time(text: str, message: str, line: int) -> None:
    tmpl = compile_template(text, name="t")
    with pytest.raises(TemplateError) as ei:
        tmpl.render({"x": 1})
    assert str(ei.value) == message
    assert (ei.value.phase, ei.value.line) == ("escape", line)


# ---------------------------------------------------------------------------------------------
# Caching


def test_compile_is_cached_per_text_and_name() -> None:
    text = "<p>{{.x}}</p>"
    a = compile_template(text, name="cache-test")
    assert compile_template(text, name="cache-test") is a
    assert compile_template(text, name="other") is not a
    assert isinstance(a, CompiledTemplate)
    assert a.render({"x": "<"}) == a.render({"x": "<"}) == "<p>&lt;</p>"


def test_render_uses_the_cache() -> None:
    compile_template.cache_clear()
    render("{{.a}}", {"a": 1})
    render("{{.a}}", {"a": 2})
    info = compile_template.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert info.maxsize is not None and info.maxsize >= 64
