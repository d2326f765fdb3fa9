"""PostgreSQL away and back: warm invokes go on, an async invoke is refused (never a 202 that could
be lost), and the front end reconnects (its relay listens again, its caches are reset).

The database is "restarted" by cutting a TCP proxy between the front end and the machine's
PostgreSQL (closing its listener and every connection), then opening it again on the same port:
other tests keep their database.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, start_server
from tests.e2e.test_cluster_front_ends import within
from tests.e2e.test_postgres import PG_HOST, PG_PORT

pytestmark = pytest.mark.timeout(300)


class Proxy:
    """127.0.0.1:<port> → PostgreSQL, which a test can cut and restore."""

    def __init__(self) -> None:
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open()

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection((PG_HOST, PG_PORT), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        assert self._listener is not None
        try:  # wakes the accepting thread (a close alone leaves a blocked accept() accepting)
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def health(server) -> dict:
    return json.loads(urllib.request.urlopen(f"{server.endpoint}/health", timeout=30).read())


def test_warm_invokes_go_on_while_the_database_is_away(shared_database, tmp_path):
    proxy = Proxy()
    url = shared_database.replace(f"{PG_HOST}:{PG_PORT}", f"127.0.0.1:{proxy.port}")
    server = start_server(tmp_path / "data", env={"SQUALL_DATABASE_URL": url})
    try:
        lam = server.client("lambda")
        name = create_function(lam, "def handler(e, c):\n    return {'ok': e}\n")
        assert json.loads(lam.invoke(FunctionName=name, Payload=b"1")["Payload"].read()) == {"ok": 1}
        within(lambda: health(server)["cluster"]["relay"]["connected"], "the relay listens")

        proxy.cut()
        for n in range(20):  # warm: the invoke path touches no database
            assert json.loads(lam.invoke(FunctionName=name, Payload=str(n).encode())["Payload"].read()) == {"ok": n}
        with pytest.raises(ClientError) as refused:  # not accepted (no 202) while it cannot be stored
            lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
        within(lambda: not health(server)["cluster"]["relay"]["connected"], "the relay notices")
        assert "database" in health(server)["problems"]

        proxy.open()  # PostgreSQL is back
        within(lambda: health(server)["cluster"]["relay"]["connected"], "the relay listens again", seconds=30)
        within(lambda: "database" not in health(server)["problems"], "the database answers again", seconds=30)
        assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
        again = create_function(lam, "def handler(e, c):\n    return 'after'\n")
        assert lam.invoke(FunctionName=again)["Payload"].read() == b'"after"'
    finally:
        server.stop()
        proxy.cut() if proxy._listener is not None else None
