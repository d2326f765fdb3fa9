"""The web console served at ``/console`` (see ``route.py`` and docs/console.md)."""

from squall.console.route import ConsoleRoute, OneTimeCodes

__all__ = ["ConsoleRoute", "OneTimeCodes"]
