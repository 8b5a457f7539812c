"""Training-time helpers registered into mmengine."""
from .hooks import WeightsDigestHook
from .quiet import ProgressBarHook

__all__ = ['ProgressBarHook', 'WeightsDigestHook']
