"""``GET /squall/triggers[?function=NAME]`` (``squall triggers``): every trigger of a function, or
of all: EventBridge rules and Scheduler schedules that target it, SNS subscriptions and
object-store webhooks, pub/sub subjects, and its event source mappings.

Each row: ``kind``, ``function`` (ARN), ``source``, ``state``, ``last_delivery`` (ISO time or
null), ``delivered`` and ``failed`` (counted by this process since it started), ``last_error``, ``id``.
"""

from __future__ import annotations

from typing import Any

from squall.triggers.pubsub import KINDS, iso


def _matches(arn: str, wanted: str | None) -> bool:
    """Whether a function ARN (maybe qualified) is the named function's."""
    if wanted is None:
        return True
    name = arn.split(":function:", 1)[-1].split(":", 1)[0]
    return name == wanted


def _counts(counts: dict[str, Any]) -> dict[str, Any]:
    last = counts["last_delivery"]
    return {"delivered": counts["delivered"], "failed": counts["failed"], "last_error": counts["last_error"],
            "last_delivery": iso(last) if last else None}


def triggers_report(engine: Any, function: str | None) -> list[dict[str, Any]]:
    """The rows; blocking (reads the store): run it in a thread."""
    wanted = None
    if function:
        wanted = function.split(":function:", 1)[-1].split(":", 1)[0]
    stores = engine.stores
    rows: list[dict[str, Any]] = []
    for trigger in stores.triggers.list():
        if not _matches(trigger.function_arn, wanted):
            continue
        row = {"kind": trigger.kind, "function": trigger.function_arn, "id": trigger.trigger_id,
               "source": trigger.source, "state": None, "last_delivery": None, "delivered": None, "failed": None}
        if trigger.kind in KINDS:
            stats = engine.pubsub.trigger_stats(trigger.trigger_id)
            row["state"] = stats["state"] if stats else "not started"
            if stats:
                row.update(delivered=stats["delivered"], failed=stats["failed"], reconnects=stats["reconnects"],
                           last_error=stats["last_error"],
                           last_delivery=iso(stats["last_delivery"]) if stats["last_delivery"] else None)
        else:
            if trigger.kind == "sns":
                row["state"] = "confirmed" if trigger.document.get("Confirmed") else "pending confirmation"
            else:
                row["state"] = "webhook"
            row.update(_counts(engine.trigger_deliveries.of(trigger.trigger_id)))
        rows.append(row)
    rules = stores.event_rules
    for bus in sorted({"default", *(name for name, _, _ in rules.list_buses())}):  # default is never stored
        targets = rules.targets_of_bus(bus)
        for rule in rules.list_rules(bus):
            for target in targets.get(rule.name, []):
                arn = str(target.get("Arn", ""))
                if ":lambda:" not in arn or not _matches(arn, wanted):
                    continue
                doc = rule.document
                rows.append({"kind": "eventbridge-rule", "function": arn, "id": f"{bus}/{rule.name}/{target.get('Id')}",
                             "source": doc.get("ScheduleExpression") or f"{bus}: {doc.get('EventPattern')}",
                             "state": doc.get("State", "ENABLED"),
                             **_counts(engine.trigger_deliveries.of(f"{bus}/{rule.name}/{target.get('Id')}"))})
    for schedule in stores.schedules.list():
        target = schedule.document.get("Target") or {}
        arn = str(target.get("Arn", ""))
        if ":lambda:" not in arn or not _matches(arn, wanted):
            continue
        rows.append({"kind": "schedule", "function": arn, "id": f"{schedule.group}/{schedule.name}",
                     "source": schedule.document.get("ScheduleExpression"),
                     "state": schedule.document.get("State", "ENABLED"),
                     **_counts(engine.trigger_deliveries.of(f"{schedule.group}/{schedule.name}"))})
    for mapping in engine.event_sources_report():
        if not _matches(mapping["function"], wanted):
            continue
        rows.append({"kind": f"event-source:{mapping['kind']}", "function": mapping["function"],
                     "id": mapping["uuid"], "source": mapping["source"], "state": mapping["state"],
                     "last_delivery": None, "delivered": mapping.get("invocations"),
                     "failed": mapping.get("failed_invocations"), "last_error": mapping.get("last_error")})
    return rows
