# ResNet baseline (caffe-style R-101) of the HRNetV2p FCOS configs: mmdet's own config.
# Published result (mmdet model zoo, fcos_r101-caffe_fpn_gn-head-1x_coco): box AP 39.1 on COCO.
_base_ = 'mmdet::fcos/fcos_r101-caffe_fpn_gn-head-1x_coco.py'
