# The demo classifier's ResNet baseline: ResNet-18 (its size and compute match
# HRNet-W18-Small-v1-C's within 1.33x) on the embedded dataset's 64x64 crops, trained from
# scratch (no download).
# Published result: none (a demo on the embedded dataset).
_base_ = ['mmpretrain::_base_/models/resnet18.py', 'mmpretrain::_base_/default_runtime.py',
          '../_demo_/cls_data.py', '../_demo_/schedule.py']
model = dict(head=dict(num_classes=3, topk=(1, )))
data_preprocessor = dict(num_classes=3, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=0.0001))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100000, save_last=True))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
