"""PyTorch / PyTorch Geometric modules -> gpuml graph nodes.

Every module is mapped by its exact type. A module that is not in the
tables below, or whose settings gpuml cannot reproduce exactly, raises
ConversionError naming its path and type.
"""
from __future__ import annotations

import numpy as np

from ._graph import ConversionError, Graph, where


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _torch():
    import torch  # noqa: F401  (import order: see gpuml.convert's docstring)
    return torch


def _pyg_classes():
    try:
        import torch_geometric.nn as gnn
        from torch_geometric.nn.models import MLP
        from torch_geometric.nn.norm import BatchNorm as PygBatchNorm
        from torch_geometric.nn.dense.linear import Linear as PygLinear
    except ImportError:
        return None
    return {"Sequential": gnn.Sequential, "GravNetConv": gnn.GravNetConv, "DynamicEdgeConv": gnn.DynamicEdgeConv,
            "EdgeConv": gnn.EdgeConv, "MLP": MLP, "BatchNorm": PygBatchNorm, "Linear": PygLinear,
            "pools": {gnn.global_mean_pool: "mean", gnn.global_max_pool: "max", gnn.global_add_pool: "sum"},
            "aggrs": {gnn.aggr.MeanAggregation: "mean", gnn.aggr.MaxAggregation: "max",
                      gnn.aggr.SumAggregation: "sum"}}


# ---- flat list of primitive steps ------------------------------------------------
# ("linear", path, module, W [out, in], b [out] | None)
# ("bn", path, module)          batch norm over the channel axis, eval statistics
# ("act", path, module, op, attrs)
# ("dropout", path, module, p)
# ("softmax", path, module, log)

def _act(path, m):
    nn = _torch().nn
    t = type(m)
    if t is nn.ReLU:
        return ("act", path, m, "relu", {})
    if t is nn.ELU:
        return ("act", path, m, "elu", {"alpha": float(m.alpha)})
    if t is nn.LeakyReLU:
        return ("act", path, m, "leaky_relu", {"alpha": float(m.negative_slope)})
    if t is nn.GELU:
        if m.approximate != "none":
            raise ConversionError(f"{where(path, m)}: only approximate='none' (the erf form) is supported")
        return ("act", path, m, "gelu", {})
    if t is nn.Tanh:
        return ("act", path, m, "tanh", {})
    if t is nn.Sigmoid:
        return ("act", path, m, "sigmoid", {})
    if t is nn.Softplus:
        if m.beta != 1 or m.threshold != 20:
            raise ConversionError(f"{where(path, m)}: only beta=1, threshold=20 are supported")
        return ("act", path, m, "softplus", {})
    return None


def flatten(module, path: str) -> list:
    """The primitive steps of a per-row module chain, in order."""
    torch = _torch()
    nn = torch.nn
    pyg = _pyg_classes()
    t = type(module)
    if t is nn.Sequential:
        out = []
        for name, child in module.named_children():
            out += flatten(child, f"{path}.{name}" if path else name)
        return out
    if t is nn.Identity:
        return []
    if t is nn.Linear or (pyg and t is pyg["Linear"]):
        if pyg and t is pyg["Linear"] and (module.in_channels < 0):
            raise ConversionError(f"{where(path, module)}: lazily initialised (in_channels=-1)")
        return [("linear", path, module, _np(module.weight), None if module.bias is None else _np(module.bias))]
    if t in (nn.Conv1d, nn.Conv2d):
        ks = module.kernel_size
        ok = all(k == 1 for k in ks) and all(s == 1 for s in module.stride) and module.groups == 1 and \
            all(p == 0 for p in (module.padding if isinstance(module.padding, tuple) else (1,)))
        if not ok:
            raise ConversionError(f"{where(path, module)}: only 1x1 kernels (stride 1, no padding, groups 1) "
                                  f"map to a per-particle linear layer; got kernel {ks}, stride {module.stride}, "
                                  f"padding {module.padding}, groups {module.groups}")
        w = _np(module.weight).reshape(module.out_channels, module.in_channels)
        return [("linear", path, module, w, None if module.bias is None else _np(module.bias))]
    if t in (nn.BatchNorm1d, nn.BatchNorm2d):
        return [("bn", path, module)]
    if pyg and t is pyg["BatchNorm"]:
        return [("bn", path, module.module)]
    if t is nn.Dropout:
        return [("dropout", path, module, float(module.p))]
    if t in (nn.Softmax, nn.LogSoftmax):
        if module.dim not in (-1, 1):
            raise ConversionError(f"{where(path, module)}: softmax over dim {module.dim}; gpuml's is over the "
                                  f"features (dim -1 / 1)")
        return [("softmax", path, module, t is nn.LogSoftmax)]
    a = _act(path, module)
    if a:
        return [a]
    if pyg and t is pyg["MLP"]:
        return _flatten_pyg_mlp(module, path)
    raise ConversionError(f"{where(path, module)}: no gpuml mapping for this module type (supported: "
                          f"{', '.join(SUPPORTED_PER_ROW)})")


