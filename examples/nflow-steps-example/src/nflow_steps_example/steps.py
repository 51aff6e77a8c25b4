"""Two node types for nflow playbooks: ``slugify`` and ``sum_fields``.

Node data set in the designer (``max_length``, ``fields``) wins over payload values of the
same name; everything else comes from the payload (the request's query and form fields and
what earlier nodes added).
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field, field_validator

import nflow


class SlugifyIn(BaseModel):
    text: str = Field(min_length=1)
    max_length: int = Field(default=60, ge=1, le=200)


class SlugifyOut(BaseModel):
    slug: str


@nflow.step("slugify", input=SlugifyIn, output=SlugifyOut)
def slugify(ctx: nflow.StepContext, data: SlugifyIn) -> SlugifyOut:
    """``Héllo, World!`` → ``hello-world``: ASCII letters and digits joined by dashes."""
    ascii_text = unicodedata.normalize("NFKD", data.text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[: data.max_length].rstrip("-")
    ctx.log.info("slugified %d characters", len(data.text))
    return SlugifyOut(slug=slug)


class SumFieldsIn(BaseModel):
    # The payload fields to add arrive next to ``fields``, so extra keys are kept.
    model_config = ConfigDict(extra="allow")

    fields: list[str] = Field(min_length=1)

    @field_validator("fields", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        # The designer stores text inputs as strings: "a, b" means ["a", "b"].
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class SumFieldsOut(BaseModel):
    total: float
    count: int


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"field {name!r} is not a number: {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"field {name!r} is not a number: {value!r}") from None


@nflow.step("sum_fields", input=SumFieldsIn, output=SumFieldsOut)
def sum_fields(ctx: nflow.StepContext, data: SumFieldsIn) -> tuple[SumFieldsOut, str]:
    """Adds the named payload fields; follows ``output_2`` when the total is negative."""
    values = data.model_extra or {}
    total = 0.0
    for name in data.fields:
        if name not in values:
            raise ValueError(f"the payload has no field {name!r} to add")
        total += _number(name, values[name])
    return SumFieldsOut(total=total, count=len(data.fields)), (
        "output_2" if total < 0 else "output_1"
    )
