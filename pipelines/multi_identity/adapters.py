"""LoRA adapters a multi-identity model's manifest links, loaded with diffusers.

UNO's and UMO's released weights are LoRA adapters for FLUX.1-dev (UNO's
`dit_lora.safetensors`, UMO's `UMO_UNO.safetensors`), saved in the XLabs key layout
UNO's code inherits: `double_blocks.N.processor.{qkv,proj}_lora{1,2}.{down,up}.weight`
and `single_blocks.N.processor.{qkv,proj}_lora.{down,up}.weight`, with fused q/k/v.
diffusers' `FluxLoraLoaderMixin.lora_state_dict` recognises that layout and converts
it (`_convert_xlabs_flux_lora_to_diffusers`: splits q/k/v, renames to the diffusers
transformer). We read the file with safetensors, let diffusers convert it, check
that every converted weight fits a layer of this transformer (`misfits`), then hand it
to `load_lora_weights`; nothing is unpickled and no key is renamed by hand.

A manifest links adapters as components whose role is `lora` or `lora_<name>`, each
a published folder with exactly one `.safetensors` file; they are loaded in role
order and all active at once. UMO's demo loads `UMO_UNO.safetensors` over UNO's LoRA
of the same rank (512), replacing it: a UMO model links UMO's file alone as `lora`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load_file

from jobs.errors import ModelUnavailable
from model_store.cache import LocalModel
from pipelines.faces.artifacts import single_file

LORA_ROLE = "lora"


def adapter_roles(components: Mapping[str, Any]) -> list[str]:
    """The component roles that are LoRA adapters, in load order."""
    return sorted(
        role for role in components if role == LORA_ROLE or role.startswith(f"{LORA_ROLE}_")
    )


def linear_shapes(transformer: Any) -> dict[str, tuple[int, int]]:
    """(in, out) features of every linear layer, by module path (a layer an adapter
    already wraps under its own path)."""
    return {
        path.removesuffix(".base_layer"): (module.in_features, module.out_features)
        for path, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def misfits(converted: Mapping[str, Any], shapes: Mapping[str, tuple[int, int]]) -> list[str]:
    """Why a diffusers-format LoRA state dict does not fit a transformer whose linear
    layers have `shapes` (`linear_shapes`): layers it names that are not there, and
    low-rank weights whose sides differ from their layer's. Checked before loading, as
    PEFT only warns about the first, and for the second diffusers widens the layer
    (meant for FLUX Control LoRAs), which breaks the model at its next render."""
    missing, wrong, adapted = set(), [], 0
    for key, tensor in converted.items():
        if not key.startswith("transformer.") or ".lora_" not in key:
            continue
        path, _, kind = key.removeprefix("transformer.").rpartition(".lora_")
        if path not in shapes:
            missing.add(path)
            continue
        adapted += kind.startswith("A")
        side, expected = (
            (tensor.shape[1], shapes[path][0])
            if kind.startswith("A")
            else (tensor.shape[0], shapes[path][1])
        )
        if side != expected:
            wrong.append(f"{path} takes {expected} features where the adapter has {side}")
    problems = wrong[:3]
    if missing:
        problems.append(f"{len(missing)} layers are not in this transformer, e.g. {min(missing)}")
    if not adapted and not problems:
        problems.append("it adapts no layer of the transformer")
    return problems


def load_adapter(pipe: Any, local: LocalModel, name: str) -> None:
    """Load one published adapter into `pipe`'s transformer as `name`.

    Raises:
        ModelUnavailable: the folder has no single .safetensors file, or its keys or
            shapes do not fit this transformer (another base model, or an unknown layout).
    """
    ref = local.manifest.ref
    with local.in_use():
        path = single_file(local.path, ".safetensors", ref)
        state = load_file(str(path))
    try:
        converted = pipe.lora_state_dict(state)  # UNO/XLabs, kohya ... -> diffusers keys
        converted = converted[0] if isinstance(converted, tuple) else converted
        problems = misfits(converted, linear_shapes(pipe.transformer))
        if not problems:
            pipe.load_lora_weights(converted, adapter_name=name)
    except (ValueError, KeyError, RuntimeError) as exc:
        problems = [str(exc)]
    if problems:
        raise ModelUnavailable(
            f"LoRA {ref} does not load into this FLUX transformer ({'; '.join(problems)}); "
            "publish an adapter trained for this base model, in the diffusers, kohya or "
            "XLabs/UNO key layout"
        )


def load_adapters(pipe: Any, components: Mapping[str, LocalModel]) -> list[str]:
    """Load every adapter `components` links; returns their adapter names (the roles)."""
    names = adapter_roles(components)
    for name in names:
        load_adapter(pipe, components[name], name)
    if names:
        pipe.set_adapters(names, [1.0] * len(names))
    return names
