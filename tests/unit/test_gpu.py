"""Which tier a card makes, from what nvidia-smi prints."""

from __future__ import annotations

from jobs.tiers import DEFAULT_TIERS
from workers.gpu import Gpu, parse_smi, tier_for_gpu

SMI = """0, NVIDIA A100-SXM4-80GB, 81920
1, NVIDIA A10G, 23028
2, NVIDIA GeForce RTX 4060, 8188
3, NVIDIA H100 80GB HBM3, 81559
4, NVIDIA L4, 23034
5, Some Future Card, 49152
"""


def test_nvidia_smi_rows_map_to_tiers() -> None:
    gpus = parse_smi(SMI)
    assert [g.index for g in gpus] == [0, 1, 2, 3, 4, 5]
    assert gpus[0].memory_gb == 80.0
    tiers = [tier_for_gpu(g, DEFAULT_TIERS).name for g in gpus]
    # A100 is not mistaken for A10; an unknown card goes by its memory
    assert tiers == ["a100", "a10", "edge", "a100", "a10", "a10"]


def test_a_card_smaller_than_every_gpu_tier_is_cpu() -> None:
    assert tier_for_gpu(Gpu(0, "Tiny 4GB", 4.0), DEFAULT_TIERS).name == "cpu"
