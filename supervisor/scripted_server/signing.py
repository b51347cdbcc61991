"""The scripted server's stand-in for what the real APIs keep from the client: signatures on Anthropic
thinking blocks, and the encrypted content of OpenAI reasoning items.

Both APIs hand the model's reasoning to the client in a form only they can check, and refuse it on a
later turn if it was changed. Here a signature is an HMAC of the thinking text, and "encrypted"
reasoning is the item's id and summary sealed with an HMAC; the checkers refuse anything whose seal
does not match, as the real APIs would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

# Fixed, so that a conversation started against one scripted server can be resumed against another.
_KEY = b"scripted-server: reasoning is checked, not secret"


def _mac(data: bytes) -> str:
    return hmac.new(_KEY, data, hashlib.sha256).hexdigest()


def sign(text: str) -> str:
    """The signature of a thinking block with this text."""
    return base64.b64encode(bytes.fromhex(_mac(text.encode()))).decode()


def signed(text: str, signature: Any) -> bool:
    """Whether `signature` is the one `sign` gave a thinking block with this text."""
    return isinstance(signature, str) and hmac.compare_digest(signature, sign(text))


def seal(fields: dict[str, Any]) -> str:
    """Opaque content carrying `fields`, as an encrypted reasoning item or a redacted thinking block."""
    payload = json.dumps(fields, sort_keys=True)
    return base64.b64encode(json.dumps({"payload": payload, "mac": _mac(payload.encode())}).encode()).decode()


def unseal(blob: Any) -> dict[str, Any] | None:
    """The fields `seal` put into `blob`, or None if it is not something `seal` made, unchanged."""
    try:
        outer = json.loads(base64.b64decode(blob, validate=True))
        payload = outer["payload"]
        if not hmac.compare_digest(outer["mac"], _mac(payload.encode())):
            return None
        fields = json.loads(payload)
    except (TypeError, ValueError, KeyError):
        return None
    return fields if isinstance(fields, dict) else None
