"""The studio's files build the page without any way to turn text into markup or code: no
``innerHTML`` or ``eval`` style sinks, no inline script or style, nothing from another host.
The browser tests show the behaviour; this keeps a later edit from adding a sink that no
test happens to reach."""

from __future__ import annotations

import re
from pathlib import Path

import nflow.studio

STATIC = Path(nflow.studio.__file__).parent / "static"
SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new Function|"
    r"setAttribute\(\s*[\"'](style|on\w+)|createContextualFragment|srcdoc"
)


def test_no_script_writes_markup_or_runs_text_as_code() -> None:
    scripts = sorted(STATIC.glob("*.js"))
    assert len(scripts) >= 10
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in scripts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SINKS.search(line)
    ]
    assert found == []


def test_the_page_loads_only_its_own_files() -> None:
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="/_nflow/studio/main.js">'
    ]
    assert "style=" not in html and "<style" not in html
    assert not re.search(r"\bon[a-z]+\s*=", html)
    for text in [
        html,
        *(p.read_text() for p in STATIC.glob("*.js")),
        (STATIC / "studio.css").read_text(),
    ]:
        # The SVG namespace is a name, never fetched.
        text = text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), "an outside URL"
