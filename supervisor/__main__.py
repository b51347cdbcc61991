"""`python -m supervisor` is the same as the `agent` command."""

from supervisor.cli import main

main()
