"""SAM templates without a server: YAML with CloudFormation's tags, intrinsics, Parameters,
Globals, what is skipped, and the change set against a made-up current state."""

from __future__ import annotations

import pytest

from squall.cli.sam import package_all, parse_overrides
from squall.cli.sam.plan import compute_plan, desired_tags
from squall.cli.sam.state import Current, FunctionState, LayerState, code_sha256
from squall.cli.sam.template import (
    DEFAULT_ROLE,
    LayerRef,
    TemplateError,
    derived_name,
    load,
    merge_globals,
    read_stack,
)

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Memory:
    Type: Number
    Default: 256
Globals:
  Function:
    Runtime: python3.12
    Handler: app.handler
    Timeout: 10
    Layers: [arn:aws:lambda:us-east-1:123456789012:layer:base:1]
    Environment:
      Variables:
        STAGE: !Ref Stage
        SHARED: global
    Tags:
      team: core
  Api:
    Cors: "*"
Resources:
  Deps:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: deps
      LayerName: !Sub "${AWS::StackName}-deps"
      CompatibleRuntimes: [python3.12]
  Orders:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: orders/
      MemorySize: !Ref Memory
      Layers:
        - !Ref Deps
      Environment:
        Variables:
          SHARED: mine
          SELF: !GetAtt Orders.Arn
          TABLE: !Ref Table
          URL: !Sub
            - "https://${Host}/${Stage}/${!literal}"
            - Host: example.com
          JOINED: !Join ["-", [!Ref "AWS::Region", !Ref "AWS::AccountId"]]
      AutoPublishAlias: live
      ProvisionedConcurrencyConfig:
        ProvisionedConcurrentExecutions: 2
      FunctionUrlConfig:
        AuthType: AWS_IAM
        Cors:
          AllowOrigins: ["https://example.com"]
      Policies:
        - Statement:
            - Effect: Allow
              Action: lambda:InvokeFunction
              Resource: !GetAtt Worker.Arn
        - AWSLambdaBasicExecutionRole
        - SQSPollerPolicy:
            QueueName: q
      EventInvokeConfig:
        MaximumRetryAttempts: 0
      ReservedConcurrentExecutions: 5
      Events:
        Nightly:
          Type: Schedule
          Properties:
            Schedule: cron(0 3 * * ? *)
        Queue:
          Type: SQS
          Properties:
            Queue: arn:aws:sqs:us-east-1:123456789012:orders
            BatchSize: 5
        Upload:
          Type: S3
          Properties:
            Bucket: !Ref Table
        FromTable:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Table.StreamArn
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: worker
      CodeUri: worker
      Role: arn:aws:iam::123456789012:role/custom
      Architectures: [arm64]
      Environment:
        Variables:
          STAGE: override
  Table:
    Type: AWS::DynamoDB::Table
