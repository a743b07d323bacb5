"""The compiled form of the affine J-Net heads: equal to the cascade (borders, tiny inputs, gradients),
used by JNet in evaluation and training, exported to ONNX without full-resolution convolutions."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import jnet
from jnet.compiled import CompiledGuidedHead, CompiledHead, compile_head, is_affine_head
from jnet.heads import create_head

AFFINE = ["jnet", "jnet-noskip", "jnet-single"]
# (input size, output size): square, every J-Net factor to 256, non-square, and the tiny inputs whose
# positions touch both borders (1 pixel) or two opposite ones at once (2 pixels)
SIZES = [
    (16, 256),
    (32, 256),
    (64, 256),
    ((16, 24), (128, 192)),
    (3, 24),
    (2, 32),
    (1, 16),
    ((1, 4), (8, 32)),
    ((4, 2), (16, 8)),
    ((5, 1), (40, 8)),
]

#: the compiled forms are opt-in until the exports and profiles that count their weights and MACs follow them
ON = {"compiled_head": True, "compiled_training": True}


def randomized(head: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter drawn anew (uniform in [-0.6, 0.6]): nothing of the nearest start left."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) * 1.2 - 0.6)
    return head


def max_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert [t.shape for t in a] == [t.shape for t in b]
    return max(float((x.detach().double() - y.detach().double()).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", AFFINE)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize(("size", "out"), SIZES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_equals_the_cascade(name: str, k: int, size, out, dtype: torch.dtype) -> None:
    head = randomized(create_head(name, k, size, out)).to(dtype)
    h, w = head.input_size
    y0 = torch.randn(2, k, h, w, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    compiled = CompiledHead(head)
    with torch.no_grad():
        expected = head(y0)
        got = compiled(y0)  # the region convolutions
        final = compiled(y0, final_only=True)
    trained = compiled(y0.clone().requires_grad_())  # the patch products, kernels derived with autograd
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert max(float(t.abs().max()) for t in expected) > 0.5  # not a vanishing map
    assert max_error(got, expected) <= tol
    assert max_error([t.detach() for t in trained], expected) <= tol
    assert torch.equal(final[0], got[-1])  # the final scale alone is the same computation
    assert len(got) == len(head.scales) and torch.equal(got[0], y0)


@pytest.mark.parametrize("name", AFFINE)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize(("size", "out"), [(16, 128), ((3, 5), (12, 20)), (2, 16), ((1, 3), (8, 24))])
def test_compiled_gradients_equal_the_cascade(name: str, k: int, size, out) -> None:
    head = randomized(create_head(name, k, size, out)).double()
    h, w = head.input_size
    gen = torch.Generator().manual_seed(2)
    y0 = torch.randn(3, k, h, w, generator=gen, dtype=torch.float64)
    weights = [torch.randn(3, k, *s, generator=gen, dtype=torch.float64) for s in head.scales]

    def grads(forward) -> list[torch.Tensor]:
        head.zero_grad()
        x = y0.clone().requires_grad_()
        sum((o * wt).sum() for o, wt in zip(forward(x), weights, strict=True)).backward()
        return [p.grad.clone() for p in head.parameters()] + [x.grad]

    expected, got = grads(head), grads(CompiledHead(head))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "options", "size", "out"),
    [
        ("jnet", {}, 8, 256),  # 5 stages, skips at 4 and 5
        ("jnet", {"skip_stages": [2, 3, 4]}, 8, 128),  # the widest reach: a skip stage at stage 2
        ("jnet-noskip", {}, 8, 128),
        ("jnet-single", {}, 8, 128),  # one 16x16 stride-16 transposed conv, then a 3x3 conv
    ],
)
def test_an_input_pixel_reaches_only_its_3x3_neighbourhood(name: str, options: dict, size: int, out: int) -> None:
    """The claim the compiled form rests on, checked on the cascade itself for an inner pixel and a corner."""
    head = randomized(create_head(name, 1, size, out, **options)).double()
    zero = torch.zeros(1, 1, size, size, dtype=torch.float64)
    with torch.no_grad():
        base = head(zero)
        for p, q in [(4, 3), (0, 0)]:
            impulse = zero.clone()
            impulse[0, 0, p, q] = 1.0
            for y, y_base in zip(head(impulse)[1:], base[1:], strict=True):
                r = y.shape[-1] // size
                moved = (y - y_base).abs()[0, 0] > 1e-12  # (H, W)
                blocks = moved.view(size, r, size, r).any(dim=3).any(dim=1)  # (h, w): which blocks changed
                near = torch.zeros(size, size, dtype=torch.bool)
                near[max(p - 1, 0) : p + 2, max(q - 1, 0) : q + 2] = True
                assert blocks[p, q] and not (blocks & ~near).any()


def test_nine_position_classes_and_the_readout() -> None:
    head = randomized(create_head("jnet", 2, 16, 64))
    scales = compile_head(head)
    assert [(c.ratio, tuple(c.weight.shape), tuple(c.bias.shape)) for c in scales] == [
        (2, (3, 3, 8, 2, 3, 3), (3, 3, 8)),
        (4, (3, 3, 32, 2, 3, 3), (3, 3, 32)),
    ]
    w = scales[-1].weight
    assert (w[0, :, :, :, 0] == 0).all() and (w[:, 2, :, :, :, 2] == 0).all()  # no taps beyond the border
    assert not torch.equal(w[0, 1], w[1, 1]) and not torch.equal(w[0, 0], w[0, 1])  # the classes differ
    assert [c.weight.shape[:2] for c in compile_head(create_head("jnet", 1, (1, 2), (4, 8)))] == [(1, 2), (1, 2)]
    assert is_affine_head(head) and not is_affine_head(create_head("jnet-guided", 1, 16, 64))
    with pytest.raises(ValueError, match="no compiled form"):
        CompiledHead(create_head("interp", 1, 16, 64))


def test_nearest_init_compiles_to_nearest_upsampling() -> None:
    head = create_head("jnet", 3, 16, 128)
    y0 = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for out in CompiledHead(head)(y0)[1:]:
            f = out.shape[-1] // 16
            expected = y0.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_cached_kernels_follow_the_parameters() -> None:
    head = randomized(create_head("jnet", 1, 16, 64))
    compiled = CompiledHead(head)
    y0 = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        before = compiled(y0)[-1]
        assert compiled(y0)[-1] is not before and torch.equal(compiled(y0)[-1], before)
        head.convs[-1].bias += 1.0  # an in-place change, as an optimiser step makes
        after = compiled(y0)[-1]
        torch.testing.assert_close(after, before + 1.0, rtol=0, atol=1e-5)
        head.double()
        torch.testing.assert_close(compiled(y0.double())[-1], head(y0.double())[-1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("head", ["jnet", "jnet-guided"])
def test_eval_after_a_fused_optimiser_step_uses_the_new_weights(head: str) -> None:
    """The fused AdamW step (the trainer's) updates the parameters in place without bumping their
    version counters: the cached kernels must still follow (they once did not, and every validation
    of a compiled training run scored the first epoch's head)."""
    net = model(head)
    opt = torch.optim.AdamW(net.parameters(), lr=0.05, fused=True)
    x = torch.randn(2, 1, 128, 128) if net.full_resolution_input else torch.randn(2, 1, 16, 16)
    net.eval()
    with torch.no_grad():
        first = net(x)
    versions = [p._version for p in net.head.parameters()]
    net.train()
    sum(o.mean() for o in net(x)).backward()
    opt.step()
    assert [p._version for p in net.head.parameters()] == versions  # what made the counter useless
    net.eval()
    cascade = copy.deepcopy(net)
    cascade.compiled_head = False
    with torch.no_grad():
        after, expected = net(x), cascade(x)
    assert not torch.allclose(after, first)
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------
# the image-guided cascade
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "out", "options"),
    [
        (16, 256, {}),
        ((16, 24), (64, 96), {}),
        (2, 16, {}),
        ((1, 3), (8, 24), {}),
        (16, 128, {"gate": False}),
        (16, 128, {"guided_stages": [2, 3]}),
        (16, 128, {"skip": False}),
        (8, 128, {"skip_stages": [2, 4]}),
    ],
)
@pytest.mark.parametrize(("k", "c"), [(1, 1), (3, 2)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_guided_head_equals_the_cascade(size, out, options: dict, k: int, c: int, dtype) -> None:
    head = randomized(create_head("jnet-guided", k, size, out, in_channels=c, **options)).to(dtype)
    gen = torch.Generator().manual_seed(1)
    y0 = (2 * torch.randn(2, k, *head.input_size, generator=gen, dtype=torch.float64)).to(dtype)
    image = torch.randn(2, c, *head.output_size, generator=gen, dtype=torch.float64).to(dtype)
    compiled = CompiledGuidedHead(head)
    with torch.no_grad():
        expected, got = head(y0, image), compiled(y0, image)
        final = compiled(y0, image, final_only=True)
    scale = max(1.0, max(float(t.abs().max()) for t in expected))  # random weights: logits up to ~40
    assert max_error(got, expected) <= (1e-10 if dtype == torch.float64 else 1e-6 * scale)
    assert torch.equal(final[0], got[-1])
    if dtype == torch.float64:  # with autograd: the same outputs, and gradients for every parameter
        outs = compiled(y0, image)
        assert max_error(outs, expected) <= 1e-10
        sum(o.sum() for o in outs[1:]).backward()
        assert all(p.grad is not None for p in head.parameters())


def test_guided_jnet_runs_the_compiled_form_in_eval_only(monkeypatch) -> None:
    import jnet.heads

    monkeypatch.setattr(jnet.heads, "_fast_path", lambda x: False)
    net, cascade = model("jnet-guided"), model("jnet-guided", compiled_head=False)
    cascade.load_state_dict(net.state_dict())
    x = torch.randn(2, 1, 128, 128)
    net.eval()
    cascade.eval()
    calls: list[str] = []
    hook = net.head.convs[-1].register_forward_hook(lambda m, a, o: calls.append("conv"))
    with torch.no_grad():
        torch.testing.assert_close(net(x), cascade(x), rtol=0, atol=1e-5)
    assert calls == []  # the stage convs at the output resolution did not run
    net.train()
    net(x)
    hook.remove()
    assert calls == ["conv"]  # training keeps the cascade


# ------------------------------------------------------------------------------------------
# JNet: evaluation, training, state dicts
# ------------------------------------------------------------------------------------------


def model(head: str = "jnet", k: int = 1, **kwargs) -> jnet.JNet:
    torch.manual_seed(0)
    net = jnet.JNet("unet", k, 16, 128, head=head, backbone_options={"width": 2}, **{**ON, **kwargs})
    randomized(net.head, seed=3)
    return net


def head_calls(net: jnet.JNet, batch: int = 2) -> list[str]:
    """Runs one forward on ``batch`` images; returns the head's layers that ran on them (none when the
    compiled form runs: its kernels come from the layers applied to impulses, a batch of another size)."""
    called: list[str] = []

    def hook(name: str):
        return lambda module, args, out: called.append(name) if args[0].shape[0] == batch else None

    hooks = [m.register_forward_hook(hook(n)) for n, m in net.head.named_modules() if n]
    try:
        net(torch.randn(batch, 1, 16, 16))
    finally:
        for h in hooks:
            h.remove()
    return called


@pytest.mark.parametrize("head", AFFINE)
def test_jnet_uses_the_compiled_head_and_equals_the_cascade(head: str, monkeypatch) -> None:
    import jnet.heads

    monkeypatch.setattr(jnet.heads, "_fast_path", lambda x: False)  # the cascade through its modules' forward
    net, cascade = model(head), model(head, compiled_head=False, compiled_training=False)
    cascade.load_state_dict(net.state_dict())
    assert net.config["compiled_head"] is True and cascade.config["compiled_head"] is False
    assert list(net.state_dict()) == list(cascade.state_dict())  # nothing derived is stored
    x = torch.randn(4, 1, 16, 16)
    net.eval()
    cascade.eval()
    assert head_calls(net) == [] and head_calls(cascade) != []
    with torch.no_grad():
        torch.testing.assert_close(net(x), cascade(x), rtol=0, atol=1e-5)
        net.return_all = cascade.return_all = True
        assert max_error(net(x), cascade(x)) <= 1e-5
    net.train()
    cascade.train()
    assert head_calls(net) == [] and head_calls(cascade) != []
    assert max_error(net(x), cascade(x)) <= 1e-5


def test_training_through_the_compiled_head_equals_the_cascade() -> None:
    """Outputs, loss and every parameter's gradient of a training step, then the next step's outputs."""
    from jnet.losses import MultiScaleLoss

    net = model("jnet", k=3).double()
    cascade = copy.deepcopy(net)
    cascade.compiled_training = False
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    target = torch.randint(0, 3, (4, 128, 128))
    criterion = MultiScaleLoss("dice_ce")
    for _ in range(2):
        losses = []
        for m in (net, cascade):
            m.train().zero_grad()
            loss = criterion(m(x), target)
            loss.backward()
            losses.append(loss)
        # (the loss computes in float32: agreement to its precision; the head alone in float64 is tested above)
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-7)
        for (name, a), b in zip(net.named_parameters(), cascade.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
        for m in (net, cascade):  # the same step on both; the compiled kernels must follow it
            with torch.no_grad():
                for p in m.parameters():
                    p -= 0.1 * p.grad
    net.eval()
    cascade.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), cascade(x), rtol=0, atol=1e-6)


