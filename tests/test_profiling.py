"""Profiling: golden numbers from the papers, exact per-layer counts, separable savings, peak activation memory."""
from __future__ import annotations

import math

import pytest

from edgekit import models
from edgekit.errors import InvalidArgument
from edgekit.profiling import MULT_ADD_LAYERS, profile


def within(value: float, expected: float, rel: float = 0.01) -> bool:
    return abs(value - expected) <= rel * expected


# MobileNet paper, Table 6 (width multiplier) and Table 7 (resolution): mult-adds in millions
@pytest.mark.parametrize("alpha, mult_adds_m, params_m", [(1.0, 569, 4.2), (0.75, 325, 2.6), (0.5, 149, 1.3),
                                                          (0.25, 41, 0.5)])
def test_mobilenet_width_multiplier_golden(alpha, mult_adds_m, params_m):
    rep = profile("mobilenet_v1", alpha=alpha)
    assert within(rep.total_mult_adds, mult_adds_m * 1e6), rep.total_mult_adds
    # the paper counts conv/FC weights (no BatchNorm) and prints them to 0.1 M
    assert round(rep.conv_fc_params / 1e6, 1) == params_m, rep.conv_fc_params


@pytest.mark.parametrize("resolution, mult_adds_m", [(224, 569), (192, 418), (160, 290), (128, 186)])
def test_mobilenet_resolution_multiplier_golden(resolution, mult_adds_m):
    rep = profile("mobilenet_v1", resolution=resolution)
    assert within(rep.total_mult_adds, mult_adds_m * 1e6), rep.total_mult_adds


def test_mobilenet_rho_equals_resolution():
    by_rho = profile("mobilenet_v1", rho=160 / 224)
    assert by_rho.input_shape == [None, 160, 160, 3]
    assert by_rho.total_mult_adds == profile("mobilenet_v1", resolution=160).total_mult_adds


def test_mobilenet_exact_counts_and_separable_blocks():
    rep = profile("mobilenet_v1")
    assert rep.total_params == 4_253_864                 # Keras' count, BN statistics included
    assert rep.non_trainable_params == 21_888            # BN moving mean/variance
    assert rep.total_mult_adds == 568_740_352
    assert len(rep.separable) == 13
    for b in rep.separable:
        assert b.depthwise.startswith("conv_dw_") and b.pointwise == b.depthwise.replace("dw", "pw")
        assert b.kernel == (3, 3)
        assert math.isclose(b.ratio, 1 / b.out_channels + 1 / 9)
        assert math.isclose(b.ratio, b.paper_ratio)
        dk2, m, n, f = 9, b.in_channels, b.out_channels, math.prod(b.output_hw)
        assert b.separable_mult_adds == dk2 * m * f + m * n * f and b.standard_mult_adds == dk2 * m * n * f
    # about 8-9x fewer mult-adds than standard convolutions (paper section 3.1)
    assert 8 < rep.separable_standard_mult_adds / rep.separable_mult_adds < 9
    # per-layer rows add up to the totals
    assert sum(r.params for r in rep.layers) == rep.total_params
    assert {r.type for r in rep.layers if r.mult_adds} <= set(MULT_ADD_LAYERS)
    first = rep.layers[1]
    assert (first.name, first.output_shape, first.mult_adds) == ("conv1", [None, 112, 112, 32], 112 * 112 * 27 * 32)


def test_efficientnet_b0_golden():
    rep = profile("efficientnet_b0")
    assert within(rep.total_params, 5.3e6)
    # 385.8 M: 0.39 B at the paper's two digits (1.1 % below 390 M; SE products and BN are not mult-adds)
    assert round(rep.total_mult_adds / 1e9, 2) == 0.39 and within(rep.total_mult_adds, 0.39e9, 0.015)
    assert len(rep.separable) == 16                     # one depthwise -> projection per MBConv block


def test_resnet50_golden():
    rep = profile("resnet50")
    assert within(rep.total_params, 25.6e6)
    # 3.858 B: ~3.9 B (the paper's "3.8 x 10^9 FLOPs" are mult-adds)
    assert round(rep.total_mult_adds / 1e9, 1) == 3.9 and within(rep.total_mult_adds, 3.9e9, 0.015)


@pytest.mark.parametrize("name, mult_adds_m", [
    ("mobilenet_v2", 300),          # MobileNetV2 paper, Table 4
    ("mobilenet_v3_small", 56),     # MobileNetV3 paper, Table 3
    ("shufflenet_v2", 146),         # ShuffleNet V2 paper, Table 5 (x1.0; its "FLOPs" are mult-adds)
])
def test_other_papers_mult_adds(name, mult_adds_m):
    assert within(profile(name).total_mult_adds, mult_adds_m * 1e6)


@pytest.mark.slow
def test_vgg16_golden():
    rep = profile("vgg16")
    assert within(rep.total_params, 138e6) and rep.total_params == 138_357_544
    assert within(rep.total_mult_adds, 15.5e9)


