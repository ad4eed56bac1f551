"""ModelSpec: which model, and the zoo options it is built with (``edgekit.models.create`` arguments)."""
from __future__ import annotations

from typing import Any

from .._spec import Spec, option, spec


@spec
class ModelSpec(Spec):
    """A zoo name, a model file or a keras.Model, and the options a zoo model is built with (None: the family
    default)."""

    model: Any = option(help="Zoo name (see edgekit models), model file (.keras/.h5/SavedModel) or keras.Model.",
                        argument=True, metavar="MODEL")
    alpha: float | None = option(None, help="Width multiplier (MobileNet v1/v2/v3).")
    rho: float | None = option(None, help="Resolution multiplier: input = round(default * rho).")
    resolution: int | None = option(None, help="Input resolution in pixels (instead of --rho).")
    depth_multiplier: int | None = option(None, help="Depthwise channel multiplier (MobileNet v1).")
    dropout: float | None = option(None, help="Dropout before the classifier.")
    classes: int | None = option(None, help="Number of output classes.")
    input_channels: int | None = option(None, help="Input channels (1 for grayscale).")
    include_top: bool | None = option(None, flag="--include-top/--no-top", help="Keep or drop the classifier head.")
    input_shape: Any = option(None, help="Model files: fix free input dims, e.g. 224,224,3 (several inputs: "
                                         "224,224,3;16).")
    trust_model_code: bool | None = option(None, help="Load model files whose layers run stored Python code (Lambda "
                                                      "& co); refused otherwise.")
    weights: str | None = option(None, help="imagenet (where the family has them), none, or a weights/model file "
                                            "path.")

    #: the fields that are options of ``edgekit.models.create`` (all but ``model``)
    @classmethod
    def option_keys(cls) -> list[str]:
        return [k for k in ModelSpec.keys() if k != "model"]

    def model_options(self) -> dict[str, Any]:
        """The zoo options that were set (None means the family default)."""
        return {k: getattr(self, k) for k in ModelSpec.option_keys() if getattr(self, k) is not None}
