"""Built-in backbones: AlexNet and VGG16 (the paper's), ResNet-18 and ResNet-50, and the Sobel
input layer."""

from dcframe.components.backbones.alexnet import AlexNet, AlexNetParams
from dcframe.components.backbones.conv_fc import ConvNetParams
from dcframe.components.backbones.resnet import ResNet18, ResNet50
from dcframe.components.backbones.sobel import Sobel
from dcframe.components.backbones.vgg import VGG16, VGG16Params

__all__ = [
    "VGG16",
    "AlexNet",
    "AlexNetParams",
    "ConvNetParams",
    "ResNet18",
    "ResNet50",
    "Sobel",
    "VGG16Params",
]
