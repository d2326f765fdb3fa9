"""``squall deploy --template``: an AWS SAM template deployed to a real ``squall server`` (linux
sandbox, for the layer) through the CLI as a user runs it; converging, updating, deleting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from tests.conftest import require, start_server
from tests.contract import linux_unavailable

pytestmark = pytest.mark.timeout(240)

TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
Globals:
  Function:
    Runtime: python3.11
    Handler: app.handler
    Timeout: 10
    Environment:
      Variables:
        STACK: !Ref AWS::StackName
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
      CompatibleRuntimes: [python3.11]
  Greeter:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: greeter/
      Layers: [!Ref Shared]
      AutoPublishAlias: live
      ProvisionedConcurrencyConfig:
        ProvisionedConcurrentExecutions: 1
      FunctionUrlConfig:
        AuthType: NONE
      Environment:
        Variables:
          GREETING: !Sub "${Greeting} from ${AWS::Region}"
  Ticker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ticker/
      Layers: [!Ref Shared]
      ReservedConcurrentExecutions: 2
      EventInvokeConfig:
        MaximumRetryAttempts: 0
        MaximumEventAgeInSeconds: 120
      Policies:
        - Statement:
            - Effect: Allow
              Action: lambda:InvokeFunction
              Resource: !GetAtt Greeter.Arn
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
        Nightly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 3 * * ? *)
            Input: '{"job": "nightly"}'
%(extra)s
"""

EXTRA = """\
  Plain:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: plain/
      MemorySize: 256
      Events:
        Web:
          Type: HttpApi
          Properties:
            Path: /hello
            Method: get
  Bucket:
    Type: AWS::S3::Bucket
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = linux_unavailable()
    require(reason is None, f"layers are mounted at /opt by the linux sandbox: {reason}")
    running = start_server(tmp_path_factory.mktemp("squall-sam"), "--isolation", "linux")
    yield running
    running.stop()


def run_cli(server, *args: str, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"SQUALL_ENDPOINT": server.endpoint, "SQUALL_DATA_DIR": str(server.data_dir),
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    return subprocess.run([sys.executable, "-m", "squall.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd, stdin=subprocess.DEVNULL, check=False)


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def project(tmp_path, greeter_word: str = "v1", with_plain: bool = True):
    root = tmp_path / "shop"
    write(root / "layer/python/shared.py", "PREFIX = 'shared'\n")
    write(root / "greeter/app.py", f"""\
        import os, shared
        def handler(event, context):
            return {{"word": "{greeter_word}", "prefix": shared.PREFIX, "greeting": os.environ["GREETING"],
                    "stack": os.environ["STACK"]}}
        """)
    write(root / "ticker/app.py", "import shared\ndef handler(event, context):\n    return shared.PREFIX + '-tick'\n")
    write(root / "plain/app.py", "def handler(event, context):\n    return 'plain'\n")
    (root / "template.yaml").write_text(TEMPLATE % {"extra": EXTRA if with_plain else ""})
    return root / "template.yaml"


def invoke(lam, name: str, qualifier: str | None = None):
    answer = lam.invoke(FunctionName=name, **({"Qualifier": qualifier} if qualifier else {}), Payload=b"{}")
    body = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, body
    return body


def stack_functions(lam) -> dict[str, str]:
    found = {}
    for config in lam.list_functions()["Functions"]:
        tags = lam.list_tags(Resource=config["FunctionArn"])["Tags"]
        if tags.get("squall:stack") == "shop":
            found[tags["squall:logical-id"]] = config["FunctionName"]
    return found


def test_deploy_converge_update_and_delete_a_sam_stack(server, tmp_path):
    lam, events = server.client("lambda"), server.client("events")
    template = project(tmp_path)

    dry = run_cli(server, "deploy", "--template", str(template), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "create  Function" in dry.stdout and "create  Layer" in dry.stdout
    assert "AWS::S3::Bucket" in dry.stdout and "skipped: resource type not supported" in dry.stdout
    assert stack_functions(lam) == {}  # a dry run changes nothing

    refused = run_cli(server, "deploy", "--template", str(template))  # no terminal, no --yes
    assert refused.returncode == 1 and "--yes" in refused.stderr

    first = run_cli(server, "deploy", "--template", str(template), "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    names = stack_functions(lam)
    assert set(names) == {"Greeter", "Ticker", "Plain"}
    assert names["Greeter"].startswith("shop-Greeter-")

    got = invoke(lam, names["Greeter"], "live")
    assert got == {"word": "v1", "prefix": "shared", "greeting": "hello from us-east-1", "stack": "shop"}
    assert invoke(lam, names["Ticker"]) == "shared-tick"
    assert invoke(lam, names["Plain"]) == "plain"
    assert lam.get_function_configuration(FunctionName=names["Plain"])["MemorySize"] == 256
    alias = lam.get_alias(FunctionName=names["Greeter"], Name="live")
    assert alias["FunctionVersion"] == "1"
    provisioned = lam.get_provisioned_concurrency_config(FunctionName=names["Greeter"], Qualifier="live")
    assert provisioned["RequestedProvisionedConcurrentExecutions"] == 1
    url = lam.get_function_url_config(FunctionName=names["Greeter"], Qualifier="live")
    assert url["AuthType"] == "NONE" and url["FunctionUrl"] in first.stdout
    rule = events.describe_rule(Name=f"{names['Ticker']}-Tick")
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert [t["Arn"].split(":")[-1] for t in targets] == [names["Ticker"]]

    ticker = lam.get_function_configuration(FunctionName=names["Ticker"])
    role = ticker["Role"].split("/")[-1]
    assert role.startswith("shop-Ticker-") and role.endswith("-role")
    iam = server.client("iam")
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["policy-0"]
    assert lam.get_function_concurrency(FunctionName=names["Ticker"])["ReservedConcurrentExecutions"] == 2
    invoke_config = lam.get_function_event_invoke_config(FunctionName=names["Ticker"])
    assert (invoke_config["MaximumRetryAttempts"], invoke_config["MaximumEventAgeInSeconds"]) == (0, 120)
    schedule = server.client("scheduler").get_schedule(Name=f"{names['Ticker']}-Nightly")
    assert schedule["ScheduleExpression"] == "cron(0 3 * * ? *)" and schedule["Target"]["Input"] == '{"job": "nightly"}'

    apigw = server.client("apigatewayv2")
    api = next(a for a in apigw.get_apis()["Items"] if a["Name"] == "shop-HttpApi")
    with urllib.request.urlopen(f"{server.endpoint}/execute-api/{api['ApiId']}/hello", timeout=30) as response:
        assert response.read() == b"plain"

    again = run_cli(server, "deploy", "--template", str(template), "--yes")
    assert again.returncode == 0, again.stderr
    assert "No changes." in again.stdout, again.stdout

    template = project(tmp_path, greeter_word="v2", with_plain=False)
    third = run_cli(server, "deploy", "--template", str(template), "--yes")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "delete  Function" in third.stdout and "Plain" in third.stdout
    assert invoke(lam, names["Greeter"], "live")["word"] == "v2"
    assert lam.get_alias(FunctionName=names["Greeter"], Name="live")["FunctionVersion"] == "2"
    assert set(stack_functions(lam)) == {"Greeter", "Ticker"}
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=names["Plain"])
    assert "shop-HttpApi" not in [a["Name"] for a in apigw.get_apis()["Items"]]  # no events use it any more

    last = run_cli(server, "deploy", "--template", str(template), "--yes")
    assert last.returncode == 0 and "No changes." in last.stdout, last.stdout + last.stderr


QUEUE_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  QueueArn:
    Type: String
  TopicArn:
    Type: String
Resources:
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Runtime: python3.11
      Handler: app.handler
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !Ref QueueArn
            BatchSize: 5
        News:
          Type: SNS
          Properties:
            Topic: !Ref TopicArn
"""


