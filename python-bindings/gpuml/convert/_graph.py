"""The gpuml side of a conversion: a JSON graph with its weights, built into
a gpuml.Model through the C library (gpuml_model_create, then the
parameter and buffer slabs), so that the model file is written only by
gpuml_model_save."""
from __future__ import annotations

import numpy as np


class ConversionError(ValueError):
    """A module (named by its path in the PyTorch module tree and its type)
    that gpuml.convert cannot map exactly. Nothing is ever dropped silently."""


def where(path: str, module) -> str:
    return f"{path or '<root>'} ({type(module).__module__}.{type(module).__qualname__})"


class Graph:
    """A gpuml model config under construction. Values are named; each has a
    feature count and a kind ("row": per particle / hit, "event": per event)."""

    def __init__(self):
        self.inputs: list[dict] = []
        self.nodes: list[dict] = []
        self.outputs: list[str] = []
        self.feat: dict[str, tuple[int, str]] = {}
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.meta: dict = {}
        self._counts: dict[str, int] = {}

    def fresh(self, stem: str) -> str:
        stem = "".join(c if c.isalnum() or c == "_" else "_" for c in stem) or "n"
        while True:
            n = self._counts.get(stem, 0)
            self._counts[stem] = n + 1
            name = stem if n == 0 else f"{stem}_{n}"
            if name not in self.feat:
                return name

    def input(self, name: str, features: int) -> str:
        if name in self.feat:
            raise ConversionError(f"input {name!r} is declared twice")
        self.inputs.append({"name": name, "features": int(features)})
        self.feat[name] = (int(features), "row")
        return name

    def node(self, stem: str, op: str, inputs: list[str], features: int, kind: str | None = None,
             params: dict | None = None, buffers: dict | None = None, **attrs) -> str:
        for i in inputs:
            if i not in self.feat:
                raise ConversionError(f"internal: value {i!r} does not exist")
        name = self.fresh(stem)
        node = {"name": name, "op": op, "inputs": list(inputs)}
        node.update(attrs)
        self.nodes.append(node)
        self.feat[name] = (int(features), kind or self.feat[inputs[0]][1])
        for k, v in (params or {}).items():
            self.params[f"{name}.{k}"] = np.ascontiguousarray(v, dtype=np.float32)
        for k, v in (buffers or {}).items():
            self.buffers[f"{name}.{k}"] = np.ascontiguousarray(v, dtype=np.float32)
        return name

    def features(self, value: str) -> int:
        return self.feat[value][0]

    def kind(self, value: str) -> str:
        return self.feat[value][1]

    def config(self, name: str = "converted") -> dict:
        cfg = {"name": name, "inputs": self.inputs, "nodes": self.nodes, "outputs": self.outputs}
        if self.meta:
            cfg["meta"] = self.meta
        return cfg

    def build(self, name: str = "converted", ctx=None):
        """The gpuml.Model (CPU unless ctx says otherwise) with every
        parameter and buffer set. A parameter or buffer that the C model
        declares but the conversion did not provide is an error, and so is
        one provided that the model lacks."""
        from ..model import Model
        from .._context import Context

        m = Model.from_config(self.config(name), ctx=ctx or Context())
        own_p, own_b = m.parameters(), m.buffers()
        for kind, own, given in (("parameter", own_p, self.params), ("buffer", own_b, self.buffers)):
            missing = sorted(set(own) - set(given))
            extra = sorted(set(given) - set(own))
            if missing or extra:
                raise ConversionError(f"internal: gpuml {kind}s not matched: missing {missing}, unexpected {extra}")
            for k, v in given.items():
                if own[k].shape != v.shape:
                    raise ConversionError(f"internal: gpuml {kind} {k} is {list(own[k].shape)}, "
                                          f"converted value is {list(v.shape)}")
                own[k][...] = v
        return m
