""":class:`ViewRecipe`: the augmentation settings of one view, checked when made."""

from __future__ import annotations

from dataclasses import InitVar, dataclass

from frossl_lit.runtime.errors import number, positive_int, require

INTERPOLATIONS = ("bilinear", "bicubic")
PROBABILITIES = ("hflip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob")


def _probability(value) -> bool:
    return number(value) and 0.0 <= value <= 1.0


def _scale(value) -> bool:
    return len(value) == 2 and all(map(number, value)) and 0.0 < value[0] <= value[1] <= 1.0


@dataclass
class ViewRecipe:
    """The augmentation recipe of one view (torchvision/solo-learn names and defaults).

    ``where``: the config key of the recipe with a trailing dot (``augment.recipes.1.``; :class:`ViewAugment` passes
    it), so that a bad value is refused as a :class:`~frossl_lit.runtime.errors.UserError` naming its whole key
    (``augment.recipes.1.scale=[0.5, 0.2] must be …``); not a field.
    """

    size: int = 32
    random_resized_crop: bool = True  # false: the whole image resized to ``size`` (solo-learn's rrc.enabled=false)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    # the crop's resampling: bilinear (this framework's) or bicubic, antialiased (solo-learn's and the official
    # FroSSL code's RandomResizedCrop(..., interpolation=BICUBIC)); see kernels.resized_crop_flip
    interpolation: str = "bilinear"
    hflip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    solarize_threshold: float = 0.5
    where: InitVar[str] = ""

    def __post_init__(self, where: str) -> None:
        for name in PROBABILITIES:
            require(f"{where}{name}", getattr(self, name), _probability, "is a probability: it must lie in [0, 1]",
                    f"e.g. {where}{name}=0.5")
        require(f"{where}scale", self.scale, _scale, "must be [min, max] with 0 < min <= max <= 1 (fractions of the image area)",
                f"e.g. {where}scale=[0.08,1.0]")
        require(f"{where}size", self.size, positive_int, "must be a positive number of pixels", f"e.g. {where}size=32")
        require(f"{where}interpolation", self.interpolation, lambda v: v in INTERPOLATIONS, "must be bilinear or bicubic",
                f"e.g. {where}interpolation=bicubic")
        require(f"{where}hue", self.hue, lambda v: number(v) and 0.0 <= v <= 0.5, "must lie in [0, 0.5]", f"e.g. {where}hue=0.1")
