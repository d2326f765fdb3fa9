"""Parallel scaling: P concurrent invokes of a function that sleeps 100 ms, P = 1 ... 32.

Each wave sends P invokes at once (one keep-alive connection per caller, opened before the
wave) and times the wave until the last reply; ideal is one handler duration (100 ms)
whatever P, since every invoke runs in its own environment. The first wave at a new P
includes the cold starts of the environments it adds; later waves are warm. Environments
are counted through ``context.log_stream_name``, which is unique per environment.

Baseline, same run: P fresh Python processes started at once, each running the same handler.

    python bench/parallel_scaling.py [--quick] [--levels 1,2,4,8,16,32] [--waves 5] [--endpoint URL] [--isolation ...] [--json [FILE]]
"""

from __future__ import annotations

import json
import statistics
import threading
import time

import common

SLEEP_S = 0.1
HANDLER = """\
import time

def handler(event, context):
    time.sleep(%s)
    return {"stream": context.log_stream_name}
""" % SLEEP_S

PAYLOAD = b"{}"


def wave(callers: list, payload: bytes) -> tuple[float, list[bytes]]:
    """Run every caller's invoke at once; wall time until the last reply (ms) and the replies."""
    barrier = threading.Barrier(len(callers) + 1)
    replies: list[bytes | BaseException] = [b""] * len(callers)

    def run(i: int) -> None:
        barrier.wait()
        try:
            replies[i] = callers[i](payload)
        except BaseException as exc:  # reported below, after the wave
            replies[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(callers))]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = (time.perf_counter() - started) * 1000
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return elapsed, replies  # type: ignore[return-value]


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--levels", help="comma-separated P values (default 1,2,4,8,16,32; quick 1,2,4)")
    p.add_argument("--waves", type=int, help="waves per P (default 5; quick 2)")
    args = p.parse_args()
    levels = [int(x) for x in (args.levels or ("1,2,4" if args.quick else "1,2,4,8,16,32")).split(",")]
    waves = args.waves or (2 if args.quick else 5)
    report = common.Report(
        "parallel_scaling",
        f"P concurrent invokes of a function that sleeps {SLEEP_S * 1000:.0f} ms, P in {levels}, {waves} waves each; "
        f"ideal wave time = {SLEEP_S * 1000:.0f} ms",
        args,
    )
    rows = []
    all_streams: set[str] = set()
    with common.server_for(args, {"SQUALL_ACCOUNT_CONCURRENCY": str(max(1000, 2 * max(levels)))}) as server:
        doc = common.health(server.endpoint)
        report.server(server, doc)
        client = common.lambda_client(server.endpoint, credentials=server.credentials)
        name = common.deploy(client, HANDLER, common.pick_runtime(doc))
        try:
            report.section("results (wave wall time; first = with cold starts of new environments)")
            for level in levels:
                invokers = [common.RawInvoker(server.endpoint, name, credentials=server.credentials) for _ in range(level)]

                def caller(inv: common.RawInvoker):
                    def call(payload: bytes) -> bytes:
                        status, response, body = inv.invoke(payload)
                        common.check_invoke(status, response, body)
                        return body
                    return call

                try:
                    times, streams = [], set()
                    for _ in range(waves):
                        elapsed, replies = wave([caller(inv) for inv in invokers], PAYLOAD)
                        times.append(elapsed)
                        streams.update(json.loads(r)["stream"] for r in replies)
                finally:
                    for inv in invokers:
                        inv.close()
                all_streams |= streams
                warm = times[1:] or times
                row = report.latency(
                    f"p{level}",
                    f"P={level:>2}",
                    warm,
                    first_wave_ms=round(times[0], 1),
                    ideal_ms=SLEEP_S * 1000,
                    efficiency=round(SLEEP_S * 1000 / statistics.median(warm), 3),
                    throughput_per_s=level / (statistics.median(warm) / 1000),
                    environments_used=len(streams),
                )
                rows.append((level, row))
            report.line(f"  distinct environments over the whole run: {len(all_streams)} "
                        f"(the largest wave needed {max(levels)})")
            report.line(f"  environments at the end: {common.health(server.endpoint)['environments']}")
        finally:
            common.delete_quietly(client, name)

    report.section("baseline (fresh python process per invoke, P started at once)")
    fresh = common.FreshProcess(HANDLER)
    try:
        fresh.invoke(PAYLOAD)
        base_rows = {}
        for level in levels:
            times = [wave([fresh.invoke] * level, PAYLOAD)[0] for _ in range(max(1, waves - 1))]
            base_rows[level] = report.latency(
                f"fresh_p{level}", f"P={level:>2}", times, baseline=True,
                throughput_per_s=level / (statistics.median(times) / 1000),
            )
    finally:
        fresh.close()
    top, top_row = rows[-1]
    report.ratio(f"squall_vs_fresh_p{top}", f"squall warm wave median / fresh-process wave median at P={top}",
                 common.ratio(top_row.get("median_ms"), base_rows[top].get("median_ms")))
    report.ratio(f"scaling_p{top}", f"wave median at P={top} / wave median at P=1 (1.0 = perfect scale-out)",
                 common.ratio(top_row.get("median_ms"), rows[0][1].get("median_ms")))
    report.finish()


if __name__ == "__main__":
    main()