# ---------------------------------------------------------------------------------------------------------------
def _toy():
    from edgekit._keras import keras, layers

    inp = layers.Input((4, 4, 2), name="inp")                        # 32
    c1 = layers.Conv2D(8, 1, name="c1")(inp)                         # 128
    c2 = layers.Conv2D(8, 1, name="c2")(c1)                          # 128
    c3 = layers.Conv2D(8, 3, padding="same", name="c3")(c2)          # 128; c1 still live for the add
    add = layers.Add(name="add")([c1, c3])                           # 128
    out = layers.Dense(3, name="fc")(layers.GlobalAveragePooling2D(name="gap")(add))
    return keras.Model(inp, out, name="toy")


def test_peak_memory_follows_liveness():
    rep = profile(_toy())
    # at c3: c1 (kept for the add) + c2 + c3 = 384 elements; the input was freed after c1
    assert rep.peak_memory.elements == 384 and rep.peak_memory.at_layer == "c3"
    assert rep.peak_memory.float32_bytes == 4 * 384 and rep.peak_memory.int8_bytes == 384
    assert sorted(rep.peak_memory.live_tensors) == [("c1", 128), ("c2", 128), ("c3", 128)]
    macs = {r.name: r.mult_adds for r in rep.layers}
    assert macs == {"inp": 0, "c1": 16 * 2 * 8, "c2": 16 * 8 * 8, "c3": 16 * 9 * 8 * 8, "add": 0, "gap": 0,
                    "fc": 8 * 3}


def test_layer_type_conventions():
    from edgekit._keras import keras, layers

    inp = layers.Input((8, 8, 4))
    x = layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(inp)   # 8x8
    x = layers.Conv2D(6, 3, padding="same", groups=2, name="grouped")(x)
    x = layers.Conv2DTranspose(2, 2, strides=2, name="up")(x)                               # 16x16
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Reshape((16 * 16, 2), name="seq")(x)
    x = layers.Dense(5, name="per_position")(x)
    rep = profile(keras.Model(inp, x))
    macs = {r.name: r.mult_adds for r in rep.layers}
    assert macs["sep"] == 64 * 9 * 4 * 2 + 64 * 8 * 6
    assert macs["grouped"] == 64 * 9 * 3 * 6
    assert macs["up"] == 64 * 4 * 6 * 2
    assert macs["per_position"] == 256 * 2 * 5
    assert macs["bn"] == 0 and macs["seq"] == 0
    [block] = rep.separable
    assert block.depthwise == block.pointwise == "sep" and block.depth_multiplier == 2


def test_nested_model_is_flattened():
    from edgekit._keras import keras, layers

    inner = models.create("mobilenet_v1", weights="none", alpha=0.25, resolution=32, include_top=False)
    inp = layers.Input((32, 32, 3))
    x = inner(inp)
    out = layers.Dense(10, name="head")(layers.GlobalAveragePooling2D(name="gap")(x))
    outer = keras.Model(inp, out, name="transfer")
    rep = profile(outer)
    flat = profile(inner)
    assert rep.total_params == outer.count_params()
    assert rep.total_mult_adds == flat.total_mult_adds + 256 * 10
    assert f"{inner.name}/conv_dw_1" in {r.name for r in rep.layers}
    assert len(rep.separable) == 13
    assert rep.peak_memory.elements >= flat.peak_memory.elements
    assert sum(n for _, n in rep.peak_memory.live_tensors) == rep.peak_memory.elements


def test_sequential_and_model_file(tmp_path):
    from edgekit._keras import keras, layers

    seq = keras.Sequential([layers.Input((16, 16, 1)), layers.Conv2D(4, 3, name="conv"), layers.Flatten(name="flat"),
                            layers.Dense(2, name="fc")], name="seq")
    path = tmp_path / "seq.keras"
    seq.save(str(path))
    rep = profile(str(path))
    assert rep.model == "seq"
    macs = {r.name: r.mult_adds for r in rep.layers if r.type != "InputLayer"}
    assert macs == {"conv": 14 * 14 * 9 * 4, "flat": 0, "fc": 784 * 2}
    assert rep.total_params == seq.count_params()


def test_subclassed_parts():
    from edgekit._keras import keras, layers

    class Block(keras.Model):
        def __init__(self):
            super().__init__(name="block")
            self.conv = layers.Conv2D(2, 3)

        def call(self, x):
            return self.conv(x)

    inp = layers.Input((8, 8, 1))
    outer = keras.Model(inp, layers.Dense(3, name="fc")(layers.Flatten(name="flat")(Block()(inp))))
    rep = profile(outer)
    assert rep.total_params == outer.count_params()
    assert {r.name: r.mult_adds for r in rep.layers}["fc"] == 72 * 3
    assert any("block is a subclassed model" in n for n in rep.notes)
    alone = Block()
    alone.build((None, 8, 8, 1))
    with pytest.raises(InvalidArgument, match="not a functional or Sequential"):
        profile(alone)


def test_unknown_input_size_is_rejected():
    from edgekit._keras import keras, layers

    inp = layers.Input((None, None, 3))
    m = keras.Model(inp, layers.Conv2D(2, 3)(inp))
    with pytest.raises(InvalidArgument, match="unknown shape"):
        profile(m)


def test_options_with_a_built_model_are_rejected():
    with pytest.raises(InvalidArgument, match="zoo names"):
        profile(_toy(), alpha=0.5)
