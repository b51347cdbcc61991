"""`agent doctor` on a real machine: a real bwrap (or one that fails as without user
namespaces), a real $AGENT_HOME, the scripted server as the endpoint."""

from __future__ import annotations

import json
import os

import pytest

from agent_proc.providers import PROVIDERS, find_api_key
from tests.conftest import finish
from tests.sandboxes import FAKE_BWRAP, require_sandbox, script

KEY = "sk-doctor-" + "Qx7" * 8


@pytest.fixture
def well(agent, serve) -> dict[str, str]:
    """An environment in which all is well: a sandbox, a private home with a
    conversation in it, a key, an endpoint that answers."""
    require_sandbox()
    server = serve(finish())
    assert agent("run", "-m", "openai/scripted", "--base-url", server.url, "hi").returncode == 0
    return {"LLM_MODEL": "openai/scripted", "LLM_BASE_URL": server.url, "OPENAI_API_KEY": KEY}


def findings(agent, env: dict[str, str]) -> tuple[int, dict[str, dict]]:
    result = agent("doctor", "--json", env=env)
    assert KEY not in result.stdout + result.stderr
    return result.returncode, {f["check"]: f for f in json.loads(result.stdout)}


def test_all_is_well(agent, well):
    result = agent("doctor", "-v", env=well)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines if not line.startswith(" ")] == [
        ["ok", "sandbox"], ["ok", "agent_home"], ["ok", "keys"], ["ok", "endpoint"]]
    assert "would use its key from OPENAI_API_KEY" in result.stdout
    assert "answers (HTTP 200" in result.stdout
    assert "network off: a sandbox starts" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_a_sandbox_that_cannot_be_made_is_named(agent, well, tmp_path):
    code, found = findings(agent, {**well, "AGENT_BWRAP": script(tmp_path / "bwrap", FAKE_BWRAP)})
    assert code == 1 and not found["sandbox"].get("ok")
    assert "No permissions to create new namespace" in found["sandbox"]["summary"]
    assert "--sandbox off" in found["sandbox"]["summary"]
    assert all(found[c]["ok"] for c in ("agent_home", "keys", "endpoint"))


def test_sandbox_off_by_choice_is_not_well(agent, well):
    code, found = findings(agent, {**well, "AGENT_SANDBOX": "off"})
    assert code == 1 and "unconfined" in found["sandbox"]["summary"]


@pytest.mark.parametrize("damage", ["conversation open to others", "home writable by others", "not ours"])
def test_an_unsafe_agent_home_is_named(agent, well, damage):
    conv_dir = next((agent.home / "conversations").iterdir())
    if damage == "conversation open to others":
        (conv_dir / "events.jsonl").chmod(0o644)
        expected = "events.jsonl is open to others (mode 0644"
    elif damage == "home writable by others":
        agent.home.chmod(0o777)
        expected = "is writable by others (mode 0777)"
    else:
        os.chown(conv_dir / "state.json", 12345, 12345)
        expected = "state.json belongs to uid 12345"
    code, found = findings(agent, well)
    assert code == 1 and not found["agent_home"]["ok"]
    assert expected in found["agent_home"]["summary"], found["agent_home"]
    assert all(found[c]["ok"] for c in ("sandbox", "keys", "endpoint"))


def test_an_endpoint_that_does_not_answer(agent, well, serve):
    closed = serve()
    closed.stop()
    code, found = findings(agent, {**well, "LLM_BASE_URL": closed.url})
    assert code == 1 and "does not answer" in found["endpoint"]["summary"] and "Connection refused" in \
        found["endpoint"]["summary"]


def test_keys_name_the_variable_find_api_key_chooses(agent, well):
    both = {**well, "LLM_API_KEY": KEY + "-general", "ANTHROPIC_API_KEY": KEY + "-anthropic"}
    code, found = findings(agent, both)
    assert code == 0
    details = dict(line.split(": ", 1) for line in found["keys"]["details"])
    for name in ("openai", "anthropic", "groq"):
        chosen = find_api_key(PROVIDERS[name], both)
        assert both[details[name]] == chosen, (name, details[name])


def test_a_configured_model_without_its_key(monkeypatch):
    """In-process, so that no hosted endpoint is ever contacted: the key check alone."""
    from supervisor.doctor import check_keys

    for name in ("LLM_API_KEY", "OPENAI_API_KEY", "LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLM_MODEL", "openai/gpt-4o")
    finding = check_keys()
    assert not finding.ok and "needs a key: set OPENAI_API_KEY or LLM_API_KEY" in finding.summary
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    assert check_keys().ok  # a server on this machine needs none


def test_agent_home_not_there_yet_is_fine(agent, well, tmp_path):
    code, found = findings(agent, {**well, "AGENT_HOME": str(tmp_path / "fresh" / "home")})
    assert code == 0 and "does not exist yet" in found["agent_home"]["summary"]
    assert not (tmp_path / "fresh").exists()
