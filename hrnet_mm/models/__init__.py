"""HRNet model parts; :class:`HRNetV2` is the one users build, the others are its parts."""
from types import MappingProxyType

from .arch import ARCH_ZOO, get_arch, validate_arch
from .fusion import HRModule
from .hrnet import HRNetV2
from .outputs import FeatureInfo
from .representations import (REPRESENTATIONS, BranchesRepresentation, ClsRepresentation,
                              V1Representation, V2pRepresentation, V2Representation,
                              build_representation)

#: Everything a config can name (``type=...``): registered into the ``hrnet_mm`` scope and
#: into each installed library's MODELS.
PARTS = MappingProxyType({
    cls.__name__: cls for cls in (HRNetV2, HRModule, *REPRESENTATIONS.values())})

__all__ = ['ARCH_ZOO', 'get_arch', 'validate_arch', 'FeatureInfo', 'HRNetV2', 'HRModule',
           'REPRESENTATIONS', 'BranchesRepresentation', 'V1Representation', 'V2Representation',
           'V2pRepresentation', 'ClsRepresentation', 'build_representation', 'PARTS']
