"""Keeping secrets out of everything evolve writes.

Values of environment variables whose names look like secrets (`*_KEY`, `*TOKEN*`, `*SECRET*`,
`*PASSWORD*`, ...) are replaced by `[REDACTED:NAME]` wherever they would appear in the event log,
the state store, a cassette, a proposal or a request the advisor sends to a model. The one place
that decides what is a secret.

Redaction works on values, before they are encoded (never on encoded JSON text, where a secret
holding `"` or `\\` is escaped and a numeric one is not a string): `value` walks a structure and
replaces, inside every string and mapping key, each secret by its placeholder; a number equal to a
numeric secret becomes the placeholder string. `text` does the same to free text, and also finds
a secret written JSON- or repr-escaped there. Whatever is cut short for display (previews) is cut
after redaction, so no prefix of a long token survives; and where a message was cut before it
reached the redactor (an error quoting the start of a tool's output), a run of a long secret's
first 12 or more characters is replaced as well.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|PRIVATE", re.IGNORECASE)
_MIN_LENGTH = 6  # shorter values are too likely to occur by chance to be worth replacing
# a message cut short (an error quoting 120 characters of a tool's output) may hold only the start
# of a long secret: a run of at least this many of its first characters is replaced too
_PREFIX = 12


def _number(text: str) -> int | float | None:
    """The number a secret spells (`424242`, `3.14`), or None."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _cut_prefixes(value: str, secret: str, placeholder: str) -> str:
    """`value` with every run of the secret's first characters (at least _PREFIX) replaced."""
    out, at = [], 0
    while (start := value.find(secret[:_PREFIX], at)) != -1:
        end = start + _PREFIX
        while end < len(value) and end - start < len(secret) and value[end] == secret[end - start]:
            end += 1
        out += [value[at:start], placeholder]
        at = end
    return "".join(out) + value[at:]


class Redactor:
    """Replaces the secret values of an environment (read once, at construction)."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        pairs = [(v, n) for n, v in env.items() if _SECRET_NAME.search(n) and len(v) >= _MIN_LENGTH]
        self.secrets = sorted(pairs, key=lambda p: -len(p[0]))  # longest first
        self._numbers = {
            number: name for secret, name in self.secrets if (number := _number(secret)) is not None
        }
        # in free text a secret may also stand escaped, as json.dumps or repr() wrote it
        forms = [
            (form, name)
            for secret, name in self.secrets
            for form in {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
        ]
        self._text_forms = sorted(forms, key=lambda p: -len(p[0]))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def name_in(self, text: str) -> str | None:
        """The name of a secret whose value `text` holds, or None."""
        return next((name for secret, name in self.secrets if secret in text), None)

    def _string(self, value: str, forms: list[tuple[str, str]]) -> str:
        for secret, name in forms:
            if secret in value:
                value = value.replace(secret, f"[REDACTED:{name}]")
            if len(secret) > _PREFIX and secret[:_PREFIX] in value:
                value = _cut_prefixes(value, secret, f"[REDACTED:{name}]")
        return value

    def text(self, value: str) -> str:
        """Free text with every secret (also JSON- or repr-escaped) replaced."""
        return self._string(value, self._text_forms) if self.secrets else value

    def value(self, value: Any) -> Any:
        """A copy of a JSON-able value with every secret replaced (the original is untouched).

        Strings and mapping keys have each secret inside them replaced; a number equal to a
        numeric secret becomes the placeholder; any other object is redacted as its `str()`,
        which is how the JSON writers encode it.
        """
        if not self.secrets:
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._string(value, self.secrets)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            name = self._numbers.get(value) if self._numbers else None
            return f"[REDACTED:{name}]" if name else value
        if isinstance(value, dict):
            return {self._walk_key(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return self._string(str(value), self.secrets)

    def _walk_key(self, key: Any) -> Any:
        return self._string(key, self.secrets) if isinstance(key, str) else key
