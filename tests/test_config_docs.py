"""docs/config.md: its key tables are the schema's, so a default or a status cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from nflow.config import Config
from nflow.config._schema import _Section
from nflow.config.docs import REGENERATE, DocsError, key_rows, main, render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_docs_config_md_matches_the_schema() -> None:
    current = PAGE.read_text(encoding="utf-8")
    assert render(current) == current, (
        f"docs/config.md is out of date with src/nflow/config/_schema.py: run `{REGENERATE}` "
        "from the repository root and commit the result"
    )


def test_every_key_has_a_row_with_a_description_and_a_known_status() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for section in Config.model_fields:
        for row in key_rows(section):
            assert row.description, row.key
            assert row.status in ("honoured", "partly", "no effect"), row.key
            assert f"| `{row.key}` |" in page, row.key


def test_rows_show_the_real_defaults_and_types() -> None:
    rows = {row.key: row for section in ("vm_pool", "mail", "limits") for row in key_rows(section)}
    assert rows["vm_pool.max_size"].default == "`50`"
    assert rows["vm_pool.max_size"].type == "integer ≥ 1"
    assert rows["vm_pool.max_operations"].status == "no effect"
    assert rows["mail.port"].type == "integer 1–65535 (a quoted number is accepted)"
    assert rows["mail.password"].type == "string (secret)"
    assert rows["mail.from"].default == '`""`'  # the alias, not the Python name from_
    assert rows["limits.max_body_bytes"].default == "`10485760` (10 MiB)"


def test_a_stale_table_is_rewritten_and_reported(tmp_path: Path) -> None:
    stale = PAGE.read_text(encoding="utf-8").replace("| `50` |", "| `200` |", 1)
    assert stale != PAGE.read_text(encoding="utf-8")
    page = tmp_path / "config.md"
    page.write_text(stale, encoding="utf-8")
    assert main([str(page), "--check"]) == 1
    assert page.read_text(encoding="utf-8") == stale  # --check writes nothing
    assert main([str(page)]) == 0
    assert page.read_text(encoding="utf-8") == PAGE.read_text(encoding="utf-8")
    assert main([str(page), "--check"]) == 0


def test_a_section_without_a_table_gets_one_above_the_new_sections_line() -> None:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("<!-- keys: tracing -->")
    end = text.index("<!-- /keys -->", start) + len("<!-- /keys -->")
    rendered = render(text[:start] + text[end:])
    added = rendered[: rendered.index("<!-- new sections -->")]
    assert "### `[tracing]`\n\nOpenTelemetry traces" in added
    assert "| `tracing.sample_ratio` | number 0–1 | `1` |" in added


def test_a_key_without_a_description_is_refused() -> None:
    class Bare(_Section):
        documented: int = Field(default=1, description="Has one.")
        bare: int = 2

    class WithBare(Config):
        extra_section: Bare = Bare()

    with pytest.raises(DocsError, match=r"extra_section\.bare has no description"):
        key_rows("extra_section", WithBare)


def test_a_table_for_a_section_the_schema_lacks_is_refused() -> None:
    with pytest.raises(DocsError, match=r"\[nosuch\]"):
        render("<!-- keys: nosuch -->\n<!-- /keys -->\n<!-- new sections -->\n")
