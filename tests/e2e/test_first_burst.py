"""Issue 21, as a user met it: the first burst of cold starts on a freshly started server.

Create a function, wait until it is Active, invoke it 12 times at once from 12 threads:
all 12 answer. Run on each backend, each on a server of its own started for this test.
"""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from tests.conftest import create_function, require, start_server
from tests.contract import linux_unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BURST = 12


@pytest.mark.parametrize("isolation", ["process", "linux"])
def test_first_burst_on_a_fresh_server_all_succeed(isolation, tmp_path):
    if isolation == "linux":
        reason = linux_unavailable()
        require(reason is None, f"linux sandbox unavailable: {reason}")
    server = start_server(tmp_path / "data", "--isolation", isolation, env={"SQUALL_MEMORY_CAPACITY_MB": "20000"})
    try:
        lam = server.client("lambda", max_pool_connections=BURST)
        name = create_function(lam, "def handler(e, c):\n    import time; time.sleep(0.5); return 1\n", Timeout=30)
        with cf.ThreadPoolExecutor(BURST) as pool:
            answers = list(pool.map(lambda _: lam.invoke(FunctionName=name)["Payload"].read(), range(BURST)))
        assert answers == [b"1"] * BURST, [a for a in answers if a != b"1"][:2]
    finally:
        server.stop()
