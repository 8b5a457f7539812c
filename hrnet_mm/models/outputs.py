"""What a module outputs: :class:`FeatureInfo` (channels, stride) for each of its outputs."""
from typing import NamedTuple, Optional, Tuple


class FeatureInfo(NamedTuple):
    """What one output is: its channels and its stride relative to the input (``None`` for
    logits or pooled features, which have no spatial extent)."""
    channels: int
    stride: Optional[int]


def hrnet_strides(num_branches: int) -> Tuple[int, ...]:
    """The strides of HRNet's branches: 4, 8, 16, 32 (the stem reduces by 4)."""
    return tuple(4 * 2**i for i in range(num_branches))
