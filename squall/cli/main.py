"""The ``squall`` command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any

import click

from squall import __version__
from squall.cli.client import CliError, Connection, api_command, snapshots_by_function
from squall.cli.cluster import cluster
from squall.cli.deploy import DEFAULT_ROLE, DEFAULT_S3_PREFIX, DeployOptions, S3Upload, deploy_function, parse_env
from squall.cli.invoke import check_payload, invoke_function
from squall.cli.logs import Follower, function_log_group, parse_duration, print_logs
from squall.cli.names import check_runtime, function_name, unqualified_function_name
from squall.cli.output import fields, human_size, lambda_time, note, table


@click.group()
@click.version_option(__version__, prog_name="squall")
def cli() -> None:
    """Squall: self-hosted serverless compute that speaks the AWS Lambda API."""


cli.add_command(cluster)


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 9000; 0 picks a free one).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where functions, code and logs live.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None, help="A TOML settings file.")
@click.option("--isolation", type=click.Choice(["auto", "process", "linux"]), default=None, help="Sandbox backend.")
@click.option("--auth", type=click.Choice(["on", "off"]), default=None,
              help="Check signatures and policies (on, the default); off: anyone may do anything (loopback only).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Where environments run: on this machine (local, the default) or on a Ray cluster's nodes.")
@click.option("--ray-address", default=None, metavar="HOST:PORT", help="The Ray cluster (with --executor ray).")
def server(host: str | None, port: int | None, data_dir: str | None, config_file: str | None, isolation: str | None,
           auth: str | None, executor: str | None, ray_address: str | None) -> None:
    """Run the Squall server in the foreground."""
    from pydantic import ValidationError

    from squall.errors import SquallError
    from squall.server import serve
    from squall.settings import Settings

    try:
        settings = Settings.load(config_file, host=host, port=port, data_dir=data_dir, isolation=isolation,
                                 auth=None if auth is None else auth == "on", executor=executor,
                                 ray_address=ray_address)
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from exc
    try:
        serve(settings, announce=lambda line: click.echo(line))
    except SquallError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"{exc}. Is another server using port {settings.port}? Try --port 0.") from exc


# ---------------------------------------------------------------------- functions


def _env_pairs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str] | None:
    try:
        return parse_env(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; write it as KEY=VALUE", ctx, param) from exc


def _url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().rstrip("/")
    if "://" not in value:
        raise click.BadParameter(f"{value!r} is not a URL; write it as http(s)://HOST[:PORT]", ctx, param)
    return value


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--template", "template", type=click.Path(path_type=Path, dir_okay=False),
              help="Deploy an AWS SAM template (functions, layers, events) instead of PATH; see docs/sam.md.")
@click.option("--stack-name", help="With --template: the stack's name [default: the template's directory name].")
@click.option("--parameter-overrides", "parameter_overrides", multiple=True, metavar="KEY=VALUE",
              help="With --template: a template parameter's value; repeat (or separate with spaces) for more.")
@click.option("--yes", is_flag=True, help="With --template: apply the change set without asking.")
@click.option("--dry-run", is_flag=True, help="With --template: show the change set, change nothing.")
@click.option("--name", callback=unqualified_function_name,
              help="Function name: letters, digits, - and _, up to 64 [default: the directory or zip name].")
@click.option("--runtime", help="Runtime (`squall runtimes` lists them) [default for a new function: python3.11].")
@click.option("--handler", help="MODULE.FUNCTION to call [default for a new function: app.handler].")
@click.option("--memory", type=int, help="Memory in MB (128-10240) [default for a new function: 128].")
@click.option("--timeout", type=int, help="Timeout in seconds (1-900) [default for a new function: 3].")
@click.option("--env", "env", multiple=True, callback=_env_pairs, metavar="KEY=VALUE",
              help="An environment variable; repeat for more. Replaces all the function's variables.")
@click.option("--role", help=f"Execution role ARN [default for a new function: {DEFAULT_ROLE}].")
@click.option("--description", help="A description of the function.")
@click.option("--publish", is_flag=True, help="Then publish a version of what was deployed.")
@click.option("--url", "with_url", is_flag=True,
              help="Then give the function a URL (public: auth none) if it has none, and print it.")
@click.option("--s3-bucket", metavar="BUCKET",
              help="Upload the package to this bucket and deploy it from there (needed over 50 MB zipped).")
@click.option("--s3-prefix", default=DEFAULT_S3_PREFIX, show_default=True,
              help="Key prefix for the upload: the key is PREFIX<sha256 of the zip>.zip.")
@click.option("--s3-endpoint", metavar="URL", envvar=["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"], show_envvar=True,
              callback=_url, help="S3-compatible endpoint for the upload [default: AWS].")
@api_command
def deploy(connection: Connection, path: Path | None, publish: bool, with_url: bool, s3_bucket: str | None, s3_prefix: str,
           s3_endpoint: str | None, template: Path | None = None, stack_name: str | None = None,
           parameter_overrides: tuple[str, ...] = (), yes: bool = False, dry_run: bool = False,
           **options: Any) -> None:
    """Create or update a function from a directory or a .zip file (or a stack from a SAM template).

    A new function gets the defaults for anything not given. An existing one gets the
    new code, then only the settings given here. Waits until the function is ready.
    With --publish, publishes a version of it (point an alias at it with `squall alias`).

    A package over 50 MB zipped goes through S3: --s3-bucket uploads it there (with boto3's
    own credentials: AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) and the Squall server reads it from
    its configured S3 endpoint (its aws_endpoint setting), which must be the same store.

    With --template template.yaml, deploys an AWS SAM template instead: shows the change set,
    asks (unless --yes), applies it. Running it again with the same template changes nothing.
    """
    from squall.cli.versions import publish as publish_version

    ctx = click.get_current_context()
    sam_only = {"stack_name": stack_name, "parameter_overrides": parameter_overrides, "yes": yes, "dry_run": dry_run}
    if template is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
        given += [flag for flag, on in (("--publish", publish), ("--url", with_url), ("--s3-bucket", s3_bucket)) if on]
        if path is not None or given:
            raise click.UsageError(f"--template deploys what the template says; drop {path or ', '.join(given)}.")
        from squall.cli.sam import deploy_template, parse_overrides

        try:
            overrides = parse_overrides(parameter_overrides)
        except ValueError as exc:
            raise click.BadParameter(f"{exc}; write it as KEY=VALUE", param_hint="--parameter-overrides") from exc
        deploy_template(connection, template, stack_name, overrides, yes, dry_run)
        return
    if path is None:
        raise click.UsageError("Give the PATH of a directory or .zip to deploy (or --template template.yaml).")
    unused = [f"--{k.replace('_', '-')}" for k, v in sam_only.items() if v]
    if unused:
        raise click.UsageError(f"{', '.join(unused)} only appl{'y' if len(unused) > 1 else 'ies'} with --template.")
    if s3_bucket is None and ctx.get_parameter_source("s3_prefix") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--s3-prefix needs --s3-bucket.")
    check_runtime(connection.endpoint, options.get("runtime"))
    s3 = None if not s3_bucket else S3Upload(s3_bucket, s3_prefix, s3_endpoint, region=connection.region)
    config = deploy_function(connection.lam, path, DeployOptions(**options), s3=s3)
    if publish:
        config = publish_version(connection.lam, config["FunctionName"])
    url: list[tuple[str, Any]] = []
    if with_url:
        from squall.cli.urls import ensure_url

        url = [("URL", ensure_url(connection.lam, config["FunctionName"])[0]["FunctionUrl"])]
    click.echo(
        fields(
            url + [
                ("Function", config["FunctionName"]),
                ("ARN", config["FunctionArn"]),
                ("Version", config.get("Version", "-")),
                ("State", config.get("State", "-")),
                ("Runtime", config.get("Runtime", "-")),
                ("Handler", config.get("Handler", "-")),
                ("Memory", f"{config.get('MemorySize')} MB"),
                ("Timeout", f"{config.get('Timeout')} s"),
                ("Code size", f"{human_size(config['CodeSize'])} ({config['CodeSize']} bytes)"),
                ("Code SHA-256", config["CodeSha256"]),
            ]
        )
    )


@cli.command()
@click.argument("name", callback=function_name)
@click.option("--payload", help="The event, as JSON [default: {}].")
@click.option("--payload-file", type=click.File("rb"), help="Read the event from a JSON file ('-' for stdin).")
@click.option("--log", "show_log", is_flag=True, help="Show the end of the invocation's log on stderr.")
@api_command
def invoke(
    connection: Connection, name: str, payload: str | None, payload_file: IO[bytes] | None, show_log: bool
) -> None:
    """Invoke a function and print what it returned.

    Exits 1, with the error on stderr, when the function fails.
    """
    if payload is not None and payload_file is not None:
        raise click.UsageError("Give --payload or --payload-file, not both.")
    try:
        if payload_file is not None:
            raw = check_payload(payload_file.read())
        else:
            raw = check_payload(b"{}" if payload is None else payload.encode())
    except ValueError as exc:
        if payload_file is not None:
            raise click.BadParameter(f"{payload_file.name} is {exc}", param_hint="--payload-file") from exc
        raise click.BadParameter(str(exc), param_hint="--payload") from exc
    invoke_function(connection.lam, name, raw, show_log)


@cli.command()
@click.argument("name", callback=function_name)
@api_command
def versions(connection: Connection, name: str) -> None:
    """List a function's versions ($LATEST and the published ones) and their aliases."""
    from squall.cli.versions import versions_table

    click.echo(versions_table(connection.lam, name))


