"""Opaque page markers (``Marker`` / ``NextMarker``): the last item's key, base64-encoded."""

from __future__ import annotations

import base64

from squall.errors import InvalidParameterValue


def encode_marker(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_marker(marker: str) -> str:
    try:
        return base64.urlsafe_b64decode(marker.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameterValue(f"Invalid marker: {marker}") from None
