"""Training-time helpers registered into mmengine."""
from .hooks import WeightsDigestHook

__all__ = ['WeightsDigestHook']
