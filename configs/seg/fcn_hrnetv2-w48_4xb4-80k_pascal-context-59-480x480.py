# HRNetV2-W48 with the paper's head: mmseg's HRNet recipe with hrnet_mm's backbone.
# Published result (mmseg model zoo, fcn_hr48_4xb4-80k_pascal-context-59-480x480): mIoU 51.12, mIoU(ms+flip) 53.56 on Pascal Context 59.
_base_ = 'mmseg::hrnet/fcn_hr48_4xb4-80k_pascal-context-59-480x480.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
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
    decode_head=dict(in_channels=720, channels=720, in_index=0, input_transform=None))
