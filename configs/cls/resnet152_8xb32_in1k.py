# ResNet baseline of the HRNet-C ImageNet configs: mmpretrain's own config (+ hrnet_mm imported).
# Published result (mmpretrain model zoo, resnet152_8xb32_in1k): top-1 78.48, top-5 94.13 on ImageNet-1k val
# (60.19M parameters).
_base_ = 'mmpretrain::resnet/resnet152_8xb32_in1k.py'

# hrnet_mm imported as in the HRNet configs, for its environment fixes (mmpretrain 1.2.0 with
# transformers >= 5 broke every mmdet / mmseg model import) and its safe checkpoints; the model
# and the schedule stay as above.
custom_imports = dict(imports=['hrnet_mm'], allow_failed_imports=False)
