"""Notification triggers: SNS topic subscriptions and object-store (S3-compatible) webhooks.

**SNS.** ``POST /squall/triggers/sns`` (signed) makes a trigger with an unguessable id and
subscribes ``<base URL>/squall/triggers/sns/<id>`` to the topic over HTTP at the configured
AWS endpoint. SNS posts there, unsigned by SigV4 (the id in the path is the protection):

* ``SubscriptionConfirmation``: the ``TopicArn`` must be the trigger's; Squall confirms with
  ``ConfirmSubscription`` (the ``Token``) at the configured endpoint. It never fetches the
  message's ``SubscribeURL``, so a forged message cannot make it call an arbitrary URL.
* ``Notification``: with the ``TopicArn`` the trigger's and the function's resource-based
  policy letting ``sns.amazonaws.com`` call ``lambda:InvokeFunction`` with the topic as
  ``SourceArn``, Lambda's SNS event is queued as an asynchronous invocation (retries, event age,
  destinations apply). Denied deliveries are counted and logged.

Signatures: with no endpoint configured (real AWS) or an ``*.amazonaws.com`` one, a message's
SNS signature is checked with the certificate at its ``SigningCertURL``, which must be an
``https://sns.<region>.amazonaws.com/…pem`` URL. With any other endpoint (moto, LocalStack: their
signatures are made with throw-away keys and their cert URLs point at AWS) messages are not
verified; that is logged once per trigger and counted (``unverified``).

**Object stores.** ``POST /squall/triggers/s3`` (signed) makes a webhook trigger with a secret
token. MinIO, Ceph RGW or Garage post bucket notifications to ``/squall/triggers/s3/<id>``
with ``Authorization: Bearer <token>`` (MinIO's ``auth_token``), or to
``/squall/triggers/s3/<id>/<token>`` where the sender cannot set headers. The body is MinIO's
(``EventName``, ``Key``, ``Records``) or a plain S3 event (``Records``); each record goes on as
Lambda's S3 event record (``eventSource`` ``aws:s3``, ``eventName`` without ``s3:``).
The token is the authority: no resource-policy check is made for these.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from squall.api.protocol import HttpResponse
from squall.arn import FunctionRef
from squall.auth.policy import Caller, evaluate
from squall.errors import InvalidParameterValue, LambdaError, ResourceNotFound
from squall.store.triggers import StoredTrigger, TriggerRepository
from squall.triggers.deliveries import Deliveries

log = logging.getLogger("squall.notifications")

SNS_SERVICE = "sns.amazonaws.com"
SNS = Caller(arn=SNS_SERVICE, account="", kind="service", service=SNS_SERVICE)
PREFIX = "/squall/triggers/"
WEBHOOK_PREFIXES = ("/squall/triggers/sns/", "/squall/triggers/s3/")  # public (their own secrets)
_TOPIC_ARN = re.compile(r"arn:aws[\w-]*:sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_.-]{1,256})")
_LAMBDA_ARN = re.compile(r"arn:aws:lambda:([a-z0-9-]+):(\d{12}):function:([A-Za-z0-9_-]{1,64})(?::([$A-Za-z0-9_-]{1,128}))?")
_NAME = re.compile(r"([A-Za-z0-9_-]{1,64})(?::([$A-Za-z0-9_-]{1,128}))?")
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_CERT_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")


# ---- events ------------------------------------------------------------------------------
def sns_event(message: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """Lambda's SNS event for one message SNS posted over HTTP (note Lambda's ``…Url`` spelling)."""
    attributes = {k: {"Type": v.get("Type"), "Value": v.get("Value")}
                  for k, v in (message.get("MessageAttributes") or {}).items() if isinstance(v, dict)}
    return {"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": subscription_arn,
        "Sns": {"Type": "Notification", "MessageId": message.get("MessageId"), "TopicArn": message.get("TopicArn"),
                "Subject": message.get("Subject"), "Message": message.get("Message"),
                "Timestamp": message.get("Timestamp"), "SignatureVersion": message.get("SignatureVersion"),
                "Signature": message.get("Signature"), "SigningCertUrl": message.get("SigningCertURL"),
                "UnsubscribeUrl": message.get("UnsubscribeURL"), "MessageAttributes": attributes},
    }]}


def parse_sns(body: bytes) -> dict[str, Any] | None:
    """An SNS HTTP message, or None when the body is not one."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.get("Type") not in _SNS_TYPES:
        return None
    if not isinstance(message.get("TopicArn"), str) or not isinstance(message.get("MessageId"), str):
        return None
    return message


