"""Reading, converting and loading published HRNet weights (see ``tools/convert_weights.py``)."""
from .layouts import LAYOUTS, Conversion, convert_state_dict, detect_layout
from .loading import (CheckpointError, LoadReport, UnsafeCheckpointError, check_finite,
                      check_fit, load_checkpoint_file, load_pretrained)
from .safe_globals import allow_mmengine_checkpoints

__all__ = ['LAYOUTS', 'Conversion', 'convert_state_dict', 'detect_layout', 'CheckpointError',
           'LoadReport', 'UnsafeCheckpointError', 'check_finite', 'check_fit', 'load_checkpoint_file',
           'load_pretrained',
           'allow_mmengine_checkpoints']