def _flatten_pyg_mlp(m, path):
    out = []
    n = len(m.lins)
    for i in range(n):
        lin = m.lins[i]
        out += flatten(lin, f"{path}.lins.{i}")
        last_plain = m.plain_last and i == n - 1
        if not last_plain:
            norm = m.norms[i]
            steps = []
            if m.act is not None and m.act_first:
                steps += flatten(m.act, f"{path}.act")
            if type(norm).__name__ != "Identity":
                steps += flatten(norm, f"{path}.norms.{i}")
            if m.act is not None and not m.act_first:
                steps += flatten(m.act, f"{path}.act")
            out += steps
        p = float(m.dropout[i])
        if p > 0:
            out.append(("dropout", f"{path}.dropout", m, p))
    return out


SUPPORTED_PER_ROW = ["nn.Sequential", "nn.Linear", "nn.Conv1d/Conv2d (1x1)", "nn.BatchNorm1d/2d (eval)",
                     "nn.ReLU/ELU/LeakyReLU/GELU/Tanh/Sigmoid/Softplus", "nn.Dropout", "nn.Softmax/LogSoftmax",
                     "nn.Identity", "torch_geometric.nn.Linear", "torch_geometric.nn.MLP",
                     "torch_geometric.nn.norm.BatchNorm"]


def _bn_check(path, m):
    if not m.track_running_stats or m.running_mean is None:
        raise ConversionError(f"{where(path, m)}: batch norm without running statistics (track_running_stats="
                              f"False) normalises with the batch's own statistics, which depend on the batch")


def _bn_tensors(m, prefix=""):
    c = m.num_features
    g = _np(m.weight) if m.affine else np.ones(c)
    b = _np(m.bias) if m.affine else np.zeros(c)
    return ({f"{prefix}weight": g, f"{prefix}bias": b},
            {f"{prefix}running_mean": _np(m.running_mean), f"{prefix}running_var": _np(m.running_var)})


def _bn_attrs(m):
    return {"eps": float(m.eps), "momentum": 0.1 if m.momentum is None else float(m.momentum)}


def emit_steps(g: Graph, steps: list, x: str) -> str:
    """Append the steps as gpuml nodes after value x; returns the last value."""
    for s in steps:
        kind, path = s[0], s[1]
        stem = path.replace(".", "_") or kind
        f = g.features(x)
        if kind == "linear":
            w, b = s[3], s[4]
            if w.shape[1] != f:
                raise ConversionError(f"{where(path, s[2])}: expects {w.shape[1]} input features, the value "
                                      f"reaching it has {f}")
            params = {"weight": w}
            if b is not None:
                params["bias"] = b
            x = g.node(stem, "linear", [x], w.shape[0], params=params, out=int(w.shape[0]), bias=b is not None)
        elif kind == "bn":
            m = s[2]
            _bn_check(path, m)
            if m.num_features != f:
                raise ConversionError(f"{where(path, m)}: {m.num_features} channels, the value has {f}")
            p, bu = _bn_tensors(m)
            x = g.node(stem, "batchnorm", [x], f, params=p, buffers=bu, **_bn_attrs(m))
        elif kind == "act":
            x = g.node(stem, s[3], [x], f, **s[4])
        elif kind == "dropout":
            x = g.node(stem, "dropout", [x], f, p=s[3])
        elif kind == "softmax":
            x = g.node(stem, "softmax", [x], f, log=bool(s[3]))
        else:
            raise AssertionError(kind)
    return x


