# HTC with HRNetV2p-W32: the R-50 baseline with the backbone and neck swapped.
# Published result (mmdet model zoo, htc_hrnetv2p-w32_20e_coco): box AP 45.4, mask AP 39.9 on COCO.
_base_ = './htc_r50_fpn_20e_coco.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w32',
        representation=dict(type='v2p', out_channels=256, num_outs=5),  # replaces the FPN
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://msra/hrnetv2_w32')),
    neck=None)
