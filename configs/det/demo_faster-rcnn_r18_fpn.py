# ResNet baseline of the demo detector: Faster R-CNN R-18 FPN on the embedded dataset, trained
# from scratch (no download).
# Published result: none (a demo on the embedded dataset).
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py', 'mmdet::_base_/default_runtime.py',
          '../_demo_/det_data.py', '../_demo_/schedule.py']
model = dict(
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512]),
    # a lighter RoI head than COCO's (fewer samples, narrower fcs), so the demo trains in a
    # minute on a CPU
    roi_head=dict(bbox_head=dict(num_classes=3, fc_out_channels=256)),
    train_cfg=dict(rpn=dict(sampler=dict(num=128)), rpn_proposal=dict(nms_pre=500, max_per_img=200),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200)))
# from scratch: clip gradients, as the early RPN losses of an untrained backbone can spike
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
                     clip_grad=dict(max_norm=35, norm_type=2))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100000, save_last=True))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
