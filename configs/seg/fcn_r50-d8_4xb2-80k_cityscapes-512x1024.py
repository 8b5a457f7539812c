# ResNet baseline (FCN, dilated R-50): mmseg's own config, unchanged.
# Published result (mmseg model zoo, fcn_r50-d8_4xb2-80k_cityscapes-512x1024): mIoU 73.61, mIoU(ms+flip) 74.24 on Cityscapes.
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py'
