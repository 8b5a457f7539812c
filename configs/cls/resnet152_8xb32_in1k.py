# ResNet baseline of the HRNet-C ImageNet configs: mmpretrain's own config, unchanged.
# Published result (mmpretrain model zoo, resnet152_8xb32_in1k): top-1 78.48, top-5 94.13 on ImageNet-1k val
# (60.19M parameters).
_base_ = 'mmpretrain::resnet/resnet152_8xb32_in1k.py'
