"""The parent side of agent: the command line and process control.

Kept import-light on purpose: every CLI start imports this package.
"""

__version__ = "0.1.0"
