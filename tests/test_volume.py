"""Per-volume (per-patient 3D) Dice, the largest-3D-component post-processing, and where they show up:
val_scores.csv's counts, metrics.json, jnet evaluate's JSON, the study's results table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from jnet.cli import main
from jnet.metrics import (
    SegmentationMetrics,
    label_components,
    largest_component,
    largest_component_per_class,
    largest_component_per_patient,
    volume_scores,
)
from jnet.study.sweep import (
    RESULT_COLUMNS,
    format_markdown,
    load_sweep,
    median_epoch_seconds,
    result_row,
    summarize,
    write_results,
)
from jnet.training.evaluate import evaluate, format_evaluation
from jnet.training.scores import SCORES_FILE, ImageScores, image_scores, read_scores, write_scores

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "results" / "study_lgg"


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


# ------------------------------------------------------------------------------------------
# volume_scores: hand-computed
# ------------------------------------------------------------------------------------------

# Five slices of three patients, interleaved (a patient's slices need not be adjacent):
#   A: slice 0 tp 3 fp 1 fn 0, slice 2 tp 1 fp 0 fn 2 -> tp 4 fp 1 fn 2 -> 2*4 / (8 + 1 + 2) = 8/11
#   B: slice 1 tp 0 fp 2 fn 0                         -> 0 / 2 = 0
#   C: slices 3, 4 empty in truth and prediction      -> 1 (the empty rule)
PIDS = ["A", "B", "A", "C", "C"]
TP, FP, FN = [[3], [0], [1], [0], [0]], [[1], [2], [0], [0], [0]], [[0], [0], [2], [0], [0]]


def test_volume_dice_hand_computed_on_three_patients() -> None:
    v = volume_scores(TP, FP, FN, PIDS)
    assert v.patient_id.tolist() == ["A", "B", "C"]  # in order of first appearance
    assert v.dice[:, 0].tolist() == pytest.approx([8 / 11, 0.0, 1.0], abs=1e-15)
    assert v.volume_dice == {"foreground": pytest.approx(19 / 33, abs=1e-15)}
    assert v.as_dict() == {"volume_dice": v.volume_dice, "mean_volume_dice": v.mean_volume_dice, "n_volumes": 3}
    assert v.mean_volume_dice == pytest.approx(19 / 33, abs=1e-15)
    # not the mean of the per-slice Dice (6/7, 0, 2/5, 1, 1)
    assert v.mean_volume_dice != pytest.approx((6 / 7 + 0 + 2 / 5 + 1 + 1) / 5)
    # the same from torch tensors, from one-column vectors and from an accumulator's counts
    assert volume_scores(*(torch.tensor(x) for x in (TP, FP, FN)), PIDS).mean_volume_dice == v.mean_volume_dice
    flat = [[row[0] for row in x] for x in (TP, FP, FN)]
    assert volume_scores(*flat, np.array(PIDS)).mean_volume_dice == v.mean_volume_dice


def test_empty_patient_scores_one_or_is_left_out() -> None:
    nan = volume_scores(TP, FP, FN, PIDS, empty="nan")
    assert math.isnan(nan.dice[2, 0])
    assert nan.mean_volume_dice == pytest.approx((8 / 11 + 0) / 2, abs=1e-15)  # C is left out
    only_empty = volume_scores([[0]], [[0]], [[0]], ["Z"], empty="nan")
    assert math.isnan(only_empty.mean_volume_dice) and only_empty.as_dict()["n_volumes"] == 1
    assert volume_scores([[0]], [[0]], [[0]], ["Z"]).mean_volume_dice == 1.0
    # a patient with a false positive but no truth scores 0, whatever the rule
    assert volume_scores([[0]], [[5]], [[0]], ["Z"], empty="nan").mean_volume_dice == 0.0


def test_multi_class_volume_dice_from_label_maps() -> None:
    """K = 3: P1 has only class 1 (perfect; class 2 empty-empty), P2 has both (see the counts below)."""
    m = SegmentationMetrics(num_classes=3, class_names=["core", "edema"])
    m.update(t([[[1, 1, 0, 0], [0, 0, 0, 0]]]), t([[[1, 1, 0, 0], [0, 0, 0, 0]]]))  # P1
    # P2: truth class 1 at (0,0),(0,1), class 2 at (0,2),(0,3),(1,0); prediction 1 at (0,0),(1,1)
    # class 1: tp 1 fp 1 fn 1 -> 2/4; class 2: tp 0 fp 0 fn 3 -> 0
    m.update(t([[[1, 0, 0, 0], [0, 1, 0, 0]]]), t([[[1, 1, 2, 2], [2, 0, 0, 0]]]))
    v = m.volume_scores(["P1", "P2"])
    assert v.dice.tolist() == [[1.0, 1.0], [0.5, 0.0]]
    assert v.as_dict() == {"volume_dice": {"core": 0.75, "edema": 0.5}, "mean_volume_dice": 0.625, "n_volumes": 2}
    nan = SegmentationMetrics(num_classes=3, class_names=["core", "edema"], empty="nan")
    nan.add_counts(*m.counts())
    assert nan.volume_scores(["P1", "P2"]).as_dict()["volume_dice"] == {"core": 0.75, "edema": 0.0}
    assert nan.volume_scores(["P1", "P2"]).mean_volume_dice == 0.375


def test_volume_scores_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="one row per image"):
        volume_scores(TP, FP, FN, PIDS[:4])
    with pytest.raises(ValueError, match="2 class name"):
        volume_scores(TP, FP, FN, PIDS, class_names=["a", "b"])
    with pytest.raises(ValueError, match="no images"):
        volume_scores(np.zeros((0, 1)), np.zeros((0, 1)), np.zeros((0, 1)), [])


# ------------------------------------------------------------------------------------------
# largest connected component
# ------------------------------------------------------------------------------------------


def test_largest_component_keeps_the_bigger_blob_and_joins_across_slices() -> None:
    mask = np.zeros((3, 5, 5), dtype=bool)
    mask[0, 0, 0:2] = mask[1, 0, 1:3] = True  # one blob of 4 voxels over two slices: (0,0,1)-(1,0,1) share a face
    mask[2, 3, 3:5] = mask[2, 4, 3] = True  # 3 voxels in one slice: larger than either 2D part of the first
    labels, n = label_components(mask)
    assert n == 2 and (labels[0:2] == 1).sum() == 4 and (labels[2] == 2).sum() == 3
    kept = largest_component(mask)
    assert kept.sum() == 4 and kept[0:2].sum() == 4 and not kept[2].any()
    # only an edge in common (diagonal across slices) is not a connection: 6-connectivity
    diag = np.zeros((2, 3, 3), dtype=bool)
    diag[0, 0, 0] = diag[1, 1, 0] = True
    assert label_components(diag)[1] == 2
    assert largest_component(np.zeros((2, 2, 2), bool)).sum() == 0


def test_labels_match_scipy_default_structure() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for shape, p in (((6, 9, 11), 0.35), ((4, 16, 16), 0.5), ((7, 7), 0.5)):
        mask = rng.random(shape) < p
        ours, n = label_components(mask)
        theirs, m = ndimage.label(mask)
        assert n == m > 1
        np.testing.assert_array_equal(ours, theirs)


def test_largest_component_per_class_and_per_patient() -> None:
    labels = np.array([[[1, 0, 2, 2], [0, 0, 0, 1], [1, 1, 0, 2]]])  # class 1: sizes 1, 1, 2; class 2: 2, 1
    out = largest_component_per_class(labels, num_classes=3)
    assert out.tolist() == [[[0, 0, 2, 2], [0, 0, 0, 0], [1, 1, 0, 0]]]
    # per patient: slices of "a" are rows 0 and 2 (data order), "b" is row 1; each keeps its own largest blob
    slices = np.zeros((3, 3, 3), dtype=np.uint8)
    slices[0, 0, 0] = slices[2, 0, 0] = 1  # a: touches across its consecutive slices -> 2 voxels
    slices[0, 2, 2] = 1  # a: one voxel apart
    slices[1, 2, 2] = 1  # b: its only voxel stays
    out = largest_component_per_patient(slices, ["a", "b", "a"], num_classes=1)
    assert out.dtype == np.uint8 and out.sum() == 3 and out[1, 2, 2] == 1 and out[0, 2, 2] == 0
    # a gap in slice_index (a dropped slice) does not connect: then a's two blobs have 1 voxel each in
    # slices 0 and 2, and the first blob in C order (slice 0's (0,0)) is the one kept with (2,2) gone
    gapped = largest_component_per_patient(slices, ["a", "b", "a"], 1, slice_index=[0, 0, 2])
    assert gapped[0].sum() == 1 and gapped[0, 0, 0] == 1 and gapped[2].sum() == 0


# ------------------------------------------------------------------------------------------
# evaluation with post-processing, on a model that predicts its input
# ------------------------------------------------------------------------------------------


class Echo(torch.nn.Module):
    """A stand-in model whose logits are its input minus 0.5: it predicts the mask it is given."""

    num_classes = 1

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.input_size = (size, size)
        self.return_all = None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x[:, :1] - 0.5 + self.weight]


def test_evaluate_post_processes_each_patient_volume() -> None:
    """Patient a (2 slices): truth 3 voxels, predicted exactly plus a stray voxel; b (1 slice): one false positive.

    Raw: slice Dice 1, 2/3, 0 (mean 5/9); volumes a = 6/7, b = 0 (mean 3/7).
    Largest component: a's stray voxel goes (b's only voxel stays): slices 1, 1, 0 (2/3); volumes 1, 0 (1/2).
    """
    truth = np.zeros((3, 4, 4), dtype=np.int64)
    truth[0, 0, 0:2] = truth[1, 0, 1] = 1
    pred = truth.copy()
    pred[1, 3, 3] = 1  # stray, in a
    pred[2, 2, 2] = 1  # b
    inputs, masks, pid = torch.from_numpy(pred).float()[:, None], torch.from_numpy(truth), np.array(["a", "a", "b"])
    raw = evaluate(Echo(4), inputs, masks, batch_size=2, patient_id=pid)  # type: ignore[arg-type]
    assert raw["postprocessing"] is None
    assert raw["mean_dice"] == pytest.approx(5 / 9) and raw["mean_volume_dice"] == pytest.approx(3 / 7)
    kept = evaluate(Echo(4), inputs, masks, 2, patient_id=pid, postprocessing="largest_component_3d")  # type: ignore[arg-type]
    assert kept["postprocessing"] == "largest_component_3d" and kept["n_volumes"] == 2 and kept["n_images"] == 3
    assert kept["mean_dice"] == pytest.approx(2 / 3) and kept["mean_volume_dice"] == pytest.approx(1 / 2)
    assert kept["volume_dice"] == {"foreground": pytest.approx(1 / 2)}
    text = format_evaluation(kept)
    assert "per patient (3D) Dice 0.5000, mean over 2 volume(s)" in text
    assert "post-processing: largest_component_3d" in text
    assert "post-processing" not in format_evaluation(raw)
    assert "mean_volume_dice" not in evaluate(Echo(4), inputs, masks)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the patient id"):
        evaluate(Echo(4), inputs, masks, postprocessing="largest_component_3d")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown postprocessing"):
        evaluate(Echo(4), inputs, masks, patient_id=pid, postprocessing="opening")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# val_scores.csv: counts, old files
# ------------------------------------------------------------------------------------------


def test_val_scores_round_trip_with_counts(tmp_path) -> None:
    m = SegmentationMetrics(num_classes=3, class_names=["core", "edema, peritumoral"])  # a comma, quoted in the CSV
    m.update(t([[[1, 1, 0, 0], [0, 0, 0, 0]]]), t([[[1, 1, 0, 0], [0, 0, 0, 0]]]))
    m.update(t([[[1, 0, 0, 0], [0, 1, 0, 0]]]), t([[[1, 1, 2, 2], [2, 0, 0, 0]]]))
    scores = image_scores(m, ["P1", "P2"])
    write_scores(scores, tmp_path / SCORES_FILE)
    with open(tmp_path / SCORES_FILE, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "patient_id", "truth_pixels", "dice", "jaccard",
                       "tp_core", "fp_core", "fn_core",
                       "tp_edema, peritumoral", "fp_edema, peritumoral", "fn_edema, peritumoral"]  # fmt: skip
    assert rows[2][5:] == ["1", "1", "1", "0", "0", "3"]
    back = read_scores(tmp_path / SCORES_FILE)
    for name in ("patient_id", "truth_pixels", "dice", "jaccard", "tp", "fp", "fn"):
        np.testing.assert_array_equal(getattr(back, name), getattr(scores, name))
    assert back.class_names == ["core", "edema, peritumoral"] and back.truth_pixels.tolist() == [2, 5]
    assert back.tp is not None and back.tp.tolist() == [[2, 0], [1, 0]] and back.fn.tolist() == [[0, 0], [1, 3]]
    assert back.volume_scores().as_dict() == m.volume_scores(["P1", "P2"]).as_dict()
    assert back.volume_scores().mean_volume_dice == 0.625


def test_old_val_scores_are_read_without_counts(tmp_path) -> None:
    old = tmp_path / SCORES_FILE
    old.write_text("image,patient_id,truth_pixels,dice,jaccard\n0,p1,4,0.5,0.25\n1,p1,0,1.0,1.0\n")
    scores = read_scores(old)
    assert not scores.has_counts and scores.tp is None and scores.class_names is None
    assert scores.dice.tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match=r"val_scores\.csv: no per-slice tp/fp/fn counts \(written by an older jnet\)"):
        scores.volume_scores()
    write_scores(scores, tmp_path / "again.csv")  # written back as it was
    assert (tmp_path / "again.csv").read_text() == old.read_text()
    real = read_scores(STUDY / "elunet_jnet_r16_s0" / SCORES_FILE)  # a committed file of the first 84 runs
    assert not real.has_counts and len(real.dice) == 363


def test_bad_count_columns_are_named(tmp_path) -> None:
    path = tmp_path / SCORES_FILE
    path.write_text("image,patient_id,truth_pixels,dice,jaccard,tp_x,fp_x\n0,p,1,1.0,1.0,1,0\n")
    with pytest.raises(ValueError, match=r"count columns without their partners: fn_x"):
        read_scores(path)
    path.write_text("image,patient_id,truth_pixels,dice,jaccard,tp_x,fp_x,fn_x\n0,p,5,1.0,1.0,1,0,0\n")
    with pytest.raises(ValueError, match=r"val_scores\.csv:2: truth_pixels 5 is not the sum"):
        read_scores(path)
    path.write_text("image,patient_id,truth_pixels,dice,jaccard,tp_x,fp_x,fn_x\n0,p,1,1.0,1.0,1,,0\n")
    with pytest.raises(ValueError, match=r"val_scores\.csv:2: the tp_, fp_ and fn_ counts must be integers"):
        read_scores(path)
    with pytest.raises(ValueError, match="give tp, fp, fn and class_names together"):
        ImageScores(np.array(["p"]), np.array([1]), np.array([1.0]), np.array([1.0]), tp=np.array([[1]]))


# ------------------------------------------------------------------------------------------
# the study's results table
# ------------------------------------------------------------------------------------------


def test_study_table_rebuilds_from_the_committed_runs(tmp_path) -> None:
    """results.csv and results.md of the finished study runs, rebuilt from their folders: the same values;
    the first 84 runs (no per-slice counts) have an empty mean_volume_dice, issue 24's runs their 3D Dice."""
    rows, light = [], set()
    for run in load_sweep(REPO / "configs" / "study_lgg.yaml").runs:
        if not (STUDY / run.name / "metrics.json").is_file():  # issue 24's runs not trained yet
            continue
        metrics = json.loads((STUDY / run.name / "metrics.json").read_text())
        path = STUDY / run.name / SCORES_FILE
        scores = read_scores(path) if path.is_file() else None
        rows.append(result_row(run, metrics, scores, epoch_seconds=median_epoch_seconds(STUDY / run.name)))
        if scores is not None and scores.has_counts:
            light.add(run.name)
            assert rows[-1]["mean_volume_dice"] == metrics["best"]["mean_volume_dice"]
    write_results(tmp_path, rows)
    with open(tmp_path / "results.csv", newline="") as f:
        rebuilt = list(csv.DictReader(f))
    with open(STUDY / "results.csv", newline="") as f:
        committed = list(csv.DictReader(f))
    assert len(rebuilt) == len(committed) == 84 + len(light) and len(light) >= 1
    at = RESULT_COLUMNS.index("mean_jaccard_global") + 1
    assert list(rebuilt[0]) == [*RESULT_COLUMNS[:at], "dice_foreground", "jaccard_foreground", *RESULT_COLUMNS[at:]]
    assert rebuilt == committed
    assert all((row["mean_volume_dice"] == "") == (row["run"] not in light) for row in rebuilt)
    assert (tmp_path / "results.md").read_text() == (STUDY / "results.md").read_text()


