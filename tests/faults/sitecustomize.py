"""Fault injection for the run's child process, loaded through PYTHONPATH by tests.

It acts only in a process that carries AGENT_RUN_MARKER (the child), and only on
what the AGENT_FAULT_* variables ask for:

AGENT_FAULT_IGNORE=SIGINT,SIGTERM   the child ignores these signals, as a process
                                    wedged in C code would; only SIGKILL ends it.
AGENT_FAULT_RECORD=PATH             the child writes whether SIGINT was ignored when
                                    it started.
AGENT_FAULT_START_DELAY=S           the child waits S seconds before taking the
                                    conversation over.
"""

import os
import signal

if os.environ.get("AGENT_RUN_MARKER") and os.environ.get("AGENT_FAULT_IGNORE"):
    _ignored = {getattr(signal, name) for name in os.environ["AGENT_FAULT_IGNORE"].split(",")}
    _install = signal.signal

    def _signal_that_ignores(signum, handler):
        return _install(signum, signal.SIG_IGN if signum in _ignored else handler)

    signal.signal = _signal_that_ignores
    for _sig in _ignored:
        _install(_sig, signal.SIG_IGN)

# AGENT_FAULT_RECORD=PATH: write how SIGINT was disposed of when the child started,
# so a test can prove the condition it set up really reached the child.
if os.environ.get("AGENT_RUN_MARKER") and os.environ.get("AGENT_FAULT_RECORD"):
    with open(os.environ["AGENT_FAULT_RECORD"], "w") as _record:
        _record.write("ignored" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "not ignored")

# AGENT_FAULT_START_DELAY=S: the child sleeps S seconds before it takes the conversation
# over, widening the moment in which the run is `starting`.
if os.environ.get("AGENT_RUN_MARKER") and os.environ.get("AGENT_FAULT_START_DELAY"):
    import time

    time.sleep(float(os.environ["AGENT_FAULT_START_DELAY"]))
