# HRNetV2-W18-Small with the paper's head: mmseg's HRNet recipe with hrnet_mm's backbone.
# Published result: none in the mmseg model zoo for this exact config.
_base_ = 'mmseg::hrnet/fcn_hr18s_4xb4-80k_pascal-context-59-480x480.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,  # the backbone's init_cfg loads the ImageNet weights
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w18_small_v2',
        representation='v2',  # all branches resized to 1/4 and concatenated: 270 channels
        upsample_mode='bilinear',
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://msra/hrnetv2_w18_small')),
    # the paper's head: a 1x1 conv on the V2 representation, then the classifier
    decode_head=dict(in_channels=270, channels=270, in_index=0, input_transform=None))
