"""`agent demo`: a real run and a real interrupt, with no API key and no network.

The bundled scripted server plays a reasoning model on 127.0.0.1, over OpenAI's
Responses API, priced as `openai/gpt-5.2`: it streams a summary of its reasoning
through the five-houses puzzle slowly, as a thinking model does, before it answers,
writes the answer to a file with the `terminal` tool (in the sandbox, as every
run's commands) and calls `finish`. The demo's
interrupt lands in the reasoning, so what was kept (the reasoning so far) and what
it cost (estimated from it) are there to see. The demo drives the real `agent`
commands in subprocesses, and prints each one before it runs it, so what a user
sees is exactly what they would type.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from supervisor import outcomes, terminal
from supervisor.scripted_server import ScriptedServer, start_server

PROMPT = ("Five houses in a row, each of a different colour, owner nationality, drink, cigar and pet. "
          "Using the fifteen classic clues, who owns the fish? Write the answer to puzzle_solution.txt.")

REASONING = """Working through the clues one house at a time.

1. The Norwegian lives in the first house, and milk is drunk in the middle one, house 3.
2. The Norwegian's neighbour lives in the blue house, so house 2 is blue.
3. Green stands directly left of white, and green drinks coffee. House 3 drinks milk, so green is not 3;
   green cannot be 1 either (white would then be 2, which is blue). So green is 4 and white is 5.
4. Red and yellow are left for houses 1 and 3. The Brit lives in red and the Norwegian in house 1,
   so house 3 is red (the Brit) and house 1 is yellow.
5. Yellow smokes Dunhill: house 1. The horse lives next to Dunhill: house 2.
6. House 1 cannot drink tea (the Dane's), beer (the Bluemasters smoker's), coffee or milk: water.
7. The Blends smoker's neighbour drinks water, so Blends is smoked in house 2.
8. Houses 2 and 5 drink tea and beer. Beer goes with Bluemasters, and house 2 smokes Blends,
   so house 2 drinks tea (the Dane) and house 5 drinks beer and smokes Bluemasters.
9. The German smokes Prince, so he is not in house 5: he lives in house 4, the Swede in house 5 with the dogs.
10. Pall Mall is left for house 3, so the birds are there; Blends (house 2) lives next to the cats: house 1.
11. Cats, horses, birds and dogs are placed in houses 1, 2, 3 and 5. The fish is in house 4.

The German owns the fish.
"""

SOLUTION = "The German owns the fish (house 4: green, coffee, Prince)."
ANSWER = "Solved: the German owns the fish. Writing it down."

# A real model name, so the run is priced from the table; the scripted server answers for it.
MODEL = "openai/gpt-5.2"


def demo_script(stream_seconds: float) -> dict[str, object]:
    """The model's part: slow reasoning (to interrupt) before its answer, the same quickly, then finish."""
    write = {"name": "terminal", "arguments": {
        "command": f"echo '{SOLUTION}' > puzzle_solution.txt && cat puzzle_solution.txt"}}
    chunks = len(REASONING) // 8
    return {"steps": [
        {"reasoning": REASONING, "content": ANSWER, "chunk_chars": 8, "chunk_delay": stream_seconds / chunks,
         "tool_calls": [write]},
        {"reasoning": REASONING, "content": ANSWER, "chunk_chars": 64, "chunk_delay": 0.02, "tool_calls": [write]},
        {"tool_calls": [{"name": "finish", "arguments": {"message": SOLUTION}}]},
    ]}


def _say(text: str) -> None:
    print(f"\n\033[1m# {text}\033[0m" if terminal.use_colour(sys.stdout) else f"\n# {text}", flush=True)


