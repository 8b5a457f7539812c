# ResNet baseline of the HRNet-C ImageNet configs: mmpretrain's own config, unchanged.
# Published result (mmpretrain model zoo, resnet50_8xb32_in1k): top-1 76.55, top-5 93.06 on ImageNet-1k val
# (25.56M parameters).
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
