# ResNet baseline of the demo segmentor: FCN with a dilated R-18 on the embedded dataset,
# trained from scratch (no download).
# Published result: none (a demo on the embedded dataset).
_base_ = ['mmseg::_base_/models/fcn_r50-d8.py', 'mmseg::_base_/default_runtime.py',
          '../_demo_/seg_data.py', '../_demo_/schedule.py']
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs several GPUs
model = dict(
    data_preprocessor=dict(size=(160, 160)),
    pretrained=None,
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=512, channels=128, num_classes=4, norm_cfg=norm_cfg),
    auxiliary_head=None)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100000, save_last=True))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
