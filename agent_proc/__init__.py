"""The child side of agent: one agent run, in its own process.

`python -m agent_proc run ID` is the child's entry point. Nothing here imports
`supervisor`; the parent depends on us, never the reverse.
"""
