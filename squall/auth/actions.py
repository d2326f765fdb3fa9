"""Which IAM action (and on which resource) each API operation is.

Lambda: the action is ``lambda:<Operation>`` except ``Invoke`` (and its streaming form),
which is ``lambda:InvokeFunction``. The resource is the function's ARN, qualified when the
request names a version or alias (``Qualifier``, a qualified ``FunctionName``, or an alias
operation's ``Name``), a layer's ARN for layer operations (a layer version's for a function
that uses it: ``lambda:GetLayerVersion``), and ``*`` for account-wide
operations (ListFunctions, GetAccountSettings, event source mappings by listing). Creating
a function or changing its role also needs ``iam:PassRole`` on that role.
"""

from __future__ import annotations

from typing import Any

from squall.arn import Arns

ACTION_NAMES = {"Invoke": "InvokeFunction", "InvokeWithResponseStream": "InvokeFunction"}
ALIAS_OPERATIONS = ("GetAlias", "UpdateAlias", "DeleteAlias")
ACCOUNT_WIDE = ("ListFunctions", "GetAccountSettings", "ListLayers", "ListCodeSigningConfigs", "CreateCodeSigningConfig",
                "ListEventSourceMappings", "CreateEventSourceMapping")


def lambda_action(operation: str) -> str:
    return "lambda:" + ACTION_NAMES.get(operation, operation)


def lambda_requests(operation: str, params: dict[str, Any], arns: Arns) -> list[tuple[str, str]]:
    """(action, resource) pairs the caller must be allowed, for one Lambda API request."""
    action = lambda_action(operation)
    wanted = [(action, lambda_resource(operation, params, arns))]
    if operation in ("CreateFunction", "UpdateFunctionConfiguration") and params.get("Role"):
        wanted.append(("iam:PassRole", str(params["Role"])))
    if operation in ("CreateFunction", "UpdateFunctionConfiguration"):  # using a layer is reading it
        wanted += [("lambda:GetLayerVersion", str(arn)) for arn in params.get("Layers") or ()]
    return wanted


def lambda_resource(operation: str, params: dict[str, Any], arns: Arns) -> str:
    if operation in ACCOUNT_WIDE:
        return "*"
    if operation == "GetLayerVersionByArn":
        return str(params["Arn"])
    if "LayerName" in params:
        layer = str(params["LayerName"])
        base = layer if layer.startswith("arn:") else f"arn:aws:lambda:{arns.region}:{arns.account_id}:layer:{layer}"
        number = params.get("VersionNumber")
        return f"{base}:{number}" if number is not None else base
    if "UUID" in params:
        return f"arn:aws:lambda:{arns.region}:{arns.account_id}:event-source-mapping:{params['UUID']}"
    if "FunctionName" in params:
        qualifier = params.get("Qualifier")
        if operation in ALIAS_OPERATIONS and params.get("Name"):
            qualifier = params["Name"]
        ref = arns.parse(str(params["FunctionName"]), qualifier if operation != "CreateFunction" else None)
        return arns.function(ref.name, ref.qualifier)
    if "Resource" in params:  # tags: the function's ARN as given
        return str(params["Resource"])
    if "CodeSigningConfigArn" in params:
        return str(params["CodeSigningConfigArn"])
    return "*"


def iam_resource(operation: str, params: dict[str, Any], account_id: str, caller_user: str | None) -> str:
    """The IAM (or STS) resource an IAM API request acts on."""
    if "RoleName" in params:
        return f"arn:aws:iam::{account_id}:role/{params['RoleName']}"
    user = params.get("UserName") or caller_user
    if operation in ("ListUsers", "ListRoles", "GetCallerIdentity") or user is None:
        return "*"
    return f"arn:aws:iam::{account_id}:user/{user}"
