"""The full-resolution deployment model and the image-guided heads (issue 6).

Down-sampling inside the model equals the data pipeline's; a full-resolution model equals the
low-resolution one fed by the pipeline; guided heads: shapes, exact parameter counts, start
states, gradients, hand-checkable guided-filter cases, fast kernels, training and export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jnet
import jnet.heads
from jnet.data import downsample, load_data
from jnet.heads import GuidedJNetHead, JNetHead, create_head, head_needs_image
from jnet.resize import downsample_image
from jnet.training.checkpoint import load_checkpoint, save_checkpoint

GUIDED = ["jnet-guided", "guided"]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------------------
# down-sampling: one function for the pipeline and the model
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64, 256])
def test_area_downsample_is_block_mean_and_bit_equal_to_interpolate(size: int) -> None:
    x = torch.randn(3, 2, 256, 256, generator=torch.Generator().manual_seed(0))
    got = downsample_image(x, (size, size))
    assert torch.equal(got, F.interpolate(x, size=(size, size), mode="area"))
    f = 256 // size  # hand check of one block
    torch.testing.assert_close(got[1, 1, 2, 3], x[1, 1, 2 * f : 3 * f, 3 * f : 4 * f].mean())


def test_downsample_other_sizes_and_modes() -> None:
    x = torch.randn(2, 1, 60, 90, generator=torch.Generator().manual_seed(0))
    assert torch.equal(downsample_image(x, (16, 16)), F.interpolate(x, size=(16, 16), mode="area"))
    bil = F.interpolate(x, size=(15, 30), mode="bilinear", align_corners=False, antialias=False)
    assert torch.equal(downsample_image(x, (15, 30), "bilinear"), bil)
    same = downsample_image(x, (60, 90))
    assert torch.equal(same, x) and same.data_ptr() != x.data_ptr()
    with pytest.raises(ValueError, match="cannot down-sample 60x90 images to the larger size 64x64"):
        downsample_image(x, (64, 64))
    with pytest.raises(ValueError, match="unknown downsample mode 'nearest'"):
        downsample_image(x, (16, 16), "nearest")


@pytest.mark.parametrize("mode", ["area", "bilinear"])
def test_full_resolution_model_equals_the_pipeline_fed_model(mode: str) -> None:
    torch.manual_seed(0)
    low = jnet.JNet("elunet", 1, 16, 128, backbone_options={"width": 2}, downsample_mode=mode).eval()
    full = jnet.JNet("elunet", 1, 16, 128, backbone_options={"width": 2}, downsample_mode=mode,
                     full_resolution_input=True).eval()  # fmt: skip
    full.load_state_dict(low.state_dict())  # the same weights: the flag adds no parameter
    images = np.random.default_rng(0).normal(size=(5, 1, 128, 128)).astype(np.float32)
    assert low.image_size == (16, 16) and full.image_size == (128, 128)
    with torch.no_grad():
        expected = low(downsample(images, 16, mode))  # what training fed the model
        got = full(torch.from_numpy(images))
    assert torch.equal(got, expected)


def test_full_resolution_flag_errors_and_config() -> None:
    net = jnet.JNet("elunet", 1, 16, 64, backbone_options={"width": 2}, full_resolution_input=True)
    with pytest.raises(
        ValueError, match=r"built for full-resolution \(B, C, 64, 64\) inputs, got shape \(1, 1, 16, 16\)"
    ):
        net(torch.zeros(1, 1, 16, 16))
    assert net.config["full_resolution_input"] is True
    net.full_resolution_input = False  # a plain head can switch: same weights
    assert net.image_size == (16, 16) and net.config["full_resolution_input"] is False
    for head in GUIDED:
        g = jnet.JNet("elunet", 1, 16, 64, head=head, backbone_options={"width": 2})
        assert head_needs_image(head) and g.full_resolution_input and g.image_size == (64, 64)
        with pytest.raises(ValueError, match=f"the '{head}' head reads the full-resolution image"):
            g.full_resolution_input = False
        with pytest.raises(ValueError, match="full_resolution_input cannot be False"):
            jnet.JNet("elunet", 1, 16, 64, head=head, full_resolution_input=False)
    assert not any(head_needs_image(h) for h in ("jnet", "jnet-noskip", "jnet-single", "interp", "none"))


def test_checkpoint_loads_as_the_deployment_model(tmp_path) -> None:
    torch.manual_seed(0)
    net = jnet.JNet("unet", 1, 16, 64, backbone_options={"width": 2}).eval()
    save_checkpoint(tmp_path / "c.pt", net, train_config={"downsample_mode": "bilinear"})
    kept, _ = load_checkpoint(tmp_path / "c.pt")
    full, _ = load_checkpoint(tmp_path / "c.pt", full_resolution_input=True)
    assert not kept.full_resolution_input and full.full_resolution_input
    assert full.downsample_mode == "area"  # the model's own setting wins over the training config's
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(full(x), kept(downsample(x, 16)))


# ------------------------------------------------------------------------------------------
# guided heads
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", GUIDED)
@pytest.mark.parametrize("r", [16, 32, 64])
@pytest.mark.parametrize("k", [1, 3])
def test_guided_shape_table(head: str, r: int, k: int) -> None:
    net = jnet.JNet("elunet", k, r, 256, head=head, in_channels=2, backbone_options={"width": 2})
    outs = net.train()(torch.randn(2, 2, 256, 256))
    m = {16: 4, 32: 3, 64: 2}[r]
    sides = [r * 2**i for i in range(m + 1)] if head == "jnet-guided" else [r, 256]
    assert [tuple(o.shape) for o in outs] == [(2, k, s, s) for s in sides]
    assert net.eval()(torch.randn(1, 2, 256, 256)).shape == (1, k, 256, 256)


@pytest.mark.parametrize(
    ("k", "c", "r", "guided", "expected"),
    [
        (1, 1, 16, None, 133 + 4 * 18),  # 16 -> 256, all four stages read 2 image channels (9 weights each)
        (1, 1, 32, None, 108 + 3 * 18),  # 32 -> 256: m = 3
        (1, 4, 16, (3, 4), 133 + 2 * 9 * 8),  # BraTS-like: 4 modalities, the top two stages guided
        (3, 1, 16, (4,), 1095 + 9 * 3 * 2),  # K = 3
    ],
)
def test_guided_cascade_parameter_count(k: int, c: int, r: int, guided: tuple | None, expected: int) -> None:
    head = create_head("jnet-guided", k, r, 256, in_channels=c, guided_stages=guided)
    m = {16: 4, 32: 3}[r]
    stages = guided if guided is not None else range(1, m + 1)
    assert n_params(head) == expected == GuidedJNetHead.count_guided_parameters(k, m, head.skip_stages, c, stages)


def test_plain_counts_used_above_by_hand() -> None:
    # 32 -> 256, K = 1: m = 3, skip stages {2, 3}: 3*5 (ConvTs) + 1*10 (conv) + 2*19 (2-input convs)
    # + (2 + 3)*5 (stretching ConvTs) + 2*10 (stretching convs) = 108
    assert JNetHead.count_parameters(1, 3, (2, 3)) == 15 + 10 + 38 + 25 + 20 == 108
    # K = 3, 16 -> 256: ConvT 39, conv 84, 2-input conv 165: 4*39 + 2*84 + 2*165 + 7*39 + 2*84
    assert JNetHead.count_parameters(3, 4, (3, 4)) == 156 + 168 + 330 + 273 + 168 == 1095


@pytest.mark.parametrize(("c", "hidden", "expected"), [(1, 0, 1), (4, 0, 4), (1, 8, 24), (4, 8, 8 * 6)])
def test_guided_filter_parameter_count(c: int, hidden: int, expected: int) -> None:
    assert n_params(create_head("guided", 2, 16, 256, in_channels=c, hidden=hidden)) == expected


def test_guided_cascade_starts_as_the_plain_jnet_head() -> None:
    torch.manual_seed(0)
    plain = create_head("jnet", 2, 16, 128, init="default")
    torch.manual_seed(0)
    guided = create_head("jnet-guided", 2, 16, 128, init="default")  # same draws, image weights zeroed
    y0, image = torch.randn(3, 2, 16, 16), torch.randn(3, 1, 128, 128)
    for a, b in zip(plain(y0), guided(y0, image), strict=True):
        assert torch.equal(a, b)


def test_guided_cascade_image_acts_only_where_the_logits_are_unsure() -> None:
    head = create_head("jnet-guided", 1, 16, 64).eval()
    with torch.no_grad():
        for conv in head.convs:
            conv.weight[:, -2:] = 1.0  # switch the image on at every stage
    image = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    sure = torch.full((2, 1, 16, 16), 30.0)  # 4 p (1 - p) ~ 4e-13: the gate is shut
    plain = create_head("jnet", 1, 16, 64).eval()
    torch.testing.assert_close(head(sure, image)[-1], plain(sure)[-1], rtol=0, atol=1e-9)
    unsure = torch.zeros(2, 1, 16, 16)  # the gate is fully open: the output follows the image
    assert head(unsure, image)[-1].abs().max() > 1.0
    ungated = create_head("jnet-guided", 1, 16, 64, gate=False).eval()
    with torch.no_grad():
        for conv in ungated.convs:
            conv.weight[:, -2:] = 1.0
    assert (ungated(sure, image)[-1] - 30.0).abs().max() > 1.0  # without the gate it paints everywhere


def test_uncertainty_gate_values() -> None:
    from jnet.heads import _uncertainty

    assert _uncertainty(torch.tensor([[[[0.0]]]])).item() == 1.0
    torch.testing.assert_close(_uncertainty(torch.tensor([[[[float(np.log(3.0))]]]])), torch.tensor([[[[0.75]]]]))
    three = torch.tensor([0.0, 0.0, 0.0]).view(1, 3, 1, 1)  # a tie of 3 classes: 1
    torch.testing.assert_close(_uncertainty(three), torch.ones(1, 1, 1, 1))
    sure = torch.tensor([50.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert _uncertainty(sure).item() < 1e-12


def test_guided_filter_flat_image_is_interp() -> None:
    # a constant guide has no variance and no covariance: A = 0, so the detail form adds nothing
    head = create_head("guided", 1, 16, 128)
    y0 = torch.randn(2, 1, 16, 16)
    got = head(y0, torch.full((2, 1, 128, 128), 0.7))
    torch.testing.assert_close(got[1], F.interpolate(y0, size=(128, 128), mode="bilinear"), rtol=0, atol=1e-6)
    assert torch.equal(got[0], y0)


@pytest.mark.parametrize("form", ["detail", "filter"])
def test_guided_filter_recovers_logits_linear_in_the_image(form: str) -> None:
    # logits that are exactly 3 g + 1 of the guide at low resolution come out as 3 g + 1 at full resolution
    head = create_head("guided", 1, 16, 64, eps=1e-8, form=form)
    with torch.no_grad():  # identity guide
        head.guide[0].weight.fill_(1.0)
    image = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)).double()
    head = head.double()
    y0 = 3 * downsample_image(image, (16, 16)) + 1
    torch.testing.assert_close(head(y0, image)[1], 3 * image + 1, rtol=0, atol=1e-4)


def test_guided_filter_hand_computed_coefficient() -> None:
    # radius 1 around pixel (1, 1) of a 3x3 input covers all of it: A there is cov(g, y) / (var(g) + eps)
    head = create_head("guided", 1, 3, 6, eps=0.5)
    with torch.no_grad():
        head.guide[0].weight.fill_(1.0)
    g = torch.arange(9.0).view(1, 1, 3, 3)
    y = torch.tensor([1.0, 0, 2, 0, 1, 0, 2, 0, 1]).view(1, 1, 3, 3)
    cov = (g * y).mean() - g.mean() * y.mean()
    var = (g * g).mean() - g.mean() ** 2
    a = cov / (var + 0.5)
    image = F.interpolate(g, size=(6, 6), mode="nearest")  # its 2x2 means are g again
    from jnet.heads import _box

    a_map = (_box(g * y, 1) - _box(g, 1) * _box(y, 1)) / (_box(g * g, 1) - _box(g, 1) ** 2 + 0.5)
    torch.testing.assert_close(a_map[0, 0, 1, 1], a)  # the centre window by hand

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(6, 6), mode="bilinear", align_corners=False)

    torch.testing.assert_close(head(y, image)[1], up(y) + up(a_map) * (image - up(g)))


@pytest.mark.parametrize("head", GUIDED)
def test_gradients_reach_every_guided_parameter(head: str) -> None:
    torch.manual_seed(0)
    net = jnet.JNet("elunet", 1, 16, 128, head=head, backbone_options={"width": 2})
    outs = net.train()(torch.randn(2, 1, 128, 128))
    sum(o.square().mean() for o in outs).backward()
    for name, p in net.head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # the zero-initialised image weights too
    assert all(p.grad is not None for p in net.backbone.parameters())


@pytest.mark.parametrize(("head", "options"), [("jnet-guided", {}), ("guided", {}), ("guided", {"hidden": 4})])
def test_guided_fast_kernels_equal_the_modules(head: str, options: dict, monkeypatch) -> None:
    torch.manual_seed(0)
    h = (
        create_head(head, 1, 16, 128, init="default", **options)
        if head == "jnet-guided"
        else create_head(head, 1, 16, 128, **options)
    )
    with torch.no_grad():
        for p in h.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    h = h.double()  # in float64 the two summation orders agree to ~1e-12 (float32 gradients: ~1e-3 relative)
    y0, image = torch.randn(4, 1, 16, 16).double(), torch.randn(4, 1, 128, 128).double()
    weights = [torch.rand(o.shape, generator=torch.Generator().manual_seed(1)) for o in h(y0, image)]

    def run() -> list[torch.Tensor]:
        h.zero_grad()
        outs = h(y0, image)
        sum((o * w).sum() for o, w in zip(outs, weights, strict=True)).backward()
        return [o.detach() for o in outs] + [p.grad.clone() for p in h.parameters()]

    fast = run()
    monkeypatch.setattr(jnet.heads, "_fast_path", lambda x: False)
    for a, b in zip(fast, run(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_guided_head_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"guided_stages must be a non-empty subset of 1\.\.4"):
        create_head("jnet-guided", 1, 16, 256, guided_stages=(0, 4))
    with pytest.raises(ValueError, match="unknown form 'both'"):
        create_head("guided", 1, 16, 256, form="both")
    with pytest.raises(ValueError, match="radius must be >= 1"):
        create_head("guided", 1, 16, 256, radius=0)
    with pytest.raises(ValueError, match="output size 256x250 is not input size 16x16 times a power of two"):
        create_head("jnet-guided", 1, 16, (256, 250))


# ------------------------------------------------------------------------------------------
# training, evaluation and export of guided models
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", GUIDED)
def test_train_evaluate_export_a_guided_model(head: str, tmp_path) -> None:
    from jnet.deploy.export import max_abs_diff, op_counts
    from jnet.training import TrainConfig, evaluate_checkpoint, fit

    data = load_data("synthetic", num_patients=4, slices_per_patient=6, size=64, seed=0)
    config = TrainConfig(data="synthetic", head=head, input_size=16, output_size=64, epochs=2, batch_size=4,
                         width=2, val_fraction=0.25, augment=True)  # fmt: skip
    result = fit(config, data, tmp_path / "run")
    assert result["epochs_run"] == 2 and np.isfinite(result["history"][-1]["train_loss"])
    options = {"num_patients": 4, "slices_per_patient": 6, "size": 64, "seed": 0}
    scores = evaluate_checkpoint(tmp_path / "run" / "checkpoint_best.pt", "synthetic", data_options=options)
    assert scores["mean_jaccard"] == pytest.approx(result["best"]["mean_jaccard"], abs=1e-6)
    model, _ = load_checkpoint(tmp_path / "run" / "checkpoint_best.pt")
    from jnet.deploy.export import export_onnx

    path = export_onnx(model, tmp_path / "m.onnx")
    assert op_counts(path).get("AveragePool", 0) >= 1  # the model's own down-sampling is in the graph
    x = torch.from_numpy(data.images[:3])
    assert max_abs_diff(model, path, x) <= 1e-4


def test_export_checkpoint_takes_the_full_resolution_image(tmp_path) -> None:
    from jnet.deploy.export import export_checkpoint, network_inputs
    from jnet.deploy.onnxrt import ort_session, run_onnx

    torch.manual_seed(0)
    low = jnet.JNet("unet", 1, 16, 64, backbone_options={"width": 2}).eval()
    save_checkpoint(tmp_path / "c.pt", low)
    data_options = {"num_patients": 2, "slices_per_patient": 4, "size": 64, "seed": 0}
    full_model, _ = load_checkpoint(tmp_path / "c.pt", full_resolution_input=True)
    images, masks = network_inputs("synthetic", full_model, data_options)
    assert images.shape == (8, 1, 64, 64)
    report = export_checkpoint(tmp_path / "c.pt", tmp_path / "m.onnx", validation=(images, masks))
    assert report["input_shape"] == [1, 64, 64] and report["max_abs_diff"] <= 1e-4
    assert report["quality"]["fp32"]["mean_dice"] == pytest.approx(report["quality"]["torch"]["mean_dice"], abs=1e-4)
    got = run_onnx(ort_session(tmp_path / "m.onnx"), images)  # the device feeds the scanner's image ...
    with torch.no_grad():
        expected = low(downsample(images, 16)).numpy()  # ... and gets what training-time inference gives
    assert np.abs(got - expected).max() <= 1e-4
    low_inputs = downsample(images, 16)
    with pytest.raises(
        ValueError, match=r"validation inputs are \(N, 1, 16, 16\) but the exported model reads \(N, 1, 64, 64\)"
    ):
        export_checkpoint(tmp_path / "c.pt", tmp_path / "m2.onnx", validation=(low_inputs, masks))
    report = export_checkpoint(tmp_path / "c.pt", tmp_path / "m3.onnx", validation=(low_inputs, masks),
                               full_resolution_input=False)  # fmt: skip
    assert report["input_shape"] == [1, 16, 16]


def test_export_cli_full_resolution_by_default(tmp_path, capsys) -> None:
    from jnet.cli import main

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "c.pt", jnet.JNet("unet", 1, 16, 64, backbone_options={"width": 2}))
    assert main(["export", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "input (B, 1, 64, 64)" in capsys.readouterr().out
    argv = ["export", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "l.onnx"), "--low-res-input"]
    assert main(argv) == 0
    assert "input (B, 1, 16, 16)" in capsys.readouterr().out
    save_checkpoint(tmp_path / "g.pt", jnet.JNet("unet", 1, 16, 64, head="guided", backbone_options={"width": 2}))
    argv = ["export", "--checkpoint", str(tmp_path / "g.pt"), "--out", str(tmp_path / "g.onnx"), "--low-res-input"]
    assert main(argv) == 2
    assert "the 'guided' head reads the full-resolution image" in capsys.readouterr().err


def test_profile_and_benchmark_of_deployment_models(capsys) -> None:
    from jnet.cli import main

    assert main(["profile", "--head", "guided", "--input-size", "16", "--output-size", "64", "--width", "2"]) == 0
    out = capsys.readouterr().out
    assert "16x16 -> 64x64 (takes the full-resolution image, down-samples it inside)" in out
    assert "(head 1);" in out
    argv = ["benchmark", "--head", "jnet", "--input-size", "16", "--output-size", "64", "--width", "2",
            "--full-resolution-input", "--runs", "2", "--warmup", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["full_resolution_input"] is True and result["head"] == "jnet" and result["latency_ms_median"] > 0
