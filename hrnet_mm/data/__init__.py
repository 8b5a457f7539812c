"""The embedded demo dataset (see :mod:`.synthetic`) and the dataset check before a run
(see :mod:`.check`)."""
from .check import DatasetError, check_data
from .synthetic import CLASSES, KEYPOINTS, SEG_CLASSES, generate

__all__ = ['CLASSES', 'KEYPOINTS', 'SEG_CLASSES', 'generate', 'DatasetError', 'check_data']