def test_state_dict_round_trip_with_compiled_on_and_off(tmp_path) -> None:
    from jnet.training.checkpoint import load_checkpoint, save_checkpoint

    net = model("jnet").eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        expected = net(x)
    save_checkpoint(tmp_path / "c.pt", net)
    for compiled in (True, False):
        other = model("jnet", compiled_head=compiled).eval()
        randomized(other.head, seed=9)
        with torch.no_grad():
            stale = other(x)  # the kernels of the old weights are cached now ...
            other.load_state_dict(net.state_dict())  # ... and must not survive this
            torch.testing.assert_close(other(x), expected, rtol=0, atol=1e-5)
        assert not torch.allclose(stale, expected)
    loaded, _ = load_checkpoint(tmp_path / "c.pt")
    assert loaded.config["compiled_head"] is True
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
    old_style = {k: v for k, v in net.config.items() if not k.startswith("compiled")}  # a checkpoint from before
    assert jnet.JNet.from_config(old_style).config["compiled_head"] is True  # the default


def test_heads_without_a_compiled_form_are_left_alone() -> None:
    for head in ("interp", "none", "guided"):
        net = model(head).eval()
        assert net.config["compiled_head"] is True  # the option exists, there is nothing to compile
        with torch.no_grad():
            x = torch.randn(2, 1, *net.image_size)
            assert net(x).shape[-2:] == net.scales[-1]


