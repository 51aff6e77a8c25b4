"""LLM calls (Go's ``ia`` plugin): one ``llm(options)`` API, plus the original three functions.

``llm({provider, model, system, prompt, data, json, max_tokens, base_url})`` speaks the OpenAI
chat-completions protocol (and so every server compatible with it), Gemini's
``generateContent`` and Ollama's ``/api/chat``. It returns the completion text, or the parsed
value when ``json`` is true. ``openai(apiKey, system, prompt, model, data)``,
``ollama(baseURL, system, prompt, model, data)`` and ``gemini(apiKey, prompt, model, data)``
keep the Go signatures. Prompts are mustache templates rendered against ``data``.

Secrets stay with the operator: API keys come from :func:`configure_llm` or the server's
``OPENAI_API_KEY`` / ``GEMINI_API_KEY``, so scripts never need to hold one. A key a legacy
script passes is used but never logged, and Gemini's goes in a header, not the URL (where
access logs would keep it). A ``base_url`` chosen by a script that differs from the
configured one is treated like any script URL: it goes through the HTTP plugin's address
policy and never receives the configured key, which would otherwise leak to whoever runs it.
"""

from __future__ import annotations

__all__ = ["LlmSettings", "llm", "llm_settings"]

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import orjson

from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable
from nflow.plugins._http import HttpFailure, HttpPolicy, fetch, shown_url

MIB = 1024 * 1024
PROVIDERS = ("openai", "gemini", "ollama")
OPENAI_URL = "https://api.openai.com/v1"
GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta"
OLLAMA_URL = "http://localhost:11434"

llm = HostTable()


@dataclass(frozen=True, slots=True)
class LlmSettings:
    """Endpoints, keys, defaults and limits. Empty keys fall back to the environment."""

    openai_base_url: str = OPENAI_URL
    gemini_base_url: str = GEMINI_URL
    ollama_base_url: str = OLLAMA_URL
    openai_api_key: str = field(default="", repr=False)
    gemini_api_key: str = field(default="", repr=False)
    openai_model: str = "gpt-4o-mini"
    gemini_model: str = "gemini-2.0-flash"
    ollama_model: str = "llama3.2"
    timeout_seconds: float = 60.0
    max_tokens: int = 4096
    max_response_bytes: int = 4 * MIB

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError("LlmSettings.timeout_seconds must be greater than 0")
        if self.max_tokens < 1:
            raise ValueError("LlmSettings.max_tokens must be at least 1")
        if self.max_response_bytes < 1024:
            raise ValueError("LlmSettings.max_response_bytes must be at least 1024")

    def base_url(self, provider: str) -> str:
        url: str = getattr(self, f"{provider}_base_url")
        return url

    def api_key(self, provider: str) -> str:
        if provider == "openai":
            return self.openai_api_key or os.environ.get("OPENAI_API_KEY", "")
        if provider == "gemini":
            return self.gemini_api_key or os.environ.get("GEMINI_API_KEY", "")
        return ""

    def model(self, provider: str) -> str:
        name: str = getattr(self, f"{provider}_model")
        return name


def llm_settings(ctx: RunContext) -> LlmSettings:
    """The LLM settings of the runtime running ``ctx``."""
    return ctx.services.policies.get(LlmSettings)


@dataclass(frozen=True, slots=True)
class _Call:
    name: str  # the JS function, for messages
    provider: str
    model: str
    system: str
    prompt: str
    json: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    base_url: str = ""  # "" → the configured one
    api_key: str = field(default="", repr=False)  # "" → the configured one


def _render(name: str, what: str, template: object, data: object) -> str:
    if template is None:
        return ""
    if not isinstance(template, str):
        raise HostError(f"{name}: {what} must be a string")
    if "{{" not in template:
        return template
    from nflow.jsapi._mustache import MustacheError, render_mustache

    try:
        # As the Go runtime's: HTML-escaped values, and "{{> name}}" reads no file.
        return render_mustache(template, data if isinstance(data, dict) else {})
    except MustacheError as exc:
        raise HostError(f"{name}: {what} is not a valid mustache template ({exc})") from None


def _normalise(url: str) -> str:
    return url.strip().rstrip("/")


