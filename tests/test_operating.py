"""Operating a run from elsewhere: moving it to another model or endpoint, attaching to
it, `stop`, and carrying a conversation to another home with export and import."""

from __future__ import annotations

import json
import os
import signal
import stat
import time

import pytest

from tests.conftest import Agent, clean_env, finish, slow_text, wait_until


def test_resume_moves_a_conversation_to_another_model_and_endpoint(agent, serve):
    gone = serve(slow_text(seconds=30))
    conv_id = agent.start(gone)
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)
    gone.stop()
    elsewhere = serve(finish("answered elsewhere"))

    resumed = agent("resume", conv_id, "-m", "openai/other", "--base-url", elsewhere.url)

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "answered elsewhere\n"
    assert elsewhere.requests()[0]["model"] == "other"
    state = agent.state(conv_id)
    assert (state.model, state.base_url) == ("openai/other", elsewhere.url)
    [moved] = agent.events(conv_id, "model_changed")
    assert moved["previous"] == {"model": "openai/scripted", "base_url": gone.url}


def test_resume_with_a_bad_endpoint_is_refused_and_changes_nothing(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)

    for args, expected in [(["--base-url", "ftp://x"], "http://"), (["-m", "nosuch/x"], "unknown provider"),
                           (["-m", "openai/gpt-4o", "--base-url", "https://api.openai.com/v1"], "LLM_API_KEY")]:
        refused = agent("resume", conv_id, *args)
        assert refused.returncode == 2 and expected in refused.stderr, refused.stderr
    assert agent.events(conv_id, "model_changed") == []
    assert agent.state(conv_id).model == "openai/scripted"


def test_attach_shows_progress_and_exits_with_the_runs_code(agent, serve):
    server = serve(slow_text("Let me think. " * 10, seconds=1.5, **finish("attached answer")))
    conv_id = agent.start(server)

    attached = agent("attach", conv_id)

    assert attached.returncode == 0, attached.stderr
    assert attached.stdout == "attached answer\n"
    assert "think" in attached.stderr  # the model's text, shown as it streamed
    again = agent("attach", conv_id)  # nothing left to follow: how it ended, at once
    assert (again.returncode, again.stdout) == (0, "attached answer\n")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_in_attach_interrupts_the_run(agent, serve, sig, code):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    attached = agent.popen("attach", conv_id)
    wait_until(lambda: "think" in agent.output(conv_id))
    wait_until(lambda: len(agent.output(conv_id)) > 200)  # attach has had time to start following

    attached.send_signal(sig)
    out, err = attached.communicate(timeout=30)

    assert attached.returncode == code, err
    assert "think" in err
    state = agent.state(conv_id)
    assert state.status.value == "paused"
    assert state.runtime.stop["requested_by"] == f"agent attach ({sig.name})"


def test_watch_only_attach_leaves_the_run_alone(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    attached = agent.popen("attach", "--watch-only", conv_id)
    wait_until(lambda: "think" in agent.output(conv_id))
    time.sleep(0.5)

    attached.send_signal(signal.SIGINT)
    attached.communicate(timeout=30)

    assert attached.returncode == 130
    assert agent.state(conv_id).status.value == "running"
    assert agent("stop", conv_id).returncode == 0  # `stop` is `interrupt`
    assert agent.state(conv_id).status.value == "paused"


@pytest.fixture
def elsewhere(tmp_path):
    """The `agent` command of a second home, as on another machine."""
    home = tmp_path / "elsewhere"
    other = Agent(home, tmp_path / "ws", clean_env(home))
    yield other
    leftovers = other.our_processes()
    for process in leftovers:
        process.kill()
    assert not leftovers, f"processes left behind: {leftovers}"


def interrupted_run(agent, serve, **env) -> str:
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server, env=env)
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)
    return conv_id