@cli.command()
@click.argument("name", callback=function_name)
@click.argument("alias")
@click.option("--version", "version", help="The published version (or $LATEST) the alias points at.")
@click.option("--weight", help="VERSION=WEIGHT: send that share (0-1) of the alias's invocations to another version.")
@click.option("--no-weight", is_flag=True, help="Stop splitting: every invocation goes to the alias's version.")
@api_command
def alias(connection: Connection, name: str, alias: str, version: str | None, weight: str | None, no_weight: bool) -> None:
    """Create an alias of a function, or point it at another version.

    Invoke it as NAME:ALIAS (`squall invoke NAME:ALIAS`, or Qualifier=ALIAS in the API).
    """
    from squall.cli.versions import describe_alias, parse_weight, set_alias

    if weight is not None and no_weight:
        raise click.UsageError("Give --weight or --no-weight, not both.")
    try:
        weights = {} if no_weight else parse_weight(weight)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--weight") from exc
    click.echo(describe_alias(set_alias(connection.lam, name, alias, version, weights)))


@cli.command("functions")
@api_command
def list_functions(connection: Connection) -> None:
    """List all functions."""
    lam = connection.lam
    configs = [fn for page in lam.get_paginator("list_functions").paginate() for fn in page.get("Functions", [])]
    if not configs:
        click.echo("No functions yet. Deploy one with: squall deploy ./my-fn")
        return
    snapshots = snapshots_by_function(connection)
    rows = []
    for config in sorted(configs, key=lambda c: c["FunctionName"]):
        state = config.get("State") or lam.get_function_configuration(FunctionName=config["FunctionName"]).get("State")
        rows.append(
            (
                config["FunctionName"],
                config.get("Runtime", "-"),
                f"{config.get('MemorySize', '-')} MB",
                f"{config.get('Timeout', '-')} s",
                state or "-",
                lambda_time(config.get("LastModified", "-")),
                snapshots.get(config["FunctionName"], "-"),
            )
        )
    click.echo(table(("NAME", "RUNTIME", "MEMORY", "TIMEOUT", "STATE", "LAST MODIFIED", "SNAPSHOTS"), rows))


