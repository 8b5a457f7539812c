"""hrnet_mm: one HRNet implementation for mmdet, mmseg, mmpose and mmpretrain.

Importing the package registers :class:`HRNetV2` and its parts (``HRModule`` and the
representation modules, :data:`hrnet_mm.models.PARTS`) into the ``hrnet_mm`` scope and into
the MODELS registry of each of mmdet, mmseg, mmpose and mmpretrain that is installed (a missing
library is skipped), so ``type='HRNetV2'`` works in their configs once ``hrnet_mm`` is
imported, e.g. through ``custom_imports=dict(imports=['hrnet_mm'], allow_failed_imports=False)``.
"""
import warnings

# mmengine's is_installed() re-imports pkg_resources on every call (each Runner, each library
# check), and setuptools warns each time that pkg_resources is deprecated: a notice for
# mmengine's maintainers that nobody running hrnet_mm can act on. Only that message is hidden.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)

from .compat import (mmengine_amp_compilable, mmengine_compiled_steps_eager,
                     mmpose_to_numpy_bfloat16, roi_align_bfloat16, skip_mmpretrain_multimodal)

# Before anything imports mmpretrain.models (mmdet.models and mmseg.models do): with
# transformers >= 5, mmpretrain 1.2.0's multimodal models break every one of those imports.
skip_mmpretrain_multimodal()
# bf16 AMP: mmcv's RoIAlign (two-stage detectors) and mmpose's training accuracy fail on
# bfloat16 maps; both take them once hrnet_mm is imported.
roi_align_bfloat16()
mmpose_to_numpy_bfloat16()
# mmengine's `compile` with AMP: torch 2.11 cannot trace the version check in its autocast.
mmengine_amp_compilable()
# ... and with CUDA graphs: the optimizer's state would be made inside a graph and overwritten.
mmengine_compiled_steps_eager()

from . import engine  # noqa: F401  (registers WeightsDigestHook)
from .engine.checkpoints import install as _safe_checkpoints
from .models import PARTS, HRNetV2
from .registry import MODELS, register_into_libraries
from .version import __version__
from .weights import allow_mmengine_checkpoints

# torch >= 2.6 loads with weights_only=True: allow the few types mmengine writes, so that
# mmengine's own loading (resume, load_from) works on its checkpoints, and nothing more.
allow_mmengine_checkpoints()
# Checkpoints written atomically, old ones removed only after, auto-resume past a damaged one,
# random states saved and restored: in every run that imports hrnet_mm.
_safe_checkpoints()

for _name, _cls in PARTS.items():
    MODELS.register_module(name=_name, module=_cls, force=True)
#: The libraries HRNetV2 and its parts were registered into at import.
REGISTERED_LIBRARIES = tuple(register_into_libraries(PARTS))

__all__ = ['__version__', 'HRNetV2', 'MODELS', 'REGISTERED_LIBRARIES']
