"""``config.toml`` → the plugins' policies (``[http]``, ``[mail]``, ``[llm]``) of one runtime.

The plugin modules keep their policy types free of the config schema; this module is the one
place that maps the sections onto them, called when a runtime opens and when its config
changes. Each runtime keeps its own: plugins read them from the run's services.
"""

from __future__ import annotations

__all__ = ["plugin_policies"]

from nflow.config import Config
from nflow.jsapi import Policies
from nflow.plugins._http import HttpPolicy
from nflow.plugins._llm import LlmSettings
from nflow.plugins._mail import MailPolicy


def plugin_policies(config: Config) -> Policies:
    """The HTTP, mail and LLM policies that ``config`` describes."""
    http = config.http
    mail = config.mail
    llm = config.llm
    http_policy = HttpPolicy(
        timeout_seconds=http.timeout_seconds,
        max_response_bytes=http.max_response_bytes,
        allow_private=http.allow_private,
        allowed_hosts=tuple(h.strip() for h in http.allowed_hosts),
        max_redirects=http.max_redirects,
    )
    mail_policy = MailPolicy(
        timeout_seconds=mail.timeout_seconds,
        max_message_bytes=mail.max_message_bytes,
        max_recipients=mail.max_recipients,
        cafile=mail.cafile or None,
    )
    llm_settings = LlmSettings(
        openai_base_url=llm.openai_base_url,
        gemini_base_url=llm.gemini_base_url,
        ollama_base_url=llm.ollama_base_url,
        openai_api_key=llm.openai_api_key,
        gemini_api_key=llm.gemini_api_key,
        openai_model=llm.openai_model,
        gemini_model=llm.gemini_model,
        ollama_model=llm.ollama_model,
        timeout_seconds=llm.timeout_seconds,
        max_tokens=llm.max_tokens,
        max_response_bytes=llm.max_response_bytes,
    )
    return Policies((http_policy, mail_policy, llm_settings))