def test_results_row_takes_volume_dice_from_metrics_or_counts(tmp_path) -> None:
    run = load_sweep({"grid": {"head": ["jnet"], "input_size": [16]}}).runs[0]
    best = {k: 0.5 for k in ("mean_dice", "mean_jaccard", "mean_dice_global", "mean_jaccard_global")}
    best |= {"dice": {"lesion": 0.5}, "jaccard": {"lesion": 0.5}, "epoch": 1}
    best |= {"input_resolution": {"mean_dice": 0.4, "mean_jaccard": 0.3}}
    metrics = {"best": best, "final": {"mean_jaccard": 0.5}, "train_seconds": 1.0, "params": 10, "head_params": 2}
    assert result_row(run, metrics)["mean_volume_dice"] == ""
    m = SegmentationMetrics(1, ["lesion"])
    m.add_counts(*(torch.tensor(x) for x in (TP, FP, FN)))
    scores = image_scores(m, PIDS)
    assert result_row(run, metrics, scores)["mean_volume_dice"] == pytest.approx(19 / 33)
    with_volume = {**metrics, "best": {**best, "mean_volume_dice": 0.75}}
    assert result_row(run, with_volume, scores)["mean_volume_dice"] == 0.75  # metrics.json first
    markdown = format_markdown(summarize([result_row(run, with_volume)]))
    assert "| Dice per patient (3D) |" in markdown and "| 75.0 |" in markdown


