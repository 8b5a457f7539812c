# ResNet baseline (FCN, dilated R-101): mmseg's own config, unchanged.
# Published result (mmseg model zoo, fcn_r101-d8_4xb4-80k_pascal-context-59-480x480): mIoU 49.35, mIoU(ms+flip) 51.38 on Pascal Context 59.
_base_ = 'mmseg::fcn/fcn_r101-d8_4xb4-80k_pascal-context-59-480x480.py'
