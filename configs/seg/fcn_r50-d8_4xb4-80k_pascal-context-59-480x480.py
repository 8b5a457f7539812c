# ResNet baseline (FCN, dilated R-50): mmseg's own config (+ hrnet_mm imported).
# Published result: none in the mmseg model zoo for this exact config.
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-80k_pascal-context-59-480x480.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
