"""``llm`` and the legacy ``openai``/``gemini``/``ollama`` against local protocol peers.

One local server speaks all three protocols (OpenAI chat completions, Gemini generateContent,
Ollama /api/chat), checks nothing itself, records each request and answers from a script the
test sets, so the tests can assert the exact request shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from plugin_support import LocalServer, PluginRuntime, Reply, Seen, json_reply

OPENAI_KEY = "sk-config-0123456789"
GEMINI_KEY = "gm-config-0123456789"


@dataclass
class Model:
    """What the fake provider answers: text, an HTTP error, or a delay."""

    text: str = "canned answer"
    status: int = 200
    delay: float = 0.0
    error: dict[str, Any] = field(default_factory=lambda: {"message": "model overloaded"})

    def app(self, seen: Seen) -> Reply:
        if self.delay:
            time.sleep(self.delay)
        path = seen.path
        if self.status != 200:
            if path.startswith("/api/"):
                return json_reply({"error": self.error["message"]}, self.status)
            return json_reply({"error": self.error}, self.status)
        if path == "/v1/chat/completions":
            return json_reply(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": self.text},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        if path.startswith("/v1beta/models/") and path.endswith(":generateContent"):
            half = len(self.text) // 2
            parts = [{"text": self.text[:half]}, {"text": self.text[half:]}]
            return json_reply({"candidates": [{"content": {"role": "model", "parts": parts}}]})
        if path == "/api/chat":
            return json_reply(
                {"model": "m", "message": {"role": "assistant", "content": self.text}, "done": True}
            )
        return json_reply({"error": {"message": f"no route {path}"}}, 404)


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
def peer(local_server: Callable[..., LocalServer], model: Model) -> LocalServer:
    return local_server(model.app)


def llm_config(server: LocalServer) -> str:
    """The [llm] section pointing every provider at ``server``."""
    return f"""[llm]
