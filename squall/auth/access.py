"""Authorization: may this principal perform this action on this resource?

The one place requests are judged: identity policies (the caller's), the resource's policy
(a function's, from AddPermission) and the request's context keys go to the evaluator
(``policy.py``), and a refusal becomes Lambda's ``AccessDeniedException`` naming the
principal, the action, the resource and why.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Callable

from squall.auth.directory import Principal
from squall.auth.policy import Decision, Policy, evaluate
from squall.errors import AccessDenied


_TYPES = {"user": "User", "assumed-role": "AssumedRole", "root": "Account"}


class Access:
    def __init__(self, region: str, clock: Callable[[], float] = time.time) -> None:
        self.region = region
        self.clock = clock
        self._times: tuple[int, str] = (-1, "")  # the second, and aws:CurrentTime for it

    def context(self, principal: Principal, source_ip: str | None = None, secure: bool = False) -> dict[str, Any]:
        """The global condition keys of a request (lower-case names)."""
        second = int(self.clock())
        if self._times[0] != second:  # formatted once a second, not per request
            self._times = (second, datetime.datetime.fromtimestamp(second, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        caller = principal.caller
        context: dict[str, Any] = {
            "aws:principalarn": caller.role_arn or caller.arn,
            "aws:principalaccount": caller.account,
            "aws:principaltype": _TYPES.get(caller.kind, "Service"),
            "aws:userid": principal.user_id,
            "aws:currenttime": self._times[1],
            "aws:epochtime": str(second),
            "aws:securetransport": "true" if secure else "false",
            "aws:requestedregion": self.region,
        }
        if caller.kind == "user":
            context["aws:username"] = principal.name
        if source_ip:
            context["aws:sourceip"] = source_ip
        return context

    def check(
        self,
        principal: Principal | None,
        action: str,
        resource: str,
        resource_policy: Policy | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Nothing when allowed; else :class:`AccessDenied`. ``principal`` None: authentication
        is off (``--auth off``), and everything is allowed."""
        if principal is None:
            return
        decision = evaluate(principal.caller, action, resource, principal.policies, resource_policy,
                            context if context is not None else self.context(principal))
        if not decision.allowed:
            raise AccessDenied(denied_message(principal, action, resource, decision))

    def allowed(self, principal: Principal | None, action: str, resource: str, resource_policy: Policy | None = None,
                context: dict[str, Any] | None = None) -> bool:
        if principal is None:
            return True
        return evaluate(principal.caller, action, resource, principal.policies, resource_policy,
                        context if context is not None else self.context(principal)).allowed


def denied_message(principal: Principal, action: str, resource: str, decision: Decision) -> str:
    because = {
        "explicit-deny-identity": "with an explicit deny in an identity-based policy",
        "explicit-deny-resource": "with an explicit deny in a resource-based policy",
    }.get(decision.reason, f"because no identity-based policy allows the {action} action")
    return f"User: {principal.described} is not authorized to perform: {action} on resource: {resource} {because}"
