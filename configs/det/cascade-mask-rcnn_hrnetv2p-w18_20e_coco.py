# Cascade Mask R-CNN with HRNetV2p-W18: the R-50 baseline with the backbone and neck swapped.
# Published result (mmdet model zoo, cascade-mask-rcnn_hrnetv2p-w18_20e_coco): box AP 41.6, mask AP 36.4 on COCO.
_base_ = './cascade-mask-rcnn_r50_fpn_20e_coco.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w18',
        representation=dict(type='v2p', out_channels=256, num_outs=5),  # replaces the FPN
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://msra/hrnetv2_w18')),
    neck=None)