@cli.command()
@click.argument("name", callback=function_name)
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
@api_command
def delete(connection: Connection, name: str, yes: bool) -> None:
    """Delete a function, with all its versions and aliases.

    Asks first (unless --yes); answering no leaves the function as it is.
    """
    connection.lam.get_function_configuration(FunctionName=name)  # a typo fails before the question
    if not yes:
        try:
            confirmed = click.confirm(f"Delete function {name}?", default=False, err=True)
        except click.Abort:  # stdin closed: nobody to answer
            click.echo("", err=True)
            note(f"Not deleted: {name} (nobody answered; pass --yes to delete without being asked).")
            return
        if not confirmed:  # the user said no: that is not a failure
            if not sys.stdin.isatty():  # the answer was not echoed: end the prompt's line
                click.echo("", err=True)
            note(f"Not deleted: {name}.")
            return
    connection.lam.delete_function(FunctionName=name)
    click.echo(f"Deleted {name}.")


@cli.command()
@click.argument("name", callback=function_name)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--since", default="10m", show_default=True, help="How far back to start: 30s, 10m, 2h, 1d.")
@api_command
def logs(connection: Connection, name: str, follow: bool, since: str) -> None:
    """Print a function's log events (its log group: /aws/lambda/NAME unless configured).

    Exits 1 when there is no such function (and no logs of one).
    """
    try:
        start = int(time.time() * 1000) - parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    # a custom LoggingConfig.LogGroup is honoured; no function and no logs either: exit 1
    group = function_log_group(connection.lam, connection.logs, name)
    if follow:
        Follower(connection.logs, name, start, group=group).run()
    else:
        print_logs(connection.logs, name, start, since, connection.lam, group=group)


