"""The `agent` command line. Commands parse and print; the work is done in `control`,
`attach`, `settings` and `agent_proc.conversation`.

Data goes to stdout, diagnostics and progress to stderr. Every failure a user can
cause is one line on stderr and an exit code from `outcomes`, never a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent_proc import conversation
from agent_proc.conversation import ON_TIMEOUT_CHOICES, ConversationError, Settings
from agent_proc.status import ACTIVE, STARTABLE, IllegalTransition, Status
from supervisor import __version__, backends, outcomes, terminal

if TYPE_CHECKING:  # imported by the commands that need them
    from supervisor.attach import Outcome
    from supervisor.settings import Placement

# Set AGENT_DEBUG=1 to see the traceback of an unexpected error.
DEBUG_ENV = "AGENT_DEBUG"


class UsageError(click.ClickException):
    """Bad input: printed as one line, exit code 2."""

    exit_code = outcomes.EXIT_USAGE


class AgentContext(click.Context):
    """Gives an option the flag left out its default from the environment or config.toml
    (`supervisor.config`), before the built-in one."""

    def lookup_default(self, name: str, call: bool = True) -> Any:
        found = super().lookup_default(name, call)
        if found is not None:
            return found
        from supervisor import config

        try:
            return config.default_for(self.command, name)
        except config.ConfigError:
            if call:
                raise
            return None  # click only wants a default to show in --help: the broken file is reported when used


class AgentCommand(click.Command):
    context_class = AgentContext


class AgentGroup(click.Group):
    """Turns the project's own errors into one clear line and the documented exit code."""

    command_class = AgentCommand

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # the reader went away (`agent ps | head -1`): not a failure
            terminal.silence(sys.stdout)
            terminal.silence(sys.stderr)
            return None
        except backends.BackendError as error:  # a scheduler missing, unreachable, or refusing a job
            raise click.ClickException(str(error)) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(f"{where}{error.strerror or error}") from None
        except Exception as error:
            if _is_bad_input(error):
                raise UsageError(str(error)) from None
            raise


def _is_bad_input(error: Exception) -> bool:
    """Whether `error` is one of ours that reports bad input (imported only when needed,
    so that no command pays for modules it does not use)."""
    from agent_proc.naming import BadName
    from agent_proc.pricing import PricingError
    from supervisor.config import ConfigError
    from supervisor.query import QueryError
    from supervisor.settings import SettingsError

    return isinstance(error, (ConversationError, SettingsError, IllegalTransition, PricingError, ConfigError,
                              BadName, QueryError))


@click.group(cls=AgentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agent")
def cli() -> None:
    """Start, watch, stop and resume LLM agent runs.

    Each run is a child process; its conversation lives under $AGENT_HOME
    (default ~/.local/state/agent), so any shell can act on it. Ids may be
    shortened to any unique prefix, or replaced by the name given with --name.

    \b
    Examples:
      agent run "count the lines of *.py here" -m openai/gpt-4o
      agent run -d "refactor utils.py"      # prints the id, runs in background
      agent logs -f 3f9a                    # follow it
      agent interrupt 3f9a                  # stop it now; it is paused
      agent resume 3f9a                     # carry on
      agent demo                            # see it all, no API key needed
    """


def _complete_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from supervisor.completion import complete_ids

    return complete_ids(ctx, param, incomplete)


def _conv_dir(conv_id: str) -> Path:
    return conversation.resolve(conv_id)


def _read_text(value: str, what: str) -> str:
    """PROMPT or MESSAGE ('-': stdin) as text, under the one rule for text: it must be
    valid UTF-8, or it is refused (exit 2) and nothing is created or queued."""
    # argv bytes that are not UTF-8 arrive as lone surrogates; they are turned back into bytes
    raw = sys.stdin.buffer.read() if value == "-" else value.encode("utf-8", "surrogateescape")
    text = _utf8(raw, f"the {what}")
    if not text.strip():
        raise UsageError(f"the {what} is empty")
    return text


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"{what} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start}); "
                         "convert it first, e.g. with `iconv -f latin1 -t utf-8`") from None


def _checked(value: str | None, what: str) -> str | None:
    """An option's value under the same rule as PROMPT."""
    return None if value is None else _utf8(value.encode("utf-8", "surrogateescape"), what)


def _print_json(doc: Any) -> None:
    """JSON on stdout: the exact text, even on a terminal (json escapes control characters)."""
    try:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    except BrokenPipeError:
        terminal.silence(sys.stdout)


def _start(conv_dir: Path, *, detach: bool, grace: float, quiet: bool, as_json: bool,
           keep_partial: bool = False, placement: Placement | None = None,
           on_started: Callable[[], None] = lambda: None) -> None:
    """Start the run and wait until its child has taken the conversation over (or its
    scheduler's job is queued; then call `on_started`); then either return (detached:
    a watcher process, here or in the job, supervises it) or follow it here, showing
    its output, and exit with the code its outcome maps to. Here, in the foreground,
    this process is the run's supervisor; a run a scheduler holds is followed through
    its files instead.

    A local run is `starting` from before any process is spawned, so a stop asked for
    in that moment is honoured: the run is paused and never calls the model."""
    from supervisor import attach, control
    from supervisor.summary import summary

    backend = placement.backend if placement else backends.DEFAULT
    output_from = attach.output_size(conv_dir)  # a resumed run shows only what is new
    if backend != backends.DEFAULT:
        request = backends.StartRequest(grace, keep_partial, conversation.load_state(conv_dir).settings.run_timeout,
                                        placement.args if placement else ())
        try:
            state = control.launch(conv_dir, backend, request)
        except control.StartFailed as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:  # Ctrl+C while submitting: a job that made it to the queue leaves it
            if conversation.load_state(conv_dir).status is Status.QUEUED:
                control.stop_run(conv_dir, grace=grace, requested_by="agent run (SIGINT)")
            sys.exit(outcomes.EXIT_PAUSED)
        on_started()
        if detach:
            if as_json:
                _print_json(summary(state))
            else:
                click.echo(state.id)
            return
        if not quiet:
            click.echo(f"[agent] run {state.id} submitted: {backends.of(state.runtime).describe(state.runtime)}",
                       err=True)
        _exit_with(attach.follow_job(conv_dir, grace=grace, show=not quiet, offset=output_from), as_json)
    token = control.mark_starting(conv_dir, "agent run -d" if detach else "agent run")
    if detach:
        watcher = control.spawn_watcher(conv_dir, grace=grace, token=token, keep_partial=keep_partial)
        try:
            state = control.wait_started(conv_dir, watcher, token)
        except control.StoppedBeforeStart as stopped:
            terminal.echo(f"[agent] {stopped}", err=True)
            sys.exit(outcomes.EXIT_PAUSED)
        except control.StartFailed as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:  # Ctrl+C before the run was under way: it must not start behind our back
            control.abandon_start(conv_dir, watcher)
            sys.exit(outcomes.EXIT_PAUSED)
        on_started()
        if as_json:
            _print_json(summary(state))
        else:
            terminal.echo(state.id)
        return
    child = control.spawn_child(conv_dir, supervisor_pid=os.getpid(), token=token, keep_partial=keep_partial)
    try:
        state = control.wait_started(conv_dir, child, token)
    except control.StoppedBeforeStart as stopped:
        child.wait()
        terminal.echo(f"[agent] {stopped}", err=True)
        sys.exit(outcomes.EXIT_PAUSED)
    except control.StartFailed as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:  # Ctrl+C before the child was under way: it must not run on
        control.abandon_start(conv_dir, child)
        sys.exit(outcomes.EXIT_PAUSED)
    on_started()
    if not quiet:
        terminal.echo(f"[agent] run {state.id} started (pid {child.pid}, model {state.model})", err=True)
    _exit_with(attach.supervise(conv_dir, child, grace=grace, show=not quiet, offset=output_from), as_json)


