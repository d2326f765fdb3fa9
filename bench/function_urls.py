"""Function URLs: warm requests per second and p50/p99 through a function URL, against Invoke of
the same function in the same run, at the same concurrency, from the same load generator.

The function answers a payload 2.0 response (``{"statusCode": 200, "body": "ok"}``). The URL is
public (AuthType NONE, the resource-policy statement Lambda requires); Invoke requests are
signed (SigV4), as every Lambda API request is. Load comes from ``wrk`` (Debian package
``wrk``; the URL's ``Host`` header is set explicitly, so no name resolution is involved), or
bench/loadgen.py's asyncio generator when wrk is not installed.

Target: the URL path adds at most 20% to the cost of a warm invoke (Invoke's requests/s ÷ the
URL's requests/s ≤ 1.2).

    python bench/function_urls.py [--quick] [-d SECONDS] [-c 32] [--generator auto|wrk|asyncio] [--json [FILE]]
"""

from __future__ import annotations

from urllib.parse import urlsplit

import common
import loadgen

HANDLER = """\
def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "ok"}
"""

PAYLOAD = b'{"n": 1}'
TARGET_RATIO = 1.2


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], memory_mb=128)
    p.add_argument("-d", "--duration", type=int, help="seconds per measured run (default 10; quick 1)")
    p.add_argument("-c", "--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument("--generator", choices=("auto", "wrk", "asyncio"), default="auto")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave the cores to the server)")
    args = p.parse_args()
    duration = args.duration or (1 if args.quick else 10)
    warmup = 1 if args.quick else 3
    c = args.connections
    generator = loadgen.choose(args.generator)
    report = common.Report("function_urls", f"{c} keep-alive connections for {duration} s: a function URL vs Invoke of "
                           f"the same function, load from {generator}", args)
    env = {"SQUALL_ACCOUNT_CONCURRENCY": str(max(1000, 4 * c)),
           "SQUALL_MEMORY_CAPACITY_MB": str(max(20_000, 2 * c * args.memory))}
    with common.server_for(args, env) as server:
        doc = common.health(server.endpoint)
        report.server(server, doc)
        client = common.lambda_client(server.endpoint, credentials=server.credentials)
        name = common.deploy(client, HANDLER, common.pick_runtime(doc), memory=args.memory)
        try:
            function_url = client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
            client.add_permission(FunctionName=name, StatementId="public", Action="lambda:InvokeFunctionUrl",
                                  Principal="*", FunctionUrlAuthType="NONE")
            host = urlsplit(function_url).netloc
            url_target = f"http://{server.host}:{server.port}/"
            invoke_target = server.endpoint + common.invoke_path(name)
            signed = common.sign(server.credentials, "POST", invoke_target, PAYLOAD, {"Content-Type": "application/json"})

            def through_url(seconds: int) -> dict:
                return loadgen.run_load(generator, url_target, PAYLOAD, c, seconds, args.threads, {"Host": host})

            def through_invoke(seconds: int) -> dict:
                return loadgen.run_load(generator, invoke_target, PAYLOAD, c, seconds, args.threads, signed)

            through_invoke(warmup)  # c warm environments
            through_url(warmup)
            invoke = through_invoke(duration)
            url = through_url(duration)
        finally:
            common.delete_quietly(client, name)
    report.section("results")
    via_url = loadgen.report_result(report, "function_url", f"function URL (AuthType NONE), {c} connections", url)
    via_invoke = loadgen.report_result(report, "invoke", f"Invoke (signed) of the same function, {c} connections", invoke,
                                       baseline=True)
    for result, label in ((url, "function URL"), (invoke, "Invoke")):
        if result["errors"]:
            report.note(f"{label}: {result['errors']} errors during the measured run (non-2xx or socket errors)")
    cost = common.ratio(via_invoke["throughput_per_s"], via_url["throughput_per_s"])
    report.ratio("url_cost_vs_invoke", "cost per request through the URL / through Invoke (Invoke req/s ÷ URL req/s)",
                 cost)
    report.ratio("url_p50_vs_invoke", "p50 latency, URL / Invoke", common.ratio(via_url.get("median_ms"),
                                                                                 via_invoke.get("median_ms")))
    report.target("url_cost_ratio", f"the URL adds at most {round((TARGET_RATIO - 1) * 100)}% to a warm invoke's cost",
                  cost, TARGET_RATIO)
    report.finish()


if __name__ == "__main__":
    main()
