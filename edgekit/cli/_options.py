"""Click options shared by commands that take a MODEL: each option is the same-named argument of
``edgekit.models.create`` (and the same key in a recipe)."""
from __future__ import annotations

from typing import Any, Callable

import click

#: option name -> click option; the Python argument has the same name
_MODEL_OPTIONS = [
    click.option("--alpha", type=float, default=None, help="Width multiplier (MobileNet v1/v2/v3)."),
    click.option("--rho", type=float, default=None, help="Resolution multiplier: input = round(default * rho)."),
    click.option("--resolution", type=int, default=None, help="Input resolution in pixels (instead of --rho)."),
    click.option("--depth-multiplier", type=int, default=None, help="Depthwise channel multiplier (MobileNet v1)."),
    click.option("--dropout", type=float, default=None, help="Dropout before the classifier."),
    click.option("--classes", type=int, default=None, help="Number of output classes."),
    click.option("--input-channels", type=int, default=None, help="Input channels (1 for grayscale)."),
    click.option("--include-top/--no-top", "include_top", default=None, help="Keep or drop the classifier head."),
    click.option("--input-shape", default=None,
                 help="Model files: fix free input dims, e.g. 224,224,3 (several inputs: 224,224,3;16)."),
    click.option("--trust-model-code", is_flag=True, default=None,
                 help="Load model files whose layers run stored Python code (Lambda & co); refused otherwise."),
]
WEIGHTS_OPTION = click.option(
    "--weights", default=None, help="imagenet (where the family has them), none, or a weights/model file path.")
MODEL_OPTION_NAMES = ("alpha", "rho", "resolution", "depth_multiplier", "dropout", "classes", "input_channels",
                      "include_top", "input_shape", "trust_model_code", "weights")


def model_options(weights: bool = True) -> Callable[[Callable], Callable]:
    """Decorator adding the model options (and ``--weights`` unless ``weights=False``) to a command."""

    def deco(fn: Callable) -> Callable:
        for opt in reversed(_MODEL_OPTIONS + ([WEIGHTS_OPTION] if weights else [])):
            fn = opt(fn)
        return fn

    return deco


def pop_model_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the model options from a command's kwargs; return those the user set (None means default)."""
    picked = {name: kwargs.pop(name, None) for name in MODEL_OPTION_NAMES}
    return {k: v for k, v in picked.items() if v is not None}
