# ResNet baseline of the HRNetV2p HTC configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, htc_r50_fpn_20e_coco): box AP 43.3, mask AP 38.3 on COCO.
_base_ = 'mmdet::htc/htc_r50_fpn_20e_coco.py'
