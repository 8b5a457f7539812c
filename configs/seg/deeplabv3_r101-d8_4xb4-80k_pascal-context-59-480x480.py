# ResNet baseline (DEEPLABV3, dilated R-101): mmseg's own config, unchanged.
# Published result (mmseg model zoo, deeplabv3_r101-d8_4xb4-80k_pascal-context-59-480x480): mIoU 52.46, mIoU(ms+flip) 54.09 on Pascal Context 59.
_base_ = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-80k_pascal-context-59-480x480.py'
