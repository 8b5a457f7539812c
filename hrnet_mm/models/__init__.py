"""HRNet model parts; :class:`HRNetV2` is the one users build."""
from .arch import ARCH_ZOO, get_arch, validate_arch
from .hrnet import FeatureInfo, HRNetV2
from .representations import REPRESENTATIONS

__all__ = ['ARCH_ZOO', 'get_arch', 'validate_arch', 'FeatureInfo', 'HRNetV2', 'REPRESENTATIONS']
