"""Device-side multi-view augmentation, in three layers without a cycle:

- :mod:`.recipe`: :class:`ViewRecipe`, the settings of one view;
- :mod:`.kernels`: pure batched kernels (crop, flip, colour, blur, solarise) and :func:`~.kernels.apply_recipe`,
  one view of a batch under a recipe;
- :mod:`.views`: :class:`ViewAugment`, V views of a batch, the random stream, the evaluation transform.

``frossl_lit.data.augment.ViewAugment`` (the configs' ``_target_`` is ``frossl_lit.data.ViewAugment``) and
``frossl_lit.data.augment.ViewRecipe`` are the public names.
"""

from frossl_lit.data.augment.recipe import ViewRecipe
from frossl_lit.data.augment.views import ViewAugment

__all__ = ["ViewAugment", "ViewRecipe"]
