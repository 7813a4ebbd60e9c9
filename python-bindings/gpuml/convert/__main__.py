"""python -m gpuml.convert: PyTorch / weaver models -> a gpuml model file."""
from __future__ import annotations

import argparse
import json
import sys

HELP = """\
Convert a trained PyTorch model into a gpuml model file (HDF5), which C/C++
programs load with gpuml_model_load() and serve with the gpuml engine.

Two routes:

  weaver (from_weaver(state_dict_path, network_module_or_config, preprocess_json=None)):
    python -m gpuml.convert weaver --state net_best_epoch_state.pt \\
        --network particlenet_pf.py --preprocess preprocess.json -o model.h5
    --state       the checkpoint weaver writes (*_state.pt, a state_dict)
    --network     weaver's network file (get_model(data_config, **kwargs)),
                  or a JSON file {"model": "ParticleNet", "kwargs": {...}}
    --preprocess  weaver's exported preprocess.json: its standardisation
                  (median, norm_factor, clip bounds) becomes model ops, so
                  the model takes raw inputs (NaN becomes 0 as in weaver);
                  its input names name the model's inputs. ParticleNet: each
                  jet is cut to its first var_length particles in the model
                  (ParticleNetTagger: not applied; feed at most var_length
                  PF candidates and SVs per jet).
    --network-option key=value (JSON value), repeatable: passed to get_model.

  torch (from_torch(module, **hints)):
    python -m gpuml.convert torch --module my_models.py:build_model \\
        [--state weights.pt] --input-features x=6 -o model.h5
    --module      FILE.py:FUNCTION (called with no arguments; returns the
                  nn.Module), or a file saved with torch.save(module)
    --state       optional state_dict loaded into the module (strict)
    --input-features NAME=F, repeatable: feature count of each input
                  (torch_geometric.nn.Sequential inputs, or the one input
                  of a plain chain)

Options for both: --no-pad-neighbours (ParticleNet: ragged semantics for jets
of at most k particles instead of weaver's padded ones); --knn-distance
expanded|exact (ParticleNet: rank neighbours by weaver's float32
|a|^2 - 2a.b + |b|^2, the default, or by gpuml's exact distance). Anything without an
exact gpuml equivalent is an error naming the module's path and type.
"""


def _kv(items, parse_json):
    out = {}
    for it in items or []:
        if "=" not in it:
            raise SystemExit(f"expected NAME=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = json.loads(v) if parse_json else int(v)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpuml.convert", description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("route", choices=["weaver", "torch"])
    p.add_argument("-o", "--output", required=True, help="model file to write (HDF5)")
    p.add_argument("--state", help="state_dict file (weaver: *_state.pt)")
    p.add_argument("--network", help="weaver network .py or JSON spec")
    p.add_argument("--preprocess", help="weaver preprocess.json")
    p.add_argument("--network-option", action="append", default=[], metavar="KEY=JSON")
    p.add_argument("--module", help="FILE.py:FUNCTION or a torch.save'd module")
    p.add_argument("--input-features", action="append", default=[], metavar="NAME=F")
    p.add_argument("--no-pad-neighbours", action="store_true")
    p.add_argument("--knn-distance", choices=["expanded", "exact"], default="expanded")
    a = p.parse_args(argv)

    try:
        import torch  # before gpuml's NCCL users (see gpuml.convert)
    except ImportError as e:
        print(f"gpuml.convert: converting needs torch ({e}); pip install torch", file=sys.stderr)
        return 2

    from . import ConversionError, from_torch, from_weaver
    try:
        if a.route == "weaver":
            if not a.state or not a.network:
                p.error("weaver needs --state and --network")
            m = from_weaver(a.state, a.network, a.preprocess, network_options=_kv(a.network_option, True),
                            pad_neighbours=not a.no_pad_neighbours, knn_distance=a.knn_distance)
        else:
            if not a.module:
                p.error("torch needs --module")
            mod = _load_module(a.module, torch)
            if a.state:
                mod.load_state_dict(torch.load(a.state, map_location="cpu", weights_only=True), strict=True)
            mod.eval()
            feats = _kv(a.input_features, False)
            m = from_torch(mod, input_features=feats or None, input_name=next(iter(feats), "x"),
                           pad_neighbours=not a.no_pad_neighbours, knn_distance=a.knn_distance)
    except ConversionError as e:
        print(f"gpuml.convert: {e}", file=sys.stderr)
        return 2
    m.save(a.output)
    print(f"wrote {a.output}: {m}")
    return 0


def _load_module(spec, torch):
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        import importlib.util
        path, fn = spec.split(":", 1)
        sp = importlib.util.spec_from_file_location("gpuml_convert_user_module", path)
        mod = importlib.util.module_from_spec(sp)
        sp.loader.exec_module(mod)
        return getattr(mod, fn)()
    return torch.load(spec, map_location="cpu", weights_only=False)


if __name__ == "__main__":
    sys.exit(main())
