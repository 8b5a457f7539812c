# ResNet baseline of the HRNetV2 CenterNet configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, centernet_r18-dcnv2_8xb16-crop512-140e_coco): box AP 29.5 on COCO.
_base_ = 'mmdet::centernet/centernet_r18-dcnv2_8xb16-crop512-140e_coco.py'
