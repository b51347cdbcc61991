"""Operating many runs: names, labels, --exclusive, listings, filters, formats, the one
JSON shape, prune and cost."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess

import pytest

from agent_proc import conversation
from supervisor import outcomes
from supervisor.summary import FIELDS
from tests.conftest import finish, slow_text, wait_until

SCRIPTED = ("-m", "openai/scripted")


def one_line_error(result) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def make(agent, prompt: str = "p", **kwargs) -> str:
    """A conversation written through the conversation module (no run)."""
    return conversation.create(model=kwargs.pop("model", "openai/x"), workspace=str(agent.workspace),
                               base_url=None, prompt=prompt, home=agent.home, **kwargs).name


# --------------------------------------------------------------------------- names


def test_a_name_works_wherever_an_id_does(agent, serve):
    server = serve(finish("named answer"))
    conv_id = agent.start(server, "task", "--name", "nightly-2026.11_28")

    assert agent("wait", "nightly-2026.11_28").returncode == 0
    shown = agent("show", "nightly-2026.11_28").stdout
    assert "named answer" in shown and f"id:          {conv_id}  (name nightly-2026.11_28)" in shown
    assert json.loads(agent("show", "--json", "nightly-2026.11_28").stdout)["state"]["id"] == conv_id
    assert agent.events(conv_id, "created")[0]["name"] == "nightly-2026.11_28"
    assert agent.state(conv_id).name == "nightly-2026.11_28"
    ps = json.loads(agent("ps", "-a", "--json").stdout)
    assert ps[0]["name"] == "nightly-2026.11_28"


@pytest.mark.parametrize("bad", ["-leading-dash", "has/slash", "space here", "x" * 65, "..", "é"])
def test_an_invalid_name_is_refused(agent, bad):
    result = agent("run", *SCRIPTED, "--base-url", "http://127.0.0.1:9", "--name", bad, "task")
    assert result.returncode == 2
    assert "invalid name" in one_line_error(result)
    assert not conversation.list_dirs(agent.home)


def test_a_taken_name_is_refused_and_freed_by_rm(agent, serve):
    server = serve(finish(), finish())
    first = agent.start(server, "task", "--name", "build")
    agent("wait", first)

    again = agent("run", *SCRIPTED, "--base-url", server.url, "--name", "build", "task")
    assert again.returncode == 2
    assert f"the name 'build' is taken by conversation {first}" in one_line_error(again)
    assert len(conversation.list_dirs(agent.home)) == 1, "nothing is made for a refused name"

    assert agent("rm", "build").returncode == 0
    second = agent.start(server, "task", "--name", "build")
    assert agent("show", "--format", "{id}", "build").stdout.strip() == second


def test_two_runs_racing_for_one_name_get_it_once(agent, serve):
    server = serve(*[finish() for _ in range(6)])
    racers = [agent.popen("run", "-d", *SCRIPTED, "--base-url", server.url, "--name", "race", "task")
              for _ in range(6)]
    results = [(r.wait(60), r.communicate()) for r in racers]

    assert [code for code, _ in results].count(0) == 1, results
    assert all("is taken" in err for code, (_, err) in results if code != 0)
    assert len(conversation.list_dirs(agent.home)) == 1
    agent("wait", "race")


def test_an_exact_id_wins_over_a_name_and_a_name_over_a_prefix(agent):
    target, other = make(agent), make(agent)
    named = make(agent, name=other[:4])  # a name that is also a prefix of `other`
    assert agent("show", "--format", "{id}", other[:4]).stdout.strip() == named
    assert agent("show", "--format", "{id}", other).stdout.strip() == other
    assert agent("show", "--format", "{id}", target).stdout.strip() == target
    # A damaged names file leads nowhere, even to a readable conversation outside conversations/.
    shutil.copytree(agent.dir(target), agent.home / "outside")
    (agent.home / "names" / "escape").write_text("../outside")
    assert agent("show", "escape").returncode == 2
    missing = agent("show", "nosuchname")
    assert missing.returncode == 2 and "not a conversation id or name" in one_line_error(missing)


# --------------------------------------------------------------------------- labels


def test_labels_on_run_and_changed_later_are_recorded(agent, serve):
    server = serve(finish())
    conv_id = agent.start(server, "task", "-l", "team=infra", "--label", "job=nightly")
    agent("wait", conv_id)
    assert agent.state(conv_id).labels == {"team": "infra", "job": "nightly"}

    result = agent("label", conv_id, "priority=high", "job-", "team=infra")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["priority=high", "team=infra"]
    assert agent.state(conv_id).labels == {"team": "infra", "priority": "high"}
    changed = agent.events(conv_id, "labels_changed")
    assert [(e["set"], e["removed"]) for e in changed] == [({"priority": "high"}, ["job"])]
    assert agent("label", conv_id).stdout.split() == ["priority=high", "team=infra"]  # no change: prints them
    assert len(agent.events(conv_id, "labels_changed")) == 1


@pytest.mark.parametrize("bad", ["novalue", "=v", "a b=c", "k=line\nbreak"])
def test_an_invalid_label_is_refused(agent, bad):
    conv_id = make(agent)
    result = agent("label", conv_id, bad)
    assert result.returncode == 2 and "invalid label" in one_line_error(result)
    run = agent("run", *SCRIPTED, "--base-url", "http://127.0.0.1:9", "-l", bad, "task")
    assert run.returncode == 2 and "invalid label" in one_line_error(run)


# --------------------------------------------------------------------------- --exclusive


def test_exclusive_does_not_start_beside_a_running_twin(agent, serve):
    server = serve(slow_text(seconds=30), finish("second"))
    first = agent.start(server, "task", "-l", "job=nightly", "--name", "n1")

    twin = agent("run", "-d", *SCRIPTED, "--base-url", server.url, "-l", "job=nightly", "--exclusive", "task")
    assert twin.returncode == outcomes.EXIT_ALREADY_RUNNING == 75
    assert f"conversation {first} with the same labels job=nightly is running" in one_line_error(twin)
    same_name = agent("run", "-d", *SCRIPTED, "--base-url", server.url, "--name", "n1", "--exclusive", "task")
    assert same_name.returncode == 75 and "same name n1" in same_name.stderr
    assert len(conversation.list_dirs(agent.home)) == 1

    other_labels = agent("run", "-d", *SCRIPTED, "--base-url", server.url, "-l", "job=weekly", "--exclusive", "t")
    assert other_labels.returncode == 0, other_labels.stderr
    agent("interrupt", first)
    agent("wait", other_labels.stdout.strip())
    after = agent("run", "-d", *SCRIPTED, "--base-url", server.url, "-l", "job=nightly", "--exclusive", "task")
    assert after.returncode == 0, "a stopped twin does not count"
    agent("wait", after.stdout.strip())


def test_exclusive_needs_a_name_or_labels(agent):
    result = agent("run", *SCRIPTED, "--base-url", "http://127.0.0.1:9", "--exclusive", "task")
    assert result.returncode == 2 and "--exclusive needs --name or --label" in one_line_error(result)


def test_exclusive_runs_started_at_once_start_once(agent, serve):
    server = serve(*[slow_text(seconds=30) for _ in range(4)])
    racers = [agent.popen("run", "-d", *SCRIPTED, "--base-url", server.url, "-l", "job=cron", "--exclusive", "t")
              for _ in range(4)]
    codes = sorted(r.wait(60) for r in racers)
    assert codes == [0, 75, 75, 75]
    running = agent("ps", "-q").stdout.split()
    assert len(running) == 1
    agent("interrupt", running[0])


# --------------------------------------------------------------------------- one JSON shape


def test_every_command_prints_the_same_summary(agent, serve):
    server = serve(finish("one"), slow_text(seconds=30), finish("resumed"), finish("again"))
    docs = {}
    docs["run --json"] = json.loads(agent("run", "--json", "-q", *SCRIPTED, "--base-url", server.url, "a").stdout)
    conv_id = docs["run --json"]["id"]
    docs["run -d --json"] = json.loads(agent("run", "-d", "--json", *SCRIPTED, "--base-url", server.url, "b").stdout)
    live = docs["run -d --json"]["id"]
    wait_until(lambda: "think" in agent.output(live))
    docs["ps --json"] = json.loads(agent("ps", "--json").stdout)[0]
    docs["interrupt --json"] = json.loads(agent("interrupt", live, "--json").stdout)
    docs["pause --json"] = json.loads(agent("pause", live, "--json").stdout)
    docs["send --json"] = json.loads(agent("send", live, "go on", "--json").stdout)
    docs["resume --json"] = json.loads(agent("resume", "-q", live, "--json").stdout)
    agent("send", live, "more")
    docs["resume -d --json"] = json.loads(agent("resume", "-d", live, "--json").stdout)
    docs["wait --json"] = json.loads(agent("wait", live, "--json").stdout)
    docs["show --json"] = json.loads(agent("show", live, "--json").stdout)["state"]
    docs["ps -a jsonl"] = json.loads(agent("ps", "-a", "--format", "jsonl").stdout.splitlines()[0])
    docs["rm --json"] = json.loads(agent("rm", conv_id, "--json").stdout)[0]

    extras = {"interrupt --json": {"stop"}, "send --json": {"delivered_to"}, "rm --json": {"removed", "freed_bytes"},
              "ps --json": {"liveness", "liveness_detail"}}  # a run under way: what its backend says of it
    for command, doc in docs.items():
        assert set(doc) == set(FIELDS) | extras.get(command, set()), command
        assert doc["schema_version"] == 1
    assert docs["ps --json"]["status"] == "running" and docs["ps --json"]["pid"]
    assert docs["ps --json"]["liveness"] == "yes"
    assert docs["interrupt --json"]["status"] == "paused" and docs["interrupt --json"]["kind"] == "interrupt"
    assert docs["interrupt --json"]["stop"]["method"] == "sigint"
    assert docs["send --json"]["delivered_to"] == "history"
    assert docs["wait --json"]["final_answer"] == "again" and docs["wait --json"]["host"] == os.uname().nodename
    assert docs["rm --json"]["removed"] and not conversation.list_dirs(agent.home)[1:]


def test_ps_json_shows_why_a_run_failed(agent, serve):
    server = serve({"status": 400, "error": "bad request"})
    conv_id = agent.start(server)
    agent("wait", conv_id)
    doc = json.loads(agent("ps", "-a", "--json").stdout)[0]
    assert doc["status"] == "error" and doc["kind"] == "llm" and doc["reason"]


# --------------------------------------------------------------------------- listings


def test_ps_prints_its_header_even_when_empty(agent):
    result = agent("ps")
    assert result.returncode == 0
    assert result.stdout.split() == ["ID", "NAME", "STATUS", "AGE", "MODEL", "COST", "PROMPT"]
    assert agent("ps", "--json").stdout.strip() == "[]"


def test_ps_newest_first_last_n_and_prompt_cut_to_the_width(agent):
    ids = [make(agent, prompt=f"prompt number {n} " + "word " * 40 + "\nsecond line") for n in range(4)]
    listed = agent("ps", "-a", "-q").stdout.split()
    assert listed == ids[::-1]
    assert agent("ps", "-n", "2", "-q").stdout.split() == ids[:1:-1]

    narrow = agent("ps", "-a", env={"COLUMNS": "100"}).stdout.splitlines()
    assert all(len(line) <= 100 for line in narrow), narrow
    assert narrow[1].endswith("…") and "prompt number 3" in narrow[1] and "second line" not in narrow[1]
    full = agent("ps", "-a", "--no-trunc", env={"COLUMNS": "100"}).stdout.splitlines()
    assert full[1].endswith("word") and len(full[1]) > 200


def run_on_a_terminal(agent, *args: str, env: dict[str, str] | None = None) -> str:
    """`agent ARGS` with its stdout on a pseudo-terminal; what it printed."""
    main, side = pty.openpty()
    process = subprocess.Popen(agent.command(*args), stdout=side, stderr=subprocess.PIPE,
                               env={**agent.env, **(env or {})}, cwd=agent.workspace)
    os.close(side)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    process.wait(30)
    os.close(main)
    return b"".join(chunks).decode()


def test_status_is_in_colour_on_a_terminal_only(agent):
    make(agent)
    assert "\033[2midle\033[0m" in run_on_a_terminal(agent, "ps", "-a")
    assert "\033[" not in run_on_a_terminal(agent, "ps", "-a", env={"NO_COLOR": "1"})
    assert "\033[" not in agent("ps", "-a").stdout


def test_filters_must_all_hold(agent, serve):
    server = serve(finish(), {"status": 400, "error": "no"})
    done = agent.start(server, "task", "-l", "team=infra", "-l", "job=nightly", "--name", "nightly-1")
    agent("wait", done)
    failed = agent.start(server, "task", "-l", "team=web")
    agent("wait", failed)
    idle = make(agent, model="anthropic/claude", labels={"team": "infra"})

    def ids(*filters: str) -> set[str]:
        args = [a for f in filters for a in ("--filter", f)]
        result = agent("ps", "-a", "-q", *args)
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split())

    assert ids("label=team") == {done, failed, idle}
    assert ids("label=team=infra") == {done, idle}
    assert ids("label=team=infra", "label=job") == {done}
    assert ids("status=error") == {failed}
    assert ids("status=finished,error") == {done, failed}
    assert ids("status=finished", "status=error") == set(), "all must hold; status=a,b for either"
    assert ids("status=finished,error", "label=team=web") == {failed}
    assert ids("label=team=infra", "label=team=web") == set()
    assert ids("name=nightly-*") == {done}
    assert ids("model=anthropic/*") == {idle}
    assert ids("model=openai/scripted", "label=team=web") == {failed}
    assert ids("since=1h") == {done, failed, idle}
    assert ids("until=1h") == set()
    assert ids("since=2000-01-01", "until=2999-01-01T00:00Z") == {done, failed, idle}
    # A status filter looks at every conversation, without -a.
    assert set(agent("ps", "-q", "--filter", "status=idle").stdout.split()) == {idle}


@pytest.mark.parametrize(("args", "expected"), [
    (["ps", "--filter", "colour=red"], "invalid filter 'colour=red'"),
    (["ps", "--filter", "status=sleeping"], "unknown status 'sleeping'"),
    (["ps", "--filter", "since=yesterday"], "not a time: 'yesterday'"),
    (["ps", "--format", "yaml"], "unknown format 'yaml'"),
    (["ps", "-a", "--format", "{id} {colour}"], "unknown field {colour}"),
    (["ps", "-a", "--format", "{id.__class__}"], "unknown field {id.__class__}"),
])
def test_bad_filters_and_formats_are_one_line(agent, args, expected):
    make(agent)
    result = agent(*args)
    assert result.returncode == 2
    assert expected in one_line_error(result)


def test_templates_and_jsonl(agent, serve):
    server = serve(finish("the answer"))
    conv_id = agent.start(server, "task", "-l", "team=infra", "--name", "tpl")
    agent("wait", conv_id)
    assert agent("ps", "-a", "--format", r"{id}\t{status}\t{cost_usd}|{labels[team]}").stdout == \
        f"{conv_id}\tfinished\t|infra\n"
    for _ in range(2):  # read from the files, then from the index, which leaves answers out
        assert agent("ps", "-a", "--format", "{final_answer}").stdout == "the answer\n"
    assert "final_answer" not in json.loads((agent.home / "index.json").read_text())["entries"][conv_id][1]
    lines = agent("ps", "-a", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["tpl"]
    assert agent("wait", "tpl", "--format", "{name} {status} {final_answer}").stdout == "tpl finished the answer\n"
    assert agent("show", "tpl", "--format", "{total_tokens}").stdout.strip().isdigit()


# --------------------------------------------------------------------------- show and logs


def test_show_hides_bookkeeping_and_dates_its_lines(agent, serve):
    server = serve(finish("done"))
    conv_id = agent.start(server)
    agent("wait", conv_id)
    day = agent.state(conv_id).created_at[:10]

    history = agent("show", conv_id).stdout.split("history:")[1]
    assert " started " not in history and "model_call_started" not in history and " exited" not in history
    assert all(line.startswith(f"{day} ") for line in history.strip().splitlines() if not line.startswith(" "))
    everything = agent("show", "--all", conv_id).stdout
    assert "model_call_started" in everything and "started {" in everything
    shown = [e for e in agent.events(conv_id) if e["type"] not in ("started", "exited", "model_call_started")]
    assert agent("show", "--tail", str(len(shown) + 1), conv_id).stdout.split("history:")[1] == history
    tail = agent("show", "--tail", "1", conv_id).stdout.split("history:\n")[1].splitlines()
    assert len(tail) == 1 and "status running -> finished" in tail[0]
    doc = json.loads(agent("show", "--json", "--tail", "2", conv_id).stdout)
    assert [e["type"] for e in doc["events"]] == ["status", "exited"], "JSON keeps every event"


def test_logs_tail(agent, serve):
    server = serve(finish("bye"))
    conv_id = agent.start(server)
    agent("wait", conv_id)
    everything = agent("logs", conv_id).stdout
    assert len(everything.splitlines()) > 3
    assert agent("logs", "--tail", "2", conv_id).stdout == "".join(everything.splitlines(keepends=True)[-2:])
    assert agent("logs", "-n", "0", conv_id).stdout == ""
    assert agent("logs", "--tail", "1000", conv_id).stdout == everything


# --------------------------------------------------------------------------- prune


def test_prune_removes_stopped_conversations_only(agent, serve):
    server = serve(finish(), slow_text(seconds=30))
    done = agent.start(server, "task", "--name", "old-job")
    agent("wait", done)
    live = agent.start(server)
    fresh_idle = make(agent)  # may be one that `agent run` is starting

    refused = agent("prune")  # not a terminal: -f is needed
    assert refused.returncode == 2 and "refusing without -f" in one_line_error(refused)
    assert len(conversation.list_dirs(agent.home)) == 3

    result = agent("prune", "-f")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{done}  old-job  ") and lines[0].endswith("kB")
    assert lines[-1].startswith("removed 1 conversations, freed ")
    assert {d.name for d in conversation.list_dirs(agent.home)} == {live, fresh_idle}
    assert not (agent.home / "names" / "old-job").exists(), "its name is free again"
    agent("interrupt", live)

    doc = json.loads(agent("prune", "-f", "--json", "--filter", "status=finished").stdout)
    assert doc["removed"] == [] and doc["freed_bytes"] == 0, "a paused run is not finished"
    doc = json.loads(agent("prune", "-f", "--json").stdout)
    assert [d["id"] for d in doc["removed"]] == [live] and doc["freed_bytes"] > 0
    assert set(doc["removed"][0]) == set(FIELDS) | {"freed_bytes"}
    assert [d.name for d in conversation.list_dirs(agent.home)] == [fresh_idle]


def test_prune_asks_on_a_terminal(agent, serve):
    server = serve(finish())
    done = agent.start(server)
    agent("wait", done)
    main, side = pty.openpty()
    process = subprocess.Popen(agent.command("prune"), stdin=side, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=agent.env, cwd=agent.workspace, text=True)
    os.close(side)
    os.write(main, b"n\n")
    out, err = process.communicate(timeout=30)
    os.close(main)
    assert process.returncode == 0 and "Remove these 1 conversations?" in err and "nothing removed" in err
    assert [d.name for d in conversation.list_dirs(agent.home)] == [done]


# --------------------------------------------------------------------------- cost


def test_cost_totals_by_model_label_name_and_day(agent, serve):
    usage = {"prompt_tokens": 1000, "completion_tokens": 100}
    server = serve({**finish("a"), "usage": usage}, {**finish("b"), "usage": usage},
                   {**finish("c"), "usage": usage}, slow_text(seconds=30, usage=usage))
    for model, label, name in (("openai/gpt-4o", "job=nightly", "n1"), ("openai/gpt-4o", "job=weekly", "w1"),
                               ("openai/no-price", "job=nightly", "n2")):
        result = agent("run", "-q", "-m", model, "--base-url", server.url, "--name", name, "-l", label, "task")
        assert result.returncode == 0, result.stderr
    one = 1000 * 2.5e-6 + 100 * 10e-6

    by_model = json.loads(agent("cost", "--json").stdout)
    assert by_model["by"] == "model" and by_model["schema_version"] == 1
    groups = {g["model"]: g for g in by_model["groups"]}
    assert groups["openai/gpt-4o"]["cost_usd"] == pytest.approx(2 * one)
    assert groups["openai/gpt-4o"]["conversations"] == 2 and groups["openai/gpt-4o"]["prompt_tokens"] == 2000
    assert groups["openai/no-price"]["unpriced_calls"] == 1 and groups["openai/no-price"]["cost_usd"] == 0
    assert by_model["total"]["calls"] == 3 and by_model["total"]["cost_usd"] == pytest.approx(2 * one)

    labels = {g["label"]: g for g in json.loads(agent("cost", "--by", "label", "--json").stdout)["groups"]}
    assert labels["job=nightly"]["conversations"] == 2 and labels["job=weekly"]["cost_usd"] == pytest.approx(one)
    days = json.loads(agent("cost", "--by", "day", "--format", "json", "--since", "1d").stdout)["groups"]
    assert [g["day"] for g in days] == [agent.state("n1").created_at[:10]]
    nightly = json.loads(agent("cost", "--by", "name", "--json", "--filter", "label=job=nightly").stdout)
    assert [g["name"] for g in nightly["groups"]] == ["n1", "n2"]
    assert json.loads(agent("cost", "--json", "--until", "2000-01-01").stdout)["total"]["calls"] == 0

    # A call cut off by an interrupt is billed on an estimate, and says so.
    live = agent.start(server, "task", "-m", "openai/gpt-4o")
    wait_until(lambda: "think" in agent.output(live))
    agent("interrupt", live)
    doc = json.loads(agent("cost", "--json").stdout)
    assert doc["total"]["estimated_usd"] > 0
    table = agent("cost").stdout
    assert "estimated" in table and "1 calls of unknown price" in table and table.splitlines()[-1].startswith("TOTAL")
    assert json.loads(agent("ps", "-a", "--json", "-n", "1").stdout)[0]["cost_estimated"] is True
    assert "~$" in agent("ps", "-a", "-n", "1").stdout


# --------------------------------------------------------------------------- the index


def test_the_index_follows_the_files_and_is_rebuilt_when_lost_or_damaged(agent):
    conv_id = make(agent, labels={"team": "a"})
    assert agent("ps", "-a", "--format", "{labels[team]}").stdout == "a\n"
    index = agent.home / "index.json"
    assert conv_id in json.loads(index.read_text())["entries"]

    with conversation.transaction(agent.dir(conv_id)) as txn:  # a change made without the CLI
        txn.record("labels_changed", set={"team": "b"}, removed=[])
    assert agent("ps", "-a", "--format", "{labels[team]}").stdout == "b\n"
    for damage in ("{ damaged", '{"version": 1, "entries": []}', f'{{"version": 1, "entries": {{"{conv_id}": 7}}}}'):
        index.write_text(damage)
        assert agent("ps", "-a", "--format", "{labels[team]}").stdout == "b\n", damage
    assert json.loads(index.read_text())["entries"][conv_id][1]["labels"] == {"team": "b"}
    index.unlink()
    other = make(agent)
    assert set(agent("ps", "-a", "-q").stdout.split()) == {conv_id, other}
    conversation.resolve(other, agent.home).rename(agent.home / "elsewhere")  # removed by hand
    assert agent("ps", "-a", "-q").stdout.split() == [conv_id]


def test_a_stale_running_marker_is_dropped(agent, serve):
    server = serve(slow_text(seconds=30))
    live = agent.start(server)
    assert agent("ps", "-q").stdout.split() == [live]
    marker = agent.home / "running" / live
    assert marker.exists()
    agent("interrupt", live)
    assert not marker.exists(), "the commit that stopped it removed its marker"
    marker.touch()  # as a crash between the commit and the removal would leave it
    assert agent("ps", "-q").stdout == ""
    assert not marker.exists()


def test_logs_since_and_timestamps(agent, serve):
    server = serve(slow_text("first words\nsecond line\n", seconds=0.5,
                             tool_calls=[{"name": "terminal", "arguments": {"command": "sleep 1.5"}}]),
                   finish("bye"))
    conv_id = agent.start(server)
    agent("wait", conv_id)
    text = agent("logs", conv_id).stdout
    stamped = agent("logs", "-t", conv_id).stdout.splitlines()
    assert [line[25:] for line in stamped] == text.splitlines(), "the same lines, each after its time"
    times = [line[:24].strip() for line in stamped]
    assert all(t.startswith(agent.state(conv_id).created_at[:10]) and t.endswith("Z") for t in times), times
    assert times == sorted(times)
    # The lines after the 1.5 s tool call: --since a moment between them shows only those.
    finished_at = next(t for t, line in zip(times, stamped, strict=True) if "[finished]" in line)
    late = agent("logs", "--since", finished_at, conv_id).stdout
    assert late and "[finished] bye" in late and "first words" not in late
    assert text.endswith(late)
    assert agent("logs", "--since", "2999-01-01", conv_id).stdout == ""
    assert agent("logs", "--since", "1h", conv_id).stdout == text


def test_the_home_indexes_are_private_too(agent, serve):
    server = serve(finish())
    conv_id = agent.start(server, "task", "--name", "private", "-l", "a=b", "--exclusive")
    agent("wait", conv_id)
    agent("ps", "-a")
    made = {p.name for p in agent.home.iterdir()}
    assert {"names", "names.lock", "running", "index.json", "exclusive.lock"} <= made
    for path in agent.home.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, (path, oct(mode))


def test_a_conversation_recorded_before_names_and_usage_is_listed_and_costed(agent):
    """State written by the previous version: no prompt preview, name, labels or usage."""
    conv_id = make(agent, prompt="an old prompt\nwith two lines")
    with conversation.transaction(agent.dir(conv_id)) as txn:
        txn.record("model_message", content="x", usage={"prompt_tokens": 10, "completion_tokens": 2}, cost=0.5,
                   model="openai/x", outcome="complete", partial=False)
    state_file = agent.dir(conv_id) / "state.json"
    old = json.loads(state_file.read_text())
    for field in ("name", "labels", "prompt", "usage"):
        del old[field]
    state_file.write_text(json.dumps(old))

    doc = json.loads(agent("ps", "-a", "--json").stdout)[0]
    assert doc["prompt"] == "an old prompt" and doc["name"] is None and doc["labels"] == {}
    total = json.loads(agent("cost", "--json").stdout)["total"]
    assert total["cost_usd"] == 0.5 and total["calls"] == 1 and total["prompt_tokens"] == 10
    assert "an old prompt" in agent("ps", "-a").stdout


def test_logs_follow_with_timestamps(agent, serve):
    server = serve(slow_text("streamed words\n" * 6, seconds=1.5))  # no tool call: the text is the answer
    conv_id = agent.start(server)
    follower = agent.popen("logs", "-f", "-t", "--tail", "0", conv_id)
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    lines = out.splitlines()
    assert any(line[25:].startswith("[finished] streamed words") for line in lines), out
    assert len(lines) >= 12, "the streamed lines, then the answer"
    assert all(line[:4] == agent.state(conv_id).created_at[:4] and line[23:25] == "Z " for line in lines), lines
