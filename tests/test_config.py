"""$AGENT_HOME/config.toml: defaults for run options, below flags and the environment,
never a key; and `agent config list|get|set|unset`."""

from __future__ import annotations

import json
import stat

import pytest

from tests.conftest import finish, slow_text, terminal, wait_until


def write_config(agent, text: str) -> None:
    agent.home.mkdir(parents=True, exist_ok=True)
    (agent.home / "config.toml").write_text(text)


def test_flag_then_environment_then_config_file_then_built_in(agent, serve):
    server = serve(finish(), when_exhausted="repeat_last")
    write_config(agent, f'model = "openai/fromconfig"\nbase_url = "{server.url}"\nmax_iterations = 7\n')

    assert agent("run", "-q", "hi").returncode == 0
    assert agent("run", "-q", "hi", env={"LLM_MODEL": "openai/fromenv"}).returncode == 0
    assert agent("run", "-q", "-m", "openai/fromflag", "hi", env={"LLM_MODEL": "openai/fromenv"}).returncode == 0

    assert [r["model"] for r in server.requests()] == ["fromconfig", "fromenv", "fromflag"]
    listed = json.loads(agent("ps", "-a", "--json").stdout)
    assert {agent.state(c["id"]).settings.max_iterations for c in listed} == {7}
    assert {agent.state(c["id"]).settings.tool_timeout for c in listed} == {600.0}  # built-in


def test_config_limits_apply_and_a_flag_overrides_them(agent, serve):
    server = serve(terminal("true"), terminal("true"), finish("done"))
    write_config(agent, f'model = "openai/x"\nbase_url = "{server.url}"\nmax_iterations = 1\n')

    limited = agent("run", "-q", "hi")
    assert limited.returncode == 1 and agent.state(json.loads(agent("ps", "-a", "--json").stdout)[0]["id"]) \
        .status_kind == "max_iterations"

    assert agent("run", "-q", "--max-iterations", "5", "hi").stdout == "done\n"


@pytest.mark.parametrize("line", ['api_key = "sk-secret-123456"', 'openai_api_key = "sk-secret-123456"',
                                  'github_token = "sk-secret-123456"', 'client_secret = "sk-secret-123456"'])
def test_a_key_in_the_config_file_is_refused(agent, line):
    write_config(agent, f'model = "openai/gpt-4o"\n{line}\n')

    result = agent("run", "hi")

    assert result.returncode == 2
    assert "environment only" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "sk-secret" not in result.stderr + result.stdout
    name = line.split()[0]
    refused = agent("config", "set", name, "sk-other")
    assert refused.returncode == 2 and "environment only" in refused.stderr


def test_broken_or_unknown_config_is_one_clear_line(agent):
    for text, expected in [("model = \n", "not valid TOML"), ("modle = 'x'\n", "unknown key 'modle'"),
                           ("max_cost = -1\n", "max_cost = -1"), ("on_timeout = 'never'\n", "on_timeout")]:
        write_config(agent, text)
        for command in (["run", "hi"], ["config", "list"]):
            result = agent(*command)
            assert result.returncode == 2, result.stderr
            assert expected in result.stderr and "Traceback" not in result.stderr
        assert agent("run", "--help").returncode == 0  # help is there to fix it with


def test_config_set_get_unset_keep_comments_and_the_file_private(agent):
    write_config(agent, "# my defaults\nmax_cost = 1.5  # dollars\n")
    config = agent.home / "config.toml"

    assert agent("config", "set", "model", "openai/gpt-4o").returncode == 0
    assert agent("config", "set", "timeout", "1800").returncode == 0
    assert agent("config", "set", "stream", "false").returncode == 0
    for key, value in [("on_timeout", "sometimes"), ("model", "gpt-4o"), ("base_url", "ftp://x"), ("grace", "-1")]:
        bad = agent("config", "set", key, value)
        assert bad.returncode == 2 and value in bad.stderr, bad.stderr

    assert config.read_text() == ('# my defaults\nmax_cost = 1.5  # dollars\nmodel = "openai/gpt-4o"\n'
                                  "timeout = 1800.0\nstream = false\n")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert agent("config", "get", "model").stdout == "openai/gpt-4o\n"
    assert agent("config", "get", "model", env={"LLM_MODEL": "openai/env"}).stdout == "openai/env\n"
    listed = json.loads(agent("config", "list", "--json").stdout)
    assert listed["timeout"] == {"value": 1800.0, "source": "config"}
    assert listed["max_iterations"] == {"value": 50, "source": "built-in"}

    assert agent("config", "unset", "max_cost").returncode == 0
    assert "max_cost" not in config.read_text() and "# my defaults" in config.read_text()
    assert agent("config", "get", "max_cost").stdout == "\n"


def test_a_broken_config_never_stands_in_the_way_of_stopping_a_run(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    write_config(agent, "this is not toml\n")

    assert agent("ps", "-q").stdout.strip() == conv_id
    stopped = agent("interrupt", conv_id)

    assert stopped.returncode == 0, stopped.stderr
    assert agent.state(conv_id).status.value == "paused"
