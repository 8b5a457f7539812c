# ResNet baseline of the HRNetV2 CenterNet configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, centernet_r18_8xb16-crop512-140e_coco): box AP 25.9 on COCO.
_base_ = 'mmdet::centernet/centernet_r18_8xb16-crop512-140e_coco.py'
