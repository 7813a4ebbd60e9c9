"""gpuml.convert: PyTorch, PyTorch Geometric and weaver models -> gpuml
model files (docs/convert.md).

    import torch                      # first: see below
    import gpuml.convert as gc
    model = gc.from_torch(pyg_model.eval(), input_features={"x": 6})
    model.save("model.h5")            # gpuml_model_load() reads it in C/C++
    model = gc.from_weaver("net_best_epoch_state.pt", "particlenet.py", "preprocess.json")

or from the shell: ``python -m gpuml.convert --help``.

torch is needed only to convert (it is imported lazily). Import torch
before gpuml: both load libnccl.so.2, and torch fails when gpuml's (older)
system copy was loaded first.

Supported: nn.Sequential, nn.Linear, nn.Conv1d/Conv2d with 1x1 kernels,
nn.BatchNorm1d/2d (running statistics), nn.ReLU/ELU/LeakyReLU/GELU(erf)/
Tanh/Sigmoid/Softplus(beta 1), nn.Softmax/LogSoftmax (last dim),
nn.Dropout, nn.Identity; torch_geometric.nn.Sequential, GravNetConv,
DynamicEdgeConv (edge network (Linear [BatchNorm] ReLU)+, aggr max or
mean), MLP, Linear, norm.BatchNorm, global_mean/max/add_pool and the
Mean/Max/SumAggregation modules; weaver's ParticleNet and
ParticleNetTagger (and one-child wrappers of them). Everything else raises ConversionError naming the module's
path and type.
"""
from ._graph import ConversionError, Graph
from ._torch import from_torch
from .weaver import from_weaver

__all__ = ["ConversionError", "Graph", "from_torch", "from_weaver"]
