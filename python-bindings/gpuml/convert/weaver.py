"""weaver-core's ParticleNet and ParticleNetTagger -> gpuml, with weaver's
preprocess.json as model ops.

Layout. weaver runs ParticleNet on jets padded to a fixed length ([B, C, P]
plus a mask); gpuml runs it on ragged batches (only the real particles, with
row_splits). The converted model takes, per particle, the inputs
"points" [N, 2] and "features" [N, C] (or the preprocess.json group names,
e.g. "pf_points", "pf_features", when one is given); the mask input is
implied by the ragged layout and is not an input. ParticleNetTagger takes
weaver's six inputs over one row set per jet (its PF candidates, then its
SVs; pf_* zero on SV rows, sv_* zero on PF rows, pf_mask / sv_mask [n, 1]
saying which row is which).

Semantics (docs/convert.md lists every difference and its test):
  * kNN on the padded layout: padded particles sit at coordinate 1e9 with
    features 0. A jet with n <= k particles therefore gives every particle
    k + 1 - n padded neighbours with edge features [x_i, -x_i], and the
    mean divides by k. particlenet_block's pad_neighbours attribute
    reproduces this (set by the converter unless pad_neighbours=False).
  * use_counts=True pools by the real particle count, which is gpuml's
    global mean pool (an empty jet gives 0 in both). use_counts=False (mean
    over the padded length, which weaver trims per batch) is refused.
  * kNN: weaver ranks neighbours by (xx^T + inner + xx).clamp(min=0)
    (|a|^2 - 2a.b + |b|^2) in float32; the blocks get
    knn_distance="expanded", which computes that value in the same float
    order (see gpuml/knn.h), unless knn_distance="exact" is asked for.
  * for_inference=True appends weaver's softmax.
  * preprocess.json: per variable y = clip((x - median) * norm_factor,
    lower_bound, upper_bound), NaN then 0 (weaver's nan_to_num), becomes a
    "standardize" node (nan_to_zero) on each input. ParticleNet: weaver's
    cut of every jet to its first var_length particles becomes a "truncate"
    node on each input (meta.max_particles records the length).
    ParticleNetTagger: the PF and SV lengths are not applied (one row set
    holds both collections): feed at most var_length of each.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import types

import numpy as np

from ._graph import ConversionError, Graph, where
from ._torch import _bn_attrs, _bn_tensors, _check_eval, _np, emit_steps, flatten


def _weaver_classes():
    try:
        from weaver.nn.model.ParticleNet import ParticleNet, ParticleNetTagger
    except ImportError:
        return None
    return ParticleNet, ParticleNetTagger


def _unwrap(module):
    """(ParticleNet or ParticleNetTagger, its path, forward argument names of
    the outer module), or None."""
    cls = _weaver_classes()
    if cls is None:
        return None
    if type(module) in cls:
        return module, "", [p for p in inspect.signature(module.forward).parameters]
    children = list(module.named_children())
    own = [n for n, _ in module.named_parameters(recurse=False)] + [n for n, _ in module.named_buffers(recurse=False)]
    if len(children) == 1 and not own and type(children[0][1]) in cls:
        name, child = children[0]
        args = [p for p in inspect.signature(module.forward).parameters]
        need = [p for p in inspect.signature(child.forward).parameters if p != "mask"]
        if any(a not in args for a in need):
            raise ConversionError(f"{where('', module)}: a wrapper around {type(child).__name__} is accepted when its "
                                  f"forward takes {need} and passes them through; its arguments are {args}")
        return child, name, args
    return None


def is_weaver_model(module) -> bool:
    return _unwrap(module) is not None


def _block_params(path, blk):
    if not blk.batch_norm or not blk.activation:
        raise ConversionError(f"{where(path, blk)}: EdgeConvBlock without batch norm or activation does not run in "
                              f"weaver itself (its forward zips convs, bns and acts)")
    params, buffers, widths = {}, {}, []
    eps = mom = None
    for i, (conv, bn) in enumerate(zip(blk.convs, blk.bns)):
        if conv.bias is not None:
            raise ConversionError(f"{where(f'{path}.convs.{i}', conv)}: unexpected bias")
        params[f"mlp{i}.weight"] = _np(conv.weight).reshape(conv.out_channels, conv.in_channels)
        p, b = _bn_tensors(bn, f"bn{i}.")
        params.update(p)
        buffers.update(b)
        a = _bn_attrs(bn)
        if eps is not None and (a["eps"], a["momentum"]) != (eps, mom):
            raise ConversionError(f"{where(f'{path}.bns.{i}', bn)}: eps/momentum differ within the block")
        eps, mom = a["eps"], a["momentum"]
        widths.append(int(conv.out_channels))
    if blk.sc is not None:
        params["sc.weight"] = _np(blk.sc.weight).reshape(blk.sc.out_channels, blk.sc.in_channels)
        p, b = _bn_tensors(blk.sc_bn, "sc_bn.")
        params.update(p)
        buffers.update(b)
        if (_bn_attrs(blk.sc_bn)["eps"]) != eps:
            raise ConversionError(f"{where(f'{path}.sc_bn', blk.sc_bn)}: eps differs within the block")
    return widths, params, buffers, eps, mom


def particlenet_graph(module, *, pad_neighbours=True, preprocess: dict | None = None,
                      points_features: int = 2, knn_distance: str = "expanded") -> Graph:
    if knn_distance not in ("expanded", "exact"):
        raise ConversionError(f"knn_distance must be 'expanded' (weaver's) or 'exact', got {knn_distance!r}")
    net, base, args = _unwrap(module)
    p = (base + ".") if base else ""
    g = Graph()
    cls = _weaver_classes()
    # weaver cuts every jet to var_length particles; with one collection that
    # is gpuml's truncate op. The tagger's PF and SV collections have their
    # own lengths on one row set per jet: not expressible, not applied.
    pre = _Inputs(g, args, preprocess, truncate=type(net) is not cls[1])
    if type(net) is cls[1]:  # ParticleNetTagger: PF candidates and SVs, one row set
        pn = net.pn
        pfd, svd = net.pf_conv.conv[0].num_features, net.sv_conv.conv[0].num_features
        dims = {"pf_points": points_features, "pf_features": pfd, "pf_mask": 1,
                "sv_points": points_features, "sv_features": svd, "sv_mask": 1}
        ins = {a: pre.get(a, dims[a]) for a in sorted(dims, key=lambda a: args.index(a) if a in args else -1)}
        pts, fts = [], []
        for grp, conv in (("pf", net.pf_conv), ("sv", net.sv_conv)):
            x, m = ins[f"{grp}_points"], ins[f"{grp}_mask"]
            pts.append(g.node(f"{grp}_points_masked", "mul", [x, m], g.features(x)))
            f = g.node(f"{grp}_features_masked", "mul", [ins[f"{grp}_features"], m], dims[f"{grp}_features"])
            f = emit_steps(g, flatten(conv.conv, f"{p}{grp}_conv.conv"), f)
            fts.append(g.node(f"{grp}_conv_masked", "mul", [f, m], g.features(f)))
        coords = g.node("points", "add", pts, g.features(pts[0]))
        feats = g.node("features", "add", fts, g.features(fts[0]))
        _particlenet_body(g, pn, f"{p}pn.", coords, feats, pad_neighbours, knn_distance)
    else:
        pn = net
        in_feat = pn.bn_fts.num_features if pn.use_fts_bn else pn.edge_convs[0].convs[0].in_channels // 2
        coords = pre.get("points", points_features)
        feats = pre.get("features", in_feat)
        if preprocess is not None and not pn.use_fts_bn:
            grp = preprocess[pre.names["features"]]
            pads = {v: i.get("pad", 0) for v, i in grp["var_infos"].items() if i.get("pad", 0) != 0}
            if pads:
                raise ConversionError(f"preprocess.json: {pre.names['features']} pads with {pads}; without "
                                      f"use_fts_bn, ParticleNet does not zero padded features")
        _particlenet_body(g, pn, p, coords, feats, pad_neighbours, knn_distance)
    if pre.lengths:
        g.meta["max_particles"] = pre.lengths
    g.meta["converted_from"] = f"{type(module).__module__}.{type(module).__qualname__}"
    g.meta["pad_neighbours"] = bool(pad_neighbours)
    g.meta["knn_distance"] = knn_distance
    return g


class _Inputs:
    """Model inputs by the network's argument names: named after
    preprocess.json's groups (matched by position) when one is given, with
    its standardisation applied; masks are taken as they are."""

    def __init__(self, g, args, preprocess, truncate):
        self.g, self.args, self.pp, self.truncate = g, args, preprocess, truncate
        self.names, self.lengths = {}, {}

    def get(self, arg, features):
        if arg not in self.args:
            raise ConversionError(f"the network's forward has no argument {arg!r} (has {self.args})")
        name, grp = arg, None
        if self.pp is not None:
            inputs = self.pp.get("input_names") or []
            i = self.args.index(arg)
            if i >= len(inputs):
                raise ConversionError(f"preprocess.json lists {len(inputs)} inputs; the network's forward takes "
                                      f"{arg!r} as argument {i}")
            name, grp = inputs[i], self.pp[inputs[i]]
            if not arg.endswith("mask"):
                features = len(grp["var_names"])
        self.names[arg] = name
        x = self.g.input(name, features)
        if grp is not None and not arg.endswith("mask"):
            length = int(grp["var_length"])
            if self.truncate:
                if self.lengths and set(self.lengths.values()) != {length}:
                    raise ConversionError(f"preprocess.json: {name} has var_length {length}, other inputs "
                                          f"{self.lengths}; weaver needs one length per jet")
                x = self.g.node(f"{name}_truncate", "truncate", [x], features, length=length)
            self.lengths[name] = length
            x = _standardize(self.g, x, name, grp)
        return x


def _particlenet_body(g, pn, p, coords, fts, pad_neighbours, knn_distance):
    base = p[:-1]
    if pn.for_segmentation:
        raise ConversionError(f"{where(base, pn)}: for_segmentation=True (per-particle outputs) is not supported")
    if not pn.use_counts:
        raise ConversionError(f"{where(base, pn)}: use_counts=False averages over the padded length, which weaver "
                              f"trims per batch; it has no ragged equivalent")
    if pn.coord_shift != 1e9:
        raise ConversionError(f"{where(base, pn)}: use_amp=True puts padded particles at coordinate 99, where real "
                              f"particles (and features used as coordinates) can be; not reproducible")
    if pn.use_fts_bn:
        bn = pn.bn_fts
        pp, bb = _bn_tensors(bn)
        fts = g.node("bn_fts", "batchnorm", [fts], bn.num_features, params=pp, buffers=bb, **_bn_attrs(bn))
    outs = []
    for i, blk in enumerate(pn.edge_convs):
        path = f"{p}edge_convs.{i}"
        widths, params, buffers, eps, mom = _block_params(path, blk)
        if blk.convs[0].in_channels != 2 * g.features(fts):
            raise ConversionError(f"{where(path, blk)}: expects {blk.convs[0].in_channels // 2} features, "
                                  f"gets {g.features(fts)}")
        fts = g.node(f"edge_conv{i}", "particlenet_block", [coords, fts], widths[-1], params=params,
                     buffers=buffers, k=int(blk.k), widths=widths, pad_neighbours=bool(pad_neighbours), eps=eps,
                     momentum=mom, knn_distance=knn_distance)
        coords = fts
        outs.append(fts)
    if pn.use_fusion:
        x = outs[0] if len(outs) == 1 else g.node("fusion_cat", "concat", outs, sum(g.features(o) for o in outs))
        fts = emit_steps(g, flatten(pn.fusion_block, f"{p}fusion_block"), x)
    pooled = g.node("pool", "global_pool", [fts], g.features(fts), kind="event", reduce="mean")
    out = emit_steps(g, flatten(pn.fc, f"{p}fc"), pooled)
    if pn.for_inference:
        out = g.node("softmax", "softmax", [out], g.features(out))
    g.outputs = [out]


def _standardize(g: Graph, x: str, group: str, grp: dict) -> str:
    names = grp["var_names"]
    infos = grp["var_infos"]
    if len(names) != g.features(x):
        raise ConversionError(f"preprocess.json: {group} has {len(names)} variables, the input {g.features(x)}")
    c, s, lo, hi = (np.array([float(infos[v][k]) for v in names])
                    for k in ("median", "norm_factor", "lower_bound", "upper_bound"))
    return g.node(f"{group}_standardize", "standardize", [x], len(names), nan_to_zero=True,
                  buffers={"center": c, "scale": s, "lower": lo, "upper": hi})


# ---- from_weaver ------------------------------------------------------------------

def _data_config(preprocess: dict):
    """The parts of weaver's DataConfig that network files' get_model read."""
    names = list(preprocess["input_names"])
    dicts = {k: list(preprocess[k]["var_names"]) for k in names}
    shapes = {k: (-1, len(dicts[k]), preprocess[k]["var_length"]) for k in names}
    return types.SimpleNamespace(input_names=tuple(names), input_dicts=dicts, input_shapes=shapes,
                                 label_value=list(preprocess.get("output_names", [])),
                                 preprocess_params={})


def _load_network(network, preprocess, network_options):
    import torch

    if isinstance(network, torch.nn.Module):
        return network
    if isinstance(network, dict):
        spec = network
    elif isinstance(network, (str, os.PathLike)) and str(network).endswith(".json"):
        with open(network, encoding="utf-8") as f:
            spec = json.load(f)
    elif isinstance(network, (str, os.PathLike)) and str(network).endswith(".py"):
        if preprocess is None:
            raise ConversionError(f"{network}: a weaver network file's get_model(data_config) needs the data "
                                  f"config: give preprocess_json")
        sp = importlib.util.spec_from_file_location("gpuml_convert_network", str(network))
        mod = importlib.util.module_from_spec(sp)
        sp.loader.exec_module(mod)
        if not hasattr(mod, "get_model"):
            raise ConversionError(f"{network}: no get_model(data_config, **kwargs)")
        res = mod.get_model(_data_config(preprocess), **(network_options or {}))
        return res[0] if isinstance(res, tuple) else res
    else:
        raise ConversionError(f"network must be an nn.Module, a weaver network file (.py), a JSON file or a dict "
                              f"{{'model': 'ParticleNet', 'kwargs': {{...}}}}; got {network!r}")
    cls = _weaver_classes()
    if cls is None:
        raise ConversionError("weaver-core is not installed (pip install weaver-core)")
    table = {"ParticleNet": cls[0], "ParticleNetTagger": cls[1]}
    if spec.get("model") not in table:
        raise ConversionError(f"network spec: 'model' must be one of {sorted(table)}, got {spec.get('model')!r}")
    kw = dict(spec.get("kwargs", {}))
    kw.update(network_options or {})
    return table[spec["model"]](**kw)


def from_weaver(state_dict_path, network_module_or_config, preprocess_json=None, *, network_options=None,
                pad_neighbours=True, knn_distance="expanded", ctx=None):
    """Convert a weaver checkpoint (*_state.pt, a state_dict) of a ParticleNet
    network into a gpuml.Model.

    network_module_or_config: the nn.Module (weights are loaded into it), a
    weaver network file (.py with get_model(data_config, **kwargs); needs
    preprocess_json), or a dict / JSON file {"model": "ParticleNet",
    "kwargs": {...}}. preprocess_json (path or dict): weaver's exported
    preprocess.json; its standardisation becomes model ops and its input
    names the model's input names. knn_distance "expanded" (default)
    ranks neighbours by weaver's |a|^2 - 2a.b + |b|^2 in float32, "exact"
    by gpuml's exact distance (docs/convert.md)."""
    import torch

    pp = preprocess_json
    if pp is not None and not isinstance(pp, dict):
        with open(pp, encoding="utf-8") as f:
            pp = json.load(f)
    model = _load_network(network_module_or_config, pp, network_options)
    sd = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    sd = {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)
    model.eval()
    _check_eval(model)
    if not is_weaver_model(model):
        raise ConversionError(f"{where('', model)}: not a weaver ParticleNet (or a one-child wrapper of one)")
    g = particlenet_graph(model, pad_neighbours=pad_neighbours, preprocess=pp, knn_distance=knn_distance)
    return g.build(type(model).__name__.lower(), ctx)
