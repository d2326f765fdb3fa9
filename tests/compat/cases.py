"""AWS Lambda's answers, case by case: the request, and the exact status, error code and message
AWS gives (recorded from the real service; see docs/compatibility.md for the sources).

Placeholders in strings: ``{fn}`` an existing function (versions 1, 2 and 3; aliases ``live`` → 1,
``two`` → 2, ``pone`` → 3 and ``tolatest`` → $LATEST; provisioned concurrency on version 2 and on ``pone``), ``{missing}`` a function that does not exist, ``{A}`` the ARN prefix
``arn:aws:lambda:us-east-1:123456789012:function``, ``{sha}`` the CodeSha256 of ``{fn}``'s
``$LATEST``, ``{zip}`` a valid zip, ``{long}`` 65 ``a``s, ``{role}`` a valid role.

A case's ``message`` is matched exactly unless ``match`` says ``prefix`` (where AWS's text ends
with its own parser's words, e.g. a JSON syntax error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IPV, VAL, RNF = "InvalidParameterValueException", "ValidationException", "ResourceNotFoundException"
RC, PF = "ResourceConflictException", "PreconditionFailedException"
CREATE_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?"
    r"([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
ROLE_PATTERN = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
NEW = {"Runtime": "python3.11", "Role": "{role}", "Handler": "app.handler", "Code": {"ZipFile": "{zip}"}}


@dataclass(frozen=True)
class Case:
    id: str
    op: str  # the boto3 method
    params: dict[str, Any]
    status: int
    code: str | None = None  # None: a success
    message: str | None = None
    match: str = "exact"
    expect: dict[str, Any] = field(default_factory=dict)  # on success: these output members


def new(name: str = "{new}", **changes: Any) -> dict[str, Any]:
    return {"FunctionName": name, **NEW, **changes}


def fn_missing(op: str) -> str:
    return f"Function not found: {{A}}:{{missing}}{op}"


CASES: list[Case] = [
    # ---- CreateFunction: the model's constraints (ValidationException, counted) and Lambda's own checks
    Case("create-role-pattern", "create_function", new(Role="r1"), 400, VAL,
         f"1 validation error detected: Value 'r1' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: {ROLE_PATTERN}"),
    Case("create-two-architectures", "create_function", new(Architectures=["x86_64", "arm64"]), 400, VAL,
         "1 validation error detected: Value '[x86_64, arm64]' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1"),
    Case("create-architecture-case", "create_function", new(Architectures=["X86_64"]), 400, VAL,
         "1 validation error detected: Value '[X86_64]' at 'architectures' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64], Member must not be null]"),
    Case("create-two-problems-counted", "create_function", new(Role="r1", Architectures=["x86_64", "arm64"]), 400, VAL,
         f"2 validation errors detected: Value 'r1' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: {ROLE_PATTERN}; "
         "Value '[x86_64, arm64]' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1"),
    Case("create-name-too-long", "create_function", new("{long}"), 400, IPV,
         "1 validation error detected: Value '{long}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 64"),
    Case("create-name-pattern", "create_function", new("invalid:function:name"), 400, VAL,
         f"1 validation error detected: Value 'invalid:function:name' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {CREATE_PATTERN}"),
    Case("create-name-bang", "create_function", new("my-function!"), 400, VAL,
         f"1 validation error detected: Value 'my-function!' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {CREATE_PATTERN}"),
    Case("create-arn-over-140", "create_function", new("{A}:" + "f" * 100), 400, VAL,
         "1 validation error detected: Value '{A}:" + "f" * 100 + "' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 140"),
    Case("create-other-region", "create_function", new("arn:aws:lambda:ap-southeast-1:123456789012:function:x"), 404, RNF,
         "Functions from 'ap-southeast-1' are not reachable in this region ('us-east-1')"),
    Case("create-other-account", "create_function", new("arn:aws:lambda:us-east-1:111111111111:function:x"), 403, "AccessDeniedException"),
    Case("create-existing", "create_function", new("{fn}"), 409, RC, "Function already exist: {fn}"),
    Case("create-bad-zip", "create_function", new(Code={"ZipFile": b"this is not a zipfile, just a random string"}), 400, IPV,
         "Could not unzip uploaded file. Please check your file, then try to upload again."),
    Case("create-env-over-4kb", "create_function", new(Environment={"Variables": {"LARGE_VAR": "x" * 4081}}), 400, IPV,
         "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. "
         'String measured: {"LARGE_VAR":"' + "x" * 4081 + '"}'),
    Case("create-env-two-keys-over-4kb", "create_function", new(Environment={"Variables": {"SMALL_VAR": "ok", "LARGE_VAR": "x" * 4064}}), 400, IPV,
         "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. "
         'String measured: {"SMALL_VAR":"ok","LARGE_VAR":"' + "x" * 4064 + '"}'),
    Case("create-env-reserved", "create_function", new(Environment={"Variables": {"AWS_REGION": "x"}}), 400, IPV,
         "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: AWS_REGION"),
    Case("create-memory-too-high", "create_function", new(MemorySize=5555555), 400, VAL,
         "1 validation error detected: Value '5555555' at 'memorySize' failed to satisfy constraint: Member must have value less than or equal to 10240"),
    Case("create-timeout-too-high", "create_function", new(Timeout=3000), 400, VAL,
         "1 validation error detected: Value '3000' at 'timeout' failed to satisfy constraint: Member must have value less than or equal to 900"),
    Case("create-ephemeral-too-big", "create_function", new(EphemeralStorage={"Size": 3000000}), 400, VAL,
         "1 validation error detected: Value '3000000' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value less than or equal to 10240"),
    Case("create-snapstart-option", "create_function", new(SnapStart={"ApplyOn": "invalidOption"}), 400, VAL,
         "1 validation error detected: Value 'invalidOption' at 'snapStart.applyOn' failed to satisfy constraint: Member must satisfy enum value set: [PublishedVersions, None]"),
    Case("create-51-tags", "create_function", new(Tags={f"k{i}": "v" for i in range(51)}), 400, IPV, "Number of tags exceeds resource tag limit."),
    Case("create-runtime-unknown", "create_function", new(Runtime="non-existent-runtime"), 400, IPV,
         "Value non-existent-runtime at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [", match="prefix"),
    Case("create-runtime-case", "create_function", new(Runtime="PYTHON3.9"), 400, IPV,
         "Value PYTHON3.9 at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [", match="prefix"),
    # ---- reads and writes of a function that does not exist: which ARN AWS names
    Case("get-missing", "get_function", {"FunctionName": "{missing}"}, 404, RNF, fn_missing("")),
    Case("get-configuration-missing", "get_function_configuration", {"FunctionName": "{missing}"}, 404, RNF, fn_missing("")),
    Case("delete-missing", "delete_function", {"FunctionName": "{missing}"}, 404, RNF, fn_missing("")),
    Case("invoke-missing", "invoke", {"FunctionName": "{missing}"}, 404, RNF, fn_missing(":$LATEST")),
    Case("get-concurrency-missing", "get_function_concurrency", {"FunctionName": "{missing}"}, 404, RNF, fn_missing("")),
    Case("put-concurrency-missing", "put_function_concurrency", {"FunctionName": "{missing}", "ReservedConcurrentExecutions": 1}, 404, RNF, fn_missing(":$LATEST")),
    Case("get-eic-missing", "get_function_event_invoke_config", {"FunctionName": "{missing}"}, 404, RNF,
         "The function {A}:{missing}:$LATEST doesn't have an EventInvokeConfig"),
    Case("delete-eic-missing", "delete_function_event_invoke_config", {"FunctionName": "{missing}"}, 404, RNF,
         "The function {A}:{missing}:$LATEST doesn't have an EventInvokeConfig"),
    Case("put-eic-missing", "put_function_event_invoke_config", {"FunctionName": "{missing}", "MaximumRetryAttempts": 1}, 404, RNF, "The function doesn't exist."),
    Case("update-eic-missing", "update_function_event_invoke_config", {"FunctionName": "{missing}", "MaximumRetryAttempts": 1}, 404, RNF, "The function doesn't exist."),
    Case("list-eic-missing", "list_function_event_invoke_configs", {"FunctionName": "{missing}"}, 404, RNF, "The function doesn't exist."),
    Case("tag-missing", "tag_resource", {"Resource": "{A}:{missing}", "Tags": {"a": "b"}}, 404, RNF, fn_missing("")),
    Case("list-tags-missing", "list_tags", {"Resource": "{A}:{missing}"}, 404, RNF, fn_missing("")),
    Case("list-pc-missing", "list_provisioned_concurrency_configs", {"FunctionName": "{missing}"}, 404, RNF, fn_missing("")),
    Case("list-versions-missing", "list_versions_by_function", {"FunctionName": "{missing}"}, 404, RNF, fn_missing("")),
    Case("publish-missing", "publish_version", {"FunctionName": "{missing}"}, 404, RNF, fn_missing("")),
    Case("list-aliases-missing", "list_aliases", {"FunctionName": "{missing}"}, 404, RNF, fn_missing("")),
    # ---- qualifiers
    Case("get-missing-version", "get_function", {"FunctionName": "{fn}", "Qualifier": "1221"}, 404, RNF, "Function not found: {A}:{fn}:1221"),
    Case("get-missing-alias", "get_function", {"FunctionName": "{fn}", "Qualifier": "aliasdoesnotexist"}, 404, RNF, "Function not found: {A}:{fn}:aliasdoesnotexist"),
    Case("get-alias-arn-missing", "get_function", {"FunctionName": "{A}:{fn}:aliasdoesnotexist"}, 404, RNF, "Function not found: {A}:{fn}:aliasdoesnotexist"),
    Case("get-latest-of-missing", "get_function", {"FunctionName": "{A}:{missing}:$LATEST", "Qualifier": "$LATEST"}, 404, RNF, fn_missing(":$LATEST")),
    Case("get-lowercase-latest", "get_function", {"FunctionName": "{fn}", "Qualifier": "$latest"}, 404, RNF, "Function not found: {A}:{fn}:$latest"),
    Case("invoke-lowercase-latest", "invoke", {"FunctionName": "{A}:{missing}", "Qualifier": "$latest"}, 404, RNF, fn_missing(":$latest")),
    Case("invoke-missing-alias", "invoke", {"FunctionName": "{fn}", "Qualifier": "non-existent-alias"}, 404, RNF, "Function not found: {A}:{fn}:non-existent-alias"),
    Case("qualifier-mismatch", "get_function", {"FunctionName": "{A}:{missing}:1", "Qualifier": "$LATEST"}, 400, IPV,
         "The derived qualifier from the function name does not match the specified qualifier."),
    Case("qualifier-mismatch-invoke", "invoke", {"FunctionName": "{A}:{missing}:$LATEST", "Qualifier": "1"}, 400, IPV,
         "The derived qualifier from the function name does not match the specified qualifier."),
    Case("qualifier-pattern", "get_function", {"FunctionName": "{fn}", "Qualifier": "invalid!"}, 400, VAL,
         r"1 validation error detected: Value 'invalid!' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: \$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+"),
    Case("get-name-65", "get_function", {"FunctionName": "{long}"}, 404, RNF, "Function not found: {A}:{long}"),
    Case("invoke-name-65", "invoke", {"FunctionName": "{long}"}, 404, RNF, "Function not found: {A}:{long}:$LATEST"),
    Case("get-wrong-region", "get_function", {"FunctionName": "arn:aws:lambda:eu-west-3:123456789012:function:{fn}"}, 404, RNF,
         "Functions from 'eu-west-3' are not reachable in this region ('us-east-1')"),
    Case("invoke-wrong-region", "invoke", {"FunctionName": "arn:aws:lambda:eu-west-3:123456789012:function:{fn}"}, 404, RNF,
         "Functions from 'eu-west-3' are not reachable in this region ('us-east-1')"),
    Case("get-latest-qualified-arn", "get_function_configuration", {"FunctionName": "{fn}", "Qualifier": "$LATEST"}, 200,
         expect={"FunctionArn": "{A}:{fn}:$LATEST", "Version": "$LATEST"}),
    Case("get-alias-shows-its-version", "get_function_configuration", {"FunctionName": "{fn}", "Qualifier": "live"}, 200,
         expect={"FunctionArn": "{A}:{fn}:live", "Version": "1"}),
    Case("delete-latest", "delete_function", {"FunctionName": "{A}:{missing}:$LATEST", "Qualifier": "$LATEST"}, 400, IPV,
         "$LATEST version cannot be deleted without deleting the function."),
    Case("delete-missing-version", "delete_function", {"FunctionName": "{fn}", "Qualifier": "1233"}, 204),
    Case("delete-alias-qualifier", "delete_function", {"FunctionName": "{fn}", "Qualifier": "live"}, 400, IPV, "Deletion of aliases is not currently supported."),
    Case("delete-version-in-use", "delete_function", {"FunctionName": "{fn}", "Qualifier": "1"}, 409, RC,
         "Unable to delete version because the following aliases reference it: [live]"),
    Case("update-config-wrong-revision", "update_function_configuration", {"FunctionName": "{fn}", "Description": "x", "RevisionId": "wrong"}, 412, PF,
         "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id"),
    Case("update-code-wrong-revision", "update_function_code", {"FunctionName": "{fn}", "ZipFile": "{zip}", "RevisionId": "wrong"}, 412, PF,
         "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id"),
    # ---- versions
    Case("publish-wrong-sha", "publish_version", {"FunctionName": "{fn}", "CodeSha256": "somenonexistentsha256"}, 400, IPV,
         "CodeSHA256 (somenonexistentsha256) is different from current CodeSHA256 in $LATEST ({sha}). Please try again with the CodeSHA256 in $LATEST."),
    Case("publish-wrong-revision", "publish_version", {"FunctionName": "{fn}", "RevisionId": "wrong"}, 412, PF,
         "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id"),
    Case("publish-unchanged", "publish_version", {"FunctionName": "{fn}", "Description": "other"}, 201,
         expect={"Version": "3", "FunctionArn": "{A}:{fn}:3", "Description": "three"}),
    Case("list-functions-bad-version-filter", "list_functions", {"FunctionVersion": "invalid"}, 400, VAL,
         "1 validation error detected: Value 'invalid' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]"),
    # ---- aliases
    Case("alias-exists", "create_alias", {"FunctionName": "{fn}", "Name": "live", "FunctionVersion": "1"}, 409, RC, "Alias already exists: {A}:{fn}:live"),
    Case("alias-get-missing", "get_alias", {"FunctionName": "{fn}", "Name": "non-existent"}, 404, RNF, "Cannot find alias arn: {A}:{fn}:non-existent"),
    Case("alias-update-missing", "update_alias", {"FunctionName": "{fn}", "Name": "non-existent", "FunctionVersion": "1"}, 404, RNF,
         "Alias not found: {A}:{fn}:non-existent"),
    Case("alias-delete-missing", "delete_alias", {"FunctionName": "{fn}", "Name": "non-existent"}, 204),
    Case("alias-missing-version", "create_alias", {"FunctionName": "{fn}", "Name": "a10", "FunctionVersion": "10"}, 404, RNF, "Function not found: {A}:{fn}:10"),
    Case("alias-missing-function", "create_alias", {"FunctionName": "{missing}", "Name": "a1", "FunctionVersion": "1"}, 404, RNF, fn_missing(":1")),
    Case("alias-missing-weighted-version", "create_alias",
         {"FunctionName": "{fn}", "Name": "w10", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"10": 0.5}}}, 404, RNF,
         "Function not found: {A}:{fn}:10"),
    Case("alias-two-weights", "create_alias",
         {"FunctionName": "{fn}", "Name": "w2", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.8, "2": 0.2}}}, 400, IPV,
         "Number of items in AdditionalVersionWeights cannot be greater than 1"),
    Case("alias-weight-above-one", "create_alias",
         {"FunctionName": "{fn}", "Name": "w3", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 2}}}, 400, VAL,
         "1 validation error detected: Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]"),
    Case("alias-weight-negative", "create_alias",
         {"FunctionName": "{fn}", "Name": "w4", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": -1}}}, 400, VAL,
         "1 validation error detected: Value '{2=-1.0}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]"),
    Case("alias-weight-same-version", "create_alias",
         {"FunctionName": "{fn}", "Name": "w5", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}, 400, IPV,
         "Invalid function version 1. Function version 1 is already included in routing configuration."),
    Case("alias-latest-weighted", "create_alias",
         {"FunctionName": "{fn}", "Name": "w6", "FunctionVersion": "$LATEST", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}, 400, IPV,
         "$LATEST is not supported for an alias pointing to more than 1 version"),
    Case("alias-latest-as-weight-key", "create_alias",
         {"FunctionName": "{fn}", "Name": "w7", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"$LATEST": 0.5}}}, 400, VAL,
         "1 validation error detected: Value '{$LATEST=0.5}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]"),
    Case("alias-all-digits", "create_alias", {"FunctionName": "{fn}", "Name": "2024", "FunctionVersion": "1"}, 400, VAL,
         "1 validation error detected: Value '2024' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"),
    Case("alias-update-wrong-revision", "update_alias", {"FunctionName": "{fn}", "Name": "live", "RevisionId": "wrong"}, 412, PF,
         "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id"),
    # ---- provisioned concurrency
    Case("pc-get-none", "get_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "1"}, 404,
         "ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config found for this function"),
    Case("pc-get-missing-function-alias", "get_provisioned_concurrency_config", {"FunctionName": "{missing}", "Qualifier": "noalias"}, 404, RNF,
         "Cannot find alias arn: {A}:{missing}:noalias"),
    Case("pc-get-missing-alias", "get_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "noalias"}, 404, RNF,
         "Cannot find alias arn: {A}:{fn}:noalias"),
    Case("pc-get-missing-version", "get_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "10"}, 404, RNF,
         "Function not found: {A}:{fn}:10"),
    Case("pc-get-latest", "get_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "$LATEST"}, 400, IPV,
         "The function resource provided must be an alias or a published version."),
    Case("pc-delete-latest", "delete_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "$LATEST"}, 400, IPV,
         "The function resource provided must be an alias or a published version."),
    Case("pc-put-latest", "put_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "$LATEST", "ProvisionedConcurrentExecutions": 1}, 400, IPV,
         "Provisioned Concurrency Configs cannot be applied to unpublished function versions."),
    Case("pc-put-alias-of-latest", "put_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "tolatest", "ProvisionedConcurrentExecutions": 1}, 400, IPV,
         "Provisioned Concurrency Configs cannot be applied to unpublished function versions."),
    Case("pc-put-zero", "put_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "1", "ProvisionedConcurrentExecutions": 0}, 400, VAL,
         "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1"),
    Case("pc-delete-missing-function", "delete_provisioned_concurrency_config", {"FunctionName": "{missing}", "Qualifier": "1"}, 404, RNF, fn_missing(":1")),
    Case("pc-put-missing-function", "put_provisioned_concurrency_config", {"FunctionName": "{missing}", "Qualifier": "noalias", "ProvisionedConcurrentExecutions": 1}, 404, RNF,
         "Cannot find alias arn: {A}:{missing}:noalias"),
    Case("pc-delete-none", "delete_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "1"}, 204),
    Case("pc-put-over-account", "put_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "2", "ProvisionedConcurrentExecutions": 1001}, 400, IPV,
         "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [1000]."),
    Case("pc-put-whole-account", "put_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "2", "ProvisionedConcurrentExecutions": 1000}, 400, IPV,
         "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."),
    Case("pc-alias-on-provisioned-version", "put_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "two", "ProvisionedConcurrentExecutions": 1}, 409, RC,
         "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"),
    Case("pc-version-under-provisioned-alias", "put_provisioned_concurrency_config", {"FunctionName": "{fn}", "Qualifier": "3", "ProvisionedConcurrentExecutions": 1}, 409, RC,
         "Version is pointed by a Provisioned Concurrency alias"),
    # ---- reserved concurrency
    Case("reserved-qualified", "put_function_concurrency", {"FunctionName": "{A}:{fn}:$LATEST", "ReservedConcurrentExecutions": 1}, 400, IPV,
         "This operation is permitted on Lambda functions only. Aliases and versions do not support this operation. Please specify either a function name or an unqualified function ARN."),
    Case("reserved-over-account", "put_function_concurrency", {"FunctionName": "{fn}", "ReservedConcurrentExecutions": 1001}, 400, IPV,
         "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."),
    Case("reserved-none", "get_function_concurrency", {"FunctionName": "{fn}"}, 200),
    # ---- event invoke configs
    Case("eic-no-settings", "put_function_event_invoke_config", {"FunctionName": "{missing}"}, 400, IPV,
         "You must specify at least one of error handling or destination setting."),
    Case("eic-self-destination", "put_function_event_invoke_config",
         {"FunctionName": "{fn}", "DestinationConfig": {"OnSuccess": {"Destination": "{A}:{fn}"}}}, 400, IPV,
         "You can't specify the function as a destination for itself."),
    Case("eic-missing-destination", "put_function_event_invoke_config",
         {"FunctionName": "{fn}", "DestinationConfig": {"OnSuccess": {"Destination": "{A}:{missing}"}}}, 400, IPV,
         "The destination ARN {A}:{missing} is invalid."),
    Case("eic-get-none", "get_function_event_invoke_config", {"FunctionName": "{fn}"}, 404, RNF,
         "The function {A}:{fn}:$LATEST doesn't have an EventInvokeConfig"),
    Case("eic-get-none-alias", "get_function_event_invoke_config", {"FunctionName": "{fn}", "Qualifier": "live"}, 404, RNF,
         "The function {A}:{fn}:live doesn't have an EventInvokeConfig"),
    Case("eic-get-missing-version", "get_function_event_invoke_config", {"FunctionName": "{fn}", "Qualifier": "1221"}, 404, RNF,
         "The function {A}:{fn}:1221 doesn't have an EventInvokeConfig"),
    Case("eic-put-missing-alias", "put_function_event_invoke_config",
         {"FunctionName": "{fn}", "Qualifier": "eventinvokealiasdoesnotexist", "MaximumRetryAttempts": 1}, 404, RNF, "The function doesn't exist."),
    Case("eic-qualifier-mismatch", "put_function_event_invoke_config",
         {"FunctionName": "{fn}:1", "Qualifier": "$LATEST", "MaximumRetryAttempts": 1}, 400, IPV,
         "The derived qualifier from the function name does not match the specified qualifier."),
    Case("eic-put-shape", "put_function_event_invoke_config", {"FunctionName": "{fn}", "Qualifier": "two", "MaximumRetryAttempts": 1}, 200,
         expect={"FunctionArn": "{A}:{fn}:two", "MaximumRetryAttempts": 1, "DestinationConfig": {"OnSuccess": {}, "OnFailure": {}}}),
    # ---- tags
    Case("tags-over-50", "tag_resource", {"Resource": "{A}:{fn}", "Tags": {f"k{i}": "v" for i in range(51)}}, 400, IPV,
         "Number of tags exceeds resource tag limit."),
    Case("tags-on-version", "tag_resource", {"Resource": "{A}:{fn}:1", "Tags": {"a": "b"}}, 400, IPV,
         "Tags on function aliases and versions are not supported. Please specify a function ARN."),
    Case("tags-on-latest", "tag_resource", {"Resource": "{A}:{fn}:$LATEST", "Tags": {"a": "b"}}, 400, IPV,
         "Tags on function aliases and versions are not supported. Please specify a function ARN."),
    Case("tags-list-alias", "list_tags", {"Resource": "{A}:{fn}:live"}, 400, IPV,
         "Tags on function aliases and versions are not supported. Please specify a function ARN."),
    Case("tags-empty", "tag_resource", {"Resource": "{A}:{fn}", "Tags": {}}, 400, IPV, "An error occurred and the request cannot be processed."),
    Case("untag-no-keys", "untag_resource", {"Resource": "{A}:{fn}", "TagKeys": []}, 400, VAL,
         "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null"),
    Case("tags-invalid-arn", "list_tags", {"Resource": "arn:aws:something"}, 400, VAL,
         "1 validation error detected: Value 'arn:aws:something' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:", match="prefix"),
    # ---- invoke
    Case("invoke-bad-json", "invoke", {"FunctionName": "{fn}", "Payload": b"{not json"}, 400, "InvalidRequestContentException",
         "Could not parse request body into json: Could not parse payload into json: ", match="prefix"),
    Case("invoke-too-large", "invoke", {"FunctionName": "{fn}", "Payload": b'"' + b"x" * 6291460 + b'"'}, 413, "RequestEntityTooLargeException",
         "Request must be smaller than 6291456 bytes for the InvokeFunction operation"),
    Case("invoke-type", "invoke", {"FunctionName": "{fn}", "InvocationType": "Sometimes"}, 400, VAL,
         "1 validation error detected: Value 'Sometimes' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"),
    Case("invoke-version-executed", "invoke", {"FunctionName": "{fn}", "Qualifier": "live"}, 200, expect={"ExecutedVersion": "1"}),
    # ---- operations Squall does not serve yet: never a "not found"
    Case("unimplemented-is-not-404", "list_capacity_providers", {}, 501, "NotImplementedException",
         "Squall does not implement the ListCapacityProviders operation: ", match="prefix"),
    Case("code-signing-refused", "create_code_signing_config",
         {"AllowedPublishers": {"SigningProfileVersionArns": ["arn:aws:signer:us-east-1:123456789012:/signing-profiles/p/v"]}},
         501, "NotImplementedException", "Squall does not implement the CreateCodeSigningConfig operation. Squall does not verify code signatures", match="prefix"),
    Case("code-signing-of-a-function", "get_function_code_signing_config", {"FunctionName": "{fn}"}, 200,
         expect={"CodeSigningConfigArn": ""}),
]