# ------------------------------------------------------------------------------------------
# end to end: a training run's metrics.json, jnet evaluate --largest-component
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One epoch on 3 synthetic patients x 3 slices at 32x32 (a second or two)."""
    run, threads = tmp_path_factory.mktemp("volume") / "run", torch.get_num_threads()
    tiny = ["--data", "synthetic", "--option", "num_patients=3", "--option", "slices_per_patient=3",
            "--output-size", "32", "--model", "unet", "--width", "2", "--batch-size", "3",
            "--threads", "1"]  # fmt: skip
    assert main(["train", *tiny, "--epochs", "1", "--out", str(run)]) == 0
    torch.set_num_threads(threads)
    return run


def test_a_run_records_volume_dice_and_counts(tiny_run) -> None:
    best = json.loads((tiny_run / "metrics.json").read_text())["best"]
    scores = read_scores(tiny_run / SCORES_FILE)
    assert scores.has_counts and scores.class_names == ["lesion"]
    assert best["n_volumes"] == len(set(scores.patient_id)) >= 1
    assert best["volume_dice"] == scores.volume_scores().volume_dice
    assert best["mean_volume_dice"] == scores.volume_scores().mean_volume_dice
    assert scores.dice.mean() == pytest.approx(best["mean_dice"], abs=1e-6)


def test_evaluate_largest_component_end_to_end(tiny_run, tmp_path, capsys) -> None:
    checkpoint = str(tiny_run / "checkpoint_best.pt")
    plain, post = tmp_path / "plain.json", tmp_path / "post.json"
    assert main(["evaluate", "--checkpoint", checkpoint, "--split", "all", "--out", str(plain)]) == 0
    args = ["evaluate", "--checkpoint", checkpoint, "--split", "all", "--largest-component"]
    assert main([*args, "--out", str(post), "--scores", str(tmp_path / "s.csv")]) == 0
    assert "post-processing: largest_component_3d" in capsys.readouterr().out
    a, b = json.loads(plain.read_text()), json.loads(post.read_text())
    assert a["postprocessing"] is None and b["postprocessing"] == "largest_component_3d"
    for result in (a, b):
        assert result["n_volumes"] == 3 and result["n_images"] == 9
        assert set(result["volume_dice"]) == {"lesion"}
        assert 0.0 <= result["mean_volume_dice"] <= 1.0
        assert result["mean_volume_dice"] == pytest.approx(result["volume_dice"]["lesion"])
    written = read_scores(tmp_path / "s.csv")  # --scores is post-processed the same way
    assert written.volume_scores().mean_volume_dice == pytest.approx(b["mean_volume_dice"], abs=1e-12)
    assert written.dice.mean() == pytest.approx(b["mean_dice"], abs=1e-12)
