# ResNet baseline of the HRNetV2p Cascade R-CNN configs: mmdet's own config, unchanged.
# Published result (mmdet model zoo, cascade-rcnn_r50_fpn_20e_coco): box AP 41.0 on COCO.
_base_ = 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_20e_coco.py'
