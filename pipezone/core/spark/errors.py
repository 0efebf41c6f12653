"""A failure as one line: the root cause of a JVM error (Py4J and PySpark wrap a whole Java stack), secrets
redacted. Every step, the Spark Connect client and the CLI print errors through `summarize_error`."""

from __future__ import annotations

from pipezone.core.spec.secrets import REDACTOR


def _java_root_cause(err: BaseException) -> str | None:
    """The innermost Java exception's message (Py4J errors carry a whole JVM stack otherwise)."""
    # Py4JJavaError keeps the Java exception in `java_exception`; PySpark's converted errors (AnalysisException
    # such as [FAILED_JDBC.CONNECTION], whose cause is the driver's "Access denied ...") in `_origin`.
    java = getattr(err, "java_exception", None) or getattr(err, "_origin", None)
    if java is None:
        return None
    try:
        while java.getCause() is not None:
            java = java.getCause()
        return f"{java.getClass().getSimpleName()}: {java.getMessage()}"
    except Exception:  # noqa: BLE001 - the gateway may be gone; fall back to the Python text
        return None


def summarize_error(err: BaseException) -> str:
    """One line: the root cause, without stack traces or JVM noise."""
    text = _java_root_cause(err) or str(err) or type(err).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    for prefix in ("An error occurred while calling", "py4j.protocol.Py4JJavaError"):
        if first.startswith(prefix) and len(lines) > 1:
            first = lines[1]
    return REDACTOR.redact(first)[:500]
