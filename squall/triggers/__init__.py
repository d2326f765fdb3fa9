"""Triggers: function URLs, HTTP APIs, schedules, buses, notifications."""
