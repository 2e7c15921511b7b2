"""Pages rendered from the package's Jinja2 templates into one self-contained HTML string.

`render_page(name, **context)` renders `report/templates/<name>` with autoescaping on: every value
a template prints is HTML-escaped unless it is `Markup`. The stylesheet and the script
(`report/static/report.css`, `report/static/report.js`) are package files, inlined into each page
as `css` and `js`, so a page needs no network and no file beside it. Jinja2 is imported the first
time a page is rendered, never when the package is imported.

Filters the templates share: `duration` (ms), `money` (USD), `number` (thousands separators),
`clip(n)` (at most n characters, an ellipsis marking a cut), `f1`/`f0` (a float with one or no
decimals, for SVG coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from evolve.report.layout import clip

if TYPE_CHECKING:
    import jinja2


@dataclass(frozen=True, slots=True)
class GraphNode:
    """What one box of `templates/graph.svg.j2` says; its place comes from the layout."""

    css: str  # classes besides `node`, e.g. "st-failed kind-tool"
    kind: str
    tip: str  # the hover text
    sub: str  # the second line (clipped to the box when drawn)
    status: str | None = None  # data-status, on a run's graph


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, rest = divmod(ms // 1000, 60)
    return f"{minutes}m {rest:02d}s"


def money(cost: float | None) -> str:
    return "—" if cost is None else f"${cost:.4f}"


def number(n: int) -> str:
    return f"{n:,}"


def static_text(name: str) -> str:
    """A file of `report/static/`, as text."""
    return (resources.files("evolve.report") / "static" / name).read_text(encoding="utf-8")


@cache
def _environment() -> jinja2.Environment:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evolve.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )
    env.filters.update(
        duration=duration,
        money=money,
        number=number,
        clip=clip,
        f1=lambda x: f"{x:.1f}",
        f0=lambda x: f"{x:.0f}",
    )
    # our own files, not run data: inlined as they are
    env.globals.update(css=Markup(static_text("report.css")), js=Markup(static_text("report.js")))
    return env


def render_page(name: str, **context: Any) -> str:
    """The template `name` rendered with `context`, as one HTML string."""
    return _environment().get_template(name).render(**context)