# ---- edge networks (EdgeConv / DynamicEdgeConv) ------------------------------------

def edge_mlp(steps: list, path: str, module, in_feat: int):
    """Parse an edge network into gpuml's form: per layer Linear, optional
    batch norm, ReLU (dropout allowed: a no-op at inference). Returns (widths,
    params, buffers, batchnorm, eps, momentum)."""
    layers, cur = [], None
    for s in steps:
        kind = s[0]
        if kind == "linear":
            if cur is not None:
                raise ConversionError(f"{where(s[1], s[2])}: two linear layers without a ReLU between them in the "
                                      f"edge network of {where(path, module)}; gpuml's edge network is "
                                      f"(Linear [BatchNorm] ReLU)+")
            cur = {"lin": s, "bn": None}
        elif kind == "bn":
            if cur is None or cur["bn"] is not None:
                raise ConversionError(f"{where(s[1], s[2])}: batch norm must follow a linear layer in the edge "
                                      f"network of {where(path, module)}")
            cur["bn"] = s[2]
        elif kind == "act" and s[3] == "relu":
            if cur is None:
                raise ConversionError(f"{where(s[1], s[2])}: ReLU without a linear layer before it in the edge "
                                      f"network of {where(path, module)}")
            layers.append(cur)
            cur = None
        elif kind == "dropout":
            continue
        else:
            raise ConversionError(f"{where(s[1], s[2])}: gpuml's edge network is (Linear [BatchNorm] ReLU)+; "
                                  f"this step cannot be part of it (in {where(path, module)})")
    if cur is not None:
        s = cur["lin"]
        raise ConversionError(f"{where(s[1], s[2])}: the edge network of {where(path, module)} must end with a ReLU "
                              f"(a last plain layer does not commute with the neighbour aggregation; for "
                              f"torch_geometric.nn.MLP use plain_last=False)")
    if not layers:
        raise ConversionError(f"{where(path, module)}: empty edge network")
    with_bn = [c["bn"] is not None for c in layers]
    if any(with_bn) and not all(with_bn):
        raise ConversionError(f"{where(path, module)}: batch norm in some edge layers but not all; gpuml's edge "
                              f"network has it in every layer or in none")
    bn = all(with_bn)
    params, buffers, widths = {}, {}, []
    cin = 2 * in_feat
    eps = mom = None
    for i, c in enumerate(layers):
        _, lpath, lmod, w, b = c["lin"]
        if w.shape[1] != cin:
            raise ConversionError(f"{where(lpath, lmod)}: expects {w.shape[1]} inputs, the edge features have {cin}")
        widths.append(int(w.shape[0]))
        params[f"mlp{i}.weight"] = w
        if bn:
            m = c["bn"]
            _bn_check(lpath, m)
            p, bu = _bn_tensors(m, f"bn{i}.")
            if b is not None:  # BN(Wx + b) = BN'(Wx) with the running mean shifted by b
                bu[f"bn{i}.running_mean"] = bu[f"bn{i}.running_mean"] - b
            params.update(p)
            buffers.update(bu)
            a = _bn_attrs(m)
            if eps is not None and (a["eps"], a["momentum"]) != (eps, mom):
                raise ConversionError(f"{where(path, module)}: its batch norms differ in eps/momentum; gpuml's "
                                      f"edge network has one of each")
            eps, mom = a["eps"], a["momentum"]
        else:
            params[f"mlp{i}.bias"] = b if b is not None else np.zeros(w.shape[0])
        cin = w.shape[0]
    return widths, params, buffers, bn, eps, mom


