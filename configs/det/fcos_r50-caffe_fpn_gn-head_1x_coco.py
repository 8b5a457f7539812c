# ResNet baseline (caffe-style R-50) of the HRNetV2p FCOS configs: mmdet's own config.
# Published result (mmdet model zoo, fcos_r50-caffe_fpn_gn-head_1x_coco): box AP 36.6 on COCO.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
