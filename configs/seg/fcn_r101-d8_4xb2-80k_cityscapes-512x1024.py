# ResNet baseline (FCN, dilated R-101): mmseg's own config (+ hrnet_mm imported).
# Published result (mmseg model zoo, fcn_r101-d8_4xb2-80k_cityscapes-512x1024): mIoU 75.13, mIoU(ms+flip) 75.94 on Cityscapes.
_base_ = 'mmseg::fcn/fcn_r101-d8_4xb2-80k_cityscapes-512x1024.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
