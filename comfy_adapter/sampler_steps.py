"""Which step of the sampler's own loop a model call belongs to.

ComfyUI tells a model call its sigma, never its step. Samplers that call the model more than once
per step (heun, heunpp2, dpm_2, dpmpp_2s_ancestral, dpmpp_sde, seeds_2/3, sa_solver_pece, ...)
evaluate at sigmas that also start the next step, and fire the per-step callback between the
evaluations of one step, so neither the sigma nor the callback says where a step ends. The
sampler's loop does:

- every loop-based sampler ComfyUI ships (k-diffusion, UniPC, the advanced samplers of
  comfy_extras) iterates its module's `trange` once per step;
- DPM-Solver fast and adaptive (`DPMSolver`) make the first evaluation of each of their own steps
  through `DPMSolver.eps` with the key "eps" (their steps are not the sigma schedule's: dpm_fast
  takes about a third as many, dpm_adaptive as many as its error control asks, rejected tries
  included).

While a run that needs steps samples, `watch_steps` puts a counting stand-in in those two places
(the sampler's own module and ComfyUI's sampler modules) and puts the originals back when the last
such run ends, so ComfyUI's modules are untouched whenever no such run samples. The stand-ins
behave exactly like the originals; they only record the index of the outermost step loop of the
thread's current run. A sampler whose loop shows in neither place leaves `StepLoop.index` None.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
from collections.abc import Iterator

import comfy.extra_samplers.uni_pc
import comfy.k_diffusion.sampling

_LOOP_NAME = "trange"
_ORIGINAL = "multireward_original"
_state = threading.local()
_installed: dict[tuple[int, str], list] = {}  # (id(namespace), name) -> [namespace, original, users]


class StepLoop:
    """The index of the step the sampler is in, as its own loop counts it (None: not seen)."""

    def __init__(self):
        self.index: int | None = None
        self.in_step_loop = False

    def start_step(self, index: int | None = None) -> None:
        self.index = index if index is not None else (0 if self.index is None else self.index + 1)


def _current() -> StepLoop | None:
    loops = getattr(_state, "loops", None)
    return loops[-1] if loops else None


class _CountedBar:
    """The sampler's progress bar, unchanged, telling the run each index the loop takes."""

    def __init__(self, bar, loop: StepLoop):
        self._bar = bar
        self._loop = loop

    def __iter__(self):
        self._loop.in_step_loop = True
        try:
            for index in self._bar:
                self._loop.start_step(int(index))
                yield index
        finally:
            self._loop.in_step_loop = False

    def __getattr__(self, name):
        return getattr(self._bar, name)


def _counting_trange(original):
    def trange(*args, **kwargs):
        bar = original(*args, **kwargs)
        loop = _current()
        if loop is None or loop.in_step_loop:  # no run watching, or a loop inside a step
            return bar
        return _CountedBar(bar, loop)

    setattr(trange, _ORIGINAL, original)
    return trange


def _counting_eps(original):
    @functools.wraps(original)
    def eps(self, eps_cache, key, *args, **kwargs):
        loop = _current()
        if loop is not None and key == "eps" and key not in eps_cache:
            loop.start_step()  # DPM-Solver's first evaluation of a step
        return original(self, eps_cache, key, *args, **kwargs)

    setattr(eps, _ORIGINAL, original)
    return eps


def _loop_places(sampler) -> list[tuple[object, str, object]]:
    """(namespace, name, stand-in maker) for every place a step loop can be seen from."""
    modules = [comfy.k_diffusion.sampling.__dict__, comfy.extra_samplers.uni_pc.__dict__]
    function = getattr(sampler, "sampler_function", None)
    while isinstance(function, functools.partial):
        function = function.func
    if function is not None:
        module = sys.modules.get(getattr(inspect.unwrap(function), "__module__", None) or "")
        if module is not None and module.__dict__ not in modules:
            modules.append(module.__dict__)
    places: list[tuple[object, str, object]] = [
        (namespace, _LOOP_NAME, _counting_trange) for namespace in modules if _LOOP_NAME in namespace
    ]
    places.append((comfy.k_diffusion.sampling.DPMSolver, "eps", _counting_eps))
    return places


def _get(namespace, name):
    return namespace.get(name) if isinstance(namespace, dict) else namespace.__dict__.get(name)


def _set(namespace, name, value) -> None:
    if isinstance(namespace, dict):
        namespace[name] = value
    else:
        setattr(namespace, name, value)


def _install(places) -> list[tuple[int, str]]:
    keys = []
    for namespace, name, make_stand_in in places:
        key = (id(namespace), name)
        if key not in _installed:
            original = _get(namespace, name)
            if original is None:
                continue
            _installed[key] = [namespace, original, 0]
            _set(namespace, name, make_stand_in(original))
        _installed[key][2] += 1
        keys.append(key)
    return keys


def _uninstall(keys) -> None:
    for key in keys:
        entry = _installed[key]
        entry[2] -= 1
        if entry[2] == 0:
            _set(entry[0], key[1], entry[1])
            del _installed[key]


@contextlib.contextmanager
def watch_steps(sampler) -> Iterator[StepLoop]:
    """Within this block, the returned StepLoop follows the step loop of `sampler`'s run."""
    loop = StepLoop()
    keys = _install(_loop_places(sampler))
    loops = getattr(_state, "loops", None)
    if loops is None:
        loops = _state.loops = []
    loops.append(loop)
    try:
        yield loop
    finally:
        loops.remove(loop)
        _uninstall(keys)
