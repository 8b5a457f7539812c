# ResNet baseline (DEEPLABV3, dilated R-101): mmseg's own config, unchanged.
# Published result (mmseg model zoo, deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024): mIoU 80.2, mIoU(ms+flip) 81.21 on Cityscapes.
_base_ = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py'
