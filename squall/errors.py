"""Squall's error hierarchy.

    SquallError                      anything Squall raises on purpose
    └── LambdaError                  an error the Lambda API can return; carries its modelled code
        ├── InvalidParameterValue        400  InvalidParameterValueException
        ├── InvalidRequestContent        400  InvalidRequestContentException
        ├── ResourceNotFound             404  ResourceNotFoundException
        ├── ResourceConflict             409  ResourceConflictException
        ├── PreconditionFailed           412  PreconditionFailedException
        ├── RequestTooLarge              413  RequestTooLargeException
        ├── UnsupportedMediaType         415  UnsupportedMediaTypeException
        ├── TooManyRequests              429  TooManyRequestsException (+ Reason, Retry-After)
        ├── CodeStorageExceeded          400  CodeStorageExceededException
        ├── ServiceError                 500  ServiceException
        └── ServiceUnavailable           503  ServiceUnavailableException (AWS's common error;
                                               not in Lambda's model: the server is stopping)

The HTTP status and the spelling of the message member (``message`` or ``Message``)
are not repeated here: the API layer reads them from botocore's service model, the
single source of truth (see ``squall.api.protocol``). Internal failures are mapped to
these at one boundary (``squall.api.app``); a function's own failure is never an
exception but a value in its invocation result.
"""

from __future__ import annotations

from typing import Any


class SquallError(Exception):
    """Base of every error Squall raises deliberately."""


class LambdaError(SquallError):
    """An error with a Lambda error code, answered to the client as such."""

    code = "ServiceException"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        # Extra modelled members, e.g. Reason for TooManyRequestsException.
        self.fields = fields

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidParameterValue(LambdaError):
    code = "InvalidParameterValueException"


class InvalidRequestContent(LambdaError):
    code = "InvalidRequestContentException"


class ResourceNotFound(LambdaError):
    code = "ResourceNotFoundException"


class ResourceConflict(LambdaError):
    code = "ResourceConflictException"


class PreconditionFailed(LambdaError):
    code = "PreconditionFailedException"


class RequestTooLarge(LambdaError):
    code = "RequestTooLargeException"


class UnsupportedMediaType(LambdaError):
    code = "UnsupportedMediaTypeException"


class CodeStorageExceeded(LambdaError):
    code = "CodeStorageExceededException"


class ServiceError(LambdaError):
    code = "ServiceException"


class ServiceUnavailable(LambdaError):
    """The server is shutting down and stopped this request before it finished."""

    code = "ServiceUnavailableException"


class UnknownOperation(LambdaError):
    """A path or method that maps to no operation of the API (AWS answers 404)."""

    code = "UnknownOperationException"


class TooManyRequests(LambdaError):
    code = "TooManyRequestsException"

    def __init__(self, message: str, reason: str, retry_after_seconds: int | None = None) -> None:
        fields: dict[str, Any] = {"Reason": reason}
        if retry_after_seconds is not None:
            fields["retryAfterSeconds"] = str(retry_after_seconds)
        super().__init__(message, **fields)
        self.reason = reason


def function_not_found(arn: str) -> ResourceNotFound:
    return ResourceNotFound(f"Function not found: {arn}")
