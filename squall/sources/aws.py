"""boto3 clients for AWS-API event sources (SQS, Kinesis, DynamoDB Streams) at the configured
endpoint, and the thread pool their blocking calls run in.

Long polls hold a thread for up to 20 s, so they get a pool of their own: the default executor
(database calls) must never wait behind them.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")

LONG_POLL_SECONDS = 20


class AwsClients:
    def __init__(self, endpoint: str | None, access_key_id: str | None, secret_access_key: str | None,
                 threads: int = 128) -> None:
        self.endpoint = endpoint or None
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="squall-source")
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                import boto3
                from botocore.config import Config

                credentials: dict[str, str] = {}
                if self.access_key_id and self.secret_access_key:
                    credentials = {"aws_access_key_id": self.access_key_id,
                                   "aws_secret_access_key": self.secret_access_key}
                client = self._clients[key] = boto3.session.Session().client(
                    service, region_name=region, endpoint_url=self.endpoint,
                    config=Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5,
                                  read_timeout=LONG_POLL_SECONDS + 10, max_pool_connections=64),
                    **credentials,
                )
        return client

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def describe(error: BaseException) -> str:
    """A short, user-facing account of a botocore failure."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', type(error).__name__)}: {err.get('Message', '')}".rstrip(": ")
    return f"{type(error).__name__}: {error}"
