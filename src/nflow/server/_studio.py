"""The studio page: the package's ``nflow/studio/static`` files under ``/_nflow/studio``.

Only files inside that directory are served: each path segment must be a plain name (no
``..``, no hidden files, no backslashes), and the page gets a Content-Security-Policy that
allows nothing but its own scripts, styles and images, so no stored markup or third-party
code can run in it. Files are read on each request: they are small, and a changed file is
seen without a restart.
"""

from __future__ import annotations

__all__ = ["CSP", "STUDIO_PREFIX", "studio_file"]

from importlib import resources
from importlib.abc import Traversable

from nflow._http import Request, Response, json_response

STUDIO_PREFIX = "/_nflow/studio"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "mjs": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
    "txt": "text/plain; charset=utf-8",
    "md": "text/plain; charset=utf-8",
    "woff2": "font/woff2",
}


def _static() -> Traversable:
    return resources.files("nflow.studio").joinpath("static")


def _find(sub: str) -> Traversable | None:
    """The file at ``sub`` (``a/b.js``) inside the static directory, or None."""
    here = _static()
    for segment in sub.split("/"):
        if not segment or segment.startswith(".") or "\\" in segment or "\x00" in segment:
            return None
        here = here.joinpath(segment)
    return here if here.is_file() else None


def _not_found(path: str) -> Response:
    return json_response(404, {"code": 404, "message": f"no studio file {path}"})


def studio_file(request: Request) -> Response:
    """Answer a GET or HEAD under :data:`STUDIO_PREFIX` (the prefix itself: ``index.html``)."""
    if request.method not in ("GET", "HEAD"):
        response = json_response(
            405, {"code": 405, "message": f"{request.method} is not allowed on the studio page"}
        )
        response.headers.append(("allow", "GET, HEAD"))
        return response
    sub = request.path[len(STUDIO_PREFIX) :].lstrip("/") or "index.html"
    if sub.endswith("/"):
        sub += "index.html"
    found = _find(sub)
    if found is None:
        return _not_found(request.path)
    extension = sub.rsplit(".", 1)[-1].lower() if "." in sub else ""
    body = found.read_bytes()
    return Response(
        200,
        b"" if request.method == "HEAD" else body,
        [
            ("content-type", _TYPES.get(extension, "application/octet-stream")),
            ("content-security-policy", CSP),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            # Revalidated each time: an upgraded nflow must not run yesterday's page.
            ("cache-control", "no-cache"),
        ],
    )
