"""Code from S3-compatible storage: ``Code.S3Bucket``/``S3Key``/``S3ObjectVersion`` on
CreateFunction and UpdateFunctionCode, ``Content.S3*`` on PublishLayerVersion.

Squall reads the object from the configured endpoint (``aws_endpoint``, with ``aws_access_key_id``
/ ``aws_secret_access_key``; AWS itself when none is set), through the same boto3 clients as the
event sources. As on Lambda, a package from S3 may be up to 250 MB (262,144,000 bytes) where a
direct upload stops at 50 MB zipped; the unzipped limit (250 MB with the layers) still applies.
S3's own errors come back as Lambda's: ``InvalidParameterValueException: Error occurred while
GetObject. S3 Error Code: NoSuchKey. S3 Error Message: …``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from squall.code import CodeLimits, CodePackage, inspect_zip
from squall.errors import InvalidParameterValue

S3_MAX_ZIPPED = 262_144_000  # Lambda: a package from S3 is bounded by the unzipped limit only


class S3Code:
    def __init__(self, clients: Any, region: str, limits: CodeLimits = CodeLimits()) -> None:
        self.clients = clients  # squall.sources.aws.AwsClients
        self.region = region
        self.limits = dataclasses.replace(limits, max_zipped=max(limits.max_zipped, S3_MAX_ZIPPED))

    async def package(self, bucket: Any, key: Any, version: Any = None) -> CodePackage:
        """The package stored at ``bucket``/``key`` (a version of it), inspected."""
        if not bucket or not key:
            raise InvalidParameterValue("Both S3Bucket and S3Key must be given to read code from S3.")
        data = await self.clients.call(self._get, str(bucket), str(key), str(version) if version else None)
        return await self.clients.call(inspect_zip, data, self.limits)

    def _get(self, bucket: str, key: str, version: str | None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = self.clients.client("s3", self.region)
        extra = {"VersionId": version} if version else {}
        try:
            found = s3.get_object(Bucket=bucket, Key=key, **extra)
            size = int(found.get("ContentLength") or 0)
            if size > self.limits.max_zipped:  # said before the body is read
                found["Body"].close()
                raise InvalidParameterValue(
                    f"Unzipped size must be smaller than {self.limits.max_unzipped} bytes: the object "
                    f"s3://{bucket}/{key} is {size} bytes.")
            return found["Body"].read(self.limits.max_zipped + 1)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code") or "Unknown"
            message = error.get("Message") or str(exc)
            raise InvalidParameterValue(
                f"Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {message}") from None
        except BotoCoreError as exc:
            raise InvalidParameterValue(
                f"Error occurred while GetObject. The S3 endpoint could not be reached: {exc}. "
                "Check the server's aws_endpoint setting (SQUALL_AWS_ENDPOINT).") from None
