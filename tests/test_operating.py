"""Operating a run from elsewhere: moving it to another model or endpoint, attaching to
it, `stop`, and carrying a conversation to another home with export and import."""

from __future__ import annotations

import signal
import time

from tests.conftest import finish, slow_text, wait_until


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


def test_ctrl_c_in_attach_interrupts_the_run(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    attached = agent.popen("attach", conv_id)
    wait_until(lambda: "think" in agent.output(conv_id))
    wait_until(lambda: len(agent.output(conv_id)) > 200)  # attach has had time to start following

    attached.send_signal(signal.SIGINT)
    out, err = attached.communicate(timeout=30)

    assert attached.returncode == 130, err
    assert "think" in err
    state = agent.state(conv_id)
    assert state.status.value == "paused"
    assert state.runtime.stop["requested_by"] == "agent attach (SIGINT)"


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
