"""The JAX backend: the optimized graph lowered into jitted JAX functions.

Params and states are arguments, never constants. States are donated, so a KV-cache
``set_rows`` updates the device buffer in place. On one device the whole graph is one
``jax.jit`` function. With ``devices=[...]`` and ``split="tensor"``, weights are sharded
over a ``jax.sharding.Mesh`` with named shardings and XLA inserts the collectives. With
``split="layer"``, contiguous stages run on successive devices with the activations
handed over between them, like a pipeline. The memory plan of the graph is made and
proven safe before anything is lowered.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from graphc.backends.jax_lowering import lower, lower_nodes, lowering_for
from graphc.dtypes import to_numpy
from graphc.errors import GraphError
from graphc.executable import Executable
from graphc.graph import Graph
from graphc.passes.placement import DevicePlacement, place
from graphc.passes.prove import plan_and_prove
from graphc.reads import Reads
from graphc.report import CompileReport
from graphc.tensor import Tensor

# XLA on the CPU may decline a donation and say so; it changes nothing about the results.
warnings.filterwarnings("ignore", message="Some donated buffers were not usable")


def _spec(t: Tensor, sharding: Any = None) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(  # type: ignore[no-untyped-call]  # JAX leaves it untyped
        t.shape, np.dtype(jnp.dtype(_np(t.dtype))), sharding=sharding)


def _np(dtype: str) -> Any:
    return to_numpy(dtype)


def _memory_analysis(compiled: Any) -> dict[str, int] | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every platform provides one
        return None
    if m is None:
        return None
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes", "generated_code_size_in_bytes")
    return {k.replace("_size_in_bytes", ""): int(getattr(m, k)) for k in keys if hasattr(m, k)}


class JaxExecutable(Executable):
    """A graph compiled with JAX; ``run`` returns JAX arrays, ``state`` holds device arrays."""

    backend = "jax"

    def __init__(self, graph: Graph, params: Mapping[str, Any] | None, reads: Reads,
                 states: Mapping[str, Any] | None, *, order: Sequence[Tensor],
                 report: CompileReport, devices: Sequence[Any] | None = None,
                 split: str | None = None) -> None:
        super().__init__(graph, params, reads, states)
        # own copies: states are donated at every run, so sharing them with the caller (or
        # another executable seeded from the same arrays) would delete the caller's buffers
        self.state = {n: jnp.array(v, copy=True) for n, v in self.state.items()}
        self.order = list(order)
        self.devices = list(devices) if devices else [jax.devices()[0]]
        self.split = split if len(self.devices) > 1 else None
        self.report_ = report
        report.devices = [str(d) for d in self.devices]
        report.split = self.split
        names = [n for n in graph.outputs if n in reads]
        if self.split == "layer":
            self._build_layer(names)
        else:
            self._build_single(names)

    # -------------------------------------------------------------------- one program
    def _build_single(self, names: list[str]) -> None:
        g = self.graph
        fn = lower(g, names, self.order)
        if self.split == "tensor":
            placement = place(g, len(self.devices), "tensor")
            self.placement: DevicePlacement | None = placement
            self.report_.placement = placement.describe()
            mesh = Mesh(np.array(self.devices), ("model",))
            rep = NamedSharding(mesh, P())  # type: ignore[no-untyped-call]  # untyped in JAX

            def sharding(name: str) -> NamedSharding:
                axis = placement.shard.get(name)
                if axis is None:
                    return rep
                spec: list[str | None] = [None] * g.params[name].ndim
                spec[axis] = "model"
                return NamedSharding(mesh, P(*spec))  # type: ignore[no-untyped-call]  # as above

            param_sh = {n: sharding(n) for n in g.params}
            state_sh = {n: rep for n in g.states}
            input_sh = {n: rep for n in g.inputs}
            self.params = {n: jax.device_put(v, param_sh[n]) for n, v in self.params.items()}
            self.state = {n: jax.device_put(v, rep) for n, v in self.state.items()}
            self._input_sh: dict[str, Any] | None = input_sh
            jitted = jax.jit(fn, donate_argnums=(1,), in_shardings=(param_sh, state_sh, input_sh))
        else:
            self.placement = None
            dev = self.devices[0]
            self.params = {n: jax.device_put(v, dev) for n, v in self.params.items()}
            self.state = {n: jax.device_put(v, dev) for n, v in self.state.items()}
            self._input_sh = None
            jitted = jax.jit(fn, donate_argnums=(1,))
        args = ({n: _spec(t) for n, t in g.params.items()},
                {n: _spec(t) for n, t in g.states.items()},
                {n: _spec(t) for n, t in g.inputs.items()})
        t0 = time.perf_counter()
        lowered = jitted.lower(*args)
        t1 = time.perf_counter()
        self._compiled = lowered.compile()
        t2 = time.perf_counter()
        self.report_.trace_seconds, self.report_.compile_seconds = t1 - t0, t2 - t1
        self.report_.memory_analysis = _memory_analysis(self._compiled)
        self.jitted = jitted

    # -------------------------------------------------------------------- a pipeline
    def _build_layer(self, names: list[str]) -> None:
        g = self.graph
        n = len(self.devices)
        placement = place(g, n, "layer", self.order)
        self.placement = placement
        self.report_.placement = placement.describe()
        stage = placement.stage
        ops = [t for t in self.order if not t.is_leaf]
        out_tensors = {g.outputs[k] for k in names}
        assigned = set(g.assigns.values())
        later_use: dict[Tensor, int] = {}
        for t in ops:
            for i in t.inputs:
                if not i.is_leaf and stage[i] != stage[t]:
                    later_use[i] = max(later_use.get(i, -1), stage[t])
        self._stages: list[dict[str, Any]] = []
        trace = comp = 0.0
        for k in range(n):
            nodes = [t for t in ops if stage[t] == k]
            leaves = sorted({i for t in nodes for i in t.inputs if i.is_leaf},
                            key=lambda t: t.uid)
            carried = sorted({i for t in nodes for i in t.inputs
                              if not i.is_leaf and stage[i] < k}, key=lambda t: t.uid)
            exports = [t for t in nodes if t in later_use or t in out_tensors or t in assigned]
            for t in nodes:
                lowering_for(t.op)

            def fn(params: dict[str, Any], states: dict[str, Any], inputs: dict[str, Any],
                   carry: tuple[Any, ...], _nodes: list[Tensor] = nodes,
                   _leaves: list[Tensor] = leaves, _carried: list[Tensor] = carried,
                   _exports: list[Tensor] = exports) -> tuple[Any, ...]:
                feeds = {"param": params, "state": states, "input": inputs}
                env = {t: feeds[t.op][t.leaf_name] for t in _leaves}
                env.update(zip(_carried, carry, strict=True))
                lower_nodes(_nodes, env)
                return tuple(env[t] for t in _exports)

            dev = self.devices[k]
            p_names = [t.leaf_name for t in leaves if t.op == "param"]
            s_names = [t.leaf_name for t in leaves if t.op == "state"]
            i_names = [t.leaf_name for t in leaves if t.op == "input"]
            stage_params = {nm: jax.device_put(self.params[nm], dev) for nm in p_names}
            jitted = jax.jit(fn)
            on = SingleDeviceSharding(dev)
            args = ({nm: _spec(g.params[nm], on) for nm in p_names},
                    {nm: _spec(g.states[nm], on) for nm in s_names},
                    {nm: _spec(g.inputs[nm], on) for nm in i_names},
                    tuple(_spec(t, on) for t in carried))
            t0 = time.perf_counter()
            lowered = jitted.lower(*args)
            t1 = time.perf_counter()
            compiled = lowered.compile()
            t2 = time.perf_counter()
            trace, comp = trace + t1 - t0, comp + t2 - t1
            self._stages.append({"device": dev, "params": stage_params, "states": s_names,
                                 "inputs": i_names, "carried": carried, "exports": exports,
                                 "fn": compiled})
        self.report_.trace_seconds, self.report_.compile_seconds = trace, comp
        self.state = {nm: jnp.asarray(v) for nm, v in self.state.items()}

    # -------------------------------------------------------------------- running
    def _execute(self, inputs: dict[str, Any], state: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        g = self.graph
        if self.split == "layer":
            env: dict[Tensor, Any] = {}
            for st in self._stages:
                dev = st["device"]
                carry = tuple(jax.device_put(env[t], dev) for t in st["carried"])
                s_in = {nm: jax.device_put(state[nm], dev) for nm in st["states"]}
                i_in = {nm: jax.device_put(inputs[nm], dev) for nm in st["inputs"]}
                outs = st["fn"](st["params"], s_in, i_in, carry)
                env.update(zip(st["exports"], outs, strict=True))
            leaves = {"input": inputs, "state": state, "param": self.params}

            def value(t: Tensor) -> Any:  # a leaf is nobody's export: read it from its feed
                return leaves[t.op][t.leaf_name] if t.is_leaf else env[t]

            outputs = {n: value(t) for n, t in g.outputs.items() if n in self.reads}
            new_state = {s.leaf_name: value(v) for s, v in g.assigns.items()}
            return outputs, new_state
        if self._input_sh is not None:
            inputs = {n: jax.device_put(v, self._input_sh[n]) for n, v in inputs.items()}
        return self._compiled(  # type: ignore[no-any-return]  # JAX returns it untyped
            self.params, state, inputs)

    def function(self) -> Any:
        """The jitted pure function ``(params, states, inputs) -> (outputs, new states)``
        (single device or tensor split): use it under ``jax.grad`` or ``jax.vmap``."""
        if self.split == "layer":
            raise GraphError("a layer-split executable is several functions, one per device")
        return self.jitted


def build(graph: Graph, params: Any, reads: Reads, states: Any = None, *,
          report: CompileReport | None = None, check: bool = True, schedule: str = "input",
          strategy: str = "auto", devices: Sequence[Any] | None = None,
          split: str | None = None, **options: Any) -> JaxExecutable:
    """Backend entry point: schedule, plan and check memory, then lower and compile."""
    if options:
        raise GraphError(f"the jax backend takes no option {sorted(options)[0]!r}",
                         fix="options: check, schedule, strategy, devices, split")
    if split is not None and split not in ("layer", "tensor"):
        raise GraphError(f"unknown split {split!r}", fix="use 'layer' or 'tensor'")
    if split is not None and not devices:
        raise GraphError(f"split={split!r} needs devices=[...]",
                         fix="pass devices=jax.devices()[:n]")
    report = report or CompileReport(backend="jax", pipeline="none")
    plan = plan_and_prove(graph, dict(reads.rows), schedule=schedule, strategy=strategy,
                          check=check, report=report)
    order = plan.order
    return JaxExecutable(graph, params, reads, states, order=order, report=report,
                         devices=devices, split=split)
