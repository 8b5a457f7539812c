# HRNetV2-W48 with the paper's head on LIP (20 classes, 473x473 crops).
# Published result: none in the mmseg model zoo (the paper reports HRNetV2-W48: 55.90 mIoU).
_base_ = [
    'mmseg::_base_/models/fcn_hr18.py', './_base_/lip_473x473.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
crop_size = (473, 473)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,  # the backbone's init_cfg loads the ImageNet weights
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w48',
        representation='v2',  # all branches resized to 1/4 and concatenated: 720 channels
        upsample_mode='bilinear',
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://msra/hrnetv2_w48')),
    # the paper's head: a 1x1 conv on the V2 representation, then the classifier
    decode_head=dict(in_channels=720, channels=720, in_index=0, input_transform=None, num_classes=20))
