"""Making a :class:`~.plan.Plan` happen, one change at a time, each with a progress line.

Every step converges (creates what is missing, updates what is there), so a deploy that
failed half-way is finished by running it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from squall.cli.client import CliError
from squall.cli.deploy import Waiter, _raise_if_failed
from squall.cli.output import step
from squall.cli.sam.plan import Change, Plan, desired_tags, function_arn
from squall.cli.sam.state import LOGICAL_ID_TAG, STACK_TAG, FunctionState
from squall.cli.sam.template import (
    ACCOUNT,
    FunctionSpec,
    LayerRef,
    StackSpec,
    derived_name,
)
from squall.cli.urls import PUBLIC_STATEMENT

LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
SCHEDULER_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


class Applier:
    def __init__(self, clients: Any, plan: Plan, packages: dict[Path, bytes], waiter: Waiter | None = None) -> None:
        self.clients = clients
        self.plan = plan
        self.stack: StackSpec = plan.stack
        self.packages = packages
        self.waiter = waiter or Waiter()
        self.layer_arns: dict[str, str] = {}
        self.api_ids: dict[str, str] = {}

    def run(self) -> None:
        lam = self.clients.lam
        for layer in self.stack.layers.values():  # the unchanged ones' current versions
            try:
                versions = lam.list_layer_versions(LayerName=layer.name).get("LayerVersions", [])
            except lam.exceptions.ResourceNotFoundException:
                versions = []
            if versions:
                self.layer_arns[layer.logical_id] = max(versions, key=lambda v: v["Version"])["LayerVersionArn"]
        for change in self.plan.actions:
            kind = change.kind.split()[0].lower()
            getattr(self, f"_{kind}")(change)

    def _spec(self, change: Change) -> FunctionSpec:
        return self.stack.functions[change.logical_id or ""]

    # ------------------------------------------------------------------ layers and roles

    def _layer(self, change: Change) -> None:
        layer = self.stack.layers[change.logical_id or ""]
        with step(f"Publishing a version of layer {layer.name}") as publishing:
            made = self.clients.lam.publish_layer_version(
                LayerName=layer.name, Content={"ZipFile": self.packages[layer.content_dir]}, **layer.settings)
            publishing.result = f"version {made['Version']}"
        self.layer_arns[layer.logical_id] = made["LayerVersionArn"]

    def _role(self, change: Change) -> None:
        iam = self.clients.iam
        name = change.target
        if change.action == "create":
            with step(f"Creating role {name}"):
                try:
                    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST),
                                    Description=f"squall deploy: {self.stack.name}/{change.logical_id}")
                except iam.exceptions.EntityAlreadyExistsException:
                    pass
        with step(f"Putting the inline policies of role {name}"):
            for policy, document in change.data["policies"].items():
                iam.put_role_policy(RoleName=name, PolicyName=policy, PolicyDocument=json.dumps(document))
            for policy in change.data.get("stale", []):
                iam.delete_role_policy(RoleName=name, PolicyName=policy)

    # ------------------------------------------------------------------ functions

    def _settings(self, spec: FunctionSpec) -> dict[str, Any]:
        settings = {k: v for k, v in spec.config.items() if k != "Architectures"}
        settings["Layers"] = [self.layer_arns[x.logical_id] if isinstance(x, LayerRef) else x for x in spec.config["Layers"]]
        return settings

    def _function(self, change: Change) -> None:
        lam = self.clients.lam
        if change.action == "delete":
            self._delete_function(change.data["state"])
            return
        spec = self._spec(change)
        code = self.packages[spec.code_dir]
        if change.action == "create":
            with step(f"Creating function {spec.name}"):
                lam.create_function(FunctionName=spec.name, Code={"ZipFile": code},
                                    Architectures=spec.config["Architectures"], Tags=desired_tags(self.stack, spec),
                                    **self._settings(spec))
            with step(f"Waiting for {spec.name} to become Active"):
                _raise_if_failed(spec.name, self.waiter.wait(lam, spec.name))
            return
        self.waiter.wait(lam, spec.name)
        if change.data.get("code") or "architectures" in change.details:
            with step(f"Updating code of {spec.name}"):
                lam.update_function_code(FunctionName=spec.name, ZipFile=code, Architectures=spec.config["Architectures"])
            with step("Waiting for the update to finish"):
                _raise_if_failed(spec.name, self.waiter.wait(lam, spec.name))
        if set(change.details) - {"code", "tags", "architectures"}:
            with step(f"Updating configuration of {spec.name}"):
                lam.update_function_configuration(FunctionName=spec.name, **self._settings(spec))
            with step("Waiting for the update to finish"):
                _raise_if_failed(spec.name, self.waiter.wait(lam, spec.name))
        if "tags" in change.details:
            arn = function_arn(self.stack, spec.name)
            wanted = desired_tags(self.stack, spec)
            with step(f"Tagging {spec.name}"):
                have = lam.list_tags(Resource=arn).get("Tags", {})
                stale = [k for k in have if k not in wanted and not k.startswith("aws:")]
                if stale:
                    lam.untag_resource(Resource=arn, TagKeys=stale)
                lam.tag_resource(Resource=arn, Tags=wanted)

    def _delete_function(self, state: FunctionState) -> None:
        lam, name = self.clients.lam, state.name
        for rule in state.rules:
            self._delete_rule(rule)
        for schedule in state.schedules:
            self._delete_schedule(schedule)
        for trigger in state.sns.values():
            with step(f"Unsubscribing trigger {trigger}"):
                self._squall("DELETE", f"/squall/triggers/{trigger}")
        for mapping in state.mappings:
            with step(f"Deleting event source mapping {mapping['UUID']}"):
                lam.delete_event_source_mapping(UUID=mapping["UUID"])
        with step(f"Deleting function {name}"):
            try:
                lam.delete_function(FunctionName=name)
            except lam.exceptions.ResourceNotFoundException:
                pass
        stack, logical_id = state.tags.get(STACK_TAG, ""), state.tags.get(LOGICAL_ID_TAG, "")
        owned_role = derived_name(stack, logical_id, 64 - len("-role")) + "-role"
        if state.config.get("Role", "").endswith(f":role/{owned_role}"):
            self._delete_role(owned_role)
        self._delete_role(self._scheduler_role_name(name))  # made for its ScheduleV2 events, if any

    def _delete_role(self, name: str) -> None:
        iam = self.clients.iam
        try:
            policies = iam.list_role_policies(RoleName=name).get("PolicyNames", [])
        except iam.exceptions.NoSuchEntityException:
            return
        with step(f"Deleting role {name}"):
            for policy in policies:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            iam.delete_role(RoleName=name)

    # ------------------------------------------------------------------ alias and settings

    def _alias(self, change: Change) -> None:
        lam, spec = self.clients.lam, self._spec(change)
        with step(f"Publishing a version of {spec.name}") as publishing:
            version = lam.publish_version(FunctionName=spec.name)["Version"]
            publishing.result = f"version {version}"
        with step(f"Pointing alias {spec.alias} of {spec.name} at version {version}"):
            try:
                lam.update_alias(FunctionName=spec.name, Name=spec.alias, FunctionVersion=version)
            except lam.exceptions.ResourceNotFoundException:
                lam.create_alias(FunctionName=spec.name, Name=spec.alias, FunctionVersion=version)

    def _provisionedconcurrency(self, change: Change) -> None:
        lam, spec = self.clients.lam, self._spec(change)
        if change.action == "delete":
            with step(f"Removing provisioned concurrency of {spec.name}:{spec.alias}"):
                lam.delete_provisioned_concurrency_config(FunctionName=spec.name, Qualifier=spec.alias)
            return
        with step(f"Setting provisioned concurrency of {spec.name}:{spec.alias} to {spec.provisioned}"):
            lam.put_provisioned_concurrency_config(FunctionName=spec.name, Qualifier=spec.alias,
                                                   ProvisionedConcurrentExecutions=spec.provisioned)

    def _functionurl(self, change: Change) -> None:
        lam = self.clients.lam
        spec = self.stack.functions.get(change.logical_id or "")
        old = change.data.get("old")
        if old is not None and (change.action == "delete" or spec is None
                                or old.get("Qualifier") != spec.alias):
            qualifier = {"Qualifier": old["Qualifier"]} if old.get("Qualifier") else {}
            name = old["FunctionArn"].split(":")[6]
            with step(f"Deleting the URL of {name}" + (f":{old['Qualifier']}" if qualifier else "")):
                lam.delete_function_url_config(FunctionName=name, **qualifier)
                try:
                    lam.remove_permission(FunctionName=name, StatementId=PUBLIC_STATEMENT, **qualifier)
                except lam.exceptions.ResourceNotFoundException:
                    pass
        if change.action == "delete" or spec is None or spec.url is None:
            return
        qualifier = {"Qualifier": spec.alias} if spec.alias else {}
        settings = dict(spec.url)
        with step(f"{'Creating' if change.action == 'create' else 'Updating'} the URL of {spec.name}"
                  + (f":{spec.alias}" if spec.alias else "")) as making:
            if change.action == "create":
                made = lam.create_function_url_config(FunctionName=spec.name, **qualifier, **settings)
            else:
                made = lam.update_function_url_config(FunctionName=spec.name, **qualifier, **settings)
            making.result = made["FunctionUrl"]
            if spec.url["AuthType"] == "NONE":
                try:
                    lam.add_permission(FunctionName=spec.name, StatementId=PUBLIC_STATEMENT,
                                       Action="lambda:InvokeFunctionUrl", Principal="*", FunctionUrlAuthType="NONE",
                                       **qualifier)
                except lam.exceptions.ResourceConflictException:
                    pass

    def _reservedconcurrency(self, change: Change) -> None:
        lam, spec = self.clients.lam, self._spec(change)
        if change.action == "delete":
            with step(f"Removing reserved concurrency of {spec.name}"):
                lam.delete_function_concurrency(FunctionName=spec.name)
            return
        with step(f"Reserving concurrency {spec.reserved} for {spec.name}"):
            lam.put_function_concurrency(FunctionName=spec.name, ReservedConcurrentExecutions=spec.reserved)

    def _eventinvokeconfig(self, change: Change) -> None:
        lam, spec = self.clients.lam, self._spec(change)
        if change.action == "delete":
            with step(f"Removing the asynchronous invocation settings of {spec.name}"):
                lam.delete_function_event_invoke_config(FunctionName=spec.name)
            return
        with step(f"Setting the asynchronous invocation settings of {spec.name}"):
            lam.put_function_event_invoke_config(FunctionName=spec.name, **(spec.invoke_config or {}))

    # ------------------------------------------------------------------ events

    def _event(self, change: Change) -> None:
        kind = change.kind.split(" ", 1)[1]
        if change.action == "delete":
            if kind == "Schedule":
                self._delete_rule(change.data["name"])
            elif kind == "ScheduleV2":
                self._delete_schedule(change.data["name"])
            elif kind == "SNS":
                with step(f"Unsubscribing trigger {change.data['trigger']}"):
                    self._squall("DELETE", f"/squall/triggers/{change.data['trigger']}")
            else:
                with step(f"Deleting event source mapping {change.data['uuid']}"):
                    self.clients.lam.delete_event_source_mapping(UUID=change.data["uuid"])
            return
        if kind in ("HttpApi", "Api"):
            self._route(change)
            return
        if kind == "SNS":
            self._sns(self._spec(change), change)
            return
        spec = self._spec(change)
        {"Schedule": self._rule, "ScheduleV2": self._schedule}.get(kind, self._mapping)(spec, change)

    # ------------------------------------------------------------------ SNS (Squall's own triggers)

    def _squall(self, method: str, path: str, document: dict[str, Any] | None = None) -> dict[str, Any]:
        """A signed request to one of Squall's own endpoints (as `squall subscribe` makes)."""
        from squall.cli.client import call_json

        connection = self.clients.connection
        return call_json(connection.endpoint, method, path, document, timeout=30, region=connection.region,
                         refused_hint="SNS events need the Squall server to reach SNS (its aws_endpoint setting); "
                                      "see docs/event-triggers.md.")

    def _sns(self, spec: FunctionSpec, change: Change) -> None:
        lam, topic = self.clients.lam, change.data["wanted"]["Topic"]
        with step(f"Subscribing {spec.name} to {topic}") as subscribing:
            try:
                lam.add_permission(FunctionName=spec.name, StatementId=_statement("sns", topic),
                                   Action="lambda:InvokeFunction", Principal="sns.amazonaws.com", SourceArn=topic)
            except lam.exceptions.ResourceConflictException:
                pass
            made = self._squall("POST", "/squall/triggers/sns", {"FunctionName": spec.name, "TopicArn": topic})
            subscribing.result = made.get("SubscriptionArn", "done")

    # ------------------------------------------------------------------ HTTP APIs

    def _api_id(self, name: str) -> str | None:
        if name not in self.api_ids:
            for api in self.clients.apigatewayv2.get_apis().get("Items", []):
                if api["Name"] == name:
                    self.api_ids[name] = api["ApiId"]
        return self.api_ids.get(name)

    def _httpapi(self, change: Change) -> None:
        apigw, name = self.clients.apigatewayv2, change.data["api"]
        if change.action == "delete":
            api_id = self._api_id(name)
            with step(f"Deleting HTTP API {name}"):
                if api_id:
                    apigw.delete_api(ApiId=api_id)
            return
        with step(f"Creating HTTP API {name}") as making:
            api = apigw.create_api(Name=name, ProtocolType="HTTP",
                                   Description=f"squall deploy: {self.stack.name} ({change.data['kind']} events)")
            stage = "$default" if change.data["kind"] == "HttpApi" else "Prod"  # SAM's default stages
            apigw.create_stage(ApiId=api["ApiId"], StageName=stage, AutoDeploy=True)
            making.result = api.get("ApiEndpoint") or api["ApiId"]
        self.api_ids[name] = api["ApiId"]

    def _route(self, change: Change) -> None:
        apigw, lam, data = self.clients.apigatewayv2, self.clients.lam, change.data
        api_id = self._api_id(data["api"])
        if api_id is None:
            raise CliError(f"HTTP API {data['api']} is gone.", "Run the deploy again: it will be made.")
        now = data.get("now")
        if change.action == "delete":
            with step(f"Deleting route {data['key']} of {data['api']}"):
                apigw.delete_route(ApiId=api_id, RouteId=now["RouteId"])
                if now.get("IntegrationId"):
                    apigw.delete_integration(ApiId=api_id, IntegrationId=now["IntegrationId"])
            return
        with step(f"{'Routing' if change.action == 'create' else 'Re-routing'} {data['key']} of {data['api']}"):
            if now is not None and now.get("IntegrationId"):
                apigw.update_integration(ApiId=api_id, IntegrationId=now["IntegrationId"], IntegrationUri=data["Target"])
            else:
                integration = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                                       IntegrationUri=data["Target"],
                                                       PayloadFormatVersion=data["Payload"])
                target = f"integrations/{integration['IntegrationId']}"
                if now is None:
                    apigw.create_route(ApiId=api_id, RouteKey=data["key"], Target=target)
                else:
                    apigw.update_route(ApiId=api_id, RouteId=now["RouteId"], Target=target)
            target_arn = data["Target"]
            parts = target_arn.split(":")
            qualifier = {"Qualifier": parts[7]} if len(parts) > 7 else {}
            source = f"arn:aws:execute-api:{self.stack.region}:{ACCOUNT}:{api_id}/*/*"
            try:  # API Gateway may invoke the function (or its alias) for this API
                lam.add_permission(FunctionName=parts[6], StatementId=_statement("apigw", api_id),
                                   Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com",
                                   SourceArn=source, **qualifier)
            except lam.exceptions.ResourceConflictException:
                pass

    def _rule(self, spec: FunctionSpec, change: Change) -> None:
        events, lam = self.clients.events, self.clients.lam
        name, wanted = change.data["name"], change.data["wanted"]
        with step(f"Putting rule {name} ({wanted['ScheduleExpression']})"):
            rule_arn = events.put_rule(Name=name, ScheduleExpression=wanted["ScheduleExpression"],
                                       State=wanted["State"],
                                       Description=f"squall deploy: {self.stack.name}/{spec.logical_id}")["RuleArn"]
            target = {"Id": "function", "Arn": wanted["Target"]}
            if "Input" in wanted:
                target["Input"] = wanted["Input"] if isinstance(wanted["Input"], str) else json.dumps(wanted["Input"])
            old = [t["Id"] for t in events.list_targets_by_rule(Rule=name).get("Targets", []) if t["Id"] != "function"]
            if old:
                events.remove_targets(Rule=name, Ids=old)
            events.put_targets(Rule=name, Targets=[target])
            qualifier = {"Qualifier": spec.alias} if spec.alias else {}
            try:  # what `aws lambda add-permission` does: the rule may invoke the function
                lam.add_permission(FunctionName=spec.name, StatementId=_statement("events", name),
                                   Action="lambda:InvokeFunction", Principal="events.amazonaws.com",
                                   SourceArn=rule_arn, **qualifier)
            except lam.exceptions.ResourceConflictException:
                pass

    def _delete_rule(self, name: str) -> None:
        events = self.clients.events
        with step(f"Deleting rule {name}"):
            try:
                ids = [t["Id"] for t in events.list_targets_by_rule(Rule=name).get("Targets", [])]
                if ids:
                    events.remove_targets(Rule=name, Ids=ids)
                events.delete_rule(Name=name)
            except events.exceptions.ResourceNotFoundException:
                pass

    def _scheduler_role_name(self, function_name: str) -> str:
        return f"{function_name[:50]}-scheduler"

    def _schedule(self, spec: FunctionSpec, change: Change) -> None:
        scheduler, iam = self.clients.scheduler, self.clients.iam
        name, wanted, props = change.data["name"], change.data["wanted"], change.data["event"].properties
        role_arn = props.get("RoleArn")
        if not role_arn:
            role = self._scheduler_role_name(spec.name)
            with step(f"Putting role {role} (EventBridge Scheduler may invoke {spec.name})"):
                try:
                    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(SCHEDULER_TRUST))
                except iam.exceptions.EntityAlreadyExistsException:
                    pass
                iam.put_role_policy(RoleName=role, PolicyName="invoke", PolicyDocument=json.dumps({
                    "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                                            "Resource": [function_arn(self.stack, spec.name),
                                                                         function_arn(self.stack, spec.name) + ":*"]}]}))
            role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
        target: dict[str, Any] = {"Arn": wanted["Target"], "RoleArn": role_arn}
        if "Input" in wanted:
            target["Input"] = wanted["Input"] if isinstance(wanted["Input"], str) else json.dumps(wanted["Input"])
        params = {"Name": name, "ScheduleExpression": wanted["ScheduleExpression"], "State": wanted["State"],
                  "ScheduleExpressionTimezone": wanted["Timezone"], "FlexibleTimeWindow": {"Mode": "OFF"},
                  "Target": target}
        with step(f"{'Creating' if change.action == 'create' else 'Updating'} schedule {name}"):
            if change.action == "create":
                scheduler.create_schedule(**params)
            else:
                scheduler.update_schedule(**params)

    def _delete_schedule(self, name: str) -> None:
        scheduler = self.clients.scheduler
        with step(f"Deleting schedule {name}"):
            try:
                scheduler.delete_schedule(Name=name)
            except scheduler.exceptions.ResourceNotFoundException:
                pass

    def _mapping(self, spec: FunctionSpec, change: Change) -> None:
        lam, wanted = self.clients.lam, change.data["wanted"]
        props = change.data["event"].properties
        params: dict[str, Any] = {k: wanted[k] for k in ("BatchSize", "MaximumBatchingWindowInSeconds") if k in wanted}
        params["Enabled"] = wanted["Enabled"]
        for key in ("FilterCriteria", "FunctionResponseTypes", "MaximumRetryAttempts", "ParallelizationFactor",
                    "BisectBatchOnFunctionError", "MaximumRecordAgeInSeconds"):
            if props.get(key) is not None:
                params[key] = props[key]
        if change.action == "create":
            if "StartingPosition" in wanted:
                params["StartingPosition"] = wanted["StartingPosition"]
            with step(f"Creating event source mapping {wanted['EventSourceArn']} → {spec.name}"):
                lam.create_event_source_mapping(FunctionName=wanted["Target"], EventSourceArn=wanted["EventSourceArn"],
                                                **params)
        else:
            with step(f"Updating event source mapping {change.data['uuid']}"):
                lam.update_event_source_mapping(UUID=change.data["uuid"], FunctionName=wanted["Target"], **params)


def _statement(prefix: str, name: str) -> str:
    return f"squall-{prefix}-" + hashlib.sha256(name.encode()).hexdigest()[:16]


def apply_plan(clients: Any, plan: Plan, packages: dict[Path, bytes], waiter: Waiter | None = None) -> None:
    """Apply ``plan``; a failure says what was left and how to go on."""
    from botocore.exceptions import ClientError

    try:
        Applier(clients, plan, packages, waiter).run()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CliError(
            f"{error.get('Code') or 'Error'}: {error.get('Message') or exc}",
            "What was applied before this step stays. Fix the cause, then run the same `squall deploy --template` "
            "again: it picks up from where it stopped.",
        ) from None