def _exit_with(outcome: Outcome, as_json: bool) -> None:
    """Say how a followed run ended, and exit with the code that means it."""
    if outcome.report and not outcome.report.already_stopped:
        outcome.display.line(f"[agent] stopped in {outcome.report.duration_ms:.0f} ms ({outcome.report.method})")
    _print_outcome(outcome, as_json)
    sys.exit(_exit_code(outcome))


def _exit_code(outcome: Any) -> int:
    """The exit code of a command that supervised or followed a run to its end
    (`attach.Outcome`): the run's, or 143 if our own SIGTERM made us stop it."""
    code = outcomes.exit_code_for(outcome.state)
    if outcome.stopped_by == signal.SIGTERM and outcome.state.status is Status.PAUSED:
        code = outcomes.EXIT_TERMINATED
    return code


def _print_outcome(outcome: Any, as_json: bool) -> None:
    """How a run ended, as a foreground run prints it: the answer on stdout, else why
    not, on a line of its own after what the run printed (`attach.Outcome`)."""
    from supervisor.summary import summary

    state = outcome.state
    if as_json:
        _print_json(summary(state))
    elif state.status is Status.FINISHED:
        terminal.echo(state.final_answer or "")
    elif outcome.display.stream is not None:
        outcome.display.line(f"[agent] {state.id} {state.status.value}: {state.status_reason}")
    else:
        terminal.echo(f"[agent] {state.id} {state.status.value}: {state.status_reason}", err=True)


_detach = click.option("-d", "--detach", is_flag=True, help="Run in the background; print the id and return.")
_grace = click.option("--grace", type=click.FloatRange(min=0), default=2.0, show_default=True,
                      help="On Ctrl+C: seconds to wait after SIGINT before SIGTERM and SIGKILL.")
_quiet = click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def _placement(command: Any) -> Any:
    """Where the run executes, shared by `run` and `resume`."""
    command = click.option("--sbatch-arg", "sbatch_args", multiple=True, metavar="ARG",
                           help="With --backend slurm: passed to sbatch as it is (repeatable), "
                                "e.g. --sbatch-arg=--partition=cpu.")(command)
    return click.option("--backend", type=click.Choice(backends.names()),
                        help="Where the run executes: local (this machine) or slurm (a batch job).  "
                             "[default: $AGENT_BACKEND, else local; resume: where it last ran]")(command)


