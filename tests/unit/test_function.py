"""The function configuration record, its validation and its states (squall/function.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from datetime import datetime, timezone

import pytest

from squall.arn import LATEST, Arns
from squall.errors import InvalidParameterValue, ResourceConflict
from squall.function import (
    HOST_ARCHITECTURE,
    ENV_MAX_BYTES,
    RESERVED_ENV,
    STATE_TRANSITIONS,
    UPDATE_TRANSITIONS,
    Code,
    FunctionVersion,
    State,
    UpdateStatus,
    lambda_timestamp,
    merged_logging,
    validate_environment,
    validate_settings,
)
from squall.api.operations import service_model
from squall.api.protocol import RestJsonProtocol
from squall.errors import Validation

ARNS = Arns("us-east-1", "123456789012")
ROLE = "arn:aws:iam::123456789012:role/lambda-role"
CODE = Code(sha256="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", sha256_hex="e3b0c442" * 8, size=1234)
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def make_version(**overrides) -> FunctionVersion:
    fields = dict(name="my-fn", runtime="python3.11", handler="app.handler", role=ROLE, code=CODE)
    fields.update(overrides)
    return FunctionVersion(**fields)


def message_of(excinfo: pytest.ExceptionInfo) -> str:
    return excinfo.value.message


# ================================================================== validate_settings


def test_validate_settings_maps_members_to_fields() -> None:
    fields = validate_settings(
        {
            "Role": ROLE,
            "Handler": "app.handler",
            "MemorySize": 256,
            "Timeout": 30,
            "Description": "d",
            "Environment": {"Variables": {"A1": "x"}},
            "EphemeralStorage": {"Size": 1024},
            "Architectures": [HOST_ARCHITECTURE],
            "TracingConfig": {"Mode": "Active"},
            "DeadLetterConfig": {"TargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq"},
            "LoggingConfig": {"LogFormat": "JSON", "LogGroup": "/custom/group"},
            "Runtime": "python3.11",  # not a setting this function maps
        }
    )
    assert fields == {
        "role": ROLE,
        "handler": "app.handler",
        "memory_size": 256,
        "timeout": 30,
        "description": "d",
        "environment": {"A1": "x"},
        "environment_given": True,
        "ephemeral_storage": 1024,
        "architectures": (HOST_ARCHITECTURE,),
        "tracing_mode": "Active",
        "dead_letter_target": "arn:aws:sqs:us-east-1:123456789012:dlq",
        "logging_config": {"LogFormat": "JSON", "LogGroup": "/custom/group"},
    }


def test_validate_settings_empty_sets_nothing() -> None:
    assert validate_settings({}) == {}


def test_an_empty_environment_is_remembered_so_it_is_echoed() -> None:
    fields = validate_settings({"DeadLetterConfig": {}, "Environment": {}})
    assert fields == {"dead_letter_target": None, "environment": {}, "environment_given": True}
    assert "Environment" not in make_version().to_api(ARNS)
    assert make_version(environment_given=True).to_api(ARNS)["Environment"] == {"Variables": {}}


def test_logging_config_merges_and_levels_exist_only_in_json() -> None:
    assert merged_logging({}, {"LogFormat": "JSON"}) == {"LogFormat": "JSON"}
    json_version = make_version(logging_config=merged_logging({}, {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"}))
    assert json_version.logging_api() == {
        "LogFormat": "JSON", "LogGroup": "/aws/lambda/my-fn", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO",
    }
    back = merged_logging(json_version.logging_config, {"LogFormat": "Text"})
    assert back == {"LogFormat": "Text"}
    kept = merged_logging({"LogFormat": "JSON", "SystemLogLevel": "WARN"}, {"LogGroup": "cool_lambda"})
    assert kept == {"LogFormat": "JSON", "SystemLogLevel": "WARN", "LogGroup": "cool_lambda"}
    assert make_version(logging_config=kept).log_group == "cool_lambda"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (
            {"FileSystemConfigs": [{"Arn": "arn:aws:elasticfilesystem:x", "LocalMountPath": "/mnt/x"}]},
            "FileSystemConfigs are not supported",
        ),
    ],
)
def test_unsupported_features_rejected_clearly(params: dict, needle: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        validate_settings({"Handler": "app.handler", **params})
    assert needle in message_of(info)


def test_empty_unsupported_features_are_fine() -> None:
    # SDKs and IaC tools send empty containers for "no VPC / no layers" (the VPC's names are
    # checked against the settings' networks by the function service: tests/unit/test_network.py)
    assert validate_settings({"Layers": [], "VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []}}) == {
        "vpc_config": {"SubnetIds": [], "SecurityGroupIds": []}}
    assert validate_settings({"VpcConfig": {}, "FileSystemConfigs": []}) == {"vpc_config": {}}


# ================================================================== the model's constraints (protocol)

PROTOCOL = RestJsonProtocol(service_model())


def create_problems(**members) -> str | None:
    """The ValidationException message CreateFunction with these members gets (None: valid)."""
    op, path = PROTOCOL.match("POST", "/2015-03-31/functions", {})
    body = {"FunctionName": "f", "Role": ROLE, "Code": {}, **members}
    try:
        PROTOCOL.parse(op, path, {}, {}, json.dumps(body).encode())
    except Validation as exc:
        return exc.message
    return None


@pytest.mark.parametrize(
    "role",
    [
        ROLE,
        "arn:aws:iam::123456789012:role/service-role/my.role+x=y,z@q_1-2",
        "arn:aws-cn:iam::123456789012:role/r",
        "arn::iam::123456789012:role/r",
    ],
)
def test_role_pattern_accepts(role: str) -> None:
    assert create_problems(Role=role) is None


@pytest.mark.parametrize("role", ["r1", "arn:aws:iam::12345678901:role/r", "arn:aws:iam::123456789012:user/r"])
def test_role_pattern_rejects_with_aws_wording(role: str) -> None:
    assert create_problems(Role=role) == (
        f"1 validation error detected: Value '{role}' at 'role' failed to satisfy constraint: Member must satisfy "
        r"regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
    )


@pytest.mark.parametrize("handler", ["app.handler", "a", "src/app.main", "h" * 128])
def test_handler_accepts(handler: str) -> None:
    assert create_problems(Handler=handler) is None


@pytest.mark.parametrize("handler", ["", "app handler", " app.handler", "h" * 129])
def test_handler_rejects(handler: str) -> None:
    assert "at 'handler' failed to satisfy constraint" in (create_problems(Handler=handler) or "")


@pytest.mark.parametrize(("member", "path", "low", "high"), [("MemorySize", "memorySize", 128, 10240), ("Timeout", "timeout", 1, 900)])
def test_integer_bounds_are_inclusive(member: str, path: str, low: int, high: int) -> None:
    assert create_problems(**{member: low}) is None and create_problems(**{member: high}) is None
    assert create_problems(**{member: high + 1}) == (
        f"1 validation error detected: Value '{high + 1}' at '{path}' failed to satisfy constraint: "
        f"Member must have value less than or equal to {high}"
    )
    assert f"greater than or equal to {low}" in (create_problems(**{member: low - 1}) or "")


def test_ephemeral_storage_bounds() -> None:
    assert create_problems(EphemeralStorage={"Size": 512}) is None
    assert create_problems(EphemeralStorage={"Size": 10240}) is None
    assert "at 'ephemeralStorage.size'" in (create_problems(EphemeralStorage={"Size": 10241}) or "")


def test_architectures_and_several_problems_are_counted() -> None:
    assert create_problems(Architectures=["arm64"]) is None
    assert create_problems(Architectures=["X86_64"]) == (
        "1 validation error detected: Value '[X86_64]' at 'architectures' failed to satisfy constraint: "
        "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64], Member must not be null]"
    )
    message = create_problems(Role="r1", Architectures=["x86_64", "arm64"], Timeout=3000)
    assert message is not None and message.startswith("3 validation errors detected: Value 'r1' at 'role'")
    assert "Value '[x86_64, arm64]' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1" in message
    assert message.count("; ") == 2


# ================================================================== validate_environment


def test_reserved_set_matches_the_reference() -> None:
    assert RESERVED_ENV == {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }  # fmt: skip


@pytest.mark.parametrize("key", sorted(RESERVED_ENV))
def test_every_reserved_key_rejected(key: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        validate_environment({"OK_KEY": "1", key: "v"})
    assert message_of(info) == (
        "Lambda was unable to configure your environment variables because the environment variables you have "
        "provided contains reserved keys that are currently not supported for modification. "
        f"Reserved keys used in this request: {key}"
    )


def test_several_reserved_keys_are_listed() -> None:
    with pytest.raises(InvalidParameterValue) as info:
        validate_environment({"AWS_REGION": "1", "OK": "2", "AWS_ACCESS_KEY_ID": "3"})
    assert message_of(info).endswith("Reserved keys used in this request: AWS_REGION, AWS_ACCESS_KEY_ID")


@pytest.mark.parametrize("key", ["LANG", "PATH", "TZ", "PYTHONPATH", "LD_LIBRARY_PATH", "aws_region", "AWS_REGION2"])
def test_overridable_keys_accepted(key: str) -> None:
    assert validate_environment({key: "v"}) == {key: "v"}


def test_values_are_stringified() -> None:
    assert validate_environment({"NUM": 5, "SS": "x", "EMPTY": ""}) == {"NUM": "5", "SS": "x", "EMPTY": ""}


def test_size_is_the_compact_json_of_the_map_and_exactly_4096_is_allowed() -> None:
    assert ENV_MAX_BYTES == 4096
    overhead = len('{"BIG":""}')
    exact = {"BIG": "v" * (4096 - overhead)}
    assert validate_environment(exact) == exact
    too_big = {"BIG": "v" * (4097 - overhead)}
    with pytest.raises(InvalidParameterValue) as info:
        validate_environment(too_big)
    assert message_of(info) == (
        "Lambda was unable to configure your environment variables because the environment variables you have "
        "provided exceeded the 4KB limit. String measured: " + json.dumps(too_big, separators=(",", ":"))
    )


def test_size_counts_utf8_bytes_and_keeps_request_order() -> None:
    overhead = len('{"KK":""}')
    assert validate_environment({"KK": "é" * ((4096 - overhead) // 2)})
    with pytest.raises(InvalidParameterValue) as info:
        validate_environment({"SMALL": "ok", "KK": "é" * 2048})
    assert 'String measured: {"SMALL":"ok","KK":"éé' in message_of(info)


# ================================================================== lambda_timestamp


def test_lambda_timestamp_format() -> None:
    moment = datetime(2020, 4, 10, 19, 6, 32, 563999, tzinfo=timezone.utc)
    assert lambda_timestamp(moment) == "2020-04-10T19:06:32.563+0000"
    assert lambda_timestamp(datetime(2021, 1, 2, 3, 4, 5, 0, tzinfo=timezone.utc)) == "2021-01-02T03:04:05.000+0000"
    assert lambda_timestamp(datetime(2021, 1, 2, 3, 4, 5, 7000, tzinfo=timezone.utc)) == "2021-01-02T03:04:05.007+0000"


def test_lambda_timestamp_now_is_utc_and_well_formed() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = lambda_timestamp()
    assert TIMESTAMP_RE.match(stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z")
    assert abs((parsed - before).total_seconds()) < 5


# ================================================================== state machine


def test_transition_tables_cover_every_state() -> None:
    assert set(STATE_TRANSITIONS) == set(State)
    assert set(UPDATE_TRANSITIONS) == set(UpdateStatus)
    # Lambda's lifecycle as the reference describes it.
    assert STATE_TRANSITIONS[State.PENDING] == {State.ACTIVE, State.FAILED}
    assert State.PENDING in STATE_TRANSITIONS[State.INACTIVE]
    assert UPDATE_TRANSITIONS[UpdateStatus.IN_PROGRESS] == {UpdateStatus.SUCCESSFUL, UpdateStatus.FAILED}


STATE_PAIRS = [(a, b) for a in State for b in State]


@pytest.mark.parametrize(("current", "target"), STATE_PAIRS, ids=[f"{a}->{b}" for a, b in STATE_PAIRS])
def test_state_transition_table(current: State, target: State) -> None:
    version = make_version(state=current)
    allowed = target == current or target in STATE_TRANSITIONS[current]
    if allowed:
        new = version.with_state(target, "why", "Code")
        assert (new.state, new.state_reason, new.state_reason_code) == (target, "why", "Code")
        assert version.state == current  # the record is immutable
        assert new.revision_id == version.revision_id  # a state change is no new revision
    else:
        with pytest.raises(ValueError, match="illegal function state transition"):
            version.with_state(target)


UPDATE_PAIRS = [(a, b) for a in [None, *UpdateStatus] for b in UpdateStatus]


@pytest.mark.parametrize(("current", "target"), UPDATE_PAIRS, ids=[f"{a}->{b}" for a, b in UPDATE_PAIRS])
def test_update_status_transition_table(current: UpdateStatus | None, target: UpdateStatus) -> None:
    version = make_version(last_update_status=current)
    allowed = current is None or target == current or target in UPDATE_TRANSITIONS[current]
    if allowed:
        new = version.with_update_status(target, "r", "RC")
        assert new.last_update_status == target
        assert new.last_update_status_reason == "r"
        assert new.last_update_status_reason_code == "RC"
        assert version.last_update_status == current
    else:
        with pytest.raises(ValueError, match="illegal update status transition"):
            version.with_update_status(target)


def test_forbidden_transitions_exist() -> None:
    # Guard against the tables degenerating to "everything allowed".
    with pytest.raises(ValueError):
        make_version(state=State.PENDING).with_state(State.INACTIVE)
    with pytest.raises(ValueError):
        make_version(state=State.INACTIVE).with_state(State.ACTIVE)
    with pytest.raises(ValueError):
        make_version(last_update_status=UpdateStatus.SUCCESSFUL).with_update_status(UpdateStatus.FAILED)


def test_with_state_clears_reason_when_not_given() -> None:
    new = make_version().with_state(State.ACTIVE)
    assert new.state_reason is None and new.state_reason_code is None


# ================================================================== changed()


def test_changed_makes_a_new_revision_and_timestamp() -> None:
    old = make_version(last_modified="2000-01-01T00:00:00.000+0000")
    new = old.changed(timeout=10)
    assert new.timeout == 10 and old.timeout == 3
    assert new.revision_id != old.revision_id
    uuid.UUID(new.revision_id)
    assert new.last_modified != old.last_modified
    assert TIMESTAMP_RE.match(new.last_modified)
    # Everything else is carried over.
    assert dataclasses.replace(new, revision_id=old.revision_id, last_modified=old.last_modified, timeout=3) == old


def test_changed_without_changes_still_new_revision() -> None:
    old = make_version()
    assert old.changed().revision_id != old.revision_id


def test_new_versions_have_distinct_revisions_and_defaults() -> None:
    a, b = make_version(), make_version()
    assert a.revision_id != b.revision_id
    assert a.state == State.PENDING
    assert a.state_reason == "The function is being created."
    assert a.state_reason_code == "Creating"
    assert a.last_update_status is None
    assert a.version == LATEST


# ================================================================== to_api


def test_to_api_latest() -> None:
    version = make_version(last_modified="2020-04-10T19:06:32.563+0000")
    api = version.to_api(ARNS)
    assert api == {
        "FunctionName": "my-fn",
        "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:my-fn",
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "CodeSize": 1234,
        "Description": "",
        "Timeout": 3,
        "MemorySize": 128,
        "LastModified": "2020-04-10T19:06:32.563+0000",
        "CodeSha256": CODE.sha256,
        "Version": "$LATEST",
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": version.revision_id,
        "State": "Pending",
        "StateReason": "The function is being created.",
        "StateReasonCode": "Creating",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": 512},
        "LoggingConfig": {"LogGroup": "/aws/lambda/my-fn", "LogFormat": "Text"},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "RuntimeVersionConfig": {"RuntimeVersionArn": ARNS.runtime_version("python3.11")},
    }
    listed = version.to_api(ARNS, listing=True)  # ListFunctions items: no states, no RuntimeVersionConfig
    assert set(api) - set(listed) == {"State", "StateReason", "StateReasonCode", "RuntimeVersionConfig"}
    # JSON-serialisable as-is, with plain strings for the enums.
    assert json.loads(json.dumps(api)) == api
    assert type(api["State"]) is str


def test_to_api_published_version_has_qualified_arn() -> None:
    api = make_version(version="3").to_api(ARNS)
    assert api["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:my-fn:3"
    assert api["Version"] == "3"


def test_to_api_omits_absent_optional_fields() -> None:
    version = make_version().with_state(State.ACTIVE)
    api = version.to_api(ARNS)
    assert api["State"] == "Active"
    for key in (
        "StateReason",
        "StateReasonCode",
        "LastUpdateStatus",
        "LastUpdateStatusReason",
        "LastUpdateStatusReasonCode",
        "Environment",
        "DeadLetterConfig",
    ):
        assert key not in api, key
    assert None not in api.values()


def test_to_api_optional_fields_when_set() -> None:
    version = (
        make_version(
            environment={"A1": "x"},
            dead_letter_target="arn:aws:sqs:us-east-1:123456789012:dlq",
            logging_config={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"},
            architectures=("arm64",),
            memory_size=512,
            timeout=60,
            description="desc",
        )
        .with_state(State.ACTIVE)
        .with_update_status(UpdateStatus.FAILED, "boom", "InvalidZipFileException")
    )
    api = version.to_api(ARNS)
    assert api["Environment"] == {"Variables": {"A1": "x"}}
    assert api["DeadLetterConfig"] == {"TargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq"}
    assert api["LastUpdateStatus"] == "Failed" and type(api["LastUpdateStatus"]) is str
    assert api["LastUpdateStatusReason"] == "boom"
    assert api["LastUpdateStatusReasonCode"] == "InvalidZipFileException"
    assert api["LoggingConfig"] == {
        "LogGroup": "/aws/lambda/my-fn", "LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO"
    }
    assert api["Architectures"] == ["arm64"]
    assert (api["MemorySize"], api["Timeout"], api["Description"]) == (512, 60, "desc")


def test_to_api_environment_is_a_copy() -> None:
    env = {"A1": "x"}
    api = make_version(environment=env).to_api(ARNS)
    api["Environment"]["Variables"]["A1"] = "changed"
    assert env == {"A1": "x"}


@pytest.mark.parametrize("state", list(State))
def test_to_api_state_strings(state: State) -> None:
    api = dataclasses.replace(make_version(), state=state).to_api(ARNS)
    assert api["State"] == {"Pending": "Pending", "Active": "Active", "Inactive": "Inactive", "Failed": "Failed"}[
        state.value
    ]


# ================================================================== records


@pytest.mark.parametrize(
    "version",
    [
        make_version(),
        make_version(
            version="7",
            environment={"A1": "x", "B2": "y"},
            architectures=("arm64",),
            dead_letter_target="arn:aws:sns:us-east-1:123456789012:t",
            logging_config={"LogFormat": "JSON"},
            tracing_mode="Active",
            ephemeral_storage=2048,
        )
        .with_state(State.ACTIVE)
        .with_update_status(UpdateStatus.IN_PROGRESS, None, None),
    ],
)
def test_record_round_trip_through_json(version: FunctionVersion) -> None:
    record = version.to_record()
    restored = FunctionVersion.from_record(json.loads(json.dumps(record)))
    assert restored == version
    assert isinstance(restored.code, Code)
    assert isinstance(restored.state, State)
    assert restored.architectures == version.architectures and isinstance(restored.architectures, tuple)
    if version.last_update_status is not None:
        assert isinstance(restored.last_update_status, UpdateStatus)


def test_record_is_plain_data() -> None:
    record = make_version(environment={"A1": "x"}).to_record()
    assert record["code"] == {"sha256": CODE.sha256, "sha256_hex": CODE.sha256_hex, "size": 1234, "unzipped_size": 0}
    assert record["layers"] == []
    assert record["environment"] == {"A1": "x"} and type(record["environment"]) is dict
    assert record["architectures"] == ["x86_64"]
    assert record["last_update_status"] is None
    json.dumps(record)


# ================================================================== ensure_updatable


ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-fn"


def test_ensure_updatable_in_progress() -> None:
    version = make_version().with_state(State.ACTIVE).with_update_status(UpdateStatus.IN_PROGRESS)
    with pytest.raises(ResourceConflict) as info:
        version.ensure_updatable(ARN)
    assert message_of(info) == (
        f"The operation cannot be performed at this time. An update is in progress for resource: {ARN}"
    )


def test_ensure_updatable_pending() -> None:
    with pytest.raises(ResourceConflict) as info:
        make_version().ensure_updatable(ARN)
    assert message_of(info) == (
        "The operation cannot be performed at this time. The function is currently in the following state: Pending"
    )


@pytest.mark.parametrize("status", [None, UpdateStatus.SUCCESSFUL, UpdateStatus.FAILED])
@pytest.mark.parametrize("state", [State.ACTIVE, State.FAILED, State.INACTIVE])
def test_ensure_updatable_ok(state: State, status: UpdateStatus | None) -> None:
    version = dataclasses.replace(make_version(), state=state, last_update_status=status)
    assert version.ensure_updatable(ARN) is None


def test_settings_squall_cannot_honour_are_refused_or_shown_as_not_applied() -> None:
    other = "arm64" if HOST_ARCHITECTURE == "x86_64" else "x86_64"
    for params, needle in (({"Architectures": [other]}, f"runs {HOST_ARCHITECTURE} functions only"),
                           ({"KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k"}, "KMSKeyArn is not supported"),
                           ({"CodeSigningConfigArn": "arn:aws:lambda:us-east-1:123456789012:code-signing-config:csc-1"},
                            "Code signing is not supported"),
                           ({"ImageConfig": {"Command": ["x"]}}, "container images")):
        with pytest.raises(InvalidParameterValue) as info:
            validate_settings({"Handler": "app.handler", **params})
        assert needle in message_of(info)
    fields = validate_settings({"SnapStart": {"ApplyOn": "PublishedVersions"}})
    api = make_version(**fields).to_api(Arns("us-east-1", "123456789012"))
    assert api["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}  # $LATEST
    arns = Arns("us-east-1", "123456789012")
    assert make_version(**fields, version="1").to_api(arns)["SnapStart"]["OptimizationStatus"] == "On"
    node = make_version(**fields, version="1", runtime="nodejs20.x", handler="index.handler")
    assert node.to_api(arns)["SnapStart"]["OptimizationStatus"] == "On"  # initialised ahead (prestarted.py)
