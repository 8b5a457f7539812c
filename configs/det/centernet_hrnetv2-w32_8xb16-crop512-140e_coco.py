# CenterNet with HRNetV2-W32: mmdet's CenterNet R-18 with the backbone swapped and its
# deconvolution neck (CTResNetNeck, stride 32 back up to 4) dropped: the CenterNet head reads the
# HRNetV2 representation, every branch resized to stride 4 and concatenated (480 channels).
# Published result: none (mmdet's model zoo has no HRNet CenterNet); baseline: CenterNet R-18.
_base_ = './centernet_r18-dcnv2_8xb16-crop512-140e_coco.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w32',
        representation='v2',  # one map at stride 4, where CenterNet predicts
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://msra/hrnetv2_w32')),
    neck=None,
    bbox_head=dict(in_channels=480))
