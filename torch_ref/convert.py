"""Weights between the two layouts, by an explicit name map.

Flax ``dense_{i}`` ``{kernel (in, out), bias (out,)}`` <-> torch ``net.linear_{2i:02d}``
``{weight (out, in), bias (out,)}``: the kernel is the transposed weight (``y = x K + b`` in
Flax, ``y = x W^T + b`` in torch). Linear layers sit at even positions of ``net`` because a
``Tanh`` follows every hidden one.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_ref.model import MLP, linears


def name_map(model: MLP) -> dict[str, str]:
    """``{"dense_0": "net.linear_00", "dense_1": "net.linear_02", ...}`` for this model."""
    names = [name for name, _ in linears(model)]
    expected = [f"linear_{2 * i:02d}" for i in range(len(names))]
    if names != expected:
        raise ValueError(f"unexpected layer names {names}; expected {expected}")
    return {f"dense_{i}": f"net.{name}" for i, name in enumerate(names)}


def params_to_torch(params, model: MLP) -> MLP:
    """Copies Flax-layout params (JAX or numpy arrays) into ``model`` in place, kernels transposed.

    Raises ``ValueError`` if the layer names, shapes or dtypes do not match the model exactly
    (no silent casting: a float32 -> float64 copy would hide which precision a test ran in).
    """
    mapping = name_map(model)
    if set(params) != set(mapping):
        raise ValueError(f"params layers {sorted(params)} != model layers {sorted(mapping)}")
    modules = dict(model.named_modules())
    with torch.no_grad():
        for flax_name, torch_name in mapping.items():
            layer = modules[torch_name]
            leaves = params[flax_name]
            if set(leaves) != {"kernel", "bias"}:
                raise ValueError(f"{flax_name}: expected leaves kernel, bias; got {sorted(leaves)}")
            pairs = (("kernel", layer.weight, True), ("bias", layer.bias, False))
            for leaf, target, transpose in pairs:
                src = np.asarray(leaves[leaf])
                src = torch.from_numpy(np.array(src.T if transpose else src, order="C"))  # a copy
                where = f"{flax_name}.{leaf} -> {torch_name}.{'weight' if transpose else 'bias'}"
                if src.shape != target.shape:
                    raise ValueError(f"{where}: shape {tuple(src.shape)} (after transpose) != {tuple(target.shape)}")
                if src.dtype != target.dtype:
                    raise ValueError(f"{where}: dtype {src.dtype} != {target.dtype}")
                target.copy_(src)
    return model


def params_from_torch(model: MLP) -> dict[str, dict[str, np.ndarray]]:
    """The model's weights as a Flax-layout nested dict of numpy arrays (copies)."""
    modules = dict(model.named_modules())
    out = {}
    for flax_name, torch_name in name_map(model).items():
        layer = modules[torch_name]
        out[flax_name] = {
            "kernel": layer.weight.detach().cpu().numpy().T.copy(),
            "bias": layer.bias.detach().cpu().numpy().copy(),
        }
    return out