def test_macs_are_counted_on_the_meta_device() -> None:
    from jnet.deploy.profile import count_macs

    compiled, cascade = model("jnet"), model("jnet", compiled_head=False)
    backbone = count_macs(compiled.backbone, (1, 1, 16, 16))
    # 16 -> 128: a 3x3 conv with 8^2 = 64 output channels at each 16x16 position, less the taps that a
    # border region's kernel drops: (3h - 2)(3w - 2) taps in all; the cascade runs 3 stages at 32 to 128
    assert count_macs(compiled, (1, 1, 16, 16)) - backbone == 64 * (3 * 16 - 2) ** 2
    assert count_macs(cascade, (1, 1, 16, 16)) - backbone == 610_304  # 4.5 times as many


# ------------------------------------------------------------------------------------------
# ONNX
# ------------------------------------------------------------------------------------------


class PlainNet(nn.Module):
    """A backbone of plain convolutions (no transposed conv), so that any in the graph is the head's."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, k, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def conv_output_sizes(path) -> list[tuple[int, int]]:
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.value_info, *graph.output]}
    return [tuple(shapes[n.output[0]][-2:]) for n in graph.node if n.op_type == "Conv"]


@pytest.mark.slow
@pytest.mark.parametrize("head", AFFINE)
@pytest.mark.parametrize("k", [1, 3])
def test_onnx_export_of_the_compiled_head(head: str, k: int, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from jnet.deploy.export import export_onnx, op_counts
    from jnet.deploy.onnxrt import ort_session, run_onnx

    torch.manual_seed(0)
    net = jnet.JNet(PlainNet(k), k, 16, 256, head=head, full_resolution_input=True, **ON)
    randomized(net.head, seed=4)
    cascade = copy.deepcopy(net)
    cascade.compiled_head = False
    path = export_onnx(net.eval(), tmp_path / "m.onnx")
    ops = op_counts(path)
    assert "ConvTranspose" not in ops and ops["DepthToSpace"] == 1
    assert max(max(s) for s in conv_output_sizes(path)) <= 16  # every conv at the 16x16 input resolution
    x = torch.randn(3, 1, 256, 256)
    with torch.no_grad():
        expected = cascade.eval()(x).numpy()
    got = run_onnx(ort_session(path, threads=1), x)
    assert got.shape == expected.shape == (3, k, 256, 256)
    assert np.abs(got - expected).max() <= 1e-4
    # the cascade's own export, for comparison: transposed convs and convolutions at 256x256
    cascade_ops = op_counts(export_onnx(cascade, tmp_path / "c.onnx"))
    assert cascade_ops["ConvTranspose"] > 0 and (256, 256) in conv_output_sizes(tmp_path / "c.onnx")


@pytest.mark.slow
def test_onnx_export_of_a_registered_backbone_adds_no_transposed_conv(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from jnet.deploy.export import export_onnx, max_abs_diff, op_counts

    kwargs = {"backbone_options": {"width": 4}, "full_resolution_input": True}
    torch.manual_seed(0)
    net = jnet.JNet("elunet", 1, 32, 256, head="jnet", **{**ON, **kwargs})
    randomized(net.head, seed=5)
    none = jnet.JNet("elunet", 1, 32, 256, head="none", **{**ON, **kwargs})
    ops, base = op_counts(export_onnx(net, tmp_path / "j.onnx")), op_counts(export_onnx(none, tmp_path / "n.onnx"))
    assert ops.get("ConvTranspose") == base.get("ConvTranspose")
    assert max_abs_diff(net, tmp_path / "j.onnx", torch.randn(2, 1, 256, 256)) <= 1e-4


@pytest.mark.slow
def test_onnx_export_of_the_compiled_guided_head(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from jnet.deploy.export import export_onnx
    from jnet.deploy.onnxrt import ort_session, run_onnx

    torch.manual_seed(0)
    net = jnet.JNet(PlainNet(1), 1, 16, 128, head="jnet-guided", **ON)
    randomized(net.head, seed=6)
    cascade = copy.deepcopy(net)
    cascade.compiled_head = False
    path = export_onnx(net.eval(), tmp_path / "g.onnx")
    assert (128, 128) not in conv_output_sizes(path)  # the image's conv runs as a (flipped) transposed conv
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        expected = cascade.eval()(x).numpy()
    assert np.abs(run_onnx(ort_session(path, threads=1), x) - expected).max() <= 1e-4


@pytest.mark.slow
def test_export_cli_compiles_by_default_and_keeps_the_cascade_on_request(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from jnet.cli import main
    from jnet.deploy.export import op_counts, read_metadata
    from jnet.deploy.onnxrt import ort_session, run_onnx
    from jnet.training.checkpoint import load_checkpoint, save_checkpoint

    net = model("jnet")
    save_checkpoint(tmp_path / "c.pt", net)
    assert load_checkpoint(tmp_path / "c.pt")[0].head_form == "compiled"
    assert load_checkpoint(tmp_path / "c.pt", compiled_head=False)[0].head_form == "modules"
    compiled, cascade = tmp_path / "compiled.onnx", tmp_path / "cascade.onnx"
    assert main(["export", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(compiled)]) == 0
    assert main(["export", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(cascade), "--cascade-head"]) == 0
    assert read_metadata(compiled)["model_config"]["compiled_head"] is True
    assert read_metadata(cascade)["model_config"]["compiled_head"] is False
    ops_compiled, ops_cascade = op_counts(compiled), op_counts(cascade)
    assert ops_compiled["DepthToSpace"] == 1 and "DepthToSpace" not in ops_cascade
    # the head 16 -> 128: 3 stages (a ConvTranspose each), skip stages 2 and 3 stretch y0 by 2 and 3 more
    assert ops_cascade["ConvTranspose"] == ops_compiled["ConvTranspose"] + 3 + 2 + 3
    x = torch.randn(2, 1, 128, 128)
    a, b = (run_onnx(ort_session(p, threads=1), x) for p in (compiled, cascade))
    assert np.abs(a - b).max() <= 1e-4


@pytest.mark.slow
def test_evaluate_scores_every_slice_the_same_with_the_cascade(tmp_path) -> None:
    from jnet.cli import main
    from jnet.training.scores import read_scores

    threads = torch.get_num_threads()
    tiny = ["--data", "synthetic", "--option", "num_patients=3", "--option", "slices_per_patient=2",
            "--output-size", "64", "--model", "unet", "--width", "2", "--batch-size", "2",
            "--threads", "1"]  # fmt: skip
    assert main(["train", *tiny, "--epochs", "2", "--out", str(tmp_path / "run")]) == 0
    torch.set_num_threads(threads)
    checkpoint = str(tmp_path / "run" / "checkpoint_best.pt")
    for name, flags in (("compiled", []), ("cascade", ["--cascade-head"])):
        assert main(["evaluate", "--checkpoint", checkpoint, "--scores", str(tmp_path / f"{name}.csv"), *flags]) == 0
    a, b = read_scores(tmp_path / "compiled.csv"), read_scores(tmp_path / "cascade.csv")
    assert len(a.dice) == len(b.dice) >= 1
    assert np.abs(a.dice - b.dice).max() <= 1e-4 and np.abs(a.jaccard - b.jaccard).max() <= 1e-4
    written = read_scores(tmp_path / "run" / "val_scores.csv")  # training scored the best epoch the same way
    assert np.abs(written.dice - a.dice).max() <= 1e-4
