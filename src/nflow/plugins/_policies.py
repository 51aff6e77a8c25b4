"""``config.toml`` → the plugins' process-wide policies (``[http]``, ``[mail]``, ``[llm]``).

The plugin modules keep their ``configure_*`` hooks free of the config schema; this module is
the one place that maps the sections onto them, called when a runtime opens.
"""

from __future__ import annotations

__all__ = ["apply_plugin_config"]

from nflow.config import Config
from nflow.plugins._http import HttpPolicy, configure_http
from nflow.plugins._llm import LlmSettings, configure_llm
from nflow.plugins._mail import MailPolicy, configure_mail


def apply_plugin_config(config: Config) -> None:
    """Install the HTTP, mail and LLM policies that ``config`` describes."""
    http = config.http
    configure_http(
        HttpPolicy(
            timeout_seconds=http.timeout_seconds,
            max_response_bytes=http.max_response_bytes,
            allow_private=http.allow_private,
            allowed_hosts=tuple(h.strip() for h in http.allowed_hosts),
            max_redirects=http.max_redirects,
        )
    )
    mail = config.mail
    configure_mail(
        MailPolicy(
            timeout_seconds=mail.timeout_seconds,
            max_message_bytes=mail.max_message_bytes,
            max_recipients=mail.max_recipients,
            cafile=mail.cafile or None,
        )
    )
    llm = config.llm
    configure_llm(
        LlmSettings(
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
    )
