"""Squall's error hierarchy.

    SquallError                      anything Squall raises on purpose
    └── LambdaError                  an error the Lambda API can return; carries its modelled code
        ├── Validation                   400  ValidationException (a model constraint; counted)
        ├── InvalidParameterValue        400  InvalidParameterValueException (Lambda's own checks)
        ├── InvalidRequestContent        400  InvalidRequestContentException
        ├── AccessDenied                 403  AccessDeniedException (another account's resource)
        ├── ResourceNotFound             404  ResourceNotFoundException
        ├── ProvisionedConcurrencyConfigNotFound  404
        ├── ResourceConflict             409  ResourceConflictException
        ├── PreconditionFailed           412  PreconditionFailedException
        ├── RequestTooLarge              413  RequestTooLargeException
        ├── RequestEntityTooLarge        413  RequestEntityTooLargeException (what AWS answers for
        │                                     oversized requests, zips and payloads; not modelled)
        ├── UnsupportedMediaType         415  UnsupportedMediaTypeException
        ├── TooManyRequests              429  TooManyRequestsException (+ Reason, Retry-After)
        ├── CodeStorageExceeded          400  CodeStorageExceededException
        ├── InvalidSubnetID              502  InvalidSubnetIDException (a function's network is
        │                                     not in this server's settings, at invoke)
        ├── ServiceError                 500  ServiceException
        ├── ServiceUnavailable           503  ServiceUnavailableException (AWS's common error;
        │                                     not in Lambda's model: the server is stopping)
        └── NotImplemented               501  NotImplementedException (an operation of the model
                                              Squall does not serve yet; never a "not found")

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


class Validation(LambdaError):
    """Input that breaks a constraint of the service model (AWS's wording, all problems counted)."""

    code = "ValidationException"


class AccessDenied(LambdaError):
    code = "AccessDeniedException"


class ProvisionedConcurrencyConfigNotFound(LambdaError):
    code = "ProvisionedConcurrencyConfigNotFoundException"


class InvalidParameterValue(LambdaError):
    code = "InvalidParameterValueException"


class InvalidRequestContent(LambdaError):
    code = "InvalidRequestContentException"


class ResourceNotFound(LambdaError):
    code = "ResourceNotFoundException"


class ResourceConflict(LambdaError):
    code = "ResourceConflictException"


class ResourceInUse(LambdaError):
    code = "ResourceInUseException"


class PreconditionFailed(LambdaError):
    code = "PreconditionFailedException"


class RequestTooLarge(LambdaError):
    code = "RequestTooLargeException"


class RequestEntityTooLarge(LambdaError):
    code = "RequestEntityTooLargeException"


class NotImplementedOperation(LambdaError):
    code = "NotImplementedException"


class UnsupportedMediaType(LambdaError):
    code = "UnsupportedMediaTypeException"


class CodeStorageExceeded(LambdaError):
    code = "CodeStorageExceededException"


class InvalidSubnetID(LambdaError):
    """A function's network (VpcConfig or tag) is not one of this server's (502, at invoke)."""

    code = "InvalidSubnetIDException"


class MissingAuthenticationToken(LambdaError):
    """A request without any signature (403)."""

    code = "MissingAuthenticationTokenException"


class IncompleteSignature(LambdaError):
    """An Authorization header or presigned query that is not a whole SigV4 signature (400)."""

    code = "IncompleteSignatureException"


class InvalidSignature(LambdaError):
    """A signature that does not match, or that is out of its time (403)."""

    code = "InvalidSignatureException"


class UnrecognizedClient(LambdaError):
    """An access key (or session token) nobody issued (403)."""

    code = "UnrecognizedClientException"


class ExpiredToken(LambdaError):
    """Temporary credentials past their expiry (403)."""

    code = "ExpiredTokenException"


class MalformedPolicyDocument(LambdaError):
    """A policy document IAM cannot read (400; IAM's error)."""

    code = "MalformedPolicyDocument"


# ---- IAM's own errors (the IAM API answers them in its XML; statuses in api/iam_api.py) ----------
class NoSuchEntity(LambdaError):
    code = "NoSuchEntity"


class EntityAlreadyExists(LambdaError):
    code = "EntityAlreadyExists"


class DeleteConflict(LambdaError):
    code = "DeleteConflict"


class LimitExceeded(LambdaError):
    code = "LimitExceeded"


class IamValidationError(LambdaError):
    code = "ValidationError"


class InvalidInput(LambdaError):
    code = "InvalidInput"


class PolicyLengthExceeded(LambdaError):
    code = "PolicyLengthExceededException"


class PublicPolicy(LambdaError):
    code = "PublicPolicyException"


class ServiceError(LambdaError):
    code = "ServiceException"


class ServiceUnavailable(LambdaError):
    """The server is shutting down and stopped this request before it finished."""

    code = "ServiceUnavailableException"


class UnknownOperation(LambdaError):
    """A path or method that maps to no operation of the API (AWS answers 404)."""

    code = "UnknownOperationException"


class RecursiveInvocation(LambdaError):
    code = "RecursiveInvocationException"


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
