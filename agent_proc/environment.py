"""Names of the environment variables through which the parent talks to the child."""

# A token unique to one child start; with the create time, proof that a pid is ours.
MARKER_ENV = "AGENT_RUN_MARKER"
# The pid of the process supervising the child (the foreground `agent run`), if any.
SUPERVISOR_ENV = "AGENT_SUPERVISOR_PID"
