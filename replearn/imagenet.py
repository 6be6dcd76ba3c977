"""ImageNet constants shared by the pretrained backbones: class names and normalisations.

Two normalisations are in use, and a network only works with the one it was trained with:

* the "torchvision" mean/std below, used by every torchvision ImageNet classifier (the values of
  ``ResNet18_Weights.IMAGENET1K_V1.transforms()``);
* the "inception" style ``(x * 255 - 127) / 128`` of Google's edge models: "Edge models use
  inception-style MEAN and STDDEV for better post-quantization" (tensorflow/tpu,
  ``models/official/efficientnet/lite/efficientnet_lite_builder.py``, ``MEAN_RGB = [127.0] * 3``,
  ``STDDEV_RGB = [128.0] * 3``), used by EfficientNet-Lite.

>>> len(imagenet_categories())
1000
>>> imagenet_categories()[281]
'tabby'
"""

from __future__ import annotations

from functools import lru_cache

# Per-channel RGB mean and std of images in [0, 1] (torchvision ImageNet weights).
TORCHVISION_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
TORCHVISION_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# The inception-style constants of the TF edge models, rescaled from [0, 255] to [0, 1] inputs.
INCEPTION_MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
INCEPTION_STD: tuple[float, float, float] = (128.0 / 255.0,) * 3


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard (sorted synset) index order.

    Read from the metadata that torchvision ships with its weight enums, so it needs no network.
    """
    from torchvision.models import ResNet18_Weights

    categories = tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    if len(categories) != 1000:  # a changed torchvision would break every top-k readout
        raise RuntimeError(
            f"torchvision's ImageNet category list has {len(categories)} entries, expected 1000"
        )
    return categories
