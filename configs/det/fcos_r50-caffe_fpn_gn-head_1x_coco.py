# ResNet baseline (caffe-style R-50) of the HRNetV2p FCOS configs: mmdet's own config.
# Published result (mmdet model zoo, fcos_r50-caffe_fpn_gn-head_1x_coco): box AP 36.6 on COCO.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
