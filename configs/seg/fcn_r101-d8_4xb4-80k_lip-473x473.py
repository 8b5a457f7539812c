# ResNet baseline (FCN, dilated R-101) on LIP: mmseg's model, hrnet_mm's LIP data.
# Published result: none in the mmseg model zoo.
_base_ = [
    'mmseg::_base_/models/fcn_r50-d8.py', './_base_/lip_473x473.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (473, 473)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(num_classes=20),
    auxiliary_head=dict(num_classes=20))

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
