"""dcframe's built-in components, kind by kind: the one place they are registered.

Each entry names where its class is and gives its parameters model, which imports no
torch (the classes' modules do): a recipe naming built-ins is validated without importing
them. The registries of :mod:`dcframe.core.kinds` read these tables on first use, through
the same door as a plugin's entry points.
"""

from __future__ import annotations

from dcframe.components.builtin_params import (
    AlexNetParams,
    CifarParams,
    DeepClusterV2Params,
    FaissKMeansParams,
    FileListParams,
    ImageFolderParams,
    MnistParams,
    PCAParams,
    SamplerParams,
    SklearnDigitsParams,
    SklearnKMeansParams,
    TensorBoardParams,
    TorchKMeansParams,
    UniformClusterParams,
    VGG16Params,
    WebDatasetParams,
)
from dcframe.core.params import BackboneParams, NoParams
from dcframe.core.registry import Builtin

_HERE = "dcframe.components"


def methods() -> dict[str, Builtin]:
    # Methods run the engine's parts: they live above it, in dcframe.methods, named here.
    return {
        "deepcluster": Builtin("dcframe.methods.deepcluster:DeepCluster", NoParams),
        "deepcluster-v2": Builtin(
            "dcframe.methods.deepcluster_v2:DeepClusterV2", DeepClusterV2Params
        ),
    }


def backbones() -> dict[str, Builtin]:
    return {
        "alexnet": Builtin(f"{_HERE}.backbones.alexnet:AlexNet", AlexNetParams),
        "vgg16": Builtin(f"{_HERE}.backbones.vgg:VGG16", VGG16Params),
        "resnet18": Builtin(f"{_HERE}.backbones.resnet:ResNet18", BackboneParams),
        "resnet50": Builtin(f"{_HERE}.backbones.resnet:ResNet50", BackboneParams),
    }


def preprocessors() -> dict[str, Builtin]:
    return {
        "pca": Builtin(f"{_HERE}.preprocessors:PCAWhitening", PCAParams),
        "l2": Builtin(f"{_HERE}.preprocessors:L2Normalize", NoParams),
    }


def clusterers() -> dict[str, Builtin]:
    here = f"{_HERE}.clusterers"
    return {
        "faiss-kmeans": Builtin(f"{here}.faiss_kmeans:FaissKMeans", FaissKMeansParams),
        "torch-kmeans": Builtin(f"{here}.torch_kmeans:TorchKMeans", TorchKMeansParams),
        "sklearn-kmeans": Builtin(f"{here}.sklearn_kmeans:SklearnKMeans", SklearnKMeansParams),
    }


def samplers() -> dict[str, Builtin]:
    return {
        "uniform": Builtin(f"{_HERE}.samplers:UniformClusterSampler", UniformClusterParams),
        "random": Builtin(f"{_HERE}.samplers:RandomSampler", SamplerParams),
    }


def datasets() -> dict[str, Builtin]:
    folder, arrays = f"{_HERE}.datasets", f"{_HERE}.datasets.benchmarks"
    return {
        "imagefolder": Builtin(f"{folder}.folder:ImageFolder", ImageFolderParams),
        "sklearn-digits": Builtin(f"{folder}.digits:SklearnDigits", SklearnDigitsParams),
        "filelist": Builtin(f"{folder}.filelist:FileList", FileListParams),
        "webdataset": Builtin(f"{folder}.shards:WebDataset", WebDatasetParams),
        "cifar10": Builtin(f"{arrays}:Cifar10", CifarParams),
        "cifar100": Builtin(f"{arrays}:Cifar100", CifarParams),
        "mnist": Builtin(f"{arrays}:Mnist", MnistParams),
        "fashion-mnist": Builtin(f"{arrays}:FashionMnist", MnistParams),
    }


def loggers() -> dict[str, Builtin]:
    return {
        "jsonl": Builtin(f"{_HERE}.loggers:JsonlLogger", NoParams),
        "csv": Builtin(f"{_HERE}.loggers:CsvLogger", NoParams),
        "tensorboard": Builtin(f"{_HERE}.loggers:TensorBoardLogger", TensorBoardParams),
    }
