"""What main.py and the command modules it imports lazily (run.py, state.py) share: the exit statuses, the
one-line CliError and the runtime loader. A module of its own so that neither side imports the other back
(no import cycle), and light: `pipezone validate` imports it too.
"""

from __future__ import annotations

from pipezone.core.spec.settings import Settings

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def command_runtime(settings: Settings):
    from pipezone.core.steps.runtime import load_runtime

    return load_runtime(settings)
