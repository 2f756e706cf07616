"""LoRA adapters a multi-identity model's manifest links, loaded with diffusers.

UNO's and UMO's released weights are LoRA adapters for FLUX.1-dev (UNO's
`dit_lora.safetensors`, UMO's `UMO_UNO.safetensors`), saved in the XLabs key layout
UNO's code inherits: `double_blocks.N.processor.{qkv,proj}_lora{1,2}.{down,up}.weight`
and `single_blocks.N.processor.{qkv,proj}_lora.{down,up}.weight`, with fused q/k/v.
diffusers' `FluxLoraLoaderMixin.lora_state_dict` recognises that layout and converts
it (`_convert_xlabs_flux_lora_to_diffusers`: splits q/k/v, renames to the diffusers
transformer), so we read the file with safetensors and hand the dict to
`load_lora_weights`; nothing is unpickled and no key is renamed by hand.

A manifest links adapters as components whose role is `lora` or `lora_<name>`, each
a published folder with exactly one `.safetensors` file; they are loaded in role
order and all active at once (UMO's adapter is trained on top of UNO's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def load_adapter(pipe: Any, local: LocalModel, name: str) -> None:
    """Load one published adapter into `pipe`'s transformer as `name`.

    Raises:
        ModelUnavailable: the folder has no single .safetensors file, or its keys do
            not fit this transformer (another base model, or an unknown layout).
    """
    ref = local.manifest.ref
    with local.in_use():
        path = single_file(local.path, ".safetensors", ref)
        state = load_file(str(path))
    try:
        pipe.load_lora_weights(state, adapter_name=name)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ModelUnavailable(
            f"LoRA {ref} does not load into this FLUX transformer ({exc}); publish an "
            "adapter trained for it, in the diffusers, kohya or XLabs/UNO key layout"
        ) from None


def load_adapters(pipe: Any, components: Mapping[str, LocalModel]) -> list[str]:
    """Load every adapter `components` links; returns their adapter names (the roles)."""
    names = adapter_roles(components)
    for name in names:
        load_adapter(pipe, components[name], name)
    if names:
        pipe.set_adapters(names, [1.0] * len(names))
    return names
