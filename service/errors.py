"""Domain errors. Raised by the engine, the manager and the pipeline; mapped to HTTP statuses and CLI exit codes
once, at the edges, so that the core never knows which surface it is serving."""

from __future__ import annotations


class NewsMTError(Exception):
    """Base class; `code` is a stable machine-readable name used by the HTTP error body and results.jsonl."""

    code = "error"


class InvalidInput(NewsMTError):
    code = "invalid_input"


class EmptyText(InvalidInput):
    code = "empty_text"


class InputTooLarge(InvalidInput):
    code = "input_too_large"


class UnsupportedLanguage(NewsMTError):
    code = "unsupported_language"

    def __init__(self, detected: str, supported: tuple[str, ...]):
        self.detected = detected
        self.supported = supported
        super().__init__(
            f"unsupported language: detected '{detected}'; newsmt translates {', '.join(supported)} into English "
            "(pass an explicit source language if detection is wrong)"
        )


class UnknownTask(NewsMTError):
    code = "unknown_task"


class ModelNotInstalled(NewsMTError):
    """The model for a task is not on disk. The message names the exact command that installs it."""

    code = "model_not_installed"

    def __init__(self, task: str, source: str, install_command: str):
        self.task = task
        self.source = source
        self.install_command = install_command
        super().__init__(f"model for {task} is not installed ({source}); install it with: {install_command}")


class ModelLoadError(NewsMTError):
    """The model is on disk but cannot be loaded (truncated weights, broken config, unsupported architecture)."""

    code = "model_load_failed"