def _limits(command: Any) -> Any:
    """Options that set a run's limits, shared by `run` and `resume` (which changes
    only what it is given)."""
    seconds = click.FloatRange(min=0, min_open=True)
    options = [
        click.option("--max-iterations", type=click.IntRange(min=1),
                     help="Model calls allowed per start before the run fails.  [default: 50]"),
        click.option("--tool-timeout", type=seconds, help="Seconds a terminal command may run.  [default: 600]"),
        click.option("--llm-timeout", type=seconds,
                     help="Hard limit in seconds on one model call, enforced from outside the child."),
        click.option("--idle-timeout", type=seconds, help="End a model call after this many seconds without a byte."),
        click.option("--on-timeout", type=click.Choice(ON_TIMEOUT_CHOICES),
                     help="What a timed-out model call does next.  [default: retry]"),
        click.option("--timeout", "run_timeout", type=seconds,
                     help="Stop the run after this many seconds (status error, exit 124)."),
        click.option("--max-cost", type=click.FloatRange(min=0),
                     help="USD: stop before a model call that would go past it (status error, exit 4)."),
        click.option("--stream/--no-stream", default=None, help="Stream model output (default) or not."),
        click.option("--max-output-tokens", type=click.IntRange(min=1),
                     help="The longest reply to ask of the model, in tokens.  [default: the API's; 8192 on Anthropic]"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _reasoning(command: Any) -> Any:
    """Options that set how the model reasons, shared by `run` and `resume`."""
    from agent_proc.providers import APIS, EFFORT_LEVELS

    options = [
        click.option("--reasoning-effort", type=click.Choice(EFFORT_LEVELS), envvar="LLM_REASONING_EFFORT",
                     help="How hard a reasoning model thinks before it answers ($LLM_REASONING_EFFORT).  "
                          "[default: the model's]"),
        click.option("--thinking-budget", type=click.IntRange(min=1024), envvar="LLM_THINKING_BUDGET",
                     help="Anthropic: thinking tokens per reply ($LLM_THINKING_BUDGET).  [default: by effort, "
                          "minimal 1024, low 4096, medium 10000, high 32000]"),
        click.option("--api", type=click.Choice(APIS), envvar="LLM_API",
                     help="OpenAI format: chat completions or the Responses API ($LLM_API).  [default: responses "
                          "for OpenAI's reasoning models, chat otherwise]"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _sandbox_options(*, from_env: bool) -> Any:
    """--sandbox, --network and --writable: where the run's commands may reach. `run` also
    reads them from AGENT_SANDBOX, AGENT_NETWORK and AGENT_WRITABLE; `resume` keeps what
    the run had unless told otherwise."""
    from agent_proc.sandbox import MODES, NETWORK_CHOICES, NETWORK_ENV, SANDBOX_ENV, WRITABLE_ENV

    def env(name: str) -> dict[str, Any]:
        return {"envvar": name, "show_envvar": True} if from_env else {}

    def if_given(convert: Any) -> Any:
        return lambda ctx, param, value: convert(value) if value not in (None, ()) else None

    options = [
        click.option("--sandbox", type=click.Choice(MODES), **env(SANDBOX_ENV),
                     help="Where the model's commands may write: the workspace and a private /tmp, only /tmp "
                          "(read-only), or anywhere, unconfined (off).  [default: workspace]"),
        click.option("--network", type=click.Choice(NETWORK_CHOICES), **env(NETWORK_ENV),
                     callback=if_given(lambda value: value == "on"),
                     help="Whether sandboxed commands reach the network (off: loopback only).  [default: on]"),
        click.option("--writable", type=click.Path(exists=True, resolve_path=True), multiple=True,
                     **env(WRITABLE_ENV), callback=if_given(list),
                     help="Another place sandboxed commands may write to (repeatable; AGENT_WRITABLE "
                          "takes a colon-separated list)."),
    ]

    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _check_sandbox(settings: Settings, workspace: str) -> None:
    """Refuse to start a run whose commands cannot be sandboxed as asked: one line
    saying why, never a silent run without the sandbox."""
    from agent_proc import sandbox

    policy = sandbox.Policy.of(settings, workspace)
    if problem := sandbox.contradiction(policy):
        raise UsageError(problem)
    try:
        sandbox.check(policy)
    except sandbox.SandboxUnavailable as error:
        raise click.ClickException(f"cannot sandbox the model's commands on this machine ({error}); "
                                   "run with --sandbox off (or AGENT_SANDBOX=off) to run them unconfined, "
                                   "see `agent doctor`") from None


def _given(**limits: Any) -> dict[str, Any]:
    return {k: v for k, v in limits.items() if v is not None}


@cli.command()
@click.argument("prompt")
@click.option("-m", "--model", help="provider/model, e.g. openai/gpt-4o  [default: $LLM_MODEL]")
@click.option("--base-url", help="API endpoint  [default: $LLM_BASE_URL, else the provider's]")
@click.option("-w", "--workspace", type=click.Path(exists=True, file_okay=False, resolve_path=True), default=".",
              help="Directory the tools work in  [default: current directory]")
@click.option("--name", help="A unique name, usable wherever an id is.")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label (repeatable).")
@click.option("--exclusive", is_flag=True,
              help=f"Do not start if a run with the same name or labels is running (exit "
                   f"{outcomes.EXIT_ALREADY_RUNNING}).")
@_limits
@_reasoning
@_sandbox_options(from_env=True)
@_placement
@_detach
@_grace
@_quiet
@_json
def run(prompt: str, model: str | None, base_url: str | None, workspace: str, name: str | None,
        labels: tuple[str, ...], exclusive: bool, backend: str | None, sbatch_args: tuple[str, ...], detach: bool,
        grace: float, quiet: bool, as_json: bool, **limits: Any) -> None:
    """Start an agent run on PROMPT ('-' reads it from stdin).

    In the foreground, progress goes to stderr as it happens and the final answer
    to stdout; the exit code says how the run ended (0 finished, 1 error, 130
    paused). Ctrl+C stops the run like `agent interrupt`; a second Ctrl+C kills it.

    The model's commands run in a bubblewrap sandbox: they may write only to the
    workspace and a private /tmp, cannot see $AGENT_HOME, and nothing they start
    outlives them. --sandbox off runs them unconfined (where namespaces are not
    allowed; `agent doctor` tells).

    \b
    Examples:
      agent run "what is in this directory?" -m openai/gpt-4o
      echo "fix the failing test" | agent run - -w ~/src/app
      id=$(agent run -d --timeout 600 "summarise README.md") && agent wait "$id"
      agent run -d --name nightly-$(date +%F) -l job=nightly --exclusive "triage new issues"
      agent run --sandbox read-only --network off "review this repository"
      agent run -d --backend slurm --sbatch-arg=--partition=cpu "summarise README.md"
    """
    from agent_proc import naming
    from supervisor import exclusive as only_one
    from supervisor import settings

    text = _read_text(prompt, "prompt")
    workspace = _checked(workspace, "the workspace path") or "."
    name = _checked(name, "the name")
    if name is not None:
        naming.check_name(name)
    label_set = naming.parse_labels(labels)
    if exclusive and not (name or label_set):
        raise UsageError("--exclusive needs --name or --label: it compares runs by them")
    chosen = settings.resolve_model(_checked(model, "the model name"), _checked(base_url, "the base URL"))
    settings.check_key(chosen)
    placement = settings.resolve_placement(backend, sbatch_args)
    run_settings = settings.check_reasoning(chosen, Settings(**_given(**limits)))
    settings.check_budget(chosen, run_settings)
    _check_sandbox(run_settings, workspace)
    home = conversation.agent_home()
    lock = only_one.Lock(home) if exclusive else None
    try:
        if lock and (found := only_one.conflict(home, name, label_set)):
            click.echo(f"not started: conversation {found[0]} with the same {found[1]} is running", err=True)
            sys.exit(outcomes.EXIT_ALREADY_RUNNING)
        conv_dir = conversation.create(model=chosen.ref.full_name, workspace=workspace, base_url=chosen.base_url,
                                       prompt=text, settings=run_settings, name=name, labels=label_set, home=home)
        _start(conv_dir, detach=detach, grace=grace, quiet=quiet, as_json=as_json, placement=placement,
               on_started=lock.release if lock else lambda: None)
    finally:
        if lock:
            lock.release()


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.option("--keep-partial", is_flag=True,
              help="Send the model its own partial output from an interrupted call, instead of dropping it.")
@click.option("-m", "--model", help="Carry on with another model (provider/model); recorded in the history.")
@click.option("--base-url", help="Carry on at another API endpoint; recorded in the history.")
@_limits
@_reasoning
@_sandbox_options(from_env=False)
@_placement
@_detach
@_grace
@_quiet
@_json
def resume(conv_id: str, keep_partial: bool, model: str | None, base_url: str | None, backend: str | None,
           sbatch_args: tuple[str, ...], detach: bool, grace: float, quiet: bool, as_json: bool,
           **limits: Any) -> None:
    """Carry on with a paused (or failed, or finished) conversation.

    Messages given with `agent send` since it stopped are taken in first. A tool
    call that was cut off gets a result saying it was interrupted. Limits and
    sandbox options given here replace the ones the run had. It runs where it last
    ran (a run that went to Slurm is submitted again, with the same --sbatch-arg)
    unless --backend says otherwise.

    \b
    Examples:
      agent resume 3f9a
      agent resume 3f9a --llm-timeout 120 --keep-partial
      agent resume 3f9a -m anthropic/claude-sonnet-4-5    # its old endpoint is gone
      agent resume 3f9a --network off --writable ~/.cache/pip
      agent send 3f9a "also update the docs" && agent resume -d 3f9a
      agent resume 3f9a --backend local     # a Slurm run, carried on here
    """
    from agent_proc.providers import parse_model
    from supervisor import control, settings

    conv_dir = _conv_dir(conv_id)
    state = control.reconcile(conv_dir)
    events, _ = conversation.read_events(conv_dir)  # damage is reported here, not by a child that fails to start
    if state.status in ACTIVE:
        where = backends.of(state.runtime).describe(state.runtime)
        raise UsageError(f"conversation {state.id} is already {state.status.value} ({where})")
    if state.status not in STARTABLE:
        raise UsageError(f"conversation {state.id} is {state.status.value} and cannot be resumed")
    placement = settings.resolve_placement(backend, sbatch_args, last=state.runtime)
    if state.status is Status.FINISHED and not _has_new_message(conv_dir, events):
        raise UsageError(f"conversation {state.id} has finished; `agent send {state.id} MESSAGE` to give it more")
    current = settings.ModelSettings(parse_model(state.model), state.base_url or "")
    chosen = settings.change_model(current, model, base_url) if model or base_url else current
    settings.check_key(chosen)
    changed, moved = _given(**limits), chosen != current
    new_settings = Settings(**{**dataclasses.asdict(state.settings), **changed})
    _check_sandbox(new_settings, state.workspace)
    if changed or moved:
        if moved and "api" not in changed:
            new_settings = dataclasses.replace(new_settings, api=None)  # the new model's default
        new_settings = settings.check_reasoning(chosen, new_settings)
        if moved and new_settings.api != state.settings.api:
            changed["api"] = new_settings.api
        settings.check_budget(chosen, new_settings)
        with conversation.transaction(conv_dir) as txn:
            if changed:
                txn.record("settings_changed", settings=changed)
            if moved:
                txn.record("model_changed", model=chosen.ref.full_name, base_url=chosen.base_url,
                           previous={"model": state.model, "base_url": state.base_url})
    _start(conv_dir, detach=detach, grace=grace, quiet=quiet, as_json=as_json, keep_partial=keep_partial,
           placement=placement)


def _has_new_message(conv_dir: Path, events: list[dict[str, Any]]) -> bool:
    kinds = [e["type"] for e in events if e["type"] in ("user_message", "model_message")]
    return bool(kinds) and kinds[-1] == "user_message" or bool(conversation.pending_messages(conv_dir))


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.option("--grace", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds to wait after SIGINT before SIGTERM, then SIGKILL to the whole tree.")
@_json
def interrupt(conv_id: str, grace: float, as_json: bool) -> None:
    """Stop a run now: SIGINT to its process, the model call in flight abandoned.

    If the process has not exited after --grace seconds it gets SIGTERM, then its
    whole process tree gets SIGKILL. The conversation is then paused, with
    everything up to the interrupt (partial model output included) saved. Prints
    how long the stop took. A run still starting is paused before its process
    runs. Interrupting a run that is not running changes nothing. A run on Slurm
    gets the same through `scancel`; one still queued is cancelled.

    \b
    Examples:
      agent interrupt 3f9a
      agent interrupt 3f9a --grace 0.5 --json
    """
    from supervisor import control

    conv_dir = _conv_dir(conv_id)
    asked: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))  # Ctrl+C here: stop waiting, kill
    try:
        report = control.stop_run(conv_dir, grace=grace, requested_by="agent interrupt", hurry=lambda: bool(asked))
    except conversation.LockTimeout as error:
        if not asked:
            raise
        terminal.echo(f"Error: {error}", err=True)
        sys.exit(outcomes.EXIT_PAUSED)
    if as_json:
        from supervisor.summary import summary

        _print_json({**summary(conversation.load_state(conv_dir)), "stop": report.to_dict()})
    elif report.already_stopped:
        terminal.echo(f"{report.conversation} is not running ({report.status.value}); nothing to stop", err=True)
    elif report.before_start:
        click.echo(f"{report.conversation} was starting; stopped before it ran; status {report.status.value}")
    else:
        click.echo(f"{report.conversation} stopped in {report.duration_ms:.0f} ms "
                   f"({' -> '.join(report.signals)}); status {report.status.value}")
        if report.escaped:
            click.echo(f"warning: killed processes of the run found outside its tree: {report.escaped}", err=True)
        if report.survivors:
            click.echo(f"warning: processes {report.survivors} outlived SIGKILL", err=True)


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting until it has paused.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up waiting after this many seconds (exit 3).")
@_json
def pause(conv_id: str, no_wait: bool, timeout: float | None, as_json: bool) -> None:
    """Pause a run politely: the model call or tool in progress finishes first.

    A run still starting is paused at once, before it calls the model. A run still
    queued (its Slurm job not started) has no step in progress: its job is cancelled
    and it is paused at once.

    \b
    Examples:
      agent pause 3f9a
      agent pause 3f9a --no-wait
      agent pause nightly --json | jq -r .status
    """
    from supervisor import control
    from supervisor.summary import summary

    conv_dir = _conv_dir(conv_id)
    if control.reconcile(conv_dir).status is Status.QUEUED:  # no step in progress: its job is cancelled
        report = control.stop_run(conv_dir, requested_by="agent pause")
        click.echo(f"{report.conversation} {report.status.value}")
        return
    state, was_starting = control.request_pause(conv_dir)
    was_running = state.status is Status.RUNNING
    if was_running and not no_wait:
        state = control.wait_settled(conv_dir, timeout)
    still_running = was_running and not no_wait and state.status is Status.RUNNING
    if as_json:
        _print_json(summary(state))
    elif was_starting:
        click.echo(f"{state.id} was starting; paused before it ran")
    elif not was_running:
        click.echo(f"{state.id} is not running ({state.status.value}); nothing to pause", err=True)
    elif no_wait:
        click.echo(f"{state.id} will pause after its current step", err=True)
    elif still_running:
        click.echo(f"{state.id} is still running after {timeout} s; it will pause after its current step", err=True)
    else:
        terminal.echo(f"{state.id} {state.status.value}" + (f": {state.status_reason}" if state.status_reason else ""))
    if still_running:
        sys.exit(outcomes.EXIT_STILL_RUNNING)


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.argument("message")
@_json
def send(conv_id: str, message: str, as_json: bool) -> None:
    """Give a conversation a user message ('-' reads it from stdin).

    A running (or starting) run takes it in before its next model call, and
    before it would finish, so the model always sees it; a run stopped first
    (interrupt, pause, error) keeps it for the next `agent resume`. Otherwise it
    is stored for the next `agent resume`. The text must be valid UTF-8.

    \b
    Examples:
      agent send 3f9a "use python 3.12, not 3.11"
      git diff | agent send 3f9a -
    """
    text = _read_text(message, "message")
    conv_dir = _conv_dir(conv_id)
    where = conversation.post_message(conv_dir, text)
    if as_json:
        from supervisor.summary import summary

        _print_json({**summary(conversation.load_state(conv_dir)), "delivered_to": where})
    elif where == "inbox":
        click.echo("queued: the run takes it in before its next model call (or before it would finish); "
                   "if the run is stopped first, it is kept for the next resume", err=True)
    else:
        click.echo("stored: it is sent to the model when the conversation is resumed", err=True)


def _check_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from supervisor.query import check_format  # only when a command runs: start-up stays light

    return check_format(value)


def _format_option(command: Any) -> Any:
    """`--format table|json|jsonl|TEMPLATE` and `--json` (the same as --format json)."""
    command = click.option("--json", "as_json", is_flag=True, help="Print JSON (the same as --format json).")(command)
    return click.option("--format", "fmt", default="table", show_default=True, metavar="FORMAT",
                        callback=_check_format,
                        help="table, json, jsonl, or a template of JSON field names: '{id} {status} {cost_usd}'.",
                        )(command)


def _filter_option(command: Any) -> Any:
    return click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
                        help="Only conversations where this holds: status= (status=paused,error for either), "
                             "name=, label=KEY, label=KEY=VALUE, model=, since=, until= (2h, 7d or a date). "
                             "Repeatable: all must hold.")(command)


def _echo(text: str, *, exact: bool = False) -> None:
    """Data on stdout: on a terminal with control characters escaped, unless `exact` (JSON)."""
    if text:
        if exact:
            _print_raw(text)
        else:
            terminal.echo(text)


def _print_raw(text: str) -> None:
    try:
        click.echo(text)
    except BrokenPipeError:
        terminal.silence(sys.stdout)


@cli.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show every conversation, not only running ones.")
@click.option("-q", "--quiet", is_flag=True, help="Print ids only.")
@click.option("-n", "--last", type=click.IntRange(min=1), help="Only the N newest conversations (implies -a).")
@click.option("--no-trunc", is_flag=True, help="Do not cut the prompt to the terminal's width.")
@_filter_option
@_format_option
def ps(show_all: bool, quiet: bool, last: int | None, no_trunc: bool, filters: tuple[str, ...], fmt: str,
       as_json: bool) -> None:
    """List running, starting and queued conversations, newest first (all of them with -a).

    A run whose liveness cannot be told from here (it runs on another machine, or
    its scheduler cannot be asked) is listed as it is, with a note on stderr.

    A status= filter or -n looks at all conversations too. With 10,000 of them,
    a listing reads an index ($AGENT_HOME/index.json) that is rebuilt from the
    conversation files whenever they change.

    \b
    Examples:
      agent ps
      agent ps -a --filter label=job=nightly --filter since=7d
      agent ps --filter status=paused,error --format '{id} {name} {reason}'
      agent ps -n 5 --json
      agent ps -q | xargs -r -n1 agent interrupt
    """
    from supervisor import index, listing, query

    chosen = query.parse_filters(filters)
    home = conversation.agent_home()
    problems: list[str] = []
    everything = show_all or last is not None or (chosen.statuses is not None and chosen.statuses != {"running"})
    backends.prefetch(index.marked_dirs(home))  # one question to each scheduler, not one per run
    entries = index.all_entries(home, problems) if everything else index.running_entries(home, problems)
    entries = sorted((e for e in entries if chosen(e.summary)),
                     key=lambda e: (e.summary["created_at"], e.summary["id"]), reverse=True)[:last]
    docs = [e.summary for e in entries]
    fmt = "json" if as_json else fmt
    if quiet:
        _echo("\n".join(d["id"] for d in docs))
    else:
        if fmt != "table":
            index.complete(entries)
        _echo(query.format_many(docs, fmt, lambda: listing.ps_table(
            docs, colour=listing.use_colour(sys.stdout), truncate=not no_trunc)),
          exact=fmt in ("json", "table"))  # the table makes its cells printable and colours itself
    problems += [f"{d['id']}: liveness unknown: {d['liveness_detail']}" for d in docs if d.get("liveness") == "unknown"]
    for problem in problems:
        terminal.echo(f"warning: {problem}", err=True)


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.option("-a", "--all", "show_all", is_flag=True,
              help="Also show bookkeeping events (process starts and exits, model call start times).")
@click.option("-n", "--tail", type=click.IntRange(min=0), help="Only the last N events of the history.")
@_format_option
def show(conv_id: str, show_all: bool, tail: int | None, fmt: str, as_json: bool) -> None:
    """Show a conversation: its state and its history, partial output included.

    --format json prints {"state": SUMMARY, "settings", "runtime", "events",
    "pending_messages"}, SUMMARY being the document of docs/json.md, with every
    event (--tail still applies); a template is filled in from SUMMARY.

    \b
    Examples:
      agent show 3f9a
      agent show nightly --tail 5
      agent show 3f9a --json | jq '.state.status'
      agent show 3f9a --format '{status} {cost_usd}'
    """
    from supervisor import control, query, render
    from supervisor.summary import summary

    conv_dir = _conv_dir(conv_id)
    seen = control.observe_seen(conv_dir)
    events, _ = conversation.read_events(conv_dir)
    shown = events if show_all else [e for e in events if e["type"] not in render.BOOKKEEPING_EVENTS]
    if tail is not None:
        events, shown = events[max(0, len(events) - tail):], shown[max(0, len(shown) - tail):]
    pending = conversation.pending_messages(conv_dir)
    state = seen.state
    doc = {"state": summary(state), "settings": dataclasses.asdict(state.settings),
           "runtime": dataclasses.asdict(state.runtime), "events": events, "pending_messages": pending}
    if seen.probe:
        doc["state"].update(liveness=seen.probe.liveness.value, liveness_detail=seen.probe.detail)
    fmt = "json" if as_json else fmt
    _echo(query.format_one(doc, fmt, lambda: render.show_text(state, shown, pending, seen.probe),
                           fields=doc["state"]), exact=fmt == "json")


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the run is running.")
@click.option("-n", "--tail", type=click.IntRange(min=0), help="Start with the last N lines only.")
@click.option("--since", help="Start with what was printed since then (2h, 10m, or a date and time).")
@click.option("-t", "--timestamps", is_flag=True, help="Put the time each line was printed in front of it.")
def logs(conv_id: str, follow: bool, tail: int | None, since: str | None, timestamps: bool) -> None:
    """Print what a run has printed (its progress), like `docker logs`.

    \b
    Examples:
      agent logs 3f9a
      agent logs -f --tail 20 nightly
      agent logs --since 10m --timestamps 3f9a
    """
    from supervisor import attach, control, query

    conv_dir = _conv_dir(conv_id)
    out: Any = sys.stdout.buffer
    offset = 0 if tail is None else attach.tail_offset(conv_dir, tail)
    if since is not None:
        found = attach.since_offset(conv_dir, query.parse_time(since))
        if found is None:
            click.echo("warning: this run's output has no recorded times (an older version); showing all", err=True)
        offset = max(offset, found or 0)
    if timestamps:
        out = attach.Stamped(conv_dir, out, offset)
    out = terminal.Display(out, escaping=terminal.is_terminal(sys.stdout))
    if not follow:
        attach.copy_output(conv_dir, offset, out)
        return
    def finished() -> bool:
        # The run's last words are printed after its final status is written: wait for
        # its process (or job) to be gone too, so that they are shown.
        state = control.observe(conv_dir)
        return state.status not in ACTIVE and control.all_gone(state.runtime)

    try:
        attach.follow(conv_dir, out, offset=offset, done=finished)
    except KeyboardInterrupt:
        sys.exit(outcomes.EXIT_PAUSED)  # Ctrl+C stops following, not the run


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds (exit 3).")
@_format_option
def wait(conv_id: str, timeout: float | None, fmt: str, as_json: bool) -> None:
    """Wait until a run stops; exit with the code its outcome maps to.

    0 finished, 1 error, 130 paused, 3 still running after --timeout.

    \b
    Examples:
      agent wait 3f9a && echo done
      agent wait 3f9a --timeout 600 --json
      agent wait nightly --format '{status} {cost_usd}'
    """
    from supervisor import control, query
    from supervisor.summary import summary

    conv_dir = _conv_dir(conv_id)
    try:
        state = control.wait_settled(conv_dir, timeout)
    except KeyboardInterrupt:
        sys.exit(outcomes.EXIT_PAUSED)
    fmt = "json" if as_json else fmt
    if fmt == "table":
        terminal.echo(f"{state.id} {state.status.value}" + (f": {state.status_reason}" if state.status_reason else ""),
                      err=True)
    else:
        _echo(query.format_one(summary(state), fmt, str), exact=fmt == "json")
    sys.exit(outcomes.exit_code_for(state))


@cli.command()
@click.argument("conv_ids", metavar="ID...", nargs=-1, required=True, shell_complete=_complete_ids)
@click.option("-f", "--force", is_flag=True, help="Stop a running run first (SIGINT, then SIGKILL within 2 s).")
@_json
def rm(conv_ids: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Delete conversations; their names are free again. If one is running (or
    starting), nothing is deleted unless -f, which stops it first.

    \b
    Examples:
      agent rm 3f9a
      agent ps -a -q | xargs -r agent rm
    """
    from supervisor import control, prune
    from supervisor.summary import summary

    dirs = [_conv_dir(c) for c in conv_ids]
    states = [control.reconcile(conv_dir) for conv_dir in dirs]
    active = [s for s in states if s.status in ACTIVE]
    if active and not force:
        names = ", ".join(f"{s.id} ({s.status.value})" for s in active)
        raise UsageError(f"nothing deleted: {names} {'is' if len(active) == 1 else 'are'} running; "
                         "interrupt first or use rm -f")
    removed = []
    for conv_dir, state in zip(dirs, states, strict=True):
        if state.status in ACTIVE:
            control.stop_run(conv_dir, grace=1.0, requested_by="agent rm -f")
            control.wait_supervisor_gone(conv_dir)
            state = conversation.load_state(conv_dir)
        freed = prune.remove(conv_dir)
        removed.append({**summary(state), "removed": True, "freed_bytes": freed})
        if not as_json:
            terminal.echo(state.id)
    if as_json:
        _print_json(removed)


@cli.command()
@click.argument("pattern", required=False)
@click.option("--update-prices", is_flag=True,
              help="Fetch LiteLLM's current price table into $AGENT_HOME first (from $AGENT_PRICES_URL if set).")
@_json
def models(pattern: str | None, update_prices: bool, as_json: bool) -> None:
    """List the providers a model name may start with, what each needs and which variable each
    takes its key from (its own variable first, then LLM_API_KEY), and the models with a price.

    Each model shows its price in USD per million tokens (input, output, cache
    reads), its context window, and whether it reasons (with the --reasoning-effort
    levels it takes, where known). PATTERN keeps the models whose name contains it.
    Prices come from LiteLLM's community table: the copy shipped with agent, or the
    newer one --update-prices fetched; $AGENT_HOME/prices.json and
    LLM_INPUT_COST_PER_TOKEN / LLM_OUTPUT_COST_PER_TOKEN override both.

    \b
    Examples:
      agent models
      agent models gpt-5
      agent models --update-prices
      agent models --json | jq '.providers[].name'
    """
    from agent_proc import pricing
    from agent_proc.providers import PROVIDERS, key_variables, select_api_key
    from supervisor import render

    if update_prices:
        from agent_proc import price_source

        try:
            path, count = price_source.update(pricing.save_updated)
        except price_source.SourceError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"fetched {count} models into {path}", err=True)
    known = pricing.load_models()
    listed = {name: m for name, m in sorted(known.items()) if not pattern or pattern.lower() in name.lower()}
    providers = [
        {"name": p.name, "wire": p.wire, "default_base_url": p.default_base_url, "key_env": list(key_variables(p)),
         "needs_key": p.needs_key, "key_set": found is not None, "key_from": found and found[0],
         "priced_models": sorted(m for m in known if m.startswith(p.name + "/"))}
        for p in PROVIDERS.values()
        for found in [select_api_key(p)]
    ]
    info = pricing.table_info()
    if as_json:
        _print_json({"providers": providers, "models": render.models_json(listed), "prices": info})
        return
    if not pattern:
        rows = [["PROVIDER", "FORMAT", "DEFAULT BASE URL", "KEY", "PRICED MODELS"]]
        for p in providers:
            needed = f"needs {p['key_env'][0]}" if p["needs_key"] else "optional"
            key = f"from {p['key_from']}" if p["key_from"] else needed
            rows.append([p["name"], p["wire"], p["default_base_url"] or "(--base-url required)", key,
                         str(len(p["priced_models"]))])
        click.echo(render.table(rows) + "\n")
    if listed:
        click.echo(render.models_table(listed))
    click.echo(f"\nprices: {len(listed)} of {len(known)} models; table taken on {info['taken_on']} ({info['file']})")


@cli.command()
@click.option("-v", "--verbose", is_flag=True, help="Also print the details of each check.")
@click.option("--backend", type=click.Choice(["local", "slurm"]),
              help="Also check what runs on this backend need  [default: $AGENT_BACKEND, else local]")
@_json
def doctor(verbose: bool, as_json: bool, backend: str | None) -> None:
    """Check that this machine is ready for runs: exit 0 only if all is well.

    \b
    Checks:
      sandbox      bwrap makes the sandbox the model's commands run in, or why not
      agent_home   $AGENT_HOME and everything in it are ours and private
      keys         which variable each provider's key would come from
      endpoint     the endpoint LLM_MODEL / LLM_BASE_URL configure answers
      cluster      with --backend slurm: Slurm answers; $AGENT_HOME is shared, flock works

    \b
    Examples:
      agent doctor
      agent doctor -v
      agent doctor --json | jq '.[] | select(.ok | not)'
      agent doctor --backend slurm
    """
    from supervisor.doctor import diagnose
    from supervisor.settings import BACKEND_ENV

    findings = diagnose(os.getcwd(), backend or os.environ.get(BACKEND_ENV) or "local")
    if as_json:
        _print_json([f.to_dict() for f in findings])
    else:
        for finding in findings:
            click.echo(f"{'ok' if finding.ok else 'FAIL':<5} {finding.check:<11} {finding.summary}")
            for line in finding.details if verbose else []:
                click.echo(f"{'':17} {line}")
    if not all(f.ok for f in findings):
        sys.exit(outcomes.EXIT_FAILED)


@cli.command()
@click.option("-w", "--workspace", type=click.Path(file_okay=False, resolve_path=True),
              help="Where the demo run works  [default: a new temporary directory]")
@click.option("--seconds", type=click.FloatRange(min=1), default=4.0, show_default=True,
              help="How long to let the model stream before interrupting it.")
def demo(workspace: str | None, seconds: float) -> None:
    """A real run and a real interrupt, with no API key and no network.

    Starts the bundled scripted LLM server on 127.0.0.1, runs an agent on the
    five-houses puzzle, interrupts it mid-answer, shows the partial output that
    was saved, resumes it, and lets it finish.

    \b
    Examples:
      agent demo
    """
    from supervisor.demo import run_demo

    sys.exit(run_demo(workspace, seconds))


stop = copy.copy(interrupt)  # docker's word for it: the same command under a second name
stop.short_help = "The same as `interrupt`: stop a run now."
cli.add_command(stop, name="stop")


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.option("--watch-only", is_flag=True,
              help="Only watch: Ctrl+C stops watching and leaves the run alone.")
@click.option("--grace", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="On Ctrl+C: seconds to wait after SIGINT before SIGTERM and SIGKILL.")
@_json
def attach(conv_id: str, watch_only: bool, grace: float, as_json: bool) -> None:
    """Follow a running run as if it had been started here in the foreground.

    Its progress goes to stderr as it happens, its answer to stdout at the end, and
    the exit code is the run's (0 finished, 1 error, 130 paused...). Ctrl+C (or
    SIGTERM, then exit 143) stops the run like `agent interrupt`; a second Ctrl+C
    kills it. With --watch-only, Ctrl+C only stops the watching (exit 130) and the
    run goes on.

    \b
    Examples:
      id=$(agent run -d "summarise README.md") && agent attach "$id"
      agent attach --watch-only 3f9a
    """
    from supervisor import attach as attaching

    conv_dir = _conv_dir(conv_id)
    try:
        outcome = attaching.attach_to(conv_dir, terminal.Display(sys.stderr.buffer), grace=grace,
                                      watch_only=watch_only)
    except KeyboardInterrupt:
        sys.exit(outcomes.EXIT_PAUSED)  # --watch-only: Ctrl+C stops watching, not the run
    _print_outcome(outcome, as_json)
    sys.exit(_exit_code(outcome))


@cli.command()
@click.option("--filter", "filter_specs", multiple=True, metavar="KEY=VALUE",
              help="Only changes that match: status= (status=paused,error for either), name= (exact or a "
                   "pattern like nightly-*), label=KEY or label=KEY=VALUE. Repeatable: all must hold.")
@click.option("--since", help="Replay the changes since then first: a duration ago (10m, 2h, 7d) or a date.")
@click.option("--until", help="Stop at this time (`now`: only replay what --since asks for).")
def events(filter_specs: tuple[str, ...], since: str | None, until: str | None) -> None:
    """Print status changes of all conversations as they happen, one JSON object a line.

    Like `docker events`: for scripts and dashboards. Each line has time, id, name,
    labels, type ("status"), from, status, reason, kind and seq. A status filter
    applies to the new status.

    \b
    Examples:
      agent events
      agent events --filter status=error,finished --filter label=job=nightly
      agent events --since 1h --until now | jq -r '[.time, .id, .status] | @tsv'
    """
    from supervisor import events as following
    from supervisor import filters

    try:
        chosen = filters.parse(filter_specs)
        since_iso = filters.parse_time(since) if since else None
        until_at = filters.epoch(filters.parse_time(until)) if until else None
    except filters.FilterError as error:
        raise UsageError(str(error)) from None

    def emit(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    try:
        following.run(conversation.conversations_root(), chosen, emit, since=since_iso, until=until_at)
    except KeyboardInterrupt:
        sys.exit(outcomes.EXIT_PAUSED)  # Ctrl+C stops following


@cli.command(name="export")
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to FILE instead of stdout.")
def export_(conv_id: str, output: str | None) -> None:
    """Write a conversation as one portable JSON file: history, state, output.

    For a CI artifact, or to carry it to another machine (`agent import`) and resume
    it there. It never contains an API key.

    \b
    Examples:
      agent export 3f9a -o conversation.json
      agent export 3f9a | jq '.events[] | select(.type == "status")'
    """
    from supervisor import control, portable

    conv_dir = _conv_dir(conv_id)
    text, redacted = portable.export(conv_dir, control.reconcile(conv_dir))
    for variable in redacted:
        click.echo(f"warning: the value of ${variable} was found in the conversation and is replaced by "
                   f"{portable.REDACTED}", err=True)
    if output is None:
        sys.stdout.write(text)
    else:
        conversation.write_atomic(Path(output).absolute(), text.encode())


@cli.command(name="import")
@click.argument("file", type=click.File("r", encoding="utf-8", errors="strict"))
@click.option("--new-id", is_flag=True, help="Give it a new id (if its own is taken here).")
@click.option("-w", "--workspace", type=click.Path(exists=True, file_okay=False, resolve_path=True),
              help="Directory its tools work in from now on  [default: its own, if it exists here]")
def import_(file: Any, new_id: bool, workspace: str | None) -> None:
    """Add a conversation written by `agent export` (FILE, or '-' for stdin); print its id.

    The file is checked whole first: a damaged one is refused (exit 2) and nothing
    is created. The conversation keeps its id unless that is taken (then --new-id);
    it is not running here until `agent resume`.

    \b
    Examples:
      agent import conversation.json && agent resume 3f9a
      agent import --new-id -w ~/src/app conversation.json
    """
    from supervisor import portable

    source = file.name
    try:
        text = file.read()
    except UnicodeDecodeError as error:
        raise UsageError(f"{source} is not an exported conversation (not UTF-8 text: {error})") from None
    doc = portable.read(text, source)
    conv_dir = portable.install(doc, workspace=workspace, new_id=new_id, source=source)
    click.echo(conv_dir.name)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    Commands, options, and the ids and names of conversations complete.

    \b
    Examples:
      eval "$(agent completion bash)"                       # in ~/.bashrc
      eval "$(agent completion zsh)"                        # in ~/.zshrc
      agent completion fish > ~/.config/fish/completions/agent.fish
    """
    from supervisor.completion import script

    click.echo(script(cli, shell))


@cli.group(name="config")
def config_group() -> None:
    """Defaults for run options, kept in $AGENT_HOME/config.toml.

    A value comes from the flag, else the environment (LLM_MODEL, LLM_BASE_URL),
    else this file, else the built-in default. API keys are never kept here: they
    come from the environment only.

    \b
    Examples:
      agent config set model openai/gpt-4o
      agent config set max_cost 0.50
      agent config list
      agent config unset max_cost
    """


@config_group.command(name="list")
@_json
def config_list(as_json: bool) -> None:
    """Every key, the value a run gets without a flag, and where it comes from.

    \b
    Examples:
      agent config list
      agent config list --json
    """
    from supervisor import config

    rows = config.describe(run)
    if as_json:
        _print_json({name: {"value": value, "source": source} for name, value, source in rows})
        return
    from supervisor import render

    click.echo(render.table([["KEY", "VALUE", "SOURCE"]]
                            + [[name, "-" if value is None else json.dumps(value), source]
                               for name, value, source in rows]))


@config_group.command(name="get")
@click.argument("key")
def config_get(key: str) -> None:
    """Print the value a run gets for KEY without a flag (empty if none).

    \b
    Examples:
      agent config get model
    """
    from supervisor import config

    config.check_name(key)
    value = {name: value for name, value, _ in config.describe(run)}[key]
    click.echo("" if value is None else value)


@config_group.command(name="set")
@click.argument("key")
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """Set KEY to VALUE in the config file, checked as the flag would be.

    \b
    Examples:
      agent config set model anthropic/claude-sonnet-4-5
      agent config set timeout 1800
    """
    from supervisor import config

    stored = config.set_value(key, value, run)
    click.echo(f"{key} = {json.dumps(stored)}  ({config.path()})", err=True)


@config_group.command(name="unset")
@click.argument("key")
def config_unset(key: str) -> None:
    """Remove KEY from the config file: the built-in default applies again.

    \b
    Examples:
      agent config unset max_cost
    """
    from supervisor import config

    if not config.unset(key):
        click.echo(f"{key} is not set in {config.path()}; nothing to do", err=True)


@cli.command()
@click.argument("conv_id", metavar="ID", shell_complete=_complete_ids)
@click.argument("changes", metavar="KEY=VALUE... KEY-...", nargs=-1)
@_json
def label(conv_id: str, changes: tuple[str, ...], as_json: bool) -> None:
    """Set (KEY=VALUE) or remove (KEY-) labels of a conversation; with none, print them.

    The change is recorded in the history (a labels_changed event).

    \b
    Examples:
      agent label 3f9a team=infra priority=high
      agent label nightly priority-
      agent ps -a --filter label=team=infra
    """
    from agent_proc.naming import parse_label_changes
    from supervisor.summary import summary

    to_set, to_remove = parse_label_changes(changes)
    conv_dir = _conv_dir(conv_id)
    with conversation.transaction(conv_dir) as txn:
        labels = txn.state.labels
        to_set = {k: v for k, v in to_set.items() if labels.get(k) != v}
        to_remove = [k for k in to_remove if k in labels]
        if to_set or to_remove:
            txn.record("labels_changed", set=to_set, removed=to_remove)
        state = txn.state
    if as_json:
        _print_json(summary(state))
    else:
        _echo("\n".join(f"{k}={v}" for k, v in sorted(state.labels.items())))


@cli.command()
@_filter_option
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation (needed when not on a terminal).")
@_json
def prune(filters: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Remove stopped conversations (paused, finished, error; never running or starting).

    Lists what it removed and the space freed. Without -f it asks first, and in a
    non-interactive shell (cron, CI) it refuses to go on without -f.

    \b
    Examples:
      agent prune --filter until=7d             # older than a week
      agent prune -f --filter status=finished --filter label=job=nightly
    """
    from supervisor import index, query
    from supervisor import prune as pruning
    from supervisor.summary import SCHEMA_VERSION

    chosen = query.parse_filters(filters)
    problems: list[str] = []
    found = [e for e in index.all_entries(conversation.agent_home(), problems)
             if chosen(e.summary) and pruning.removable(e.summary)]
    found.sort(key=lambda e: e.summary["created_at"])
    if as_json:
        index.complete(found)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    if found and not force:
        if not sys.stdin.isatty():
            raise UsageError(f"would remove {len(found)} conversations: refusing without -f (--force) "
                             "in a non-interactive shell")
        for entry in found:
            click.echo(f"{entry.summary['id']}  {entry.summary['name'] or '-'}  {entry.summary['status']}", err=True)
        if not click.confirm(f"Remove these {len(found)} conversations?", default=False, err=True):
            click.echo("nothing removed", err=True)
            return
    removed, total = [], 0
    for entry in found:
        freed = pruning.remove(entry.dir, only_if_removable=True) if entry.dir.is_dir() else None
        if freed is None:
            continue  # resumed (or removed) meanwhile
        total += freed
        removed.append({**entry.summary, "freed_bytes": freed})
        if not as_json:
            click.echo(f"{entry.summary['id']}  {entry.summary['name'] or '-'}  {pruning.size_text(freed)}")
    if as_json:
        _print_json({"schema_version": SCHEMA_VERSION, "removed": removed, "freed_bytes": total})
    else:
        click.echo(f"removed {len(removed)} conversations, freed {pruning.size_text(total)}")


@cli.command()
@click.option("--by", type=click.Choice(["model", "label", "name", "day"]), default="model", show_default=True,
              help="How to group the totals (a conversation with two labels counts under both).")
@click.option("--since", help="Only model calls from this day on (2h, 7d or a date; counted to the day).")
@click.option("--until", help="Only model calls up to this day (counted to the day).")
@_filter_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
def cost(by: str, since: str | None, until: str | None, filters: tuple[str, ...], fmt: str, as_json: bool) -> None:
    """Tokens and USD spent, by model, label, name or day.

    Costs of calls cut off by an interrupt or a timeout are estimated, and shown
    as such; calls to models without a known price are counted apart.

    \b
    Examples:
      agent cost --since 30d --by day
      agent cost --by label --filter label=job=nightly --json | jq .total.cost_usd
    """
    from supervisor import costs, index, query

    chosen = query.parse_filters(filters)
    problems: list[str] = []
    entries = [e for e in index.all_entries(conversation.agent_home(), problems) if chosen(e.summary)]
    doc = costs.report(entries, by, since=query.parse_time(since) if since else None,
                       until=query.parse_time(until) if until else None)
    if fmt == "json" or as_json:
        _print_json(doc)
    else:
        click.echo(costs.table(doc))
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


def main() -> None:
    """Console entry point: `agent`. Every error is one line on stderr."""
    try:
        cli.main(prog_name="agent", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:  # `agent` alone asks for the help: not an error
        terminal.echo(error.format_message())
        sys.exit(outcomes.EXIT_FINISHED)
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        terminal.echo(f"Error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:  # it may quote a run's output or a server's message
        terminal.echo(f"Error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except click.Abort:
        sys.exit(outcomes.EXIT_PAUSED)

    except Exception as error:  # a bug: still one line, unless asked for more
        if os.environ.get(DEBUG_ENV):
            raise
        terminal.echo(f"Error: internal error: {type(error).__name__}: {error} (set {DEBUG_ENV}=1 for details)",
                      err=True)
        sys.exit(outcomes.EXIT_FAILED)
