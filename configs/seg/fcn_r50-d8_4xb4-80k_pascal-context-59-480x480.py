# ResNet baseline (FCN, dilated R-50): mmseg's own config, unchanged.
# Published result: none in the mmseg model zoo for this exact config.
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-80k_pascal-context-59-480x480.py'
