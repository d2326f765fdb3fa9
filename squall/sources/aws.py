"""boto3 clients for AWS-API event sources (SQS, Kinesis, DynamoDB Streams) at the configured
endpoint, and the thread pool their blocking calls run in.

Long polls hold a thread for up to 20 s, so they get a pool of their own: the default executor
(database calls) must never wait behind them. Its threads are daemons: a stopping server
abandons a long poll in flight (what it brings back is released to the queue, see sqs.py)
instead of waiting for it at exit, which a ``ThreadPoolExecutor`` would do.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable, TypeVar

T = TypeVar("T")

LONG_POLL_SECONDS = 20


class DaemonPool(Executor):
    """A thread pool of daemon threads, grown on demand up to ``threads``."""

    def __init__(self, threads: int, name: str) -> None:
        self._limit = threads
        self._name = name
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            self._work.put((future, lambda: fn(*args, **kwargs)))
            if self._idle == 0 and len(self._threads) < self._limit:
                thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1 if self._idle else 0
        return future

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as error:  # handed to whoever awaits the future
                    future.set_exception(error)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()


class AwsClients:
    def __init__(self, endpoint: str | None, access_key_id: str | None, secret_access_key: str | None,
                 threads: int = 128) -> None:
        self.endpoint = endpoint or None
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.executor = DaemonPool(threads, "squall-source")
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
