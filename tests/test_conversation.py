"""The on-disk format: checkpoints, replay, torn lines, rollback and the status machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_proc import conversation
from agent_proc.conversation import NotFound, load_state, read_events, transaction
from agent_proc.status import TRANSITIONS, IllegalTransition, Status, check_transition


@pytest.fixture
def conv_dir(tmp_path: Path) -> Path:
    return conversation.create(model="openai/m", workspace=str(tmp_path), base_url=None,
                               prompt="hello", home=tmp_path / "home")


def test_new_conversation_is_idle_with_its_prompt(conv_dir):
    state = load_state(conv_dir)
    assert state.status is Status.IDLE and state.model == "openai/m" and state.schema_version == 1
    events, _ = read_events(conv_dir)
    assert [e["type"] for e in events] == ["created", "user_message"]
    assert events[1]["content"] == "hello"
    assert oct(conv_dir.stat().st_mode & 0o777) == "0o700"
    for name in ("state.json", "events.jsonl", "lock"):
        assert (conv_dir / name).stat().st_mode & 0o077 == 0


def test_state_behind_history_is_caught_up_by_readers_and_writers(conv_dir):
    checkpoint = (conv_dir / "state.json").read_bytes()
    with transaction(conv_dir) as txn:
        txn.set_status(Status.STARTING, "starting", token="t", starter={})
        txn.set_status(Status.RUNNING, "started")
        txn.record("started", pid=1, create_time=1.0)
    # As if the writer was killed after appending but before replacing state.json:
    (conv_dir / "state.json").write_bytes(checkpoint)

    assert load_state(conv_dir).status is Status.RUNNING
    with transaction(conv_dir) as txn:
        assert txn.state.status is Status.RUNNING and txn.state.runtime.pid == 1
        txn.set_status(Status.PAUSED, "test")
    assert json.loads((conv_dir / "state.json").read_bytes())["status"] == "paused"
    events, _ = read_events(conv_dir)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_torn_line_is_ignored_then_truncated(conv_dir):
    size = (conv_dir / "events.jsonl").stat().st_size
    with open(conv_dir / "events.jsonl", "ab") as f:
        f.write(b'{"seq": 3, "type": "user_mess')
    assert len(read_events(conv_dir)[0]) == 2
    with transaction(conv_dir) as txn:
        txn.record("user_message", content="next", source="send")
    events, end = read_events(conv_dir)
    assert [e["seq"] for e in events] == [1, 2, 3] and events[2]["content"] == "next"
    assert end > size


def test_failed_transaction_leaves_no_trace(conv_dir):
    before = (conv_dir / "events.jsonl").read_bytes(), (conv_dir / "state.json").read_bytes()
    with pytest.raises(IllegalTransition), transaction(conv_dir) as txn:
        txn.record("user_message", content="lost", source="send")
        txn.set_status(Status.FINISHED)  # idle -> finished is not a legal move
    assert ((conv_dir / "events.jsonl").read_bytes(), (conv_dir / "state.json").read_bytes()) == before


def test_only_a_start_reaches_running_and_every_stopped_status_can_start(conv_dir):
    for status, targets in TRANSITIONS.items():
        assert (Status.RUNNING in targets) == (status is Status.STARTING)
        assert (Status.STARTING in targets) == (status not in (Status.STARTING, Status.RUNNING))
    with pytest.raises(IllegalTransition, match="cannot go from finished to paused"):
        check_transition(Status.FINISHED, Status.PAUSED)


@pytest.mark.parametrize("name", ["../x", "ABC", "", "a" * 13, "abc/def", ".."])
def test_ids_cannot_escape_the_home(conv_dir, name):
    with pytest.raises(NotFound):
        conversation.resolve(name, conv_dir.parent.parent)


def test_inbox_messages_are_taken_in_order_and_only_once(conv_dir):
    with transaction(conv_dir) as txn:
        txn.set_status(Status.STARTING, "starting", token="t", starter={})
        txn.set_status(Status.RUNNING, "started")
    for i in range(5):
        assert conversation.post_message(conv_dir, f"m{i}") == "inbox"
    leftover = sorted((conv_dir / "inbox").glob("*.json"))[0]
    leftover_bytes = leftover.read_bytes()
    with transaction(conv_dir) as txn:
        taken = conversation.take_inbox(txn)
    assert [e["content"] for e in taken] == [f"m{i}" for i in range(5)]
    # A kill between recording and unlinking leaves a file behind: it is not taken twice.
    leftover.write_bytes(leftover_bytes)
    with transaction(conv_dir) as txn:
        assert conversation.take_inbox(txn) == []
    assert not list((conv_dir / "inbox").glob("*.json"))


def test_appending_does_not_rewrite_the_history(conv_dir):
    """Each event is one append to the same file: what was there stays byte for byte."""
    with transaction(conv_dir) as txn:
        for _ in range(1000):
            txn.record("user_message", content="x" * 200, source="send")
    path = conv_dir / "events.jsonl"
    before, inode = path.read_bytes(), path.stat().st_ino
    with transaction(conv_dir) as txn:
        txn.record("user_message", content="one more", source="send")
    after = path.read_bytes()
    assert path.stat().st_ino == inode
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1


def test_a_submitted_run_keeps_its_job_once_its_process_starts_and_not_after(conv_dir):
    with transaction(conv_dir) as txn:
        txn.record("submitted", backend="slurm", job={"id": "7", "cluster": None, "args": ["--hold"]})
        txn.set_status(Status.QUEUED, "submitted")
    with transaction(conv_dir) as txn:
        txn.record("job_started", node="n1", cluster="hpc", host={"hostname": "n1"})
        txn.set_status(Status.STARTING, "job 7 started on n1", token="t1",
                       starter={"pid": 41, "host": {"hostname": "n1"}})
    with transaction(conv_dir) as txn:
        txn.set_status(Status.RUNNING, "started")
        txn.record("started", pid=42, create_time=1.0, host={"hostname": "n1", "boot_id": "b"})
    runtime = load_state(conv_dir).runtime
    assert (runtime.backend, runtime.pid, runtime.host["hostname"]) == ("slurm", 42, "n1")
    assert {k: runtime.job[k] for k in ("id", "node", "cluster", "args")} == \
        {"id": "7", "node": "n1", "cluster": "hpc", "args": ["--hold"]}
    assert runtime.job["submitted_at"] <= runtime.job["started_at"]

    with transaction(conv_dir) as txn:  # later, a local start: no job of its own
        txn.set_status(Status.PAUSED, "interrupted")
        txn.record("exited", exit_code=130)
        txn.set_status(Status.STARTING, "starting", token="t2", starter={"pid": 44})
        txn.set_status(Status.RUNNING, "resumed")
        txn.record("started", pid=43, create_time=2.0)
    runtime = load_state(conv_dir).runtime
    assert (runtime.backend, runtime.job, runtime.pid) == ("local", None, 43)


def test_a_queued_run_starts_or_stops_but_never_finishes_unstarted():
    # Its job's watcher takes it to starting, like any start; nobody runs it straight from the queue.
    assert TRANSITIONS[Status.QUEUED] == {Status.STARTING, Status.PAUSED, Status.ERROR}
    with pytest.raises(IllegalTransition, match="cannot go from queued to running"):
        check_transition(Status.QUEUED, Status.RUNNING)
    with pytest.raises(IllegalTransition, match="cannot go from queued to finished"):
        check_transition(Status.QUEUED, Status.FINISHED)
    with pytest.raises(IllegalTransition):
        check_transition(Status.RUNNING, Status.QUEUED)
