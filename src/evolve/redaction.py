"""Keeping secrets out of everything evolve writes.

Values of environment variables whose names look like secrets (`*_KEY`, `*TOKEN*`, `*SECRET*`,
`*PASSWORD*`, ...) are replaced by `[REDACTED:NAME]` wherever they would appear in the event log,
the state store, a cassette or a proposal. The one place that decides what is a secret.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|PRIVATE", re.IGNORECASE)
_MIN_LENGTH = 6  # shorter values are too likely to occur by chance to be worth replacing


class Redactor:
    """Replaces the secret values of an environment (read once, at construction)."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        pairs = [(v, n) for n, v in env.items() if _SECRET_NAME.search(n) and len(v) >= _MIN_LENGTH]
        self.secrets = sorted(pairs, key=lambda p: -len(p[0]))  # longest first

    def text(self, value: str) -> str:
        for secret, name in self.secrets:
            if secret in value:
                value = value.replace(secret, f"[REDACTED:{name}]")
        return value

    def value(self, value: Any) -> Any:
        """A JSON-able value with every secret replaced (round-trips through JSON text)."""
        if not self.secrets:
            return value
        text = json.dumps(value, ensure_ascii=False, default=str)
        cleaned = self.text(text)
        return value if cleaned == text else json.loads(cleaned)
