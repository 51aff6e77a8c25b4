"""What a durable run keeps between executions, as JSON text: the request that started it,
its sessions, and what it had written of its response at its last checkpoint."""

from __future__ import annotations

__all__ = [
    "decode_request",
    "decode_writer",
    "encode_request",
    "encode_sessions",
    "encode_writer",
    "response_json",
]

import base64
from typing import Any

import orjson

from nflow._http import Request, Response, ResponseWriter
from nflow.jsapi import Sessions


def encode_request(request: Request, *, endpoint: str, auth: bool) -> str:
    return orjson.dumps(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": request.header_items,
            "body": base64.b64encode(request.body).decode(),
            "client": request.client,
            "scheme": request.scheme,
            "host": request.host,
            "endpoint": endpoint,
            "auth": auth,
        }
    ).decode()


def decode_request(text: str) -> tuple[Request, str, bool]:
    """The request, the endpoint it matched and whether its starter asks for the auth
    trigger."""
    data = orjson.loads(text)
    request = Request(
        data["method"],
        data["path"],
        query_string=data["query"],
        headers=[(str(k), str(v)) for k, v in data["headers"]],
        body=base64.b64decode(data["body"]),
        client=data["client"],
        scheme=data["scheme"],
        host=data["host"],
    )
    return request, str(data["endpoint"]), bool(data["auth"])


def encode_sessions(sessions: Sessions) -> str:
    return orjson.dumps(sessions.values, default=str).decode()


def encode_writer(writer: ResponseWriter) -> str | None:
    """None while the run has written nothing."""
    if not writer.committed and not writer.headers:
        return None
    return orjson.dumps(
        {
            "status": writer.status,
            "content_type": writer.content_type,
            "headers": writer.headers,
            "body": base64.b64encode(writer.body()).decode(),
            "committed": writer.committed,
        }
    ).decode()


def decode_writer(text: str | None, writer: ResponseWriter) -> None:
    if not text:
        return
    data = orjson.loads(text)
    writer.restore(
        status=int(data["status"]),
        content_type=str(data["content_type"]),
        headers=[(str(k), str(v)) for k, v in data["headers"]],
        body=base64.b64decode(data["body"]),
        committed=bool(data["committed"]),
    )


def response_json(response: Response) -> str:
    """The response as the flow wrote it: status, headers and body (text when it is UTF-8,
    else base64 with ``"body_base64": true``)."""
    raw = response.body
    out: dict[str, Any] = {"status": response.status, "headers": {}}
    headers: dict[str, str] = out["headers"]
    for name, value in response.headers:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        out["body"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        out["body"] = base64.b64encode(raw).decode()
        out["body_base64"] = True
    return orjson.dumps(out).decode()
