# ResNet baseline of the demo pose estimator: SimpleBaseline R-18 (3 deconvolutions) on the
# embedded dataset, trained from scratch (no download).
# Published result: none (a demo on the embedded dataset).
_base_ = ['mmpose::_base_/default_runtime.py', '../_demo_/pose_data.py']
# The demo schedule (configs/_demo_/schedule.py), replacing mmpose's epoch-based defaults.
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=200, val_interval=100000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=200, eta_min_ratio=0.05)
]
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=18),
    head=dict(type='HeatmapHead', in_channels=512, out_channels=17,
              deconv_out_channels=(128, 128, 128), deconv_kernel_sizes=(4, 4, 4),
              loss=dict(type='KeypointMSELoss', use_target_weight=True), decoder={{_base_.codec}}),
    test_cfg=dict(flip_test=False))
optim_wrapper = dict(optimizer=dict(type='Adam', lr=2e-3))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100000, save_last=True))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
