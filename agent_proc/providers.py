"""Model names in the LiteLLM style (`provider/model`) and what each provider needs.

Import-light on purpose: the parent validates a model name with this module before it
starts any child, and must not pay for `requests` to do so.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

# The levels of `--reasoning-effort`, weakest first. Which of them a model takes is in the price table.
EFFORT_LEVELS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# The OpenAI wire formats: chat completions, or the Responses API.
APIS = ("chat", "responses")


@dataclass(frozen=True)
class Provider:
    name: str
    default_base_url: str | None  # None: there is no public endpoint; --base-url is required
    key_env: tuple[str, ...]  # where to look for a key, in order, before LLM_API_KEY
    wire: str = "openai"  # the request/response format it speaks: agent_proc/wire_<wire>.py
    needs_key: bool = True  # a hosted service wants a key; a self-hosted server usually does not


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("openai", "https://api.openai.com/v1", ("OPENAI_API_KEY",)),
        Provider("anthropic", "https://api.anthropic.com/v1", ("ANTHROPIC_API_KEY",), wire="anthropic"),
        # Google's OpenAI-compatible endpoint for Gemini models.
        Provider("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", ("GEMINI_API_KEY",)),
        # Services that speak the OpenAI chat-completions format.
        Provider("openrouter", "https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY",)),
        Provider("groq", "https://api.groq.com/openai/v1", ("GROQ_API_KEY",)),
        Provider("deepseek", "https://api.deepseek.com/v1", ("DEEPSEEK_API_KEY",)),
        Provider("mistral", "https://api.mistral.ai/v1", ("MISTRAL_API_KEY",)),
        Provider("together_ai", "https://api.together.xyz/v1", ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY")),
        Provider("together", "https://api.together.xyz/v1", ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY")),
        Provider("fireworks_ai", "https://api.fireworks.ai/inference/v1", ("FIREWORKS_API_KEY",)),
        Provider("xai", "https://api.x.ai/v1", ("XAI_API_KEY",)),
        Provider("perplexity", "https://api.perplexity.ai", ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY")),
        Provider("cerebras", "https://api.cerebras.ai/v1", ("CEREBRAS_API_KEY",)),
        Provider("deepinfra", "https://api.deepinfra.com/v1/openai", ("DEEPINFRA_API_KEY",)),
        # Servers people run themselves.
        Provider("ollama", "http://localhost:11434/v1", ("OLLAMA_API_KEY",), needs_key=False),
        Provider("lm_studio", "http://localhost:1234/v1", ("LM_STUDIO_API_KEY",), needs_key=False),
        Provider("vllm", "http://localhost:8000/v1", ("VLLM_API_KEY",), needs_key=False),
        Provider("hosted_vllm", None, ("HOSTED_VLLM_API_KEY", "VLLM_API_KEY"), needs_key=False),
        Provider("litellm_proxy", "http://localhost:4000/v1", ("LITELLM_PROXY_API_KEY", "LITELLM_API_KEY"),
                 needs_key=False),
    )
}


# Every variable that may hold an API key: kept out of the tools' environment, so a
# command the model runs cannot print a key into the history.
SECRET_ENV_NAMES: frozenset[str] = frozenset({"LLM_API_KEY", *(v for p in PROVIDERS.values() for v in p.key_env)})


class ModelNameError(ValueError):
    pass


@dataclass(frozen=True)
class ModelRef:
    provider: Provider
    model: str  # the name the provider's API expects, without the prefix

    @property
    def full_name(self) -> str:
        return f"{self.provider.name}/{self.model}"


def parse_model(name: str) -> ModelRef:
    """Split `provider/model` and look the provider up; a clear error if either is wrong."""
    if not name or not name.strip():
        raise ModelNameError("no model given: pass -m provider/model or set LLM_MODEL (e.g. openai/gpt-4o)")
    prefix, sep, model = name.strip().partition("/")
    if not sep or not prefix or not model:
        raise ModelNameError(f"model {name!r} must be written provider/model, e.g. openai/{name.strip() or 'gpt-4o'}")
    provider = PROVIDERS.get(prefix)
    if provider is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ModelNameError(f"unknown provider {prefix!r} in model {name!r} (known: {known})")
    return ModelRef(provider, model)


def is_local(base_url: str) -> bool:
    """Whether a base URL points at this machine (a local server needs no key)."""
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


GENERIC_KEY_ENV = "LLM_API_KEY"


def key_variables(provider: Provider) -> tuple[str, ...]:
    """Where a key for `provider` is looked for, in order: its own variables, then LLM_API_KEY."""
    return (*provider.key_env, GENERIC_KEY_ENV)


def select_api_key(provider: Provider, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The variable a run with `provider` takes its key from, and the key; None when none is set.

    The provider's own variable wins over the generic LLM_API_KEY, so that one vendor's
    key is never sent to another vendor. Surrounding whitespace, CR and LF (a `.env`
    file saved with CRLF, a pasted secret) are stripped; a blank variable counts as unset.
    The one place that decides which key is used.
    """
    env = os.environ if environ is None else environ
    for var in key_variables(provider):
        if value := (env.get(var) or "").strip():
            return var, value
    return None


def find_api_key(provider: Provider, environ: Mapping[str, str] | None = None) -> str | None:
    """The key a run with `provider` uses (see select_api_key), or None."""
    found = select_api_key(provider, environ)
    return None if found is None else found[1]


def key_problem(key: str) -> str | None:
    """Why `key` cannot be sent in an HTTP header, if it cannot; the answer never quotes the key."""
    bad = sum(1 for char in key if not "\x21" <= char <= "\x7e")
    if bad:
        return (f"holds {bad} character(s) that cannot be sent in an HTTP header "
                "(spaces, control or non-ASCII characters)")
    return None


def key_required(provider: Provider, base_url: str) -> bool:
    """A hosted service needs a key; a server on this machine, or one a provider's
    users run themselves, does not."""
    return provider.needs_key and not is_local(base_url)
