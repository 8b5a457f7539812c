# ResNet baseline of the HRNet-C ImageNet configs: mmpretrain's own config, unchanged.
# Published result (mmpretrain model zoo, resnet101_8xb32_in1k): top-1 77.97, top-5 94.06 on ImageNet-1k val
# (44.55M parameters).
_base_ = 'mmpretrain::resnet/resnet101_8xb32_in1k.py'