def _agent(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    shown = " ".join(shlex.quote(a) if a != PROMPT else '"Five houses ... who owns the fish? ..."' for a in args)
    print(f"$ agent {shown}", flush=True)
    return subprocess.run([sys.executable, "-m", "supervisor", *args], text=True,
                          capture_output=capture, timeout=300)


def run_demo(workspace: str | None, watch_seconds: float) -> int:
    """Run the demo; return 0 if every step did what it should.

    Ctrl+C, or its output being closed, ends it cleanly: its run is stopped and its
    conversation removed (its model server, on a port that is about to close, could
    never serve a resume), and the server is stopped.
    """
    work = Path(workspace or tempfile.mkdtemp(prefix="agent-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    server = start_server(demo_script(stream_seconds=25.0))
    started: list[str] = []
    try:
        return _steps(server, work, watch_seconds, started)
    except (KeyboardInterrupt, BrokenPipeError) as stop:
        if isinstance(stop, BrokenPipeError):
            terminal.silence(sys.stdout)
        for conv_id in started:
            subprocess.run([sys.executable, "-m", "supervisor", "rm", "-f", conv_id], capture_output=True, timeout=60)
        with contextlib.suppress(BrokenPipeError):
            print("\n# demo stopped; its run and its conversation were removed", file=sys.stderr)
        return outcomes.EXIT_PAUSED
    finally:
        server.stop()


def _steps(server: ScriptedServer, work: Path, watch_seconds: float, started_ids: list[str]) -> int:
    """The demo proper; the ids of conversations it starts go to `started_ids`."""
    _say(f"The scripted model server is listening at {server.url} (no key, no network needed).")
    _say(f"Start a run in the background. As {MODEL}, a reasoning model, it talks over the Responses API "
         "and streams its reasoning, slowly, before it answers. The commands it runs are sandboxed: "
         "they may write only to the workspace and a private /tmp.")
    started = _agent("run", "-d", "-m", MODEL, "--reasoning-effort", "high", "--base-url", server.url, PROMPT)
    if started.returncode != 0:
        print(started.stderr, file=sys.stderr)
        return 1
    conv_id = started.stdout.strip()
    started_ids.append(conv_id)
    print(conv_id)

    _say(f"Watch it think for {watch_seconds:.0f} seconds (agent logs -f would follow it).")
    from agent_proc import conversation

    log = conversation.resolve(conv_id) / conversation.OUTPUT_FILE
    deadline, offset = time.monotonic() + watch_seconds, 0
    shown = terminal.Display(sys.stdout.buffer)
    while time.monotonic() < deadline:
        data = conversation.read_file(log, offset)
        offset += len(data)
        shown.write(data)
        if shown.stream is None:
            raise BrokenPipeError("the demo's output was closed")
        time.sleep(0.1)

    _say("Interrupt it now, while it is still reasoning: SIGINT reaches the child, the HTTP call is abandoned.")
    stopped = _agent("interrupt", conv_id)
    print(stopped.stdout.strip() or stopped.stderr.strip())
    disconnected = server.wait_for("client_disconnected", timeout=5)
    print(f"(the server saw the client hang up: {'yes' if disconnected else 'NO'})")

    _say("The conversation is paused. The reasoning so far was kept, and priced: estimated from its length, "
         "since the call never got to report its usage.")
    shown = _agent("show", conv_id)
    lines = shown.stdout.splitlines()
    print("\n".join(line for line in lines if line.startswith(("status:", "sandbox:", "last stop:"))))
    first = next((i for i, line in enumerate(lines) if "PARTIAL" in line), len(lines))
    last = next((i for i, line in enumerate(lines) if "INTERRUPTED" in line), first)
    print("\n".join(lines[first:last + 1]))

    _say("Resume it in the foreground: it thinks again, answers, writes the file and finishes.")
    resumed = _agent("resume", conv_id, capture=False)

    _say("The file the agent wrote:")
    solution = work / "puzzle_solution.txt"
    print(f"$ cat {solution}")
    print(solution.read_text().strip() if solution.exists() else "(missing)")
    ok = stopped.returncode == 0 and bool(disconnected) and resumed.returncode == 0 and solution.exists()
    _say("Demo complete: a real run, a real interrupt, a resume." if ok else "Demo FAILED: see above.")
    print(f"Try: agent show {conv_id}    agent ps -a    agent logs {conv_id}")
    return 0 if ok else 1