def test_export_and_import_carry_a_conversation_to_another_home_to_resume(agent, elsewhere, serve, tmp_path):
    conv_id = interrupted_run(agent, serve)
    exported = tmp_path / "conversation.json"
    assert agent("export", conv_id, "-o", str(exported)).returncode == 0

    imported = elsewhere("import", str(exported))

    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == f"{conv_id}\n"
    state = elsewhere.state(conv_id)
    assert state.status.value == "paused" and state.runtime.pid is None
    before = agent.events(conv_id)
    assert elsewhere.events(conv_id)[:len(before)] == before and elsewhere.events(conv_id)[-1]["type"] == "imported"
    assert "think" in elsewhere("logs", conv_id).stdout
    server = serve(finish("resumed on the other machine"))
    resumed = elsewhere("resume", conv_id, "--base-url", server.url)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "resumed on the other machine\n"
    assert stat.S_IMODE(os.stat(elsewhere.dir(conv_id)).st_mode) == 0o700


def test_import_refuses_a_taken_id_unless_new_id(agent, serve, tmp_path):
    conv_id = interrupted_run(agent, serve)
    exported = tmp_path / "c.json"
    exported.write_text(agent("export", conv_id).stdout)

    taken = agent("import", str(exported))
    assert taken.returncode == 2 and "--new-id" in taken.stderr

    copy = agent("import", "--new-id", str(exported))
    assert copy.returncode == 0, copy.stderr
    new_id = copy.stdout.strip()
    assert new_id != conv_id and agent.state(new_id).status.value == "paused"
    assert agent.events(new_id, "imported")[0]["original_id"] == conv_id


def test_a_running_conversation_exports_as_a_snapshot_that_imports_paused(agent, elsewhere, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    snapshot = agent("export", conv_id)
    agent("interrupt", conv_id)

    assert elsewhere("import", "-", input=snapshot.stdout).returncode == 0

    state = elsewhere.state(conv_id)
    assert (state.status.value, state.status_kind) == ("paused", "imported")


def test_damaged_exports_are_refused_and_nothing_is_created(agent, serve, tmp_path):
    conv_id = interrupted_run(agent, serve)
    good = agent("export", conv_id).stdout
    doc = json.loads(good)
    gap = {**doc, "events": doc["events"][:2] + doc["events"][3:]}
    lying = {**doc, "state": {**doc["state"], "status": "finished"}}
    broken_event = {**doc, "events": [{**e, "to": "flying"} if e["type"] == "status" else e for e in doc["events"]]}
    newer = {**doc, "schema_version": 99}
    other_home = tmp_path / "elsewhere"
    for text, expected in [(good[: len(good) // 2], "not JSON"), ("{}", "not an exported conversation"),
                           (json.dumps(gap), "event 3"), (json.dumps(lying), "does not match its history"),
                           (json.dumps(broken_event), "flying"), (json.dumps(newer), "schema_version 99"),
                           ("\xff", "not an exported")]:
        result = agent("import", "-", input=text, env={"AGENT_HOME": str(other_home)})
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not other_home.exists() or not list((other_home / "conversations").iterdir())


def test_export_never_holds_a_key(agent, serve, tmp_path):
    key = "sk-test-0123456789abcdef"
    conv_id = interrupted_run(agent, serve, LLM_API_KEY=key)
    agent("send", conv_id, f"my key is {key}, use it")  # a user pasting a key into a message

    exported = agent("export", conv_id, env={"LLM_API_KEY": key})

    assert exported.returncode == 0
    assert key not in exported.stdout and "[redacted]" in exported.stdout
    assert "LLM_API_KEY" in exported.stderr


def test_import_needs_a_workspace_that_exists(agent, elsewhere, serve, tmp_path):
    conv_id = interrupted_run(agent, serve)
    text = agent("export", conv_id).stdout.replace(str(agent.workspace), "/no/such/workspace")

    refused = elsewhere("import", "-", input=text)
    assert refused.returncode == 2 and "-w DIR" in refused.stderr

    placed = elsewhere("import", "-", "-w", str(tmp_path), input=text)
    assert placed.returncode == 0, placed.stderr
    assert elsewhere.state(conv_id).workspace == str(tmp_path)
