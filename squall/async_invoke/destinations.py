"""Destinations of asynchronous invocation results, Lambda's invocation record, and the senders.

Kinds (``Destination.parse``):

- ``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`` — another Squall function; the
  record is its event, invoked asynchronously (queued durably like any Event invoke);
- ``arn:aws:sqs:REGION:ACCOUNT:QUEUE`` — an SQS-compatible queue, record = message body;
- ``arn:aws:sns:REGION:ACCOUNT:TOPIC`` — an SNS-compatible topic, record = message;
- ``http://…`` / ``https://…`` — a webhook (Squall's extension): the record is POSTed as JSON.

SQS and SNS are reached with boto3 at the configured endpoint (``SQUALL_DESTINATION_SQS_ENDPOINT``,
``SQUALL_DESTINATION_SNS_ENDPOINT`` or ``SQUALL_AWS_ENDPOINT``; AWS itself when none is set).
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Awaitable, Callable

import orjson

from squall import __version__
from squall.errors import InvalidParameterValue, SquallError

_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):(?P<account>\d{12}):(?P<resource>.+)$")
_FUNCTION = re.compile(r"^function:(?P<name>[a-zA-Z0-9-_]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]{1,128}))?$")
_QUEUE_OR_TOPIC = re.compile(r"^[a-zA-Z0-9_-]{1,80}(\.fifo)?$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")

ERROR_MESSAGE_MAX = 1024  # dead letters carry the first 1 KB of the error message


class DeliveryError(SquallError):
    """A destination refused or could not take a record."""


class DestinationKind(StrEnum):
    FUNCTION = "lambda"
    QUEUE = "sqs"
    TOPIC = "sns"
    WEBHOOK = "http"


@dataclass(frozen=True)
class Destination:
    kind: DestinationKind
    address: str  # the ARN or URL as given
    region: str = ""
    account: str = ""
    name: str = ""  # function, queue or topic name
    qualifier: str | None = None

    @classmethod
    def parse(cls, value: str) -> "Destination":
        if _URL.fullmatch(value):
            return cls(DestinationKind.WEBHOOK, value)
        match = _ARN.fullmatch(value)
        if match:
            service, resource = match.group("service"), match.group("resource")
            region, account = match.group("region"), match.group("account")
            if service == "lambda":
                fn = _FUNCTION.fullmatch(resource)
                if fn:
                    return cls(DestinationKind.FUNCTION, value, region, account, fn.group("name"), fn.group("qualifier"))
            elif service in ("sqs", "sns") and region and _QUEUE_OR_TOPIC.fullmatch(resource):
                return cls(DestinationKind(service), value, region, account, resource)
        raise InvalidParameterValue(
            f"The destination {value} is not supported: Squall sends records to Lambda functions, SQS queues, "
            "SNS topics (by ARN) and http(s) URLs."
        )


# ---- Lambda's invocation record ---------------------------------------------------------------
def record_timestamp(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _document(payload: bytes | None) -> Any:
    """A payload as JSON inside the record (text when it is not JSON)."""
    if not payload:
        return {} if payload is not None else None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    request_payload: bytes,
    status_code: int,
    executed_version: str | None,
    function_error: str | None,
    response_payload: bytes | None,
    timestamp: float,
) -> bytes:
    """The record Lambda sends to destinations (``version`` 1.0)."""
    response_context: dict[str, Any] = {"statusCode": status_code, "executedVersion": executed_version or "$LATEST"}
    if function_error:
        response_context["functionError"] = function_error
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": record_timestamp(timestamp),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": _document(request_payload),
        "responseContext": response_context,
    }
    if response_payload is not None:
        record["responsePayload"] = _document(response_payload)
    return orjson.dumps(record)


def dead_letter_attributes(request_id: str, status_code: int, error: bytes | None) -> dict[str, str]:
    """Message attributes of a dead letter: RequestID, ErrorCode, ErrorMessage."""
    message = ""
    if error:
        document = _document(error)
        message = str(document.get("errorMessage", "")) if isinstance(document, dict) else str(document)
    attributes = {"RequestID": request_id, "ErrorCode": str(status_code)}
    if message:
        attributes["ErrorMessage"] = message.encode()[:ERROR_MESSAGE_MAX].decode("utf-8", "ignore")
    return attributes


# ---- senders -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoints:
    """Where SQS/SNS-compatible services are, and the credentials to use there."""

    sqs: str | None = None
    sns: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


Enqueue = Callable[[str, "str | None", bytes], Awaitable[None]]  # (function, qualifier, event)


class Senders:
    """Sends one record to one destination; raises :class:`DeliveryError` when it cannot."""

    def __init__(self, endpoints: Endpoints, enqueue: Enqueue, timeout: float = 10.0) -> None:
        self.endpoints = endpoints
        self.enqueue = enqueue
        self.timeout = timeout
        self._clients: dict[tuple[str, str], Any] = {}
        self._queue_urls: dict[str, str] = {}
        self._lock = threading.Lock()
        self._http: Any = None

    async def send(self, target: str, body: bytes, attributes: dict[str, str] | None = None) -> None:
        try:
            destination = Destination.parse(target)
        except InvalidParameterValue as exc:
            raise DeliveryError(exc.message) from exc
        if destination.kind == DestinationKind.FUNCTION:
            try:
                await self.enqueue(destination.name, destination.qualifier, body)
            except SquallError as exc:
                raise DeliveryError(f"{target}: {getattr(exc, 'message', exc)}") from exc
            return
        sender = {
            DestinationKind.QUEUE: self._send_sqs,
            DestinationKind.TOPIC: self._send_sns,
            DestinationKind.WEBHOOK: self._post,
        }[destination.kind]
        try:
            await asyncio.to_thread(sender, destination, body, attributes or {})
        except DeliveryError:
            raise
        except Exception as exc:  # botocore / urllib3 failures of every kind
            raise DeliveryError(f"{target}: {type(exc).__name__}: {exc}") from exc

    # The three below run in a worker thread.
    def _send_sqs(self, destination: Destination, body: bytes, attributes: dict[str, str]) -> None:
        client = self._client("sqs", destination.region)
        url = self._queue_urls.get(destination.address)
        if url is None:
            url = client.get_queue_url(QueueName=destination.name, QueueOwnerAWSAccountId=destination.account)["QueueUrl"]
            self._queue_urls[destination.address] = url
        client.send_message(QueueUrl=url, MessageBody=body.decode("utf-8", "replace"), MessageAttributes=_attributes(attributes))

    def _send_sns(self, destination: Destination, body: bytes, attributes: dict[str, str]) -> None:
        client = self._client("sns", destination.region)
        client.publish(
            TopicArn=destination.address, Message=body.decode("utf-8", "replace"), MessageAttributes=_attributes(attributes)
        )

    def _post(self, destination: Destination, body: bytes, attributes: dict[str, str]) -> None:
        import urllib3

        with self._lock:
            if self._http is None:
                self._http = urllib3.PoolManager(
                    num_pools=16, maxsize=8, retries=False, timeout=urllib3.Timeout(connect=5.0, read=self.timeout)
                )
        headers = {"Content-Type": "application/json", "User-Agent": f"squall/{__version__}"}
        headers.update({f"X-Squall-{k}": v for k, v in attributes.items() if "\n" not in v and "\r" not in v})
        response = self._http.request("POST", destination.address, body=body, headers=headers)
        if not 200 <= response.status < 300:
            raise DeliveryError(f"{destination.address} answered HTTP {response.status}")

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                import boto3
                from botocore.config import Config

                endpoint = self.endpoints.sqs if service == "sqs" else self.endpoints.sns
                credentials: dict[str, str] = {}
                if self.endpoints.access_key_id and self.endpoints.secret_access_key:
                    credentials = {
                        "aws_access_key_id": self.endpoints.access_key_id,
                        "aws_secret_access_key": self.endpoints.secret_access_key,
                    }
                client = self._clients[key] = boto3.session.Session().client(
                    service,
                    region_name=region,
                    endpoint_url=endpoint or None,
                    config=Config(
                        retries={"mode": "standard", "total_max_attempts": 2},
                        connect_timeout=5,
                        read_timeout=self.timeout,
                    ),
                    **credentials,
                )
        return client


def _attributes(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v}
