"""Secret references (`${env:NAME}`, `${file:PATH}`, `${vault:MOUNT/PATH#KEY}`) and their resolution.

Resolved values are wrapped in `Secret`, whose str/repr is `***`, and registered with the process-wide
redactor so a value that slips into a log line or an exception message is masked there too.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipezone.core.spec.value_types import reference_problem

if TYPE_CHECKING:
    from pipezone.core.spec.settings import Settings

MASK = "***"
MAX_SECRET_FILE_BYTES = 64 * 1024
_REF = re.compile(r"^\$\{(?P<scheme>env|file|vault):(?P<target>[^}#]+)(?:#(?P<key>[^}]+))?\}$")


class SecretError(Exception):
    """A reference that cannot be resolved; the message names the reference, never a value."""


@dataclass(frozen=True)
class SecretRef:
    scheme: str
    target: str
    key: str | None = None

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        problem = reference_problem(text.strip())
        match = _REF.fullmatch(text.strip())
        if problem or not match:
            raise SecretError(problem or "not a secret reference")
        return cls(match["scheme"], match["target"].strip(), match["key"])

    def __str__(self) -> str:
        return "${" + f"{self.scheme}:{self.target}" + (f"#{self.key}" if self.key else "") + "}"


def is_reference(text: Any) -> bool:
    return isinstance(text, str) and bool(_REF.fullmatch(text.strip()))


def confined_file(ref: SecretRef, base_dir: Path, roots: Sequence[Path]) -> Path:
    """The file a `${file:...}` reference names, if it lies inside one of `roots` once every `..` and
    symlink is resolved (`${file:../../../../etc/shadow}` does not); relative paths start at `base_dir`."""
    path = Path(ref.target).expanduser()
    path = Path(os.path.realpath(path if path.is_absolute() else base_dir / path))
    for root in roots:
        real = Path(os.path.realpath(root))
        if path == real or real in path.parents:
            return path
    others = ", ".join(str(r) for r in roots if Path(os.path.realpath(r)) != Path(os.path.realpath(base_dir)))
    raise SecretError(
        f"{ref}: outside the project and the secret folders ({others or 'none'}; set PIPEZONE_SECRET_DIRS to add one)"
    )


def read_secret_file(ref: SecretRef, path: Path) -> str:
    """A secret file's text: a regular file (never /dev/zero or a FIFO) of at most 64 KiB."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"{ref}: not a regular file")
        if info.st_size > MAX_SECRET_FILE_BYTES:
            raise SecretError(
                f"{ref}: {info.st_size:,} bytes, over the limit of {MAX_SECRET_FILE_BYTES:,} for a secret"
            )
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as err:
        raise SecretError(f"{ref}: cannot read {path}: {err.strerror or type(err).__name__}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SecretError(f"{ref}: over the limit of {MAX_SECRET_FILE_BYTES:,} bytes for a secret")
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise SecretError(f"{ref}: not UTF-8 text") from None


class Secret:
    """A resolved value that prints as *** everywhere; call `reveal()` at the one place that needs it."""

    __slots__ = ("_value", "ref")

    def __init__(self, value: str, ref: SecretRef) -> None:
        self._value = value
        self.ref = ref

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.ref}={MASK})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self.ref)


class Redactor:
    """Remembers every resolved value and masks it in any text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) >= 3:  # masking 1-2 character values would mangle ordinary text
            with self._lock:
                self._values.add(value)

    def redact(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """A logging filter that masks resolved secrets in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = REDACTOR.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (root by default), idempotently."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


VaultReader = Callable[[str, str], Mapping[str, Any]]


def hvac_reader(url: str, token: str | None, namespace: str | None = None, timeout: float = 10) -> VaultReader:
    """A KV v2 reader over hvac: (mount, path) -> the secret's data mapping."""

    def read(mount: str, path: str) -> Mapping[str, Any]:
        import hvac  # imported here: validation and listing never need it
        import hvac.exceptions
        import requests

        client = hvac.Client(url=url, token=token, namespace=namespace, timeout=timeout)
        try:
            response = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            raise SecretError(f"no secret at {mount}/{path} in Vault {url}") from None
        except hvac.exceptions.Forbidden:
            raise SecretError(f"Vault {url} denied access to {mount}/{path} (check the token's policy)") from None
        except requests.exceptions.RequestException as err:
            raise SecretError(f"cannot reach Vault at {url}: {type(err).__name__}") from None
        except hvac.exceptions.VaultError as err:
            raise SecretError(f"Vault {url} error reading {mount}/{path}: {type(err).__name__}") from None
        return response["data"]["data"]

    return read


class SecretResolver:
    """Resolves references against an environment mapping, a base folder and (lazily) Vault."""

    def __init__(
        self,
        environ: Mapping[str, str],
        base_dir: Path,
        vault: VaultReader | None = None,
        file_roots: Sequence[Path] = (),
    ) -> None:
        self._environ = environ
        self._base_dir = base_dir
        self._vault = vault
        self._file_roots = tuple(file_roots) or (base_dir,)
        self._cache: dict[SecretRef, Secret] = {}

    def resolve(self, reference: str | SecretRef, *, mask: bool = True) -> Secret:
        """The value behind `reference`. `mask=False` is for identifiers kept in a secret store (a user
        name, an access key id): they are not secret, and masking a common word like `pipezone`
        everywhere would garble every log line."""
        ref = reference if isinstance(reference, SecretRef) else SecretRef.parse(reference)
        if ref not in self._cache:
            value = {"env": self._from_env, "file": self._from_file, "vault": self._from_vault}[ref.scheme](ref)
            self._cache[ref] = Secret(value, ref)
        if mask:
            REDACTOR.add(self._cache[ref].reveal())
        return self._cache[ref]

    def _from_env(self, ref: SecretRef) -> str:
        value = self._environ.get(ref.target)
        if value is None:
            raise SecretError(f"{ref}: environment variable {ref.target} is not set")
        return value

    def _from_file(self, ref: SecretRef) -> str:
        return read_secret_file(ref, confined_file(ref, self._base_dir, self._file_roots))

    def _from_vault(self, ref: SecretRef) -> str:
        if self._vault is None:
            raise SecretError(f"{ref}: Vault is not configured (set VAULT_ADDR and VAULT_TOKEN)")
        mount, _, path = ref.target.strip("/").partition("/")
        path = path.removeprefix("data/")  # accept the API form secret/data/app as well as secret/app
        if not path:
            raise SecretError(f"{ref}: expected MOUNT/PATH, e.g. secret/pipezone/db#password")
        data = self._vault(mount, path)
        if ref.key not in data:
            raise SecretError(f"{ref}: key '{ref.key}' not found at {mount}/{path} (keys: {', '.join(sorted(data))})")
        return str(data[ref.key])


def resolver_for(settings: Settings) -> SecretResolver:
    """The resolver for this process: env from settings, files under the project, Vault if configured."""
    vault = (
        hvac_reader(settings.vault_addr, settings.vault_token, settings.vault_namespace)
        if settings.vault_addr
        else None
    )
    return SecretResolver(settings.environ, settings.project_root, vault, settings.file_roots)
