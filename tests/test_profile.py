"""Profiling: MACs and parameters against hand counts, measured activation memory, Table 4."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from jnet.cli import main
from jnet.deploy.profile import (
    MB,
    PAPER_TABLE4,
    count_macs,
    format_paper_table,
    measure_memory,
    paper_table,
    profile_model,
    summarize,
    summary_style_mb,
    table4_output_size,
    weights_mb,
)
from jnet.model import JNet

# U-Net, width 2 (channels 2, 4, 8, 16, 32 at 16, 8, 4, 2, 1 px), one input channel, K = 1, on a
# 16x16 input, with the J-Net head up to 64x64 (m = 2 stages, stage 2 a skip stage). By hand:
# a 3x3 conv costs 9 * Cin * Cout MACs per output pixel; a 2x2 stride-2 transposed conv
# costs 4 * Cin * Cout per *input* pixel; a 1x1 conv Cin * Cout per pixel.
UNET2_ENCODER_MACS = 5 * 13_824  # every level: 9 (cin c + c c) pixels = 13,824 (e.g. 9 * (1*2 + 2*2) * 256)
UNET2_UP_MACS = 4 * 2_048  # ConvT per level: 4 * c_{i+1} * c_i * (input pixels), e.g. 4 * 32 * 16 * 1
UNET2_DECODER_MACS = 4 * 27_648  # DoubleConv(2c, c): 9 (2c c + c c) pixels, e.g. 9 * (8 + 4) * 256
UNET2_CLASSIFIER_MACS = 2 * 1 * 256
UNET2_BACKBONE_MACS = UNET2_ENCODER_MACS + UNET2_UP_MACS + UNET2_DECODER_MACS + UNET2_CLASSIFIER_MACS  # 188,416
# head: ConvT 16->32 (256 * 4), conv 3x3 at 32 (1024 * 9), ConvT 32->64 (1024 * 4),
# stretch: ConvT 16->32 (256 * 4), ConvT 32->64 (1024 * 4), conv 3x3 at 64 (4096 * 9),
# stage-2 conv reading 2 channels at 64 (4096 * 18)
JNET_HEAD_16_64_MACS = 1_024 + 9_216 + 4_096 + 1_024 + 4_096 + 36_864 + 73_728  # 130,048
# the same head compiled (jnet.compiled): the 64x64 output's 4x4 blocks as K r^2 = 16 channels of
# one conv per border region at 16x16: the 14x14 interior reads 3x3 taps, each of the 4 edges
# (14 pixels) 2x3 taps, each of the 4 corners 2x2 taps; 16 MACs per tap and pixel
JNET_HEAD_16_64_COMPILED_MACS = 16 * (14 * 14 * 9 + 4 * 14 * 6 + 4 * 4)  # 33,856

# parameters: DoubleConv(a, b) = 9ab + 9bb + 2 * 2b (two bias-free convs, two batch norms)
UNET2_PARAMS = (
    (62 + 232 + 896 + 3_520 + 13_952)  # encoder: (1,2) (2,4) (4,8) (8,16) (16,32)
    + (2_064 + 520 + 132 + 34)  # ConvT(c_{i+1} -> c_i): 4 c_{i+1} c_i + c_i
    + (6_976 + 1_760 + 448 + 116)  # decoders DoubleConv(2c, c) = 27 c^2 + 4c for c = 16, 8, 4, 2
    + 3  # classifier 1x1, 2 -> 1, with bias
)  # 30,715
JNET_HEAD_16_64_PARAMS = 2 * 5 + 1 * 10 + 1 * 19 + 2 * 5 + 1 * 10  # 59 (JNetHead's closed form)


def unet2(**options: object) -> JNet:
    return JNet("unet", 1, 16, 64, head="jnet", backbone_options={"width": 2}, **options)


def test_hand_counted_macs_of_the_compiled_head() -> None:
    model = unet2()
    assert JNET_HEAD_16_64_COMPILED_MACS == 33_856
    assert count_macs(model, (1, 1, 16, 16)) == UNET2_BACKBONE_MACS + JNET_HEAD_16_64_COMPILED_MACS
    info = summarize(model)
    assert info["head_form"] == "compiled" and info["head_params"] == JNET_HEAD_16_64_PARAMS
    assert info["gmacs"] == pytest.approx(222_272 / 1e9)
    assert info["head_gmacs"] == pytest.approx(JNET_HEAD_16_64_COMPILED_MACS / 1e9)
    assert summarize(JNet("unet", 1, 16, 64, head="none", backbone_options={"width": 2}))["head_form"] == "modules"


def test_hand_counted_macs_and_parameters() -> None:
    model = unet2(compiled_head=False)  # the cascade, as the paper counts it
    assert UNET2_BACKBONE_MACS == 188_416
    assert count_macs(model.backbone, (1, 1, 16, 16)) == UNET2_BACKBONE_MACS
    assert count_macs(model, (1, 1, 16, 16)) == UNET2_BACKBONE_MACS + JNET_HEAD_16_64_MACS
    assert count_macs(model, (3, 1, 16, 16)) == 3 * (UNET2_BACKBONE_MACS + JNET_HEAD_16_64_MACS)
    info = summarize(model)
    assert info["head_form"] == "modules"
    assert info["params"] == UNET2_PARAMS + JNET_HEAD_16_64_PARAMS == 30_774
    assert info["head_params"] == JNET_HEAD_16_64_PARAMS
    assert info["gmacs"] == pytest.approx(318_464 / 1e9)
    assert info["head_gmacs"] == pytest.approx(JNET_HEAD_16_64_MACS / 1e9)


def test_macs_of_single_layers() -> None:
    assert count_macs(nn.Conv2d(3, 5, 3, padding=1), (2, 3, 8, 8)) == 2 * 64 * 9 * 3 * 5
    assert count_macs(nn.ConvTranspose2d(3, 5, 2, stride=2), (1, 3, 8, 8)) == 64 * 4 * 3 * 5
    assert count_macs(nn.Linear(10, 4), (2, 10)) == 80


def test_memory_of_a_conv_chain_by_hand() -> None:
    # conv 1->4 (4*64 floats = 1024 B), in-place ReLU (same storage), conv 4->2 (512 B) while the
    # first output is still alive: peak 1536 B; everything created: 1536 B
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3, padding=1))
    mem = measure_memory(net, (1, 1, 8, 8))
    assert mem["peak_bytes"] == 1536
    assert mem["allocated_mb"] * MB == 1536
    # views are not new memory; an out-of-place op is
    view = measure_memory(nn.Flatten(), (2, 3, 4, 4))
    assert view["peak_bytes"] == 0
    assert measure_memory(nn.ReLU(), (2, 3, 4, 4))["peak_bytes"] == 2 * 3 * 16 * 4


def test_memory_counts_the_same_on_cpu_and_meta() -> None:
    model = unet2()
    cpu = measure_memory(model, (2, 1, 16, 16))
    meta = measure_memory(model, (2, 1, 16, 16), device="meta")
    assert cpu["peak_bytes"] == meta["peak_bytes"] > 0
    # the final output alone (2 x 64 x 64 floats) is part of the peak
    assert cpu["peak_bytes"] >= 2 * 64 * 64 * 4


def test_training_step_memory() -> None:
    model = unet2()
    before = [p.detach().clone() for p in model.parameters()]
    step = measure_memory(model, (2, 1, 16, 16), train=True)
    eval_peak = measure_memory(model, (2, 1, 16, 16))["peak_bytes"]
    params = sum(p.numel() * 4 for p in model.parameters())
    # saved activations, gradients and every parameter's .grad are live at once
    assert step["peak_bytes"] > eval_peak
    assert step["peak_bytes"] >= params
    assert all(p.grad is None for p in model.parameters())  # the model itself is untouched
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="meta"):
        measure_memory(model, (2, 1, 16, 16), train=True, device="meta")


def test_weights_and_summary_style() -> None:
    conv = nn.Conv2d(1, 4, 3, padding=1)
    assert weights_mb(conv) * MB == (36 + 4) * 4
    assert summary_style_mb(conv, (1, 1, 8, 8)) * MB == 2 * 4 * 64 * 4
    bn = nn.BatchNorm2d(3)
    assert weights_mb(bn) * MB == (3 + 3 + 3 + 3) * 4 + 8  # weight, bias, running mean/var, num_batches_tracked


def test_profile_model_keys() -> None:
    info = profile_model(unet2(), train=True)
    assert info["params"] == 30_774
    assert info["train_batch_size"] == 2 and info["batch_size"] == 1
    assert 0 < info["activation_mb"] < info["train_step_mb"]
    assert info["summary_style_mb"] > info["activation_mb"]  # the estimate adds every layer up


def test_table4_output_sizes() -> None:
    assert [table4_output_size(s) for s in (320, 160, 80, 32, 16)] == [320, 320, 320, 256, 256]


def test_paper_table_rows() -> None:
    rows = paper_table(sizes=(32, 16), unet_width=2, elunet_width=2)
    assert [(r["network"], r["input_size"], r["output_size"]) for r in rows] == [
        ("U-Net", 32, 32),
        ("U-Net", 16, 16),
        ("ELU-Net", 32, 32),
        ("ELU-Net", 16, 16),
        ("J-Net", 32, 256),
        ("J-Net", 16, 256),
    ]
    unet16 = JNet("unet", 1, 16, 16, head="none", backbone_options={"width": 2})
    assert rows[1]["gmacs"] == pytest.approx(count_macs(unet16, (1, 1, 16, 16)) / 1e9)
    assert rows[5]["paper_gmacs"] == PAPER_TABLE4["J-Net"][16][0] == 0.08
    assert rows[4]["gmacs"] > rows[2]["gmacs"]  # the head adds MACs
    text = format_paper_table(rows)
    assert "J-Net" in text and "5.50" in text and len(text.splitlines()) == 2 + 6 + 1


def test_profile_cli(capsys) -> None:
    argv = ["profile", "--model", "unet", "--width", "2", "--input-size", "16", "--output-size", "64"]
    assert main([*argv, "--json", "--train"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gmacs"] == pytest.approx(222_272 / 1e9)  # the compiled head
    assert info["train_step_mb"] > info["activation_mb"] > 0
    assert main([*argv, "--json", "--cascade-head"]) == 0
    assert json.loads(capsys.readouterr().out)["gmacs"] == pytest.approx(318_464 / 1e9)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "parameters: 30,774 (head 59)" in out and "measured peak" in out
    assert "GMACs/image: 0.0002 (head 0.0000, compiled form; --cascade-head: the cascade's)" in out
    assert main(["profile", "--head", "bicubic"]) == 2
    assert "jnet profile: error: unknown head 'bicubic'" in capsys.readouterr().err