def _endpoint(call: _Call, settings: LlmSettings) -> tuple[str, bool, str]:
    """Base URL, whether it is the operator's (trusted), and the API key to send."""
    configured = _normalise(settings.base_url(call.provider))
    base = _normalise(call.base_url) if call.base_url else configured
    trusted = base == configured
    key = call.api_key or (settings.api_key(call.provider) if trusted else "")
    official = {"openai": OPENAI_URL, "gemini": GEMINI_URL}.get(call.provider)
    if not key and official is not None and base == official:
        variable = f"{call.provider.upper()}_API_KEY"
        raise HostError(
            f"{call.name}: no {call.provider} API key: set {variable} in the server's "
            "environment (or the LLM settings)"
        )
    return base, trusted, key


def _messages(call: _Call) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": call.system}] if call.system else []
    messages.append({"role": "user", "content": call.prompt})
    return messages


def _request(
    call: _Call, base: str, key: str, max_tokens: int
) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    headers = [("Content-Type", "application/json"), ("Accept", "application/json")]
    body: dict[str, Any]
    if call.provider == "openai":
        if key:
            headers.append(("Authorization", f"Bearer {key}"))
        body = {"model": call.model, "messages": _messages(call), "max_tokens": max_tokens}
        if call.json:
            body["response_format"] = {"type": "json_object"}
        if call.temperature is not None:
            body["temperature"] = call.temperature
        return f"{base}/chat/completions", headers, body
    if call.provider == "gemini":
        if key:
            headers.append(("x-goog-api-key", key))
        config: dict[str, Any] = {"maxOutputTokens": max_tokens}
        if call.json:
            config["responseMimeType"] = "application/json"
        if call.temperature is not None:
            config["temperature"] = call.temperature
        body = {
            "contents": [{"role": "user", "parts": [{"text": call.prompt}]}],
            "generationConfig": config,
        }
        if call.system:
            body["systemInstruction"] = {"parts": [{"text": call.system}]}
        model = quote(call.model.removeprefix("models/"), safe="-._")
        return f"{base}/models/{model}:generateContent", headers, body
    options: dict[str, Any] = {"num_predict": max_tokens}
    if call.temperature is not None:
        options["temperature"] = call.temperature
    body = {"model": call.model, "messages": _messages(call), "stream": False, "options": options}
    if call.json:
        body["format"] = "json"
    return f"{base}/api/chat", headers, body


