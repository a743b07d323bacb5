"""Plot helpers shared by the sweep's and the plan's figures: line styles and label placement."""

from __future__ import annotations

import pytest

from jnet.study.figures import LABEL_OFFSETS, line_styles, place_labels


def test_line_styles_are_distinct_beyond_ten() -> None:
    styles = line_styles(13)
    assert len(set(styles)) == 13
    assert styles[:2] == [("C0", "-", "o"), ("C1", "-", "o")]
    assert styles[9] == ("C9", "-", "o")
    assert styles[10:] == [("C0", "--", "s"), ("C1", "--", "s"), ("C2", "--", "s")]
    assert len(set(line_styles(40))) == 40
    assert line_styles(41)[40] == ("C0", "-", "o")  # then they repeat


@pytest.fixture
def axes():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    yield fig, ax
    plt.close(fig)


def _annotate(ax, name: str, x: float, y: float):
    return ax.annotate(name, (x, y), xytext=LABEL_OFFSETS[0], textcoords="offset points", fontsize=6)


def test_labels_of_one_point_take_different_places(axes) -> None:
    fig, ax = axes
    texts = [_annotate(ax, name, 5, 5) for name in ("first", "second", "third")]
    kept = place_labels(fig, texts)
    assert kept == texts
    assert [t.xyann for t in texts] == [(5, 3), (5, -9), (-5, 3)]
    assert [t.get_horizontalalignment() for t in texts] == ["left", "left", "right"]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_labels_keep_clear_of_the_boxes_to_avoid(axes) -> None:
    from matplotlib.transforms import Bbox

    fig, ax = axes
    text = _annotate(ax, "label", 5, 5)
    (x, y) = ax.transData.transform((5, 5))
    right = Bbox.from_extents(x, y - 50, x + 200, y + 50)  # everything right of the point
    assert place_labels(fig, [text], avoid=[right]) == [text]
    assert text.xyann == (-5, 3) and text.get_horizontalalignment() == "right"


def test_a_label_with_no_place_is_removed_unless_kept(axes) -> None:
    fig, ax = axes
    wide = "x" * 200  # wider than the axes wherever it goes
    dropped = _annotate(ax, wide, 5, 5)
    assert place_labels(fig, [dropped]) == []
    assert dropped not in ax.texts
    kept = _annotate(ax, wide, 5, 5)
    assert place_labels(fig, [kept], keep=1) == [kept]
    assert kept in ax.texts and kept.xyann == LABEL_OFFSETS[0]