def emit_dynamic_edgeconv(g: Graph, path: str, m, x: str) -> str:
    aggr = getattr(m, "aggr", "max")
    if not isinstance(aggr, str) or aggr not in ("max", "mean"):
        raise ConversionError(f"{where(path, m)}: aggr={aggr!r}; gpuml's EdgeConv aggregates by 'max' or 'mean'")
    f = g.features(x)
    widths, params, buffers, bn, eps, mom = edge_mlp(flatten(m.nn, f"{path}.nn"), path, m, f)
    attrs = {"k": int(m.k), "widths": widths, "aggr": aggr, "exclude_self": False, "batchnorm": bn}
    if bn:
        attrs.update(eps=eps, momentum=mom)
    return g.node(path.replace(".", "_") or "dynamic_edgeconv", "dynamic_edgeconv", [x], widths[-1],
                  params=params, buffers=buffers, **attrs)


def emit_gravnet(g: Graph, path: str, m, x: str) -> str:
    f = g.features(x)
    if m.in_channels != f:
        raise ConversionError(f"{where(path, m)}: {m.in_channels} input channels, the value has {f}")
    params = {"lin_s.weight": _np(m.lin_s.weight), "lin_s.bias": _np(m.lin_s.bias),
              "lin_h.weight": _np(m.lin_h.weight), "lin_h.bias": _np(m.lin_h.bias),
              "lin_out1.weight": _np(m.lin_out1.weight),
              "lin_out2.weight": _np(m.lin_out2.weight), "lin_out2.bias": _np(m.lin_out2.bias)}
    return g.node(path.replace(".", "_") or "gravnet", "gravnet", [x], m.out_channels, params=params,
                  out=int(m.out_channels), space=int(m.lin_s.weight.shape[0]), prop=int(m.lin_h.weight.shape[0]),
                  k=int(m.k))


# ---- module trees ----------------------------------------------------------------

def _check_eval(module):
    bad = [n for n, m in module.named_modules() if m.training]
    if bad:
        raise ConversionError(f"{bad[0] or '<root>'}: the module is in training mode; call module.eval() first "
                              f"(batch norm and dropout are converted with their inference behaviour)")


def convert_chain(module, g: Graph, x: str, path: str = "") -> str:
    """A per-row module (nn.Sequential, Linear, ..., GravNetConv or
    DynamicEdgeConv alone) applied to value x."""
    pyg = _pyg_classes()
    t = type(module)
    if pyg and t is pyg["GravNetConv"]:
        return emit_gravnet(g, path, module, x)
    if pyg and t is pyg["DynamicEdgeConv"]:
        return emit_dynamic_edgeconv(g, path, module, x)
    if t is _torch().nn.Sequential:
        for name, child in module.named_children():
            x = convert_chain(child, g, x, f"{path}.{name}" if path else name)
        return x
    return emit_steps(g, flatten(module, path), x)