openai_base_url = "{server.url}/v1"
gemini_base_url = "{server.url}/v1beta/"
ollama_base_url = "{server.url}"
openai_api_key = "{OPENAI_KEY}"
gemini_api_key = "{GEMINI_KEY}"
max_tokens = 512
timeout_seconds = 5
"""


@pytest.fixture
def rt(plugin_rt: Callable[..., PluginRuntime], peer: LocalServer) -> PluginRuntime:
    return plugin_rt(llm_config(peer))


def catch(call: str) -> str:
    return f"""function main(){{
  try {{ var r = {call}; c.JSON(200, {{ok: true, r: r}}) }}
  catch (e) {{ c.JSON(200, {{ok: false, error: e.message}}) }}
}}"""


def test_llm_openai(rt: PluginRuntime, peer: LocalServer) -> None:
    call = """llm({provider: "openai", model: "gpt-test", system: "You are {{role}}.",
      prompt: "Say {{word}} or {{{word}}}", data: {role: "terse", word: "<hi>"}, max_tokens: 100000})"""
    assert rt.run(catch(call)) == {"ok": True, "r": "canned answer"}
    [seen] = peer.seen
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.json() == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "You are terse."},
            # Mustache escapes {{x}} as Go's did; {{{x}}} is the raw value.
            {"role": "user", "content": "Say &lt;hi&gt; or <hi>"},
        ],
        "max_tokens": 512,  # capped
    }


def test_llm_openai_json(rt: PluginRuntime, peer: LocalServer, model: Model) -> None:
    model.text = '```json\n{"answer": 42, "tags": ["a"]}\n```'
    call = 'llm({provider: "openai", prompt: "give json", json: true, max_tokens: 50})'
    assert rt.run(catch(call)) == {"ok": True, "r": {"answer": 42, "tags": ["a"]}}
    body = peer.seen[0].json()
    assert body["response_format"] == {"type": "json_object"}
    assert body["model"] == "gpt-4o-mini"  # the configured default
    assert body["max_tokens"] == 50
    assert body["messages"] == [{"role": "user", "content": "give json"}]
    model.text = "not json at all"
    out = rt.run(catch(call))
    assert not out["ok"] and "the completion is not valid JSON" in out["error"]


def test_llm_gemini(rt: PluginRuntime, peer: LocalServer, model: Model) -> None:
    model.text = '{"ok": true}'
    call = """llm({provider: "gemini", model: "gemini-test", system: "sys", prompt: "p {{x}}",
      data: {x: 1}, json: true, temperature: 0.2})"""
    assert rt.run(catch(call)) == {"ok": True, "r": {"ok": True}}
    [seen] = peer.seen
    assert seen.path == "/v1beta/models/gemini-test:generateContent"  # no ?key= in the URL
    assert seen.headers["x-goog-api-key"] == GEMINI_KEY
    assert "authorization" not in seen.headers
    assert seen.json() == {
        "contents": [{"role": "user", "parts": [{"text": "p 1"}]}],
        "generationConfig": {
            "maxOutputTokens": 512,
            "responseMimeType": "application/json",
            "temperature": 0.2,
        },
        "systemInstruction": {"parts": [{"text": "sys"}]},
    }


def test_llm_ollama(rt: PluginRuntime, peer: LocalServer) -> None:
    call = 'llm({provider: "ollama", model: "llama-test", system: "s", prompt: "p", json: false, max_tokens: 7})'
    assert rt.run(catch(call)) == {"ok": True, "r": "canned answer"}
    [seen] = peer.seen
    assert seen.path == "/api/chat"
    assert "authorization" not in seen.headers
    assert seen.json() == {
        "model": "llama-test",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}],
        "stream": False,
        "options": {"num_predict": 7},
    }
    call = 'llm({provider: "ollama", prompt: "p", json: true})'
    rt.run(catch(call))
    assert peer.seen[1].json()["format"] == "json"
    assert peer.seen[1].json()["model"] == "llama3.2"


def test_legacy_signatures(rt: PluginRuntime, peer: LocalServer, model: Model) -> None:
    code = f"""function main(){{
  var data = {{name: "Ana"}};
  c.JSON(200, [
    openai("sk-from-script", "system {{{{name}}}}", "hello {{{{name}}}}", "gpt-x", data),
    openai("", "", "no key given", "gpt-x"),
    gemini("", "gem {{{{name}}}}", "gemini-x", data),
    ollama("{peer.url}", "sys", "olla {{{{name}}}}", "llama-x", data),
    ollama("", "sys", "default base", "llama-x"),
  ]);
}}"""
    assert rt.run(code) == ["canned answer"] * 5
    first, second, third, fourth, fifth = peer.seen
    assert first.headers["authorization"] == "Bearer sk-from-script"
    assert first.json()["messages"] == [
        {"role": "system", "content": "system Ana"},
        {"role": "user", "content": "hello Ana"},
    ]
    assert second.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert second.json()["messages"] == [{"role": "user", "content": "no key given"}]
    assert third.path == "/v1beta/models/gemini-x:generateContent"
    assert third.headers["x-goog-api-key"] == GEMINI_KEY
    assert third.json()["contents"][0]["parts"] == [{"text": "gem Ana"}]
    assert fourth.json()["messages"][1] == {"role": "user", "content": "olla Ana"}
    assert fifth.path == "/api/chat"


def test_script_base_url_is_checked_and_gets_no_key(
    rt: PluginRuntime, peer: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    other = f"http://localhost:{peer.port}"
    # A base URL the operator did not configure is a script URL: the SSRF policy applies.
    out = rt.run(catch(f'ollama("{other}", "", "p", "m")'))
    assert not out["ok"]
    assert "refused: 127.0.0.1 is a loopback address" in out["error"]
    assert peer.seen == []
    # Once the address is allowed the call goes through, without the configured key.
    rt.reconfigure(llm_config(peer) + '[http]\nallowed_hosts = ["localhost"]\n')
    call = f'llm({{provider: "openai", base_url: "{other}/v1", prompt: "p"}})'
    with caplog.at_level(logging.DEBUG):
        assert rt.run(catch(call)) == {"ok": True, "r": "canned answer"}
    assert "authorization" not in peer.seen[0].headers
    assert OPENAI_KEY not in caplog.text


def test_api_key_from_environment(
    rt: PluginRuntime, peer: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt.reconfigure(f'[llm]\nopenai_base_url = "{peer.url}/v1"\n')
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key")
    assert rt.run(catch('llm({provider: "openai", prompt: "p"})'))["ok"]
    assert peer.seen[0].headers["authorization"] == "Bearer sk-env-key"


def test_missing_key_for_the_official_api(
    rt: PluginRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fails before any network access: the official endpoints need a key.
    rt.reconfigure("")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    out = rt.run(catch('llm({provider: "openai", prompt: "p"})'))
    assert out == {
        "ok": False,
        "error": "llm: no openai API key: set OPENAI_API_KEY in the server's environment "
        "(or the LLM settings)",
    }
    out = rt.run(catch('gemini("", "p", "gemini-x", {})'))
    assert not out["ok"] and "set GEMINI_API_KEY" in out["error"]


@pytest.mark.parametrize("provider", ["openai", "gemini", "ollama"])
def test_http_errors_are_host_errors(
    rt: PluginRuntime,
    peer: LocalServer,
    model: Model,
    provider: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model.status = 500
    with caplog.at_level(logging.DEBUG):
        out = rt.run(catch(f'llm({{provider: "{provider}", prompt: "p"}})'))
    assert not out["ok"]
    assert out["error"].startswith(f"llm ({provider} {peer.url}/")
    assert out["error"].endswith(": HTTP 500: model overloaded")
    model.status, model.error = 401, {"message": "bad key"}
    out = rt.run(catch(f'llm({{provider: "{provider}", prompt: "p"}})'))
    assert out["error"].endswith(": HTTP 401: bad key")
    assert OPENAI_KEY not in caplog.text and GEMINI_KEY not in caplog.text
    assert OPENAI_KEY not in out["error"] and GEMINI_KEY not in out["error"]


def test_timeout(rt: PluginRuntime, peer: LocalServer, model: Model) -> None:
    rt.reconfigure(
        f'[llm]\nopenai_base_url = "{peer.url}/v1"\nopenai_api_key = "k"\ntimeout_seconds = 0.3\n'
    )
    model.delay = 1.5
    started = time.monotonic()
    out = rt.run(catch('openai("", "", "p", "m", {})'))
    assert time.monotonic() - started < 1.4
    assert out == {
        "ok": False,
        "error": f"openai (openai {peer.url}/v1/chat/completions): timed out after 0.3 s",
    }


def test_unexpected_answer(rt: PluginRuntime, local_server: Callable[..., LocalServer]) -> None:
    odd = local_server(lambda seen: json_reply({"choices": []}))
    rt.reconfigure(f'[llm]\nopenai_base_url = "{odd.url}/v1"\nopenai_api_key = "k"\n')
    out = rt.run(catch('llm({provider: "openai", prompt: "p"})'))
    assert not out["ok"]
    assert "unexpected answer (the answer has no completion text)" in out["error"]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("llm()", "llm: expects an options object"),
        ('llm("hi")', "llm: expects an options object"),
        (
            'llm({provider: "claude", prompt: "p"})',
            "llm: provider must be one of openai, gemini, ollama",
        ),
        ('llm({provider: "openai"})', "llm: prompt is required"),
        (
            'llm({provider: "openai", prompt: "p", max_tokens: 0})',
            "llm: max_tokens must be a positive number",
        ),
        ('llm({provider: "openai", prompt: "p", json: "yes"})', "llm: json must be true or false"),
        (
            'llm({provider: "openai", prompt: "{{#a}}"})',
            "llm: prompt is not a valid mustache template",
        ),
        ('llm({provider: "openai", prompt: "{{> ../../etc/passwd}}x", max_tokens: 1})', ""),
    ],
)
def test_bad_options(rt: PluginRuntime, peer: LocalServer, call: str, error: str) -> None:
    out = rt.run(catch(call))
    if not error:  # partials are never read from disk: the tag renders as nothing
        assert out["ok"]
        assert peer.seen[0].json()["messages"] == [{"role": "user", "content": "x"}]
        return
    assert not out["ok"] and out["error"].startswith(error), out
