# Top-down heatmaps with HRNet-W48 (the V1 representation): mmpose's recipe with
# hrnet_mm's backbone.
# Published result (mmpose model zoo, td-hm_hrnet-w48_8xb32-210e_coco-384x288): AP 0.767, AR 0.816 on COCO.
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w48_8xb32-210e_coco-384x288.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w48',
        representation='v1',  # the stride-4 branch only; the last exchange computes just it
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmpose/pretrain_models/hrnet_w48-8ef0771d.pth')))