def s3_records(body: bytes, region: str) -> list[dict[str, Any]] | None:
    """Lambda's S3 event records from MinIO's webhook body or a plain S3 event; None when the
    body is not a bucket notification. (S3's ``s3:TestEvent`` gives no records: an empty list.)"""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    if document.get("Event") == "s3:TestEvent":
        return []
    records = document.get("Records")
    if not isinstance(records, list) or not records:
        return None
    out: list[dict[str, Any]] = []
    for record in records:
        converted = _s3_record(record, region)
        if converted is None:
            return None
        out.append(converted)
    return out


def _s3_record(record: Any, region: str) -> dict[str, Any] | None:
    if not isinstance(record, dict):
        return None
    s3 = record.get("s3")
    name = record.get("eventName")
    if not isinstance(s3, dict) or not isinstance(name, str) or not name:
        return None
    bucket, obj = s3.get("bucket"), s3.get("object")
    if not isinstance(bucket, dict) or not isinstance(bucket.get("name"), str) or not isinstance(obj, dict) \
            or not isinstance(obj.get("key"), str):
        return None
    bucket_name = bucket["name"]
    shown_object: dict[str, Any] = {"key": obj["key"]}  # already URL-encoded by the sender, as S3 does
    for key in ("size", "eTag", "versionId", "sequencer"):
        if obj.get(key) not in (None, ""):
            shown_object[key] = obj[key]
    response = record.get("responseElements") or {}
    return {
        "eventVersion": record.get("eventVersion") or "2.1",
        "eventSource": "aws:s3",
        "awsRegion": record.get("awsRegion") or region,
        "eventTime": record.get("eventTime") or _now(),
        "eventName": name.removeprefix("s3:"),
        "userIdentity": {"principalId": (record.get("userIdentity") or {}).get("principalId", "")},
        "requestParameters": {"sourceIPAddress": (record.get("requestParameters") or {}).get("sourceIPAddress", "")},
        "responseElements": {"x-amz-request-id": response.get("x-amz-request-id", ""),
                             "x-amz-id-2": response.get("x-amz-id-2", "")},
        "s3": {"s3SchemaVersion": s3.get("s3SchemaVersion") or "1.0",
               "configurationId": s3.get("configurationId") or "",
               "bucket": {"name": bucket_name,
                          "ownerIdentity": {"principalId": (bucket.get("ownerIdentity") or {}).get("principalId", "")},
                          "arn": bucket.get("arn") or f"arn:aws:s3:::{bucket_name}"},
               "object": shown_object},
    }


def _now() -> str:
    moment = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"


# ---- SNS signatures ----------------------------------------------------------------------
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def string_to_sign(message: dict[str, Any]) -> bytes:
    """SNS's canonical text: each signed key present, then its value, one per line."""
    lines = []
    for key in _SIGNED_KEYS[message["Type"]]:
        if message.get(key) is not None:
            lines.append(f"{key}\n{message[key]}\n")
    return "".join(lines).encode()


def cert_url_allowed(url: Any) -> bool:
    parts = urlsplit(url) if isinstance(url, str) else None
    return bool(parts and parts.scheme == "https" and parts.hostname and _CERT_HOST.fullmatch(parts.hostname)
                and parts.port is None and parts.path.endswith(".pem"))


