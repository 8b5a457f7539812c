# ResNet baseline of the HRNetV2p Cascade R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, cascade-rcnn_r101_fpn_20e_coco): box AP 42.5 on COCO.
_base_ = 'mmdet::cascade_rcnn/cascade-rcnn_r101_fpn_20e_coco.py'