"""


@pytest.fixture
def project(tmp_path):
    for directory, text in (("orders", "def handler(e, c):\n    return 1\n"), ("worker", "def handler(e, c):\n    return 2\n"),
                            ("deps/python", "X = 1\n")):
        (tmp_path / directory).mkdir(parents=True)
        (tmp_path / directory / ("app.py" if "python" not in directory else "x.py")).write_text(text)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return tmp_path / "template.yaml"


def test_short_form_tags_become_long_forms():
    doc = load("Resources:\n  A:\n    Type: X\n    Properties:\n      R: !Ref P\n      G: !GetAtt F.Arn\n"
               "      S: !Sub 'x-${P}'\n      L: !GetAtt [F, Arn]\n      J: !Join [',', [a, b]]\n")
    props = doc["Resources"]["A"]["Properties"]
    assert props == {"R": {"Ref": "P"}, "G": {"Fn::GetAtt": ["F", "Arn"]}, "S": {"Fn::Sub": "x-${P}"},
                     "L": {"Fn::GetAtt": ["F", "Arn"]}, "J": {"Fn::Join": [",", ["a", "b"]]}}
    with pytest.raises(TemplateError, match="no Resources"):
        load("Parameters: {}\n")
    with pytest.raises(TemplateError, match="not valid YAML"):
        load("Resources: [\n")


def test_globals_merge_as_sam_does():
    merged = merge_globals({"Timeout": 3, "Layers": ["a"], "Environment": {"Variables": {"A": "1", "B": "1"}}},
                           {"Timeout": 9, "Layers": ["b"], "Environment": {"Variables": {"B": "2"}}})
    assert merged == {"Timeout": 9, "Layers": ["a", "b"], "Environment": {"Variables": {"A": "1", "B": "2"}}}


def test_a_template_read_into_functions_layers_and_skipped(project):
    stack = read_stack(project, region="eu-west-1")
    assert stack.name == project.parent.name
    orders, worker = stack.functions["Orders"], stack.functions["Worker"]
    assert orders.name == derived_name(stack.name, "Orders") and orders.name.startswith(f"{stack.name}-Orders-")
    assert worker.name == "worker"
    assert orders.config["Runtime"] == "python3.12" and orders.config["Timeout"] == 10
    assert orders.config["MemorySize"] == 256  # a Number parameter's default
    assert orders.config["Layers"] == ["arn:aws:lambda:us-east-1:123456789012:layer:base:1", LayerRef("Deps")]
    variables = orders.config["Environment"]["Variables"]
    assert variables == {
        "STAGE": "dev", "SHARED": "mine",
        "SELF": f"arn:aws:lambda:eu-west-1:123456789012:function:{orders.name}",
        "URL": "https://example.com/dev/${literal}", "JOINED": "eu-west-1-123456789012",
    }
    assert worker.config["Environment"]["Variables"] == {"STAGE": "override", "SHARED": "global"}
    assert worker.config["Role"] == "arn:aws:iam::123456789012:role/custom" and worker.policies is None
    assert worker.config["Architectures"] == ["arm64"] and worker.tags == {"team": "core"}
    assert orders.alias == "live" and orders.provisioned == 2 and orders.reserved == 5
    assert orders.url == {"AuthType": "AWS_IAM", "InvokeMode": "BUFFERED", "Cors": {"AllowOrigins": ["https://example.com"]}}
    assert orders.invoke_config == {"MaximumRetryAttempts": 0}
    assert orders.policies == [{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "arn:aws:lambda:eu-west-1:123456789012:function:worker"}]}]
    assert orders.config["Role"] == f"arn:aws:iam::123456789012:role/{orders.role_name}"
    assert [e.logical_id for e in orders.events] == ["Nightly", "Queue"]
    assert stack.layers["Deps"].name == f"{stack.name}-deps"
    skipped = {(s.kind, s.logical_id): s.reason for s in stack.skipped}
    assert skipped[("AWS::DynamoDB::Table", "Table")] == "resource type not supported by Squall"
    assert "bucket-webhook" in skipped[("Event S3", "Orders.Events.Upload")]
    assert "AWS::DynamoDB::Table" in skipped[("Event DynamoDB", "Orders.Events.FromTable")]
    assert "AWS::DynamoDB::Table" in skipped[("Variable", "Orders.Environment.TABLE")]
    assert ("Policy", "Orders.Policies.AWSLambdaBasicExecutionRole") in skipped
    assert ("Policy", "Orders.Policies.SQSPollerPolicy") in skipped
    assert ("Globals", "Api") in skipped


def test_parameters_overrides_and_their_errors(project):
    stack = read_stack(project, stack="prod-stack", overrides={"Stage": "prod", "Memory": "512"})
    orders = stack.functions["Orders"]
    assert orders.config["MemorySize"] == 512 and orders.config["Environment"]["Variables"]["STAGE"] == "prod"
    assert orders.name.startswith("prod-stack-Orders-") and stack.layers["Deps"].name == "prod-stack-deps"
    with pytest.raises(TemplateError, match="allowed: dev, prod"):
        read_stack(project, overrides={"Stage": "qa"})
    with pytest.raises(TemplateError, match="does not declare"):
        read_stack(project, overrides={"Nope": "1"})
    with pytest.raises(TemplateError, match="has no Default"):
        read_stack(project, text="Parameters:\n  X:\n    Type: String\nResources: {}\n")
    with pytest.raises(TemplateError, match="no parameter or resource"):
        read_stack(project, text=("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n"
                                  "      CodeUri: orders\n      Runtime: python3.12\n      Handler: app.h\n"
                                  "      Description: !Ref Missing\n"))
    assert parse_overrides(("A=1 B=2", "C=x=y", "ParameterKey=D,ParameterValue=4")) == {
        "A": "1", "B": "2", "C": "x=y", "D": "4"}


def _current_for(stack, packages, **changes) -> Current:
    """What the server would hold right after deploying ``stack`` (then ``changes``)."""
    current = Current()
    for layer in stack.layers.values():
        current.layers[layer.name] = LayerState(layer.name, f"arn:aws:lambda:us-east-1:123456789012:layer:{layer.name}:3",
                                                code_sha256(packages[layer.content_dir]),
                                                {k: v for k, v in layer.settings.items() if v})
    for lid, spec in stack.functions.items():
        layers = [current.layers[stack.layers[x.logical_id].name].version_arn if isinstance(x, LayerRef) else x
                  for x in spec.config["Layers"]]
        config = {**spec.config, "FunctionName": spec.name, "CodeSha256": code_sha256(packages[spec.code_dir]),
                  "Layers": [{"Arn": arn} for arn in layers]}
        state = FunctionState(spec.name, config, desired_tags(stack, spec))
        if spec.alias:
            state.aliases[spec.alias] = {"Name": spec.alias, "FunctionVersion": "4"}
            if spec.provisioned is not None:
                state.provisioned[spec.alias] = spec.provisioned
        if spec.url is not None:
            state.url = {**spec.url, "Qualifier": spec.alias,
                         "FunctionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{spec.name}"}
        state.reserved = spec.reserved
        state.invoke_config = dict(spec.invoke_config) if spec.invoke_config else None
        for event in spec.events:
            from squall.cli.sam.plan import desired_event, event_resource_name

            wanted = desired_event(stack, spec, event.logical_id, event.kind, event.properties)
            if event.kind == "Schedule":
                state.rules[event_resource_name(spec, event.logical_id)] = {
                    "Rule": {"ScheduleExpression": wanted["ScheduleExpression"], "State": "ENABLED"},
                    "Targets": [{"Id": "function", "Arn": wanted["Target"]}]}
            else:
                state.mappings.append({"UUID": f"u-{event.logical_id}", "EventSourceArn": wanted["EventSourceArn"],
                                       "FunctionArn": wanted["Target"], "State": "Enabled",
                                       "BatchSize": wanted.get("BatchSize")})
        current.functions[lid] = state
        if spec.policies is not None:
            current.roles[spec.role_name] = {f"policy-{i}": doc for i, doc in enumerate(spec.policies)}
    return current


def test_the_plan_from_nothing_creates_everything(project):
    stack = read_stack(project)
    plan = compute_plan(stack, Current(), package_all(stack))
    made = [(c.action, c.kind, c.target.split(" ")[0]) for c in plan.changes if c.action == "create"]
    assert made == [
        ("create", "Layer", "Deps"), ("create", "Role", stack.functions["Orders"].role_name),
        ("create", "Function", "Orders"), ("create", "Alias", "Orders:live"),
        ("create", "ProvisionedConcurrency", "Orders:live"), ("create", "FunctionUrl", "Orders:live"),
        ("create", "ReservedConcurrency", "Orders"), ("create", "EventInvokeConfig", "Orders"),
        ("create", "Event Schedule", "Orders.Nightly"), ("create", "Event SQS", "Orders.Queue"),
        ("create", "Function", "Worker"),
    ]
    text = plan.render()
    assert "No changes." not in text and "skipped: resource type not supported by Squall" in text
    assert "11 to create, 0 to update, 0 to delete" in text


def test_the_plan_of_a_deployed_stack_is_empty(project):
    stack = read_stack(project)
    packages = package_all(stack)
    plan = compute_plan(stack, _current_for(stack, packages), packages)
    assert plan.actions == [] and "No changes." in plan.render()


def test_the_plan_of_changes_and_removals(project):
    stack = read_stack(project)
    packages = package_all(stack)
    current = _current_for(stack, packages)
    current.functions["Orders"].config["CodeSha256"] = "old"  # the code changed since
    current.functions["Orders"].rules["old-rule"] = {"Rule": {}, "Targets": []}  # an event no longer there
    current.functions["Worker"].config["MemorySize"] = 1024
    current.functions["Gone"] = FunctionState("stack-Gone-1", {"Role": DEFAULT_ROLE}, {})
    current.layers[stack.layers["Deps"].name].sha256 = "different"
    plan = compute_plan(stack, current, packages)
    lines = [(c.action, c.kind, c.target.split(" ")[0], c.details) for c in plan.actions]
    assert lines == [
        ("update", "Layer", "Deps", ["content", "publishes a new version"]),
        ("update", "Function", "Orders", ["code", "layers"]),
        ("update", "Alias", "Orders:live", ["moves from version 4 to a new version"]),
        ("delete", "Event Schedule", "Orders", ["no longer in the template"]),
        ("update", "Function", "Worker", ["memory"]),
        ("delete", "Function", "Gone", ["no longer in the template"]),
    ]


def test_a_function_in_the_way_stops_the_plan(project):
    stack = read_stack(project)
    current = Current(foreign={"worker": ""})
    with pytest.raises(TemplateError, match="belongs to no stack"):
        compute_plan(stack, current, package_all(stack))


def test_api_and_sns_events_in_the_plan(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "app.py").write_text("def handler(e, c):\n    return 1\n")
    template = tmp_path / "template.yaml"
    template.write_text("""\
