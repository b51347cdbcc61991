"""Make the shipped price table, agent_proc/data/prices.json, from a copy of LiteLLM's table.

LiteLLM's PyPI package ships its community table as
`litellm/model_prices_and_context_window_backup.json`. Give this script either that JSON
file or the wheel itself (the table is read out of it and the package version taken from
its metadata; nothing else of the package is used or kept):

    pip download --no-deps litellm -d /tmp/litellm
    python scripts/update_prices.py /tmp/litellm/litellm-*.whl

It keeps the chat models of the hosted providers agent knows (agent_proc/providers.py),
records where the copy came from and the day it was taken, and prints a summary. Review
the diff of agent_proc/data/prices.json before committing it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_proc.price_source import SourceError, convert  # noqa: E402
from agent_proc.pricing import SHIPPED_FILE  # noqa: E402

TABLE_IN_WHEEL = re.compile(r"^litellm/model_prices_and_context_window(_backup)?\.json$")


def read_source(path: Path) -> tuple[object, str | None]:
    """The table in `path` (a JSON file or a litellm wheel) and, for a wheel, the package version."""
    if path.suffix != ".whl":
        return json.loads(path.read_text(encoding="utf-8")), None
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        table = next((n for n in names if TABLE_IN_WHEEL.match(n)), None)
        if table is None:
            raise SourceError(f"{path}: no model_prices_and_context_window JSON in this wheel")
        metadata = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        version = None
        if metadata is not None:
            found = re.search(r"^Version: (\S+)$", wheel.read(metadata).decode("utf-8", "replace"), re.M)
            version = found.group(1) if found else None
        return json.loads(wheel.read(table)), version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="litellm wheel, or its model_prices_and_context_window JSON file")
    parser.add_argument("--version", help="the litellm version the copy comes from (read from a wheel)")
    parser.add_argument("--taken-on", default=date.today().isoformat(), help="YYYY-MM-DD  [default: today]")
    parser.add_argument("-o", "--output", type=Path, default=SHIPPED_FILE, help=f"[default: {SHIPPED_FILE}]")
    args = parser.parse_args(argv)
    try:
        date.fromisoformat(args.taken_on)
        table, wheel_version = read_source(args.source)
        version = args.version or wheel_version
        where = f"litellm {version} from PyPI" if version else f"a copy of LiteLLM's table ({args.source.name})"
        note = (f"LiteLLM's community table model_prices_and_context_window.json, {where}; "
                "standard tier (no batch, flex, priority or long-context rates); "
                "Anthropic cache_write is the 5-minute cache")
        doc = convert(table, taken_on=args.taken_on, source_note=note)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        print(f"update_prices: {error}", file=sys.stderr)
        return 2
    models = doc["models"]
    args.output.write_text(_dump(doc), encoding="utf-8")
    per_provider: dict[str, int] = {}
    for name in models:
        provider = name.split("/", 1)[0]
        per_provider[provider] = per_provider.get(provider, 0) + 1
    print(f"wrote {len(models)} models to {args.output} (taken on {args.taken_on}; {where})")
    print("  " + ", ".join(f"{p} {n}" for p, n in sorted(per_provider.items())))
    return 0


def _dump(doc: dict) -> str:
    """One model a line: a review of the file's diff then shows what changed, model by model."""
    head = {k: v for k, v in doc.items() if k != "models"}
    lines = [json.dumps(head, indent=2)[:-2] + ',\n  "models": {']
    rows = [f"    {json.dumps(name)}: {json.dumps(entry)}" for name, entry in doc["models"].items()]
    lines.append(",\n".join(rows))
    lines.append("  }\n}\n")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