def test_sqs_and_sns_events_become_a_mapping_and_a_subscription(tmp_path_factory, tmp_path, moto_endpoint):
    from tests.e2e.test_async import aws as moto_client

    sqs, sns = moto_client("sqs", moto_endpoint), moto_client("sns", moto_endpoint)
    queue_url = sqs.create_queue(QueueName="sam-jobs")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic_arn = sns.create_topic(Name="sam-news")["TopicArn"]
    server = start_server(tmp_path_factory.mktemp("squall-sam-queues"), env={
        "SQUALL_AWS_ENDPOINT": moto_endpoint, "SQUALL_AWS_ACCESS_KEY_ID": "test", "SQUALL_AWS_SECRET_ACCESS_KEY": "test"})
    try:
        stack = tmp_path / "queues"
        (stack / "worker").mkdir(parents=True)
        (stack / "worker" / "app.py").write_text("def handler(event, context):\n    return len(event['Records'])\n")
        (stack / "template.yaml").write_text(QUEUE_TEMPLATE)
        overrides = f"QueueArn={queue_arn} TopicArn={topic_arn}"
        done = run_cli(server, "deploy", "--template", str(stack / "template.yaml"), "--yes",
                       "--parameter-overrides", overrides)
        assert done.returncode == 0, done.stderr
        lam = server.client("lambda")
        (mapping,) = lam.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]
        assert mapping["BatchSize"] == 5 and mapping["FunctionArn"].split(":function:")[1].startswith("queues-Worker")
        subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
        assert len(subscriptions) == 1 and subscriptions[0]["Protocol"] in ("http", "https")
        again = run_cli(server, "deploy", "--template", str(stack / "template.yaml"), "--yes",
                        "--parameter-overrides", overrides)
        assert again.returncode == 0 and "No changes." in again.stdout + again.stderr, again.stdout + again.stderr
    finally:
        server.stop()
