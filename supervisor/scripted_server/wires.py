"""Every wire format the scripted server speaks, and the POST routes that select one."""

from __future__ import annotations

from supervisor.scripted_server import anthropic_messages, openai_chat, openai_responses
from supervisor.scripted_server.turn import Wire

WIRES: tuple[Wire, ...] = (openai_chat.WIRE, openai_responses.WIRE, anthropic_messages.WIRE)

ROUTES: dict[str, Wire] = {route: wire for wire in WIRES for route in wire.routes}
