"""Tiny random-weight upscale models of the real architectures, for tests and CI.

Same folder layout and loader as a converted UpscalerJS model; built offline from a seed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipelines.upscale.arch import RDN, RRDN, SRConfig, build
from pipelines.upscale.publish import write_folder


def tiny_config(architecture: str, scale: int) -> SRConfig:
    """A small network of the real shape, for tests (RDN: D2 C2 G4; RRDN: T1 C2 G8)."""
    if architecture == "rdn":
        return SRConfig(
            "rdn", scale, features=8, growth=4, blocks=2, convs=2, upscale_features=(8, 8)
        )
    return SRConfig("rrdn", scale, features=8, growth=8, blocks=1, convs=2, dense_per_block=3)


def make_tiny(folder: Path, architecture: str, scale: int, seed: int = 0) -> Path:
    """A random-weight model folder (same layout as a converted one) whose untrained
    network is close to nearest-neighbour upscaling: identity paths through the first
    and last convs plus small random weights everywhere, so its outputs are images whose
    quality a test can compare (random weights alone give a flat grey)."""
    torch.manual_seed(seed)
    config = tiny_config(architecture, scale)
    module = build(config)
    noise = 0.002 if architecture == "rdn" else 0.001  # RDN sees 0..255, RRDN 0..1
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(std=noise)
        for conv_, taps in _identity_path(module, scale):
            for out_ch, in_ch in taps:
                k = conv_.weight.shape[-1] // 2
                conv_.weight[out_ch, in_ch, k, k] += 1.0
    return write_folder(folder, config, module.state_dict(), {"package": "tiny", "license": "MIT"})


def _identity_path(
    module: torch.nn.Module, scale: int
) -> list[tuple[torch.nn.Conv2d, list[tuple[int, int]]]]:
    """(conv, [(out channel, in channel)]) centre taps that carry RGB straight through."""
    s2, rgb = scale * scale, range(3)
    spread = [(c * s2 + k, c) for c in rgb for k in range(s2)]  # each colour to its s*s slots
    if isinstance(module, RDN):
        return [
            (module.sfe1, [(c, c) for c in rgb]),
            (module.upn1, [(c, c) for c in rgb]),
            (module.upn2, [(c, c) for c in rgb]),
            (module.upn3, spread),
            (module.sr, [(c, c * s2) for c in rgb]),
        ]
    assert isinstance(module, RRDN)
    return [
        (module.pre, [(c, c) for c in rgb]),
        (module.pre_shuffle, spread),
        (module.sr, [(c, c) for c in rgb]),
    ]
