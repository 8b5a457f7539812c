"""The embedded demo dataset (see :mod:`.synthetic`) and the dataset check before a run
(see :mod:`.check`), and pointing a demo config at real data (see :mod:`.roots`)."""
from .check import DatasetError, check_data
from .roots import apply_data_root, data_root_option, use_data_root
from .synthetic import (CLASSES, DEMO_ROOT, KEYPOINTS, SEG_CLASSES, ensure_generated, generate,
                        prepare_demo_data)

__all__ = ['CLASSES', 'DEMO_ROOT', 'KEYPOINTS', 'SEG_CLASSES', 'generate', 'ensure_generated',
           'prepare_demo_data', 'DatasetError', 'check_data',
           'use_data_root', 'data_root_option', 'apply_data_root']
