# ResNet baseline (DEEPLABV3, dilated R-101): mmseg's own config (+ hrnet_mm imported).
# Published result (mmseg model zoo, deeplabv3_r101-d8_4xb4-80k_pascal-context-59-480x480): mIoU 52.46, mIoU(ms+flip) 54.09 on Pascal Context 59.
_base_ = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-80k_pascal-context-59-480x480.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
