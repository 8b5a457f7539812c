# A short iteration-based schedule for the demos (the main job sets max_iters and the end of
# the cosine phase to the same value).
train_cfg = dict(type='IterBasedTrainLoop', max_iters=200, val_interval=100000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=200, eta_min_ratio=0.05)
]
