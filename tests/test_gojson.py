"""JSON bodies are byte-identical to what Go's encoding/json Encoder wrote."""

from __future__ import annotations

import pytest

from nflow.golang.json import dumps


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}\n'),
        (
            {"h": "<a href='x'>&</a>"},
            b'{"h":"\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e"}\n',
        ),
        ({"s": "line\u2028sep\u2029"}, b'{"s":"line\\u2028sep\\u2029"}\n'),
        (
            {"n": 3.0, "m": -0.0, "f": 1972.2638254353353},
            b'{"f":1972.2638254353353,"m":-0,"n":3}\n',
        ),
        (
            [1e21, 1e20, 1e-7, 0.000001, 123456789.5],
            b"[1e+21,100000000000000000000,1e-7,0.000001,123456789.5]\n",
        ),
        ({"é": 1, "z": 2, "a": 3}, '{"a":3,"z":2,"é":1}\n'.encode()),
        ({"t": "tab\there\nnew\x01"}, b'{"t":"tab\\there\\nnew\\u0001"}\n'),
        ({}, b"{}\n"),
        ([], b"[]\n"),
        ("plain", b'"plain"\n'),
        (2**70, b"1180591620717411303424\n"),
    ],
)
def test_compact(value: object, expected: bytes) -> None:
    assert dumps(value) == expected


def test_pretty_matches_echo() -> None:
    assert dumps({"b": {}, "a": [1, {"c": []}]}, indent="  ") == (
        b'{\n  "a": [\n    1,\n    {\n      "c": []\n    }\n  ],\n  "b": {}\n}\n'
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_like_go(bad: float) -> None:
    with pytest.raises(ValueError, match=r"json: unsupported value: (NaN|[+-]Inf)"):
        dumps({"x": [bad]})


def test_lone_surrogate_becomes_replacement_character() -> None:
    assert dumps("a\ud800b") == '"a\ufffdb"\n'.encode()
