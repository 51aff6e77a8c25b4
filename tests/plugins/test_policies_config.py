"""``[http]``, ``[mail]`` and ``[llm]`` in config.toml change what the plugin functions do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from plugin_support import LocalServer, PluginRuntime, Seen, json_reply

from nflow.config import load_config
from nflow.errors import ConfigError
from nflow.plugins import LlmSettings, plugin_policies


def answer(seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
    if seen.path == "/v1/chat/completions":
        return json_reply({"choices": [{"message": {"content": "from config"}}]})
    return 200, [("Content-Type", "text/plain")], b"z" * 500


def get(url: str) -> str:
    return f"""function main(){{
  try {{ c.JSON(200, {{ok: true, body: http_get("{url}").body}}) }}
  catch (e) {{ c.JSON(200, {{ok: false, error: e.message}}) }}
}}"""


def test_http_policy_follows_the_config(
    plugin_rt: Callable[..., PluginRuntime], local_server: Callable[..., LocalServer]
) -> None:
    peer = local_server(answer)
    refused = plugin_rt().run(get(peer.url))
    assert refused["ok"] is False
    assert "127.0.0.1 is a loopback address" in refused["error"]
    assert "allow_private or allowed_hosts" in refused["error"]
    assert peer.seen == []

    by_host = plugin_rt('[http]\nallowed_hosts = ["127.0.0.1"]\n').run(get(peer.url))
    assert by_host == {"ok": True, "body": "z" * 500}
    by_network = plugin_rt('[http]\nallowed_hosts = "10.0.0.0/8, 127.0.0.0/8"\n').run(get(peer.url))
    assert by_network["ok"] is True
    private = plugin_rt("[http]\nallow_private = true\nmax_response_bytes = 100\n").run(
        get(peer.url)
    )
    assert private["ok"] is False
    assert private["error"].endswith("response larger than 100 bytes (Content-Length 500)")


def test_two_runtimes_keep_their_own_policies(
    plugin_rt: Callable[..., PluginRuntime], local_server: Callable[..., LocalServer]
) -> None:
    peer = local_server(answer)
    relay = '[mail]\nsmtp = "127.0.0.1"\nport = 1\nfrom = "a@example.com"\n'
    trusting = plugin_rt(relay + 'max_recipients = 1\n[http]\nallowed_hosts = ["127.0.0.1"]\n')
    # Opened second, with the default policies: it must not change the first one's.
    strict = plugin_rt(relay)
    two = """function main(){
  try { send_mail(["a@example.com", "b@example.com"], "s", "m", "text"); c.JSON(200, {}) }
  catch (e) { c.JSON(200, {error: e.message}) }
}"""
    assert trusting.run(get(peer.url)) == {"ok": True, "body": "z" * 500}
    refused = strict.run(get(peer.url))
    assert refused["ok"] is False and "127.0.0.1 is a loopback address" in refused["error"]
    assert trusting.run(get(peer.url)) == {"ok": True, "body": "z" * 500}
    assert trusting.run(two) == {"error": "send_mail: more than 1 recipients"}
    sent = strict.run(two)["error"]  # two recipients are allowed here: port 1 refuses
    assert sent.startswith("send_mail: ") and "recipients" not in sent
    # A live config change of one runtime leaves the other as it was.
    strict.reconfigure(relay + "[http]\nallow_private = true\n")
    assert strict.run(get(peer.url)) == {"ok": True, "body": "z" * 500}
    trusting.reconfigure(relay)
    assert trusting.run(get(peer.url))["ok"] is False
    assert strict.run(get(peer.url))["ok"] is True
    assert len(peer.seen) == 4


def test_mail_policy_follows_the_config(plugin_rt: Callable[..., PluginRuntime]) -> None:
    rt = plugin_rt(
        '[mail]\nsmtp = "127.0.0.1"\nport = 1\nfrom = "a@example.com"\nmax_recipients = 1\n'
    )
    out = rt.run("""function main(){
  try { send_mail(["a@example.com", "b@example.com"], "s", "m", "text"); c.JSON(200, {}) }
  catch (e) { c.JSON(200, {error: e.message}) }
}""")
    assert out == {"error": "send_mail: more than 1 recipients"}


def test_llm_settings_follow_the_config(
    plugin_rt: Callable[..., PluginRuntime], local_server: Callable[..., LocalServer]
) -> None:
    peer = local_server(answer)
    rt = plugin_rt(
        f'[llm]\nopenai_base_url = "{peer.url}/v1"\nopenai_api_key = "sk-from-config"\n'
        'openai_model = "tiny"\nmax_tokens = 7\n'
    )
    out = rt.run('function main(){ c.JSON(200, {text: llm({provider: "openai", prompt: "hi"})}) }')
    assert out == {"text": "from config"}
    [seen] = peer.seen
    assert seen.headers["authorization"] == "Bearer sk-from-config"
    assert seen.json()["model"] == "tiny" and seen.json()["max_tokens"] == 7


def test_llm_keys_from_the_environment_and_bad_values(tmp_path: Path) -> None:
    config = load_config(
        None, environ={"NFLOW_LLM__GEMINI_API_KEY": "gm-env", "NFLOW_HTTP__ALLOW_PRIVATE": "yes"}
    )
    assert plugin_policies(config).get(LlmSettings).api_key("gemini") == "gm-env"
    path = tmp_path / "bad.toml"
    path.write_text('[llm]\nollama_base_url = "localhost:11434"\n[http]\ntimeout_seconds = 0\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert (
        'llm.ollama_base_url: expected an http:// or https:// URL, got "localhost:11434"' in message
    )
    assert "http.timeout_seconds: must be greater than 0, got 0" in message
