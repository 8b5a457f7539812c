# FCOS (GN head) with HRNetV2p-W18: the caffe R-50 baseline with the backbone and neck
# swapped. HRNet takes pytorch-style normalisation (not caffe's), and the pyramid's 3x3 convs have
# stride 2, so its levels sit at FCOS's strides 8 ... 128 (mmdet's HRFPN stride=2).
# Published result (mmdet model zoo, fcos_hrnetv2p-w18-gn-head_4xb4-1x_coco): box AP 35.3 on COCO.
_base_ = './fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(
        mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], bgr_to_rgb=False),
    backbone=dict(
        _delete_=True,
        type='HRNetV2',
        arch='w18',
        # the V2+p pyramid replaces the FPN neck
        representation=dict(type='v2p', out_channels=256, num_outs=5, pyramid_stride=2),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://msra/hrnetv2_w18')),
    neck=None)