def _error_text(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
    else:
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            error = error.get("message")
        text = str(error) if error else body.decode("utf-8", "replace").strip()
    return text[:300]


def _completion(provider: str, data: Any) -> str:
    try:
        if provider == "openai":
            content = data["choices"][0]["message"]["content"]
        elif provider == "gemini":
            parts = data["candidates"][0]["content"]["parts"]
            content = "".join(str(p.get("text", "")) for p in parts)
        else:
            content = data["message"]["content"]
    except (KeyError, IndexError, TypeError, AttributeError):
        content = None
    if not isinstance(content, str):
        raise ValueError("the answer has no completion text")
    return content


def _strip_fences(text: str) -> str:
    t = text.strip()
    if t.startswith("```"):
        t = t[3:]
        if t.lower().startswith("json"):
            t = t[4:]
        if t.endswith("```"):
            t = t[:-3]
    return t.strip()


def complete(ctx: RunContext, call: _Call) -> Any:
    """Send ``call`` and return the text (or parsed JSON); every failure is a HostError."""
    settings = llm_settings(ctx)
    base, trusted, key = _endpoint(call, settings)
    cap = settings.max_tokens
    max_tokens = cap if call.max_tokens is None else min(call.max_tokens, cap)
    url, headers, body = _request(call, base, key, max_tokens)
    remaining = ctx.remaining()
    if remaining <= 0.05:
        raise HostError(f"{call.name}: no time left in this run")
    timeout = min(settings.timeout_seconds, remaining)
    policy = replace(
        ctx.services.policies.get(HttpPolicy), max_response_bytes=settings.max_response_bytes
    )
    shown = shown_url(url)
    coro = fetch(
        "POST",
        url,
        content=orjson.dumps(body),
        headers=headers,
        policy=policy,
        timeout=timeout,
        guarded=not trusted,
        max_redirects=0,
    )
    where = f"{call.name} ({call.provider} {shown})"
    try:
        fetched = ctx.services.io.call(coro, timeout=timeout + 1.0)
    except HttpFailure as exc:
        raise HostError(f"{where}: {exc}") from None
    except TimeoutError:
        raise HostError(f"{where}: timed out after {timeout:.3g} s") from None
    if not 200 <= fetched.status_code < 300:
        detail = _error_text(fetched.body)
        raise HostError(f"{where}: HTTP {fetched.status_code}: {detail}")
    try:
        text = _completion(call.provider, orjson.loads(fetched.body))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise HostError(f"{where}: unexpected answer ({exc})") from None
    if not call.json:
        return text
    try:
        return orjson.loads(_strip_fences(text))
    except orjson.JSONDecodeError:
        raise HostError(f"{where}: the completion is not valid JSON: {text[:200]!r}") from None


# --------------------------------------------------------------------------------------------
# Host functions


def _opt_str(name: str, options: dict[str, Any], key: str) -> str:
    value = options.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HostError(f"{name}: {key} must be a string")
    return value


def _max_tokens(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise HostError(f"{name}: max_tokens must be a positive number")
    if isinstance(value, float) and not math.isfinite(value):
        raise HostError(f"{name}: max_tokens must be a positive number")
    return int(value)


@llm.function("llm")
def llm_call(ctx: RunContext, options: object = None) -> Any:
    """``llm({provider, model, system, prompt, data, json, max_tokens, base_url})``."""
    name = "llm"
    if not isinstance(options, dict):
        raise HostError(f"{name}: expects an options object {{provider, model, prompt, ...}}")
    provider = options.get("provider")
    if provider not in PROVIDERS:
        raise HostError(f"{name}: provider must be one of {', '.join(PROVIDERS)}")
    data = options.get("data")
    prompt = _render(name, "prompt", options.get("prompt"), data)
    if not prompt:
        raise HostError(f"{name}: prompt is required")
    json_mode = options.get("json", False)
    if not isinstance(json_mode, bool):
        raise HostError(f"{name}: json must be true or false")
    temperature = options.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        raise HostError(f"{name}: temperature must be a number")
    call = _Call(
        name=name,
        provider=str(provider),
        model=_opt_str(name, options, "model") or llm_settings(ctx).model(str(provider)),
        system=_render(name, "system", options.get("system"), data),
        prompt=prompt,
        json=json_mode,
        max_tokens=_max_tokens(name, options.get("max_tokens")),
        temperature=None if temperature is None else float(temperature),
        base_url=_opt_str(name, options, "base_url"),
    )
    return complete(ctx, call)


def _legacy_str(name: str, what: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HostError(f"{name}: {what} must be a string")
    return value


@llm.function("openai")
def openai(
    ctx: RunContext,
    api_key: object,
    system: object,
    prompt: object,
    model: object = "",
    data: object = None,
) -> Any:
    """The Go signature; an empty ``apiKey`` uses the server's key."""
    name = "openai"
    call = _Call(
        name=name,
        provider="openai",
        model=_legacy_str(name, "model", model) or llm_settings(ctx).openai_model,
        system=_render(name, "system", system, data),
        prompt=_render(name, "prompt", prompt, data),
        api_key=_legacy_str(name, "apiKey", api_key),
    )
    return complete(ctx, call)


@llm.function("ollama")
def ollama(
    ctx: RunContext,
    base_url: object,
    system: object,
    prompt: object,
    model: object = "",
    data: object = None,
) -> Any:
    """The Go signature; an empty ``baseURL`` uses the configured Ollama."""
    name = "ollama"
    call = _Call(
        name=name,
        provider="ollama",
        model=_legacy_str(name, "model", model) or llm_settings(ctx).ollama_model,
        system=_render(name, "system", system, data),
        prompt=_render(name, "prompt", prompt, data),
        base_url=_legacy_str(name, "baseURL", base_url),
    )
    return complete(ctx, call)


@llm.function("gemini")
def gemini(
    ctx: RunContext, api_key: object, prompt: object, model: object = "", data: object = None
) -> Any:
    """The Go signature; an empty ``apiKey`` uses the server's key."""
    name = "gemini"
    call = _Call(
        name=name,
        provider="gemini",
        model=_legacy_str(name, "model", model) or llm_settings(ctx).gemini_model,
        system="",
        prompt=_render(name, "prompt", prompt, data),
        api_key=_legacy_str(name, "apiKey", api_key),
    )
    return complete(ctx, call)


# Every llm function waits in IoLoop.call: scripts may also await several at once.
llm.allow_await(*llm.names())
