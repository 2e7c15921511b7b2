"""The graph layout shared by the HTML pages: columns by longest path, labels that fit, no hang."""

from __future__ import annotations

import re
from itertools import pairwise

from evolve.report.layout import BOX_H, LABEL_CHARS, MIN_GAP_X, layout_graph


def test_a_node_sits_one_column_right_of_its_furthest_predecessor():
    edges = [("a", "b", None), ("b", "c", None), ("a", "c", None), ("a", "d", None)]
    layout = layout_graph(["a", "b", "c", "d"], edges)
    x = {k: b.x for k, b in layout.boxes.items()}
    assert x["a"] < x["b"] == x["d"] < x["c"]
    assert [line.source + line.target for line in layout.lines] == ["ab", "bc", "ac", "ad"]
    # the long edge a -> c bends through the middle column: curve, straight run, curve
    assert re.fullmatch(r"M[\d. ]+C[\d. ]+L[\d. ]+C[\d. ]+", layout.lines[2].d)


def test_boxes_do_not_overlap_within_a_column():
    layout = layout_graph(["s", *"uvwxyz"], [("s", t, None) for t in "uvwxyz"])
    ys = sorted(b.y for k, b in layout.boxes.items() if k != "s")
    assert all(later - earlier >= BOX_H for earlier, later in pairwise(ys))
    assert layout.height >= max(b.y + b.h for b in layout.boxes.values())
    assert layout.width >= max(b.x + b.w for b in layout.boxes.values())


def test_a_label_widens_its_gap_and_is_clipped_with_its_full_text_kept():
    long = "when " + "x" * 100
    plain = layout_graph(["a", "b"], [("a", "b", None)])
    labelled = layout_graph(["a", "b"], [("a", "b", long)])
    gap = labelled.boxes["b"].x - (labelled.boxes["a"].x + labelled.boxes["a"].w)
    assert plain.boxes["b"].x - (plain.boxes["a"].x + plain.boxes["a"].w) == MIN_GAP_X
    assert gap > MIN_GAP_X
    label = labelled.lines[0].label
    assert label is not None and label.full == long
    assert len(label.text) == LABEL_CHARS and label.text.endswith("…")
    assert plain.lines[0].label is None


def test_ids_only_named_by_edges_are_added_and_a_cycle_still_lays_out():
    layout = layout_graph(["a"], [("a", "b", None), ("b", "a", None)])
    assert list(layout.boxes) == ["a", "b"]
    back = layout.lines[1]
    assert back.d.count("C") == 1  # one curve, looping below the boxes


def test_an_empty_graph_has_no_boxes_and_no_size():
    layout = layout_graph([], [])
    assert (layout.boxes, layout.lines, layout.width, layout.height) == ({}, [], 0.0, 0.0)


def test_the_same_graph_always_gives_the_same_figures():
    edges = [("a", "c", None), ("b", "c", "when $.x"), ("c", "d", None), ("a", "d", None)]
    assert layout_graph(["a", "b", "c", "d"], edges) == layout_graph(["a", "b", "c", "d"], edges)
