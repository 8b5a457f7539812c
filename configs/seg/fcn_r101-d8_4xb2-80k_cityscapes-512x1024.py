# ResNet baseline (FCN, dilated R-101): mmseg's own config, unchanged.
# Published result (mmseg model zoo, fcn_r101-d8_4xb2-80k_cityscapes-512x1024): mIoU 75.13, mIoU(ms+flip) 75.94 on Cityscapes.
_base_ = 'mmseg::fcn/fcn_r101-d8_4xb2-80k_cityscapes-512x1024.py'
