# ResNet baseline of the HRNetV2p HTC configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, htc_r101_fpn_20e_coco): box AP 44.8, mask AP 39.6 on COCO.
_base_ = 'mmdet::htc/htc_r101_fpn_20e_coco.py'
