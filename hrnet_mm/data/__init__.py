"""The embedded demo dataset (see :mod:`.synthetic`)."""
from .synthetic import CLASSES, KEYPOINTS, SEG_CLASSES, generate

__all__ = ['CLASSES', 'KEYPOINTS', 'SEG_CLASSES', 'generate']
