"""AWS's query protocol (IAM, STS): form-encoded requests, XML responses, from botocore's model.

A request is ``Action=Op&Version=…&Name=value&List.member.1=…&Struct.Member=…`` (a POST body
or the query string). Its parameters are read by the operation's input shape and checked by
the same model-driven validator the Lambda API uses (``protocol.py``; IAM's
``ValidationError`` has the same wording). The output is
``<OpResponse xmlns=…><OpResult>…</OpResult><ResponseMetadata><RequestId>…`` and an error
``<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error>…``,
with the status the model gives the error.
"""

from __future__ import annotations

import datetime
from typing import Any
from xml.sax.saxutils import escape

from botocore.model import OperationModel, ServiceModel, Shape

from squall.api.protocol import HttpResponse, Validator, _problem, _validator
from squall.errors import IamValidationError, InvalidInput, LambdaError

_UNMODELLED = {  # errors every query service may answer
    "ValidationError": 400, "InvalidInput": 400, "MalformedPolicyDocument": 400, "AccessDenied": 403,
    "AccessDeniedException": 403, "InvalidClientTokenId": 403, "SignatureDoesNotMatch": 403,
    "MissingAuthenticationToken": 403, "IncompleteSignature": 400, "ExpiredToken": 403, "InvalidAction": 400,
    "ServiceUnavailable": 503, "InternalFailure": 500, "NotImplemented": 501,
}
# Lambda-style auth errors, in the words query services use
_QUERY_CODES = {
    "UnrecognizedClientException": "InvalidClientTokenId",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "MissingAuthenticationTokenException": "MissingAuthenticationToken",
    "IncompleteSignatureException": "IncompleteSignature",
    "ExpiredTokenException": "ExpiredToken",
    "AccessDeniedException": "AccessDenied",
    "ServiceException": "InternalFailure",
    "ServiceUnavailableException": "ServiceUnavailable",
    "NotImplementedException": "NotImplemented",
    "UnknownOperationException": "InvalidAction",
}


class QueryProtocol:
    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        self.namespace = model.metadata.get("xmlNamespace", "")
        self.version = model.metadata["apiVersion"]
        self._validators: dict[str, Validator] = {}
        self._statuses = {}
        for name in model.shape_names:
            shape = model.shape_for(name)
            error = shape.metadata.get("error") if shape.metadata.get("exception") else None
            if error:
                self._statuses[error.get("code", name)] = error.get("httpStatusCode", 400)

    def operation(self, name: str) -> OperationModel:
        return self.model.operation_model(name)

    # ---- requests -------------------------------------------------------------------------
    def parse(self, op: OperationModel, form: dict[str, list[str]]) -> dict[str, Any]:
        shape = op.input_shape
        if shape is None:
            return {}
        flat = {k: v[-1] for k, v in form.items() if k not in ("Action", "Version")}
        params = _structure(shape, flat, "")
        problems: list[str] = []
        _validator(shape, self._validators)(params, "", problems)
        if problems:
            count = len(problems)
            raise IamValidationError(f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems))
        return params

    # ---- responses ------------------------------------------------------------------------
    def serialize(self, op: OperationModel, output: dict[str, Any], request_id: str) -> HttpResponse:
        inner = ""
        shape = op.output_shape
        if shape is not None:
            body = _members(shape, output)
            wrapper = shape.serialization.get("resultWrapper", f"{op.name}Result")
            inner = f"<{wrapper}>{body}</{wrapper}>"
        xml = (f'<{op.name}Response xmlns="{self.namespace}">{inner}'
               f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op.name}Response>")
        return HttpResponse(200, [("Content-Type", "text/xml")], xml.encode())

    def serialize_error(self, error: LambdaError, request_id: str) -> HttpResponse:
        code = _QUERY_CODES.get(error.code, error.code)
        status = self._statuses.get(code) or _UNMODELLED.get(code, 400)
        fault = "Sender" if status < 500 else "Receiver"
        xml = (f'<ErrorResponse xmlns="{self.namespace}"><Error><Type>{fault}</Type><Code>{escape(code)}</Code>'
               f"<Message>{escape(error.message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
        return HttpResponse(status, [("Content-Type", "text/xml")], xml.encode())


# ---- form → parameters ----------------------------------------------------------------------
def _structure(shape: Shape, flat: dict[str, str], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        key = prefix + member.serialization.get("name", name)
        value = _value(member, flat, key)
        if value is not None:
            out[name] = value
    return out


def _value(shape: Shape, flat: dict[str, str], key: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if not any(k.startswith(key + ".") for k in flat):
            return None
        return _structure(shape, flat, key + ".")
    if kind == "list":
        member = shape.member
        flattened = shape.serialization.get("flattened")
        base = key if flattened else key + "." + member.serialization.get("name", "member")
        items = []
        i = 1
        while True:
            item = _value(member, flat, f"{base}.{i}")
            if item is None:
                break
            items.append(item)
            i += 1
        if not items and key in flat and flat[key] == "":
            return []
        return items if items else None
    if kind == "map":
        entries: dict[str, Any] = {}
        i = 1
        while f"{key}.entry.{i}.key" in flat:
            entries[flat[f"{key}.entry.{i}.key"]] = _value(shape.value, flat, f"{key}.entry.{i}.value")
            i += 1
        return entries or None
    if key not in flat:
        return None
    raw = flat[key]
    if kind in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            raise InvalidInput(_problem(raw, key, f"Member must be of type {kind}")) from None
    if kind in ("double", "float"):
        try:
            return float(raw)
        except ValueError:
            raise InvalidInput(_problem(raw, key, f"Member must be of type {kind}")) from None
    if kind == "boolean":
        return raw.lower() == "true"
    return raw


# ---- output → XML ---------------------------------------------------------------------------
def _members(shape: Shape, value: dict[str, Any]) -> str:
    parts = []
    for name, member in shape.members.items():
        if name not in value or value[name] is None:
            continue
        tag = member.serialization.get("name", name)
        parts.append(_element(member, tag, value[name]))
    return "".join(parts)


def _element(shape: Shape, tag: str, value: Any) -> str:
    kind = shape.type_name
    if kind == "structure":
        return f"<{tag}>{_members(shape, value)}</{tag}>"
    if kind == "list":
        member_tag = shape.member.serialization.get("name", "member")
        items = "".join(_element(shape.member, member_tag, v) for v in value)
        return f"<{tag}>{items}</{tag}>"
    if kind == "map":
        entries = "".join(
            f"<entry>{_element(shape.key, 'key', k)}{_element(shape.value, 'value', v)}</entry>" for k, v in value.items()
        )
        return f"<{tag}>{entries}</{tag}>"
    if kind == "timestamp":
        if isinstance(value, datetime.datetime):
            value = value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif kind == "boolean":
        value = "true" if value else "false"
    return f"<{tag}>{escape(str(value))}</{tag}>"
