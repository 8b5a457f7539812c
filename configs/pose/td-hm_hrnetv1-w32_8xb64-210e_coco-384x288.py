# Top-down heatmaps with HRNet-W32 (the V1 representation): mmpose's recipe with
# hrnet_mm's backbone.
# Published result (mmpose model zoo, td-hm_hrnet-w32_8xb64-210e_coco-384x288): AP 0.76, AR 0.81 on COCO.
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-384x288.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w32',
        representation='v1',  # the stride-4 branch only; the last exchange computes just it
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmpose/pretrain_models/hrnet_w32-36af842e.pth')))
