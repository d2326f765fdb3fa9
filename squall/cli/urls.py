"""``squall url`` and ``squall deploy --url``: a function's URL, made when it has none.

A URL made here with auth ``none`` also gets the resource-policy statement Lambda requires
before anyone may call it (``lambda:InvokeFunctionUrl`` for principal ``*``, with
``lambda:FunctionUrlAuthType`` NONE) — what the AWS console adds for you, and the AWS API
leaves to you.
"""

from __future__ import annotations

from typing import Any

PUBLIC_STATEMENT = "FunctionURLAllowPublicAccess"


def ensure_url(lam: Any, name: str, alias: str | None = None, auth: str = "NONE") -> tuple[dict[str, Any], bool]:
    """(the URL config, whether it was made now)."""
    qualifier = {"Qualifier": alias} if alias else {}
    try:
        return lam.get_function_url_config(FunctionName=name, **qualifier), False
    except lam.exceptions.ResourceNotFoundException:
        pass
    config = lam.create_function_url_config(FunctionName=name, AuthType=auth, **qualifier)
    if auth == "NONE":
        try:
            lam.add_permission(FunctionName=name, StatementId=PUBLIC_STATEMENT, Action="lambda:InvokeFunctionUrl",
                               Principal="*", FunctionUrlAuthType="NONE", **qualifier)
        except lam.exceptions.ResourceConflictException:
            pass  # the statement is there already
    return config, True


def delete_url(lam: Any, name: str, alias: str | None = None) -> None:
    qualifier = {"Qualifier": alias} if alias else {}
    lam.delete_function_url_config(FunctionName=name, **qualifier)
    try:
        lam.remove_permission(FunctionName=name, StatementId=PUBLIC_STATEMENT, **qualifier)
    except lam.exceptions.ResourceNotFoundException:
        pass
