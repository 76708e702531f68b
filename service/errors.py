"""Domain errors. Raised by the engine, the manager and the pipeline; mapped to HTTP statuses and CLI exit codes
once, at the edges, so that the core never knows which surface it is serving."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _rebuild(cls: type[NewsMTError], args: tuple[Any, ...], state: dict[str, Any]) -> NewsMTError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class NewsMTError(Exception):
    """Base class; `code` is a stable machine-readable name used by the HTTP error body and results.jsonl."""

    code = "error"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by state, not by calling `__init__` again: subclasses whose constructor takes other arguments than
        the message (UnsupportedLanguage, ModelNotInstalled) must cross process boundaries too (cluster workers)."""
        return _rebuild, (type(self), self.args, self.__dict__)


class InvalidInput(NewsMTError):
    code = "invalid_input"


class EmptyText(InvalidInput):
    code = "empty_text"


class InputTooLarge(InvalidInput):
    code = "input_too_large"


class UnsupportedFormat(InvalidInput):
    """A file whose name does not end in a format newsmt translates, or whose bytes are not that format."""

    code = "unsupported_format"


class UnsafeDocument(InvalidInput):
    """A document built to attack its reader: a DTD or entities (XXE, billion laughs) in a .docx part."""

    code = "unsafe_document"


class NotFound(NewsMTError):
    """No job or stored document with that id for this caller (another key's job is not found either)."""

    code = "not_found"


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


class SummarizationFailed(NewsMTError):
    """A summary could not be produced, e.g. map-reduce could not shorten chunk summaries to fit the model."""

    code = "summarization_failed"


class AuthenticationRequired(NewsMTError):
    """API keys are configured and the request carried none."""

    code = "unauthorized"


class InvalidApiKey(NewsMTError):
    """The request carried an API key that is not configured (the key itself never appears in a message)."""

    code = "forbidden"


class Overloaded(NewsMTError):
    """Too many translations or summaries in flight; the client should retry after `retry_after` seconds."""

    code = "overloaded"

    def __init__(self, message: str, retry_after: int):
        self.retry_after = retry_after
        super().__init__(message)


class RateLimited(Overloaded):
    """This caller (API key, or client address without keys) used up its NEWSMT_RATE_LIMIT_PER_MINUTE allowance.
    An Overloaded, so it maps to 429 with Retry-After wherever overload does."""

    code = "rate_limited"


class RequestTimedOut(NewsMTError):
    code = "timeout"


class ItemFailed(NewsMTError):
    """One text of a multi-text request failed: the whole request answers with that error, naming the item.
    A wrapper rather than a re-worded copy, because coalesced requests share the original error object."""

    def __init__(self, field: str, index: int, error: NewsMTError):
        self.error = error
        self.code = error.code
        super().__init__(f"{field}[{index}]: {error}")


def mapped(table: Mapping[type[NewsMTError], int], error: NewsMTError, default: int) -> int:
    """What an edge's table (HTTP statuses, CLI exit codes) says for `error`: the entry of the most specific class
    in its MRO, so a subclass inherits its parent's mapping unless the table names it."""
    return next((table[c] for c in type(error).__mro__ if c in table), default)
class InvalidGlossary(InvalidInput):
    """A glossary file or request glossary that cannot be used: no terms, a side missing, a source not Arabic or
    Hebrew, a bad name."""

    code = "invalid_glossary"


class GlossaryNotFound(NewsMTError):
    code = "glossary_not_found"

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"no glossary named {name!r}; list them with `newsmt glossary list` or GET /v1/glossaries")


class AdminKeyRequired(InvalidApiKey):
    """A valid API key that is not one of NEWSMT_ADMIN_API_KEYS tried to change shared state (glossaries)."""