def convert_pyg_sequential(module, g: Graph, input_features: dict, batch_names=("batch",)) -> list[str]:
    """torch_geometric.nn.Sequential: its signature strings give the data
    flow. Inputs named like batch_names are the batch vector (gpuml's
    row_splits); every other input is a per-row model input."""
    pyg = _pyg_classes()
    env: dict[str, str] = {}
    for name in module.signature.param_dict:
        if name in batch_names:
            env[name] = "<batch>"
            continue
        if name not in input_features:
            raise ConversionError(f"<root> (torch_geometric.nn.Sequential): give the feature count of input "
                                  f"{name!r} (from_torch(..., input_features={{{name!r}: F}}))")
        env[name] = g.input(name, input_features[name])
    last = None
    for child in module._children:
        obj = getattr(module, child.name)
        path = child.name
        args = child.param_names
        rets = child.return_names
        for a in args:
            if a not in env:
                raise ConversionError(f"{path}: argument {a!r} is produced by nothing before it")
        tensor_args = [env[a] for a in args if env[a] != "<batch>"]
        has_batch = any(env[a] == "<batch>" for a in args)
        t = type(obj)
        if t in (pyg["GravNetConv"], pyg["DynamicEdgeConv"]):
            if len(tensor_args) != 1 or not has_batch:
                raise ConversionError(f"{where(path, obj)}: supported as '(x, batch -> y)' (one feature tensor "
                                      f"and the batch vector), got '{', '.join(args)}'")
            y = convert_chain(obj, g, tensor_args[0], path)
        elif obj in pyg["pools"] or t in pyg["aggrs"]:
            red = pyg["pools"].get(obj) or pyg["aggrs"][t]
            if len(tensor_args) != 1 or not has_batch:
                raise ConversionError(f"{path} ({getattr(obj, '__name__', t.__name__)}): supported as "
                                      f"'(x, batch -> y)'")
            x = tensor_args[0]
            if g.kind(x) != "row":
                raise ConversionError(f"{path}: pooling a value that is already per event")
            y = g.node(path, "global_pool", [x], g.features(x), kind="event", reduce=red)
        elif t is pyg["EdgeConv"]:
            raise ConversionError(f"{where(path, obj)}: EdgeConv takes an edge_index built outside the module; "
                                  f"gpuml builds its graphs by kNN inside the layer. Use DynamicEdgeConv, or "
                                  f"weaver's ParticleNet blocks (kNN on given coordinates)")
        elif isinstance(obj, _torch().nn.Module):
            if len(args) != 1 or has_batch:
                raise ConversionError(f"{where(path, obj)}: a plain module takes one tensor, got "
                                      f"'{', '.join(args)}'")
            y = convert_chain(obj, g, tensor_args[0], path)
        else:
            raise ConversionError(f"{path} ({getattr(obj, '__qualname__', type(obj).__name__)}): functions other "
                                  f"than global_mean/max/add_pool cannot be converted (their code is not "
                                  f"inspectable); use modules")
        if len(rets) != 1:
            raise ConversionError(f"{path}: returns {len(rets)} values; only one is supported")
        env[rets[0]] = y
        last = y
    return [last]


def from_torch(module, *, input_features=None, input_name: str = "x", batch_names=("batch",),
               pad_neighbours: bool = True, knn_distance: str = "expanded", name: str | None = None, ctx=None):
    """Convert a PyTorch module (in eval mode) into a gpuml.Model.

    module: one of
      - nn.Sequential / a single supported layer (per-row chain; one input
        named input_name with input_features features);
      - torch_geometric.nn.Sequential (its signature strings give the data
        flow; input_features maps each non-batch input to its width);
      - torch_geometric.nn.GravNetConv or DynamicEdgeConv alone;
      - weaver's ParticleNet or ParticleNetTagger (see gpuml.convert.weaver;
        pad_neighbours selects weaver's padded-layout semantics for jets of
        at most k particles; knn_distance "expanded" ranks neighbours by
        weaver's float32 |a|^2 - 2a.b + |b|^2, "exact" by gpuml's exact
        distance; both are ignored for other modules).
    Returns a gpuml.Model on a CPU context (save it with model.save(path)).
    Raises ConversionError naming the module path and type of anything that
    has no exact gpuml equivalent.
    """
    from . import weaver as _weaver

    _check_eval(module)
    if _weaver.is_weaver_model(module):
        g = _weaver.particlenet_graph(module, pad_neighbours=pad_neighbours, knn_distance=knn_distance)
        return g.build(name or type(module).__name__.lower(), ctx)
    pyg = _pyg_classes()
    g = Graph()
    if pyg and type(module) is pyg["Sequential"]:
        if input_features is None or isinstance(input_features, int):
            raise ConversionError("torch_geometric.nn.Sequential: input_features must map the input names to "
                                  "their feature counts")
        g.outputs = convert_pyg_sequential(module, g, dict(input_features), tuple(batch_names))
    else:
        if isinstance(input_features, dict):
            input_features = input_features.get(input_name)
        if input_features is None:
            input_features = _infer_in_features(module)
        x = g.input(input_name, input_features)
        g.outputs = [convert_chain(module, g, x)]
    return g.build(name or "converted", ctx)


def _infer_in_features(module) -> int:
    for m in module.modules():
        for attr in ("in_features", "in_channels", "num_features"):
            v = getattr(m, attr, None)
            if isinstance(v, int) and v > 0:
                return v
    raise ConversionError(f"{where('', module)}: give input_features (the number of input columns)")
