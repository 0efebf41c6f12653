"""Create setup/docker/.env from .env.example, with a fresh random value for every `change-me`.

Usage: python3 setup/docker/init_env.py [TARGET]   (default: .env beside this file)

Never overwrites an existing file (its secrets are already in the stack's volumes). Values are letters
and digits (Vault token ids and MinIO keys reject some symbols); AIRFLOW_FERNET_KEY gets a real Fernet
key. The file is written with mode 600. Standard library only: runs before any venv exists.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

PLACEHOLDER = "change-me"
HERE = Path(__file__).resolve().parent


def fresh_value(name: str) -> str:
    if name == "AIRFLOW_FERNET_KEY":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_hex(20)


def render(example: str) -> str:
    """The example's text with each `NAME=change-me` line given a fresh value; everything else kept."""
    out = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and value.strip() == PLACEHOLDER:
            line = f"{name}={fresh_value(name.strip())}"
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else HERE / ".env"
    if target.exists():
        print(f"{target} exists: kept as it is")
        return 0
    text = render((HERE / ".env.example").read_text(encoding="utf-8"))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"{target} created with fresh secrets (mode 600)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
