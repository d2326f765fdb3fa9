"""Runtime hooks for SnapStart, as the ``snapshot-restore-py`` package on PyPI defines them.

Squall's Python runtime provides this module (a function may ship the package instead: the
copy in /var/task or a layer is found first). ``register_before_snapshot(func, *args,
**kwargs)`` runs ``func`` in the template once init is over, before environments are forked
from it (hooks run in the reverse order of registration); ``register_after_restore(...)`` runs
``func`` in every environment forked from it, before its first invocation (in the order of
registration). Both return ``func``, so they work as decorators.
"""

_before_snapshot_registry = []
_after_restore_registry = []


def register_before_snapshot(func, *args, **kwargs):
    _before_snapshot_registry.append((func, args, kwargs))
    return func


def register_after_restore(func, *args, **kwargs):
    _after_restore_registry.append((func, args, kwargs))
    return func


def get_before_snapshot():
    return _before_snapshot_registry


def get_after_restore():
    return _after_restore_registry
