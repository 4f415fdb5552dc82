"""Quiet, readable command-line output.

- Known start-up noise of third-party libraries is dropped by message (the loggers stay on, so
  anything else they say still shows).
- A third-party warning that repeats (once per batch, say) is shown the first time only.
- An error about what the user supplied (settings, data files) prints its own message as the last
  thing on screen; its traceback goes to the log file (``logs/fsku_kedro.log``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
from collections.abc import Iterator
from types import TracebackType

from fsku_kedro.errors import UserInputError

LOG_FILE = "logs/fsku_kedro.log"

# (logger name, message pattern): start-up messages of libraries that say nothing about this run.
KNOWN_NOISE: tuple[tuple[str, str], ...] = (
    ("torchao", r"^Failed to load .*torchao/_C"),
    ("torchao.kernel.intmm", r"Detected no triton"),
    ("torch.utils._pytree", r"is an Enum subclass and is now natively supported by torch.compile"),
    ("bitsandbytes.backends.cpu.ops", r"^Failed to load CPU gemm_4bit_forward from kernels-community"),
    ("kedro_mlflow.framework.hooks.mlflow_hook", r"^Registering new custom resolver"),
    ("py.warnings", r"register_new_resolver\(\) is deprecated"),
    ("mlflow.store.db.utils", r"^(Creating initial MLflow database tables|Updating database tables)"),
    ("kedro.validation.parameter_validator", r"^No typed parameter requirements found"),
    ("kedro.io.data_catalog", r"^Replacing dataset '.*metrics'"),  # kedro-mlflow re-registering metrics datasets
    ("py.warnings", r"Add type hints to the `predict` method"),
)


class MessageFilter(logging.Filter):
    """Drops records whose message matches one of ``patterns``."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = [re.compile(pattern) for pattern in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in self._patterns)


class RepeatedWarningFilter(logging.Filter):
    """Lets a third-party warning through the first time its message appears; repeats (a library
    warning once per batch, say) are counted, not shown. Kedro's and the project's own records
    always pass."""

    OWN = ("kedro", "fsku_kedro")

    def __init__(self) -> None:
        super().__init__()
        self.repeats: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name.split(".")[0] in self.OWN:
            return True
        key = f"{record.name}:{record.getMessage()}"
        if key in self.repeats:
            self.repeats[key] += 1
            return False
        self.repeats[key] = 0
        return True


_noise_filters: dict[str, logging.Filter] = {}
_repeat_filter = RepeatedWarningFilter()


def install_log_filters() -> None:
    """Attach the start-up noise filters to their loggers (once per process)."""
    if _noise_filters:
        return
    by_logger: dict[str, list[str]] = {}
    for name, pattern in KNOWN_NOISE:
        by_logger.setdefault(name, []).append(pattern)
    for name, patterns in by_logger.items():
        _noise_filters[name] = MessageFilter(patterns)
        logging.getLogger(name).addFilter(_noise_filters[name])


def install_repeat_filter() -> None:
    """Show each repeated third-party warning once, on every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        if _repeat_filter not in handler.filters:
            handler.addFilter(_repeat_filter)


def user_error_in(error: BaseException | None) -> BaseException | None:
    """The first error about user input in ``error``'s chain (a settings or data-contract error)."""
    from kedro.validation.exceptions import ParameterValidationError

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (UserInputError, ParameterValidationError)):
            return error
        error = error.__cause__ or error.__context__
    return None


def install_error_display() -> None:
    """Print user-input errors plainly at exit; any other error keeps the usual traceback."""
    previous = sys.excepthook
    if getattr(previous, "_fsku_error_display", False):
        return

    def display(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        found = user_error_in(error)
        if found is None:
            previous(kind, error, trace)
            return
        logging.getLogger("fsku_kedro").debug("Traceback of the error below", exc_info=(kind, error, trace))
        sys.stderr.write(f"\nError: {found}\n\n(the traceback is in {LOG_FILE})\n")
        sys.stderr.flush()

    display._fsku_error_display = True  # type: ignore[attr-defined]
    sys.excepthook = display


class _LineLogger(io.TextIOBase):
    """A text stream that sends each complete line to ``logger`` at DEBUG."""

    def __init__(self, logger: logging.Logger):
        self._logger, self._pending = logger, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text.replace("\r", "\n")
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                self._logger.debug("%s", line.rstrip())
        return len(text)


@contextlib.contextmanager
def console_to_log(logger: logging.Logger) -> Iterator[None]:
    """Send what a library prints to the console (progress bars, tables) to the log file instead."""
    stream = _LineLogger(logger)
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        yield
    stream.write("\n")
