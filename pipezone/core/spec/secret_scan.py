"""Literal secrets in metadata, found by what they look like as well as by the name of their key.

Credentials belong in `${env:..}`, `${file:..}` or `${vault:..#KEY}` references. Checking the typed
fields (`password`, `secret_key`) is not enough: a password also hides in a host (`admin:pw@db`), a
URL (`...?password=pw`, `https://user:pw@host`), an option named `pwd` or `apiKey`, a profile's
`spark.conf`, or a pasted token. Every string (and key) of a connection or profile is scanned, and
every string of a flow for the formats that can't be anything else (URL credentials, private keys,
well-known token shapes). A message names the place and the kind, never the value; `scrub()` masks
the same shapes in any text, as a last guard on messages that quote a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pipezone.core.spec.problems import KeyPath
from pipezone.core.spec.value_types import is_secret_reference, reference_problem

MASK = "***"
USE_REFERENCE = "use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"

# Words that make a key name a secret's name, and pairs that do together.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "secrets", "token", "credential", "credentials", "passphrase"}
)
_SECRET_PAIRS = frozenset(
    {"apikey", "privatekey", "secretkey", "authkey", "accountkey", "accesstoken", "clientsecret", "sastoken"}
)
_SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "apikey", "passphrase")
# A secret word followed by one of these names something about the secret, not the secret itself.
_QUALIFIERS = frozenset(
    {
        "url", "uri", "file", "path", "type", "endpoint", "encoding", "charset", "character", "length", "expiry",
        "expiration", "ttl", "enabled", "mode", "policy", "provider", "class", "format", "required", "prompt",
    }
)  # fmt: skip
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/@:]*):(?P<pw>[^\s/@]+)@")
_BARE_USERINFO = re.compile(r"^(?P<user>[^\s/:@]+):(?P<pw>[^\s/@]+)@(?P<host>[^\s/@]+)$")
_NAME_VALUE = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_.\-]*)\s*=\s*(?P<value>\$\{[^}]*\}|[^&;\s'\"]+)")
_TOKENS = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|\bAIza[0-9A-Za-z_-]{35}\b|\b[rs]k_live_[0-9A-Za-z]{16,}"
    r"|\bBearer\s+[A-Za-z0-9._~+/=-]{16,}|\bBasic\s+[A-Za-z0-9+/=]{16,}"
)


def secret_name(name: str) -> bool:
    """Whether a key named `name` holds a secret: `password`, `sslpassword`, `pwd`, `apiKey`,
    `private_key`, `spark.hadoop.fs.s3a.secret.key`, but not `passwordCharacterEncoding` or `sslkey`."""
    words = [w.lower() for w in _WORD.findall(name)]
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else None
        if following is not None and word + following in _SECRET_PAIRS:
            return True
        if (word in _SECRET_WORDS or word.endswith(_SECRET_SUFFIXES)) and following not in _QUALIFIERS:
            return True
    return False


def _value_shapes(text: str, *, names: bool, bare: bool) -> str | None:
    """The kind of literal secret `text` holds, if any."""
    if _TOKENS.search(text):
        return "holds what looks like a private key or an access token"
    if _URL_USERINFO.search(text):
        return "holds a password in a URL (user:password@)"
    if bare and _BARE_USERINFO.match(text):
        return "holds credentials (user:password@host)"
    if names:
        for match in _NAME_VALUE.finditer(text):
            if secret_name(match["name"]) and not is_secret_reference(match["value"]):
                name = match["name"]
                jvm = name.startswith("D") and text[max(match.start() - 1, 0) : match.start()] == "-"
                return f"holds a literal '{name[1:] if jvm else name}=' value"
    return None


def _walk(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any, Any]]:
    """(path, key, value) for every mapping entry and list item, depth first."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, key), key, value
            yield from _walk(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield (*path, index), None, value
            yield from _walk(value, (*path, index))


def _entry_problem(key: Any, value: Any, kind: str) -> str | None:
    strict = kind != "flow"
    if isinstance(key, str) and strict:
        if _value_shapes(key, names=True, bare=False):
            return "a key holds what looks like a secret: keys are names, credentials go in references"
        literal = value is not None and not isinstance(value, bool | dict | list) and not is_secret_reference(value)
        if literal and secret_name(key):
            return f"'{key}' looks like a secret: {USE_REFERENCE}"
    if isinstance(value, str):
        if strict and value.strip().startswith("${"):
            return reference_problem(value)
        shape = _value_shapes(value, names=strict, bare=strict)
        if shape:
            return f"{shape}: {USE_REFERENCE}" if strict else f"{shape}: flows hold no credentials"
    return None


def literal_secrets(data: Any, kind: str) -> list[tuple[KeyPath, str]]:
    """(key path, message) of each literal secret in a parsed document of `kind` (connection, profile, flow)."""
    found: list[tuple[KeyPath, str]] = []
    for path, key, value in _walk(data):
        message = _entry_problem(key, value, kind)
        if message:
            found.append((path, message))
    return found


def scrub(text: str) -> str:
    """`text` with every secret-shaped part masked (URL passwords, `password=...`, tokens, private keys)."""
    text = _TOKENS.sub(MASK, text)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)

    def name_value(match: re.Match[str]) -> str:
        if secret_name(match["name"]) and not is_secret_reference(match["value"]):
            return f"{match['name']}={MASK}"
        return match.group(0)

    return _NAME_VALUE.sub(name_value, text)
