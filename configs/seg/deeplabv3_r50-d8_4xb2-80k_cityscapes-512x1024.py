# ResNet baseline (DEEPLABV3, dilated R-50): mmseg's own config, unchanged.
# Published result (mmseg model zoo, deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024): mIoU 79.32, mIoU(ms+flip) 80.57 on Cityscapes.
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py'