@cli.command()
@click.argument("name", required=False, callback=function_name)
@api_command
def queue(connection: Connection, name: str | None) -> None:
    """Show the asynchronous invocation queue, per function (or of NAME).

    DEPTH events waiting or running, OLDEST the age of the oldest, IN RETRY those retried at
    least once, IN FLIGHT those running now; then what became of finished events: SUCCEEDED, FAILED (retries exhausted or
    too old), TO DLQ (sent to the dead-letter queue), DEST FAILED (undeliverable records).
    """
    from squall.cli.queue import COLUMNS, fetch_queue, queue_rows

    report = fetch_queue(connection.endpoint, name, region=connection.region)
    rows = queue_rows(report)
    if not rows:
        click.echo("No asynchronous events yet. Queue one with: aws lambda invoke --invocation-type Event …")
        return
    click.echo(table(COLUMNS, rows))
    click.echo(f"total depth {report.get('depth', 0)}, running {report.get('in_flight', 0)}")


@cli.command()
@click.argument("name", callback=function_name)
@click.option("--alias", help="The alias the URL invokes (default: the function itself, $LATEST).")
@click.option("--auth", type=click.Choice(["none", "iam"], case_sensitive=False), default="none", show_default=True,
              help="none: anyone may call it (a resource-policy statement allows it); iam: SigV4-signed calls "
                   "allowed lambda:InvokeFunctionUrl.")
@click.option("--delete", is_flag=True, help="Remove the URL (and the statement that made it public).")
@api_command
def url(connection: Connection, name: str, alias: str | None, auth: str, delete: bool) -> None:
    """Show a function's URL, making it first if it has none.

    \b
    squall url hello                 # http://<id>.lambda-url.us-east-1.localhost:9000/
    curl "$(squall url hello)"       # the URL is the only thing printed on stdout
    """
    from squall.cli.urls import delete_url, ensure_url

    if delete:
        delete_url(connection.lam, name, alias)
        note(f"Removed the URL of {name}{':' + alias if alias else ''}.")
        return
    config, made = ensure_url(connection.lam, name, alias, "NONE" if auth.lower() == "none" else "AWS_IAM")
    if made:
        note(f"Made a URL for {name}{':' + alias if alias else ''} (auth {config['AuthType']}).")
    elif config["AuthType"] != ("NONE" if auth.lower() == "none" else "AWS_IAM"):
        note(f"The URL exists with auth {config['AuthType']}; change it with aws lambda update-function-url-config.")
    click.echo(config["FunctionUrl"])