def verify_signature(message: dict[str, Any], cert_pem: bytes) -> bool:
    """Whether ``Signature`` is the certificate's key's signature (SHA1 for version 1, SHA256 for 2)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    version = message.get("SignatureVersion")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(version))
    if algorithm is None:
        return False
    try:
        key = x509.load_pem_x509_certificate(cert_pem).public_key()
        key.verify(base64.b64decode(message.get("Signature") or ""), string_to_sign(message),  # type: ignore[union-attr, call-arg]
                   padding.PKCS1v15(), algorithm)  # type: ignore[call-arg]
    except (InvalidSignature, ValueError, TypeError, KeyError):
        return False
    return True


def _fetch_cert(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (an allowed https AWS URL only)
        return response.read(65536)


def verifies_signatures(endpoint: str | None) -> bool:
    """Real SNS signs with keys whose certificates it publishes; moto or LocalStack do not."""
    if not endpoint:
        return True
    host = urlsplit(endpoint).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


# ---- the service -------------------------------------------------------------------------
class Notifications:
    def __init__(self, repo: TriggerRepository, region: str, account_id: str,
                 accept: Callable[[FunctionRef, bytes, str], Awaitable[None]],
                 resource_policy: Callable[[str], Any], exists: Callable[[FunctionRef], Awaitable[bool]],
                 clients: Any, endpoint: str | None, fetch_cert: Callable[[str], bytes] = _fetch_cert,
                 deliveries: Deliveries | None = None) -> None:
        self.repo = repo
        self.deliveries = deliveries or Deliveries()
        self.region = region
        self.account_id = account_id
        self.accept = accept
        self.resource_policy = resource_policy
        self.exists = exists
        self.clients = clients  # squall.sources.aws.AwsClients (at the configured endpoint)
        self.verify = verifies_signatures(endpoint)
        self.fetch_cert = fetch_cert
        self._certs: dict[str, bytes] = {}
        self._warned: set[str] = set()
        self.stats = {"notifications": 0, "delivered": 0, "denied": 0, "failed": 0, "confirmed": 0, "rejected": 0,
                      "unverified": 0}

    def report(self) -> dict[str, int]:
        return dict(self.stats)

    # ---- setting up (signed) ----------------------------------------------------------
    def _function_arn(self, value: Any) -> tuple[str, FunctionRef]:
        if not isinstance(value, str) or not value:
            raise InvalidParameterValue("FunctionName is required.")
        match = _LAMBDA_ARN.fullmatch(value)
        if match is not None:
            if match.group(1) != self.region or match.group(2) != self.account_id:
                raise InvalidParameterValue(f"{value} is not a function of this server.")
            name, qualifier = match.group(3), match.group(4)
        else:
            plain = _NAME.fullmatch(value)
            if plain is None:
                raise InvalidParameterValue(f"FunctionName {value!r} is not valid.")
            name, qualifier = plain.group(1), plain.group(2)
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}" + (f":{qualifier}" if qualifier else "")
        return arn, FunctionRef(name, qualifier)

    async def create(self, request: Any, kind: str, access: Any) -> HttpResponse:
        try:
            params = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            raise InvalidParameterValue("The body must be a JSON object.") from None
        if not isinstance(params, dict):
            raise InvalidParameterValue("The body must be a JSON object.")
        arn, ref = self._function_arn(params.get("FunctionName"))
        access.check(request.state.get("principal"), "lambda:AddPermission", arn)
        if not await self.exists(ref):
            raise ResourceNotFound(f"Function not found: {arn}")
        base = str(params.get("BaseUrl") or request.base_url).rstrip("/")
        if urlsplit(base).scheme not in ("http", "https"):
            raise InvalidParameterValue("BaseUrl must be an http(s) URL.")
        if kind == "sns":
            return _json(200, await self.subscribe_sns(arn, params.get("TopicArn"), base))
        return _json(200, await asyncio.to_thread(self.create_webhook, arn, base))

    async def subscribe_sns(self, function_arn: str, topic_arn: Any, base: str) -> dict[str, Any]:
        if not isinstance(topic_arn, str) or _TOPIC_ARN.fullmatch(topic_arn) is None:
            raise InvalidParameterValue(f"TopicArn {topic_arn!r} is not an SNS topic ARN.")
        trigger = await asyncio.to_thread(self.repo.find, "sns", function_arn, topic_arn)
        if trigger is None:
            trigger = StoredTrigger(secrets.token_urlsafe(24), "sns", function_arn, topic_arn, None, {}, time.time())
        endpoint = f"{base}{PREFIX}sns/{trigger.trigger_id}"
        region = _TOPIC_ARN.fullmatch(topic_arn).group(1)  # type: ignore[union-attr]
        sns = self.clients.client("sns", region)
        await asyncio.to_thread(self.repo.put, trigger)  # before subscribing: SNS may post at once
        try:
            answer = await self.clients.call(sns.subscribe, TopicArn=topic_arn, Protocol="http", Endpoint=endpoint,
                                             ReturnSubscriptionArn=True)
        except Exception as exc:
            if not trigger.document:
                await asyncio.to_thread(self.repo.delete, trigger.trigger_id)
            raise InvalidParameterValue(f"Subscribing to {topic_arn} failed: {exc}") from None
        subscription = answer.get("SubscriptionArn", "")
        confirmed = bool(trigger.document.get("Confirmed")) or not subscription.endswith("pending confirmation")
        trigger = StoredTrigger(trigger.trigger_id, "sns", function_arn, topic_arn, None,
                                {**trigger.document, "SubscriptionArn": subscription, "Endpoint": endpoint,
                                 "Confirmed": confirmed}, trigger.created_at)
        await asyncio.to_thread(self.repo.put, trigger)
        return {"TriggerId": trigger.trigger_id, "FunctionArn": function_arn, "TopicArn": topic_arn,
                "SubscriptionArn": subscription, "Endpoint": endpoint}

    def create_webhook(self, function_arn: str, base: str) -> dict[str, Any]:
        trigger = StoredTrigger(secrets.token_urlsafe(24), "s3", function_arn, "webhook", secrets.token_urlsafe(32),
                                {}, time.time())
        self.repo.put(trigger)
        return {"TriggerId": trigger.trigger_id, "FunctionArn": function_arn,
                "Endpoint": f"{base}{PREFIX}s3/{trigger.trigger_id}", "Token": trigger.token}

    # ---- webhooks (public) --------------------------------------------------------------
    async def webhook(self, request: Any) -> HttpResponse:
        rest = request.path[len(PREFIX):]
        kind, _, tail = rest.partition("/")
        trigger_id, _, path_token = tail.partition("/")
        if kind not in ("sns", "s3") or not _ID.fullmatch(trigger_id) or (kind == "sns" and path_token):
            return _text(404, "No such trigger.")
        trigger = await asyncio.to_thread(self.repo.get, trigger_id)
        if trigger is None or trigger.kind != kind:
            return _text(404, "No such trigger.")
        if kind == "sns":
            return await self._sns(request, trigger)
        return await self._s3(request, trigger, path_token)

    async def _sns(self, request: Any, trigger: StoredTrigger) -> HttpResponse:
        message = parse_sns(request.body)
        if message is None:
            self.stats["rejected"] += 1
            return _text(400, "The body is not an SNS message.")
        if message["TopicArn"] != trigger.source:
            self.stats["rejected"] += 1
            log.warning("trigger %s: a message for %s, not its topic %s; refused", trigger.trigger_id,
                        message["TopicArn"], trigger.source)
            return _text(403, "The message is not for this trigger's topic.")
        if not await self._signature_ok(message, trigger):
            self.stats["rejected"] += 1
            return _text(403, "The message's SNS signature does not verify.")
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            return await self._confirm(message, trigger)
        if kind == "UnsubscribeConfirmation":
            return _text(200, "")
        self.stats["notifications"] += 1
        subscription = request.headers.get("x-amz-sns-subscription-arn") or trigger.document.get("SubscriptionArn", "")
        context = {"aws:sourcearn": trigger.source, "aws:sourceaccount": trigger.source.split(":")[4]}
        arn = trigger.function_arn
        if not evaluate(SNS, "lambda:InvokeFunction", arn, (), self.resource_policy(arn), context).allowed:
            self.stats["denied"] += 1
            self.deliveries.failed(trigger.trigger_id, "AccessDeniedException: the function's resource-based policy "
                                   "does not allow this topic")
            log.warning("trigger %s: the resource-based policy of %s does not let sns.amazonaws.com invoke it for "
                        "%s; message %s not delivered", trigger.trigger_id, arn, trigger.source, message["MessageId"])
            return _text(200, "")  # SNS would only retry: the answer does not change until the policy does
        return await self._deliver(trigger, orjson.dumps(sns_event(message, subscription)))

    async def _signature_ok(self, message: dict[str, Any], trigger: StoredTrigger) -> bool:
        if not self.verify:
            self.stats["unverified"] += 1
            if trigger.trigger_id not in self._warned:
                self._warned.add(trigger.trigger_id)
                log.warning("trigger %s: SNS signatures are not verified with a non-AWS endpoint (moto, LocalStack); "
                            "the unguessable trigger id is the protection", trigger.trigger_id)
            return True
        url = message.get("SigningCertURL")
        if not cert_url_allowed(url):
            log.warning("trigger %s: SigningCertURL %r is not an SNS certificate URL; refused", trigger.trigger_id, url)
            return False
        cert = self._certs.get(url)
        if cert is None:
            try:
                cert = await asyncio.to_thread(self.fetch_cert, url)
            except Exception as exc:
                log.warning("trigger %s: fetching %s failed: %s", trigger.trigger_id, url, exc)
                return False
            if len(self._certs) > 64:
                self._certs.clear()
            self._certs[url] = cert
        if not verify_signature(message, cert):
            log.warning("trigger %s: message %s has a bad SNS signature; refused", trigger.trigger_id,
                        message.get("MessageId"))
            return False
        return True

    async def _confirm(self, message: dict[str, Any], trigger: StoredTrigger) -> HttpResponse:
        token = message.get("Token")
        if not isinstance(token, str) or not token:
            self.stats["rejected"] += 1
            return _text(400, "A SubscriptionConfirmation needs a Token.")
        region = trigger.source.split(":")[3]
        sns = self.clients.client("sns", region)
        try:  # at the configured endpoint; SubscribeURL is never fetched
            answer = await self.clients.call(sns.confirm_subscription, TopicArn=trigger.source, Token=token)
        except Exception as exc:
            log.warning("trigger %s: confirming the subscription to %s failed: %s", trigger.trigger_id,
                        trigger.source, exc)
            return _text(502, "Confirming the subscription failed.")
        document = {**trigger.document, "Confirmed": True}
        if answer.get("SubscriptionArn"):
            document["SubscriptionArn"] = answer["SubscriptionArn"]
        await asyncio.to_thread(self.repo.put, StoredTrigger(trigger.trigger_id, trigger.kind, trigger.function_arn,
                                                             trigger.source, None, document, trigger.created_at))
        self.stats["confirmed"] += 1
        log.info("trigger %s: confirmed the subscription to %s", trigger.trigger_id, trigger.source)
        return _text(200, "")

    async def _s3(self, request: Any, trigger: StoredTrigger, path_token: str) -> HttpResponse:
        header = request.headers.get("authorization", "")
        given = path_token or (header[7:].strip() if header[:7].lower() == "bearer " else header.strip())
        if not trigger.token or not hmac.compare_digest(given.encode(), trigger.token.encode()):
            self.stats["rejected"] += 1
            return _text(403, "The token is not this webhook's.")
        records = s3_records(request.body, self.region)
        if records is None:
            self.stats["rejected"] += 1
            return _text(400, "The body is not a bucket notification.")
        if not records:
            return _text(200, "")
        self.stats["notifications"] += 1
        return await self._deliver(trigger, orjson.dumps({"Records": records}))

    async def _deliver(self, trigger: StoredTrigger, payload: bytes) -> HttpResponse:
        match = _LAMBDA_ARN.fullmatch(trigger.function_arn)
        assert match is not None
        try:
            await self.accept(FunctionRef(match.group(3), match.group(4)), payload, str(uuid.uuid4()))
        except LambdaError as exc:
            self.stats["failed"] += 1
            self.deliveries.failed(trigger.trigger_id, f"{exc.code}: {exc.message}")
            log.warning("trigger %s: %s: %s", trigger.trigger_id, exc.code, exc.message)
            return _text(500 if exc.code == "ServiceException" else 404, exc.message)
        self.stats["delivered"] += 1
        self.deliveries.delivered(trigger.trigger_id)
        return _text(200, "")


def _text(status: int, text: str) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "text/plain")], text.encode())


def _json(status: int, document: Any) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], orjson.dumps(document))