Resources:
  Web:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: web
      Runtime: python3.12
      Handler: app.handler
      Events:
        Root: {Type: HttpApi}
        Items: {Type: HttpApi, Properties: {Path: "/items/{id}", Method: get}}
        Legacy: {Type: Api, Properties: {Path: /old, Method: any}}
        Topic: {Type: SNS, Properties: {Topic: arn:aws:sns:us-east-1:123456789012:news}}
        Stream: {Type: Kinesis, Properties: {Stream: arn:aws:kinesis:us-east-1:123456789012:stream/s}}
""")
    stack = read_stack(template, stack="web")
    packages = package_all(stack)
    plan = compute_plan(stack, Current(), packages)
    lines = [(c.action, c.kind, c.target) for c in plan.actions]
    assert ("create", "Event SNS", "Web.Topic (arn:aws:sns:us-east-1:123456789012:news)") in lines
    assert ("create", "Event Kinesis", "Web.Stream (arn:aws:kinesis:us-east-1:123456789012:stream/s)") in lines
    assert [line for line in lines if "Api" in line[1]] == [
        ("create", "HttpApi", "web-HttpApi"),
        ("create", "Event HttpApi", "Web.Root (web-HttpApi $default)"),
        ("create", "Event HttpApi", "Web.Items (web-HttpApi GET /items/{id})"),
        ("create", "HttpApi", "web-Api"),
        ("create", "Event Api", "Web.Legacy (web-Api ANY /old)"),
    ]
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{stack.functions['Web'].name}"
    current = Current(apis={
        "web-HttpApi": {"ApiId": "a1", "Routes": {"$default": {"RouteId": "r1", "Target": arn},
                                                  "GET /items/{id}": {"RouteId": "r2", "Target": arn + ":old"},
                                                  "POST /gone": {"RouteId": "r3", "Target": arn}}},
        "web-Api": {"ApiId": "a2", "Routes": {"ANY /old": {"RouteId": "r4", "Target": arn}}}})
    api_lines = [(c.action, c.kind, c.target) for c in compute_plan(stack, current, packages).actions
                 if "Api" in c.kind]
    assert api_lines == [("update", "Event HttpApi", "Web.Items (web-HttpApi GET /items/{id})"),
                         ("delete", "Event HttpApi", "web-HttpApi POST /gone")]