@cli.command()
@click.argument("name", callback=function_name)
@click.option("--topic", help="ARN of the SNS topic to subscribe the function to.")
@click.option("--bucket-webhook", is_flag=True, help="Make a webhook for object-store notifications (MinIO, Ceph, Garage).")
@click.option("--base-url", help="The URL SNS or the object store reaches Squall at (default: --endpoint).")
@click.option("--mqtt", "mqtt", metavar="BROKER:TOPIC_FILTER", help="An MQTT topic filter (+ and # allowed) on a named broker.")
@click.option("--nats", "nats_subject", metavar="BROKER:SUBJECT", help="A core NATS subject (* and > allowed) on a named broker.")
@click.option("--redis-channel", metavar="BROKER:CHANNEL", help="A Redis PUBLISH/SUBSCRIBE channel (a glob: PSUBSCRIBE).")
@api_command
def subscribe(connection: Connection, name: str, topic: str | None, bucket_webhook: bool, base_url: str | None,
              mqtt: str | None = None, nats_subject: str | None = None, redis_channel: str | None = None) -> None:
    """Invoke a function from an SNS topic, bucket notifications or a pub/sub subject.

    Give exactly one of the trigger options (all but --base-url).

    \b
    squall subscribe hello --topic arn:aws:sns:us-east-1:123456789012:uploads
    squall subscribe hello --bucket-webhook     # prints the URL and token for MinIO
    squall subscribe hello --mqtt local:sensors/+/temp   # brokers: the event_source_brokers setting
    squall subscribe hello --nats local:orders.>
    squall subscribe hello --redis-channel cache:invalidations
    """
    import hashlib

    from squall.cli.client import call_json

    pubsub = [(kind, value) for kind, value in (("mqtt", mqtt), ("nats", nats_subject), ("redis-pubsub", redis_channel))
              if value]
    if bool(topic) + bucket_webhook + len(pubsub) != 1:
        raise CliError("Give exactly one of --topic ARN, --bucket-webhook, --mqtt, --nats and --redis-channel.")
    kind = "sns" if topic else "s3"
    document: dict = {"FunctionName": name}
    if pubsub:
        kind, value = pubsub[0]
        broker, sep, subject = value.partition(":")
        if not sep or not broker or not subject:
            raise CliError(f"Give the subscription as BROKER:TOPIC (a name of event_source_brokers), not {value!r}.")
        document.update(Broker=broker, Topic=subject)
    if topic:  # what `aws lambda add-permission` does on AWS; SNS's subscription is made by the server
        try:
            connection.lam.add_permission(FunctionName=name, StatementId="squall-sns-" + hashlib.sha256(topic.encode()).hexdigest()[:16],
                                          Action="lambda:InvokeFunction", Principal="sns.amazonaws.com",
                                          SourceArn=topic)
            note(f"Added a statement to {name}'s resource policy: sns.amazonaws.com may invoke it for {topic}.")
        except connection.lam.exceptions.ResourceConflictException:
            note(f"{name}'s resource policy already lets sns.amazonaws.com invoke it for {topic}.")
    document.update({**({"TopicArn": topic} if topic else {}), **({"BaseUrl": base_url} if base_url else {})})
    made = call_json(connection.endpoint, "POST", f"/squall/triggers/{kind}", document, timeout=30,
                     region=connection.region)
    if pubsub:
        note(f"Each message on {made['Broker']}:{made['Topic']} now invokes {name} asynchronously "
             f"(trigger {made['TriggerId']}).")
        click.echo(made["EventSourceArn"])
        return
    if topic:
        note(f"Subscribed {made['Endpoint']} to {topic} ({made['SubscriptionArn']}).")
        click.echo(made["SubscriptionArn"])
        return
    note("Point MinIO at it with:")
    note(f"  mc admin config set ALIAS notify_webhook:squall endpoint={made['Endpoint']} auth_token={made['Token']}")
    note("  mc admin service restart ALIAS && mc event add ALIAS/BUCKET arn:minio:sqs::squall:webhook --event put")
    click.echo(f"endpoint={made['Endpoint']}")
    click.echo(f"auth_token={made['Token']}")


@cli.command()
@click.argument("trigger_id")
@api_command
def unsubscribe(connection: Connection, trigger_id: str) -> None:
    """Delete a trigger (an SNS subscription, a bucket webhook, a pub/sub subject) by its id.

    `squall triggers --json` shows the ids (each trigger's "id"). The function's resource-policy statements stay; remove them
    with `aws lambda remove-permission` if nothing else needs them.
    """
    from squall.cli.client import call_json

    hint = "See the triggers and their ids with `squall triggers --json`."
    gone = call_json(connection.endpoint, "DELETE", f"/squall/triggers/{trigger_id}", timeout=30,
                     region=connection.region, refused_hint=hint, not_found_hint=hint)
    note(f"Deleted {gone['Kind']} trigger {trigger_id} of {gone['FunctionArn']}.")


