"""Shell completion: `agent completion bash|zsh|fish` prints the script (click's own),
and conversation ids (and names, where conversations have them) complete wherever an
ID is taken."""

from __future__ import annotations

import json
import os

import click
from click.shell_completion import CompletionItem, get_completion_class

from agent_proc import conversation

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_AGENT_COMPLETE"  # click's name for it: _{PROG}_COMPLETE


def script(cli: click.Command, shell: str) -> str:
    """The completion script for `shell`, which calls `agent` back to complete."""
    completion = get_completion_class(shell)
    if completion is None:  # pragma: no cover - SHELLS are all click's
        raise click.UsageError(f"no completion for {shell}")
    return completion(cli, {}, "agent", COMPLETE_VAR).source()


def complete_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Ids starting with `incomplete`, each with its status and model as help; and names
    (a field conversations may carry) starting with it."""
    items = []
    for conv_dir in conversation.list_dirs():
        matches_id = conv_dir.name.startswith(incomplete)
        if not matches_id and not incomplete:
            continue
        try:
            state = json.loads((conv_dir / conversation.STATE_FILE).read_bytes())
        except (OSError, ValueError):
            state = {}
        help_text = f"{state.get('status', '?')} {state.get('model', '')}".strip()
        if matches_id:
            items.append(CompletionItem(conv_dir.name, help=help_text))
        name = state.get("name")
        if isinstance(name, str) and name.startswith(incomplete) and not name.startswith(os.sep):
            items.append(CompletionItem(name, help=help_text))
    return items
