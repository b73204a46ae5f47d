"""Nothing the candidate registers runs once its call has ended.

Python offers many ways to run code later, from inside the judge's own frames: gc callbacks,
`weakref.finalize`, signal handlers and timers, trace and profile functions, and a builtin
swapped for the duration of the judge's checks. `Baseline` is taken before the candidate's
source loads (with the garbage collector off, so that no collection can be timed into the
judge's work); `settle` runs after every candidate call and removes and reports whatever the
call left behind.
"""

from __future__ import annotations

import builtins
import gc
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evaluator.monitor import Monitor, origin

_TIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
_getsignal, _setsignal, _getitimer, _setitimer = (signal.getsignal, signal.signal,
                                                 signal.getitimer, signal.setitimer)
_gc_disable, _gc_enabled = gc.disable, gc.isenabled
_settrace, _setprofile, _gettrace, _getprofile = (sys.settrace, sys.setprofile, sys.gettrace,
                                                 sys.getprofile)
_type, _list, _dict = type, list, dict
_id = object.__hash__
"""Unique for live objects (their address, rotated) without the audit event of `id`: the
finalizer registry holds hundreds, looked at after every call of the candidate's."""


@dataclass
class Baseline:
    gc_callbacks: list[Any]
    finalizers: set[int]
    signals: dict[int, Any]
    builtins: dict[str, Any]
    timers: frozenset[int]
    """Interval timers already running (the judge's own, e.g. a test runner's timeout)."""


def baseline(monitor: Monitor) -> Baseline:
    """What is allowed to stay: everything registered before the candidate's code loads."""
    _gc_disable()
    _guard_gc_enable(monitor)
    _guard_signals(monitor)
    signals = {}
    for signum in signal.valid_signals():
        try:
            signals[int(signum)] = _getsignal(signum)
        except (OSError, ValueError):
            continue
    return Baseline(gc_callbacks=_list(gc.callbacks),
                    finalizers={_id(f) for f in _list(_finalizer_registry())},
                    signals=signals, builtins=_dict(vars(builtins)),
                    timers=frozenset(t for t in _TIMERS if _getitimer(t) != (0.0, 0.0)))


def settle(base: Baseline, monitor: Monitor) -> None:
    """Remove (and report) what the candidate's call left to run later."""
    found = [*_gc_left(base), *_finalizers_left(base), *_signals_left(base), *_tracing_left(),
             *_builtins_left(base)]
    for kind, evidence in found:
        monitor.flag(kind, evidence)


def _guard_gc_enable(monitor: Monitor) -> None:
    _refuse_from_untrusted(monitor, gc, "enable", "patching",
                           "gc.enable: the judge keeps the garbage collector off")


_SIGNAL_FUNCTIONS = ("signal", "setitimer", "alarm", "set_wakeup_fd", "pthread_kill",
                     "raise_signal", "sigwait", "pthread_sigmask")


def _guard_signals(monitor: Monitor) -> None:
    """A handler or timer fires between any two bytecodes, the judge's included."""
    import _signal

    for module in (signal, _signal):
        for name in _SIGNAL_FUNCTIONS:
            if hasattr(module, name):
                _refuse_from_untrusted(monitor, module, name, "background_work",
                                       f"signal.{name}: signals would run code later")


def _refuse_from_untrusted(monitor: Monitor, module: Any, name: str, kind: str,
                           evidence: str) -> None:
    original = getattr(module, name)
    if getattr(original, "_drkernel_guarded", False):
        return

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if monitor.by_untrusted(2):
            monitor.refuse(kind, evidence)
        return original(*args, **kwargs)

    guarded._drkernel_guarded = True  # type: ignore[attr-defined]
    setattr(module, name, guarded)


def _gc_left(base: Baseline) -> list[tuple[str, str]]:
    found = []
    if _gc_enabled():
        _gc_disable()
        found.append(("patching", "turned the garbage collector back on"))
    extra = [cb for cb in _list(gc.callbacks) if not any(cb is b for b in base.gc_callbacks)]
    for cb in extra:
        gc.callbacks.remove(cb)
        found.append(("background_work", f"registered a gc callback {_name(cb)}"))
    return found


def _finalizer_registry() -> dict[Any, Any]:
    registry: dict[Any, Any] = weakref.finalize._registry  # type: ignore[attr-defined]
    return registry


def _finalizers_left(base: Baseline) -> list[tuple[str, str]]:
    found = []
    for fin, info in _list(_finalizer_registry().items()):
        if _id(fin) in base.finalizers or _trusted_callable(info.func):
            continue
        fin.detach()
        found.append(("background_work", f"registered a finalizer {_name(info.func)}"))
    return found


def _signals_left(base: Baseline) -> list[tuple[str, str]]:
    found = []
    for timer in _TIMERS:
        if timer not in base.timers and _getitimer(timer) != (0.0, 0.0):
            _setitimer(timer, 0)
            found.append(("background_work", "left a timer signal pending"))
    for signum, handler in base.signals.items():
        try:
            current = _getsignal(signum)
            if current is not handler:
                _setsignal(signum, handler)
                found.append(("background_work", f"installed a handler for signal {signum}"))
        except (OSError, ValueError, TypeError):
            continue
    return found


def _tracing_left() -> list[tuple[str, str]]:
    found = []
    if _gettrace() is not None or _getprofile() is not None:
        _settrace(None)
        _setprofile(None)
        found.append(("introspection", "left a trace or profile function installed"))
    threading.settrace(None)
    threading.setprofile(None)
    return found


def _builtins_left(base: Baseline) -> list[tuple[str, str]]:
    space = vars(builtins)
    changed = sorted(k for k, v in _list(space.items()) if k in base.builtins
                     and v is not base.builtins[k] and k not in ("_", "__builtins__"))
    for key in changed:
        space[key] = base.builtins[key]
    added = sorted(k for k in _list(space) if k not in base.builtins and k != "_")
    for key in added:
        del space[key]
    if changed or added:
        return [("patching", "replaced builtins " + ", ".join((changed + added)[:10]))]
    return []


def _trusted_callable(fn: Callable[..., Any]) -> bool:
    """A finalizer of the libraries' or the judge's own Python code."""
    while hasattr(fn, "func") and not hasattr(fn, "__code__"):  # functools.partial
        fn = fn.func
    fn = getattr(fn, "__func__", fn)  # a bound method
    code = getattr(fn, "__code__", None)
    return code is not None and origin(code.co_filename) in ("library", "stdlib", "harness")


def _name(fn: Any) -> str:
    name = getattr(_type(fn), "__qualname__", "callable")
    return f"({name})"
