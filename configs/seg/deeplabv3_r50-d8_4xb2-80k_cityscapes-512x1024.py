# ResNet baseline (DEEPLABV3, dilated R-50): mmseg's own config (+ hrnet_mm imported).
# Published result (mmseg model zoo, deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024): mIoU 79.32, mIoU(ms+flip) 80.57 on Cityscapes.
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
