"""The command line's contract: clear one-line errors, exit codes, listings and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_proc import conversation
from tests.conftest import finish, slow_text, wait_until


def one_clear_line(result) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["run", "hi"], {}, "LLM_MODEL"),
    (["run", "-m", "gpt-4o", "hi"], {}, "provider/model"),
    (["run", "-m", "nosuch/model", "hi"], {}, "unknown provider 'nosuch'"),
    (["run", "-m", "openai/gpt-4o", "hi"], {}, "LLM_API_KEY"),
    (["run", "-m", "openai/gpt-4o", "--base-url", "ftp://x", "hi"], {}, "http://"),
    (["run", "-m", "openai/x", "--base-url", "http://127.0.0.1:9", "   "], {}, "prompt is empty"),
    (["run", "--max-iterations", "0", "hi"], {}, "--max-iterations"),
    (["run", "--bogus", "hi"], {}, "--bogus"),
    (["run", "-w", "/no/such/dir", "hi"], {}, "/no/such/dir"),
    (["show", "abc123"], {}, "no conversation matches"),
    (["show", "../etc"], {}, "not a conversation id"),
    (["resume", "ABC"], {}, "not a conversation id"),
    (["send", "abc", ""], {}, "message is empty"),
])
def test_bad_input_is_one_line_and_exit_2(agent, args, env, expected):
    result = agent(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert expected in one_clear_line(result)
    assert not conversation.list_dirs(agent.home), "nothing may be created by a refused command"


def test_model_and_base_url_come_from_the_environment(agent, serve):
    server = serve(finish("from env"))
    result = agent("run", "-q", "hi", env={"LLM_MODEL": "openai/envmodel", "LLM_BASE_URL": server.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from env\n"
    assert server.requests()[0]["model"] == "envmodel"


def test_ambiguous_prefix_is_refused_and_unique_prefix_works(agent, serve):
    ids = []
    while len({i[0] for i in ids}) == len(ids):  # until two ids share a first character
        conv_dir = conversation.create(model="openai/x", workspace=str(agent.workspace), base_url=None,
                                       prompt="p", home=agent.home)
        ids.append(conv_dir.name)
    first = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    result = agent("show", first)
    assert result.returncode == 2 and "ambiguous" in one_clear_line(result)
    assert agent("show", ids[-1][:8]).returncode == 0


def test_ps_lists_running_by_default_and_all_with_a(agent, serve):
    server = serve(finish("done"), slow_text(seconds=30))
    done_id = agent.start(server)
    assert agent("wait", done_id).returncode == 0
    running_id = agent.start(server)

    assert agent("ps", "-q").stdout.split() == [running_id]
    table = agent("ps").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "AGE", "MODEL", "COST", "PROMPT"]
    row = table[1].split()
    assert row[:3] + row[4:] == [running_id, "-", "running", "openai/scripted", "unknown", "solve", "the", "task"]
    everything = json.loads(agent("ps", "-a", "--json").stdout)
    assert [c["id"] for c in everything] == [running_id, done_id], "newest first"
    assert everything[0]["pid"] == agent.state(running_id).runtime.pid
    assert everything[1]["status"] == "finished" and everything[1]["cost_usd"] is None
    assert "unknown" in agent("ps", "-a").stdout  # cost of an unpriced model
    agent("interrupt", running_id)


def test_corrupt_state_is_named_and_others_still_listed(agent, serve):
    server = serve(finish(), finish())
    good, bad = agent.start(server), agent.start(server)
    agent("wait", good), agent("wait", bad)
    (agent.dir(bad) / "state.json").write_text("{ not json")

    shown = agent("show", bad)
    assert shown.returncode == 2
    assert "state.json" in one_clear_line(shown)
    listing = agent("ps", "-a")
    assert listing.returncode == 0 and good in listing.stdout
    assert "state.json" in listing.stderr


def test_torn_last_event_is_ignored_then_cut(agent, serve):
    server = serve(finish())
    conv_id = agent.start(server)
    agent("wait", conv_id)
    events_path = agent.dir(conv_id) / "events.jsonl"
    count = len(agent.events(conv_id))
    with open(events_path, "ab") as f:
        f.write(b'{"seq": 99, "ts": "x", "type": "user_mes')

    assert agent("show", conv_id).returncode == 0
    assert agent("send", conv_id, "after the tear").returncode == 0

    events = agent.events(conv_id)
    assert len(events) == count + 1 and events[-1]["content"] == "after the tear"
    assert [e["seq"] for e in events] == list(range(1, count + 2))


def test_show_displays_partial_output(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)

    text = agent("show", conv_id).stdout

    assert "status:      paused (interrupted by SIGINT)" in text
    assert "model [PARTIAL: interrupted]: Let me think" in text
    assert "INTERRUPTED by SIGINT during model_call" in text
    doc = json.loads(agent("show", "--json", conv_id).stdout)
    assert doc["state"]["schema_version"] == 1 and doc["events"][-1]["type"] in ("stopped", "exited")


def test_logs_and_logs_follow(agent, serve):
    server = serve(slow_text("streaming words " * 10, seconds=1.0,
                             tool_calls=[{"name": "terminal", "arguments": {"command": "true"}}]), finish("the end"))
    conv_id = agent.start(server)

    followed = agent("logs", "-f", conv_id)

    assert followed.returncode == 0
    assert "streaming words" in followed.stdout and "[finished] the end" in followed.stdout
    assert agent("logs", conv_id).stdout == followed.stdout


def test_wait_timeout_and_pause_of_stopped_run(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    assert agent("wait", conv_id, "--timeout", "0.2").returncode == 3
    agent("interrupt", conv_id)
    result = agent("pause", conv_id)
    assert result.returncode == 0 and "not running" in result.stderr


def test_rm_refuses_a_running_run_unless_forced(agent, serve):
    server = serve(slow_text(seconds=30), finish())
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))

    refused = agent("rm", conv_id)
    assert refused.returncode == 2 and "running" in one_clear_line(refused)
    assert agent.dir(conv_id).exists()

    child = agent.child(conv_id)
    forced = agent("rm", "-f", conv_id)
    assert forced.returncode == 0
    assert not (agent.home / "conversations" / conv_id).exists()
    assert not child.is_running() or child.status() == "zombie"


def test_concurrent_sends_each_land_exactly_once(agent, serve):
    server = serve(finish())
    conv_id = agent.start(server)
    agent("wait", conv_id)
    senders = [agent.popen("send", conv_id, f"message {i}") for i in range(20)]
    for sender in senders:
        assert sender.wait(30) == 0
    contents = [e["content"] for e in agent.events(conv_id, "user_message")]
    assert sorted(contents[1:]) == sorted(f"message {i}" for i in range(20))


def test_help_and_console_script(agent):
    result = agent("--help")
    assert result.returncode == 0 and "Examples:" in result.stdout
    script = Path(sys.executable).with_name("agent")
    if not script.exists():
        pytest.skip("the package is not installed in this environment")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=agent.env)
    assert out.returncode == 0 and out.stdout.startswith("agent, version")


def test_a_reader_that_goes_away_gets_no_noise(agent, serve):
    """`agent logs ID | head`: the CLI stops quietly, exit 0 as if all was read, no traceback."""
    server = serve(finish("done"))
    conv_id = agent.start(server)
    agent("wait", conv_id)
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has had enough
    result = subprocess.run(agent.command("logs", conv_id), stdout=write_end, stderr=subprocess.PIPE, text=True,
                            env=agent.env)
    os.close(write_end)
    assert result.returncode == 0 and result.stderr == ""