@cli.command("event-sources")
@api_command
def event_sources(connection: Connection) -> None:
    """Show every event source mapping: its state, pollers, lag, invocations and last result.

    LAG is messages waiting (queues) or how far the pollers are behind the newest record
    (streams); FAILED counts failed invocations, with the records given up (dropped or sent to
    the on-failure destination); FILTERED counts records no filter matched.
    """
    from squall.cli.event_sources import COLUMNS, fetch_mappings, mapping_rows

    rows = mapping_rows(fetch_mappings(connection.endpoint, region=connection.region))
    if not rows:
        click.echo("No event source mappings yet. Make one with: aws lambda create-event-source-mapping "
                   "--function-name NAME --event-source-arn ARN (see docs/event-sources.md)")
        return
    click.echo(table(COLUMNS, rows))


@cli.command("triggers")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
@api_command
def triggers_command(connection: Connection, name: str | None, as_json: bool) -> None:
    """List what invokes a function (or every function): EventBridge rules and schedules that
    target it, SNS and bucket webhooks, MQTT / NATS / Redis pub/sub subjects, event source mappings.

    DELIVERED / FAILED / LAST DELIVERY are counted by the server since it started; LAST ERROR is
    the latest failure's reason ("-": none).
    """
    import json
    from urllib.parse import quote

    from squall.cli.client import fetch_json

    path = "/squall/triggers" + (f"?function={quote(name, safe='')}" if name else "")
    rows = list(fetch_json(connection.endpoint, path, 10.0, region=connection.region).get("triggers", []))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"No triggers{' for ' + name if name else ''}.")
        return

    def shown(value: object) -> str:
        return "-" if value is None else str(value)

    columns = ("KIND", "FUNCTION", "SOURCE", "STATE", "LAST DELIVERY", "DELIVERED", "FAILED", "LAST ERROR")
    click.echo(table(columns, [(r["kind"], r["function"].split(":function:", 1)[-1], str(r["source"])[:60],
                                shown(r["state"]), shown(r["last_delivery"]), shown(r["delivered"]),
                                shown(r["failed"]), shown(r.get("last_error"))[:60]) for r in rows]))


@cli.command()
@api_command
def runtimes(connection: Connection) -> None:
    """List the runtimes this server offers, each with the interpreter that serves it.

    A NOTE line under the table names each runtime served by an interpreter older than its label
    (nodejs22.x by Node.js 20); NOT OFFERED lists the others with the reason (not installed, or
    the interpreter found failed its test run).
    """
    import re

    from squall.cli.client import fetch_json

    health = fetch_json(connection.endpoint, "/health")
    rows = [(identifier, str(served_by)) for identifier, served_by in health.get("runtimes", {}).items()]
    notes = dict(health.get("runtimes_warnings") or {})
    click.echo(table(("RUNTIME", "SERVED BY"), rows))
    if notes:
        click.echo("")
        for identifier in (i for i, _ in rows if i in notes):
            click.echo(f"NOTE: {notes[identifier]}")
    missing = health.get("runtimes_unavailable") or {}
    if missing:
        click.echo("")

        def natural(item: tuple[str, str]) -> list[Any]:  # python3.8 before python3.10
            return [(1, int(part)) if part.isdigit() else (0, part) for part in re.split(r"(\d+)", item[0])]

        click.echo(table(("NOT OFFERED", "WHY"), sorted(missing.items(), key=natural)))


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="SQUALL_DATA_DIR",
              help="The server's data dir (where its credentials file is).")
@click.option("--endpoint", envvar="SQUALL_ENDPOINT", default=None, help="The server's URL, for AWS_ENDPOINT_URL.")
@click.option("--profile", default="squall", show_default=True, help="Name of the AWS CLI profile shown.")
@click.option("--format", "shape", type=click.Choice(["env", "profile"]), default="env", show_default=True,
              help="env: `export` lines; profile: sections for ~/.aws/credentials and ~/.aws/config.")
def credentials(data_dir: str | None, endpoint: str | None, profile: str, shape: str) -> None:
    """Print the administrator's credentials, as `export` lines or as an AWS CLI profile.

    \b
    eval "$(squall credentials)"                  # then boto3 and the AWS CLI talk to Squall
    squall credentials --format profile           # sections to add to ~/.aws/credentials and ~/.aws/config
    """
    from squall.auth import credentials_file
    from squall.cli.client import DEFAULT_ENDPOINT, data_dir as default_dir, normalise_endpoint
    from squall.settings import Settings

    directory = Path(data_dir).expanduser() if data_dir else default_dir()
    found = credentials_file.read(directory)
    if found is None:
        raise CliError(
            f"No credentials in {credentials_file.path_of(directory)}.",
            "Start the server once (`squall server`); it writes them there. If it runs as another user (root for the "
            "linux sandbox), run this command as that user, or pass --data-dir.",
        )
    key_id, secret = found
    region = Settings().region
    url = normalise_endpoint(endpoint or DEFAULT_ENDPOINT)
    if shape == "profile":
        click.echo(f"# add to ~/.aws/credentials (then: aws --profile {profile} lambda list-functions)")
        click.echo(f"[{profile}]")
        click.echo(f"aws_access_key_id = {key_id}")
        click.echo(f"aws_secret_access_key = {secret}")
        click.echo("")
        click.echo("# add to ~/.aws/config")
        click.echo(f"[profile {profile}]")
        click.echo(f"region = {region}")
        click.echo(f"endpoint_url = {url}")
        return
    click.echo(f"export AWS_ACCESS_KEY_ID={key_id}")
    click.echo(f"export AWS_SECRET_ACCESS_KEY={secret}")
    click.echo(f"export AWS_DEFAULT_REGION={region}")
    click.echo(f"export AWS_ENDPOINT_URL={url}")
    click.echo(f"# or as an AWS CLI profile: squall credentials --format profile --profile {profile}")


@cli.command("console")
@click.option("--endpoint", envvar="SQUALL_ENDPOINT", show_envvar=True, default="http://127.0.0.1:9000",
              show_default=True, help="URL of the Squall server.")
@click.option("--region", envvar=["AWS_REGION", "AWS_DEFAULT_REGION"], default="us-east-1", show_default=True,
              help="Region for request signing.")
@click.option("--open", "open_browser", is_flag=True, help="Open the link in a web browser too.")
def console_command(endpoint: str, region: str, open_browser: bool) -> None:
    """Print a one-time sign-in link to the web console (docs/console.md).

    The link signs its first visitor in as you (the identity the CLI signs with: the
    administrator's key from the data dir, or AWS_ACCESS_KEY_ID/AWS_PROFILE) for 12 hours. It
    works once, within 5 minutes. With authentication off, the console's plain URL."""
    from squall.cli.client import call_json, normalise_endpoint

    base = normalise_endpoint(endpoint)
    answer = call_json(base, "POST", "/console/link", {}, region=region, refused="The server refused a sign-in link: ",
                       refused_hint="The CLI signs with the administrator's key from <data dir>/credentials; see "
                                    "`squall credentials`.")
    link = base + str(answer.get("path") or "/console/")
    click.echo(link)
    if answer.get("authentication"):
        click.echo(f"One-time sign-in link for {answer.get('identity')}: it works once, until {answer.get('expires')}.",
                   err=True)
    else:
        click.echo("Authentication is off: the console needs no sign-in.", err=True)
    if open_browser:
        import webbrowser

        webbrowser.open(link)


def main() -> None:
    from botocore.exceptions import ParamValidationError

    from squall.cli.client import param_validation_error

    try:
        cli()
    except ParamValidationError as exc:  # a boto3 call outside api_command's handling: still no enum dump
        error = param_validation_error(exc)
        error.show()
        raise SystemExit(error.exit_code) from None


if __name__ == "__main__":
    main()
