"""Tests for replearn.viz: every figure renders headless and shows what it was given.

The checks read the figures back (pixels of the drawn mosaic, texts, frame colours, line data,
bar heights), so a plot that silently drops, reorders or mislabels its input fails here.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from replearn import viz

REPO = Path(__file__).resolve().parent.parent


def png_bytes(fig: Figure) -> bytes:
    """Render like a notebook or save_figure would, and return the PNG."""
    assert isinstance(fig, Figure)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    data = buffer.getvalue()
    assert data.startswith(b"\x89PNG")
    return data


def canvas_of(fig: Figure) -> np.ndarray:
    """The one mosaic image an image figure draws, ``[h, w, 3]``."""
    (ax,) = fig.axes
    (image,) = ax.get_images()
    return np.asarray(image.get_array())


def count_pixels(canvas: np.ndarray, colour) -> int:
    """How many pixels of ``canvas`` have exactly (to float32 precision) this RGB colour."""
    return int(np.all(np.abs(canvas - np.asarray(colour)[:3]) < 1e-5, axis=-1).sum())


def constant_images(values, channels=3, size=8) -> torch.Tensor:
    """``[N, C, size, size]`` images, image i filled with ``values[i]`` (a grey level)."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(
        -1, channels, size, size
    )


# ------------------------------------------------------------------------------ image_grid


def test_image_grid_draws_every_image_once():
    values = [0.1, 0.3, 0.5, 0.7, 0.9]
    fig = viz.image_grid(constant_images(values), nrow=2, title="five")
    png_bytes(fig)
    canvas = canvas_of(fig)
    for value in values:
        assert count_pixels(canvas, (value, value, value)) == 8 * 8
    assert fig._suptitle.get_text() == "five"


def test_image_grid_uint8_and_float_agree_and_grey_stays_grey():
    images = torch.randint(0, 256, (3, 1, 6, 6), generator=torch.Generator().manual_seed(0))
    as_uint8 = canvas_of(viz.image_grid(images.to(torch.uint8)))
    as_float = canvas_of(viz.image_grid(images.float() / 255))
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-6)
    # One channel is drawn as grey: R = G = B, equal to the input level.
    first_tile = images[0, 0].float().numpy() / 255  # [6, 6]
    np.testing.assert_array_equal(as_float[..., 0], as_float[..., 1])
    np.testing.assert_array_equal(as_float[..., 0], as_float[..., 2])
    flat = as_float[..., 0]
    assert any(
        np.allclose(flat[y : y + 6, x : x + 6], first_tile, atol=1e-6)
        for y in range(flat.shape[0] - 5)
        for x in range(flat.shape[1] - 5)
    )


def test_image_grid_captions_from_labels_or_titles():
    images = constant_images([0.2, 0.4, 0.6])
    fig = viz.image_grid(images, labels=torch.tensor([2, 0, 1]), class_names=["cat", "dog", "owl"])
    assert [t.get_text() for t in fig.axes[0].texts] == ["owl", "cat", "dog"]
    fig = viz.image_grid(images, titles=["a", "b", "c"])
    assert [t.get_text() for t in fig.axes[0].texts] == ["a", "b", "c"]
    fig = viz.image_grid(images, labels=np.array([7, 8, 9]))
    assert [t.get_text() for t in fig.axes[0].texts] == ["7", "8", "9"]


@pytest.mark.parametrize(
    ("images", "kwargs", "message"),
    [
        (torch.rand(3, 8, 8), {}, r"\[N, C, H, W\].*image\[None\]"),
        (torch.rand(2, 8, 8, 3), {}, "channels-last"),
        (torch.rand(2, 3, 8, 8) * 4 - 2, {}, "undo the normalisation"),
        (torch.rand(2, 3, 8, 8) * 255, {}, "pass uint8"),
        (torch.full((2, 3, 8, 8), float("nan")), {}, "NaN"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), {}, "dtype"),
        (torch.rand(2, 3, 8, 8), {"titles": ["only one"]}, "titles has 1 entries"),
        (torch.rand(2, 3, 8, 8), {"titles": ["a", "b"], "labels": [0, 1]}, "not both"),
        (torch.rand(2, 3, 8, 8), {"labels": [0, 5], "class_names": ["a"]}, "class_names"),
    ],
)
def test_image_grid_rejects_bad_input_with_a_hint(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        viz.image_grid(images, **kwargs)


def test_small_overshoot_is_clipped_not_rejected():
    canvas = canvas_of(viz.image_grid(constant_images([1.2, -0.1])))
    assert count_pixels(canvas, (0.0, 0.0, 0.0)) == 64
    assert canvas.min() >= 0.0 and canvas.max() <= 1.0


def test_half_precision_tensors_are_accepted():
    fig = viz.image_grid(constant_images([0.5]).half())
    assert count_pixels(canvas_of(fig), (0.5, 0.5, 0.5)) == 64


# ------------------------------------------------------------------------------ reconstructions


def test_reconstructions_rows_in_order():
    originals = constant_images([0.9, 0.8, 0.7])
    predicted = constant_images([0.6, 0.5, 0.4])
    masked = constant_images([0.3, 0.2, 0.1])
    fig = viz.reconstructions(originals, predicted, masked=masked, n=2)
    png_bytes(fig)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["input", "prediction", "original"]
    canvas = canvas_of(fig)
    for value in (0.9, 0.8, 0.6, 0.5, 0.3, 0.2):  # the first n = 2 of each row
        assert count_pixels(canvas, (value,) * 3) == 64
    for value in (0.7, 0.4, 0.1):  # the third image is not shown
        assert count_pixels(canvas, (value,) * 3) == 0
    # Top to bottom: masked, prediction, original (rows of the mosaic).
    column = canvas[:, :, 0][:, canvas.shape[1] // 4]
    first_seen = [np.argmax(np.isclose(column, v)) for v in (0.3, 0.6, 0.9)]
    assert first_seen == sorted(first_seen)


def test_reconstructions_without_mask_and_shape_errors():
    originals = constant_images([0.9, 0.8])
    fig = viz.reconstructions(originals, originals * 0.5)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["prediction", "original"]
    with pytest.raises(ValueError, match="same shape"):
        viz.reconstructions(originals, constant_images([0.5, 0.5], size=4))
    with pytest.raises(ValueError, match="masked"):
        viz.reconstructions(originals, originals, masked=constant_images([0.5]))


# ------------------------------------------------------------------------------ nearest_neighbours


def test_nearest_neighbours_frames_and_precision():
    gallery = constant_images([0.1, 0.2, 0.3, 0.4])
    gallery_labels = torch.tensor([0, 1, 0, 1])
    queries = constant_images([0.8, 0.9])
    query_labels = torch.tensor([0, 1])
    indices = torch.tensor([[0, 1, 2], [3, 2, 1]])  # same labels: [T, F, T], [T, F, T]
    fig = viz.nearest_neighbours(
        queries,
        gallery,
        indices,
        query_labels=query_labels,
        gallery_labels=gallery_labels,
        class_names=["cat", "dog"],
    )
    png_bytes(fig)
    ax = fig.axes[0]
    edge_colours = [to_rgba(patch.get_edgecolor()) for patch in ax.patches]
    assert edge_colours.count(to_rgba(viz.SAME_COLOUR)) == 4
    assert edge_colours.count(to_rgba(viz.DIFFERENT_COLOUR)) == 2
    assert "precision@3 = 0.67" in fig._suptitle.get_text()
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["cat", "cat", "dog", "cat", "dog", "dog", "cat", "dog"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["query", "1", "2", "3"]
    canvas = canvas_of(fig)
    assert count_pixels(canvas, (0.2, 0.2, 0.2)) == 2 * 64  # gallery image 1 retrieved twice


def test_nearest_neighbours_without_labels_has_no_verdict():
    fig = viz.nearest_neighbours(
        constant_images([0.5]), constant_images([0.1, 0.2]), np.array([[1, 0]])
    )
    assert "precision" not in fig._suptitle.get_text()
    assert not fig.axes[0].texts


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        (torch.tensor([[0, 5]]), "gallery has 2 images"),
        (torch.tensor([[0.0, 1.0]]), "integers"),
        (torch.tensor([[0], [1]]), r"\[Q, k\]"),
    ],
)
def test_nearest_neighbours_rejects_bad_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        viz.nearest_neighbours(constant_images([0.5]), constant_images([0.1, 0.2]), indices)


# ------------------------------------------------------------------------------ embedding_map


def clustered_features(num_classes=3, per_class=20, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(num_classes, dim))  # [K, D]
    labels = np.repeat(np.arange(num_classes), per_class)  # [N]
    return centres[labels] + rng.normal(size=(labels.size, dim)), labels  # [N, D], [N]


def scatter_points(fig: Figure) -> dict[str, np.ndarray]:
    ax = fig.axes[0]
    return {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections}


def test_embedding_map_pca_one_colour_per_class():
    features, labels = clustered_features()
    fig = viz.embedding_map(
        torch.tensor(features), torch.tensor(labels), method="pca", class_names=["a", "b", "c"]
    )
    png_bytes(fig)
    points = scatter_points(fig)
    assert sorted(points) == ["a", "b", "c"]
    assert all(len(p) == 20 for p in points.values())
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["a", "b", "c"]
    # Well-separated clusters stay separated: each class's centre is nearer its own points.
    centres = {name: p.mean(axis=0) for name, p in points.items()}
    for name, p in points.items():
        nearest = [min(centres, key=lambda c: np.linalg.norm(x - centres[c])) for x in p]
        assert nearest.count(name) >= 18


def test_embedding_map_tsne_is_seeded_and_subsamples():
    features, labels = clustered_features(per_class=15)
    first = scatter_points(viz.embedding_map(features, labels, seed=3, max_points=30))
    again = scatter_points(viz.embedding_map(features, labels, seed=3, max_points=30))
    assert sum(len(p) for p in first.values()) == 30
    for name in first:
        np.testing.assert_allclose(first[name], again[name])


def test_embedding_map_errors():
    features, labels = clustered_features()
    with pytest.raises(ValueError, match="'tsne' or 'pca'"):
        viz.embedding_map(features, labels, method="umap")
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        viz.embedding_map(features[0], labels)
    with pytest.raises(ValueError, match="labels has 59 entries"):
        viz.embedding_map(features, labels[:-1])


# ------------------------------------------------------------------------------ attention_maps


def one_hot_cls_attention(num_images, heads, num_patches, target):
    """``[N, heads, L+1, L+1]``: the class token attends only to patch ``target`` (uniform rest)."""
    tokens = num_patches + 1
    attention = torch.full((num_images, heads, tokens, tokens), 1.0 / tokens)
    attention[:, :, 0, :] = 0.0
    attention[:, :, 0, 1 + target] = 1.0
    return attention


def test_attention_patch_map_with_and_without_class_token():
    attention = one_hot_cls_attention(2, 3, num_patches=4, target=2).numpy()
    patch_map, caption = viz._attention_patch_map(attention, 2, 2)
    assert caption == "[CLS] attention"
    np.testing.assert_allclose(patch_map[0], [[0.0, 0.0], [1.0, 0.0]])

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 2, 4, 4))
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # [1, 2, L, L] rows sum 1
    patch_map, caption = viz._attention_patch_map(weights, 2, 2)
    received = weights.mean(axis=1).mean(axis=1)[0]  # [L] mean over heads, then queries
    expected = (received - received.min()) / (received.max() - received.min())
    assert caption == "attention received"
    np.testing.assert_allclose(patch_map[0].reshape(-1), expected)


def test_attention_maps_colours_the_attended_patch():
    images = torch.zeros(3, 3, 8, 8)  # black, so the blend is 0.6 * colour map
    attention = one_hot_cls_attention(3, 4, num_patches=4, target=1)
    fig = viz.attention_maps(images, attention, patch_size=4, n=2)
    png_bytes(fig)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["image", "[CLS] attention"]
    hottest = 0.6 * np.asarray(matplotlib.colormaps["inferno"](1.0)[:3])
    assert count_pixels(canvas_of(fig), hottest) == 2 * 4 * 4  # one 4x4 patch in each of 2 maps
    # A list of blocks uses the last one.
    other = one_hot_cls_attention(3, 4, num_patches=4, target=0)
    fig = viz.attention_maps(images, [other, attention], patch_size=4, n=1)
    assert count_pixels(canvas_of(fig), hottest) == 16


def test_attention_maps_token_count_must_match_patches():
    with pytest.raises(ValueError, match=r"expected 4 tokens, or 5 with a class token"):
        viz.attention_maps(torch.zeros(1, 3, 8, 8), torch.rand(1, 2, 17, 17), patch_size=4)
    with pytest.raises(ValueError, match="must divide"):
        viz.attention_maps(torch.zeros(1, 3, 8, 8), torch.rand(1, 2, 5, 5), patch_size=3)


# ------------------------------------------------------------------------------ curves and bars


def lines_by_label(fig: Figure) -> dict[str, np.ndarray]:
    return {
        line.get_label(): np.asarray(line.get_xydata())
        for ax in fig.axes
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def test_loss_curves_from_a_dict_of_lists():
    history = {"step": [10, 20, 30], "loss": [3.0, 2.0, None], "val_acc": [0.1, 0.5, 0.6]}
    fig = viz.loss_curves(history, title="run")
    png_bytes(fig)
    lines = lines_by_label(fig)
    assert sorted(lines) == ["loss", "val_acc"]
    np.testing.assert_allclose(lines["loss"][:, 0], [10, 20, 30])
    assert math.isnan(lines["loss"][2, 1])
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]


def test_loss_curves_from_a_training_history():
    from replearn.train import History

    steps = [
        {"step": s, "epoch": s // 4, "lr": 0.1, "time_s": 0.01 * s, "loss": 2.0 - 0.1 * s}
        for s in range(8)
    ]
    epochs = [
        {"loss": 1.8, "epoch": 0, "end_step": 4, "time_s": 1.0, "images_per_s": 9.0, "knn": 0.3},
        {"loss": 1.4, "epoch": 1, "end_step": 8, "time_s": 1.0, "images_per_s": 9.0, "knn": 0.4},
    ]
    history = History(steps=steps, epochs=epochs, resumed_at_step=[4])
    lines = lines_by_label(viz.loss_curves(history))
    assert sorted(lines) == ["epochs/knn", "epochs/loss", "steps/loss", "steps/lr"]
    np.testing.assert_allclose(lines["epochs/loss"], [[4, 1.8], [8, 1.4]])  # on the step axis
    lines = lines_by_label(viz.loss_curves(history, keys=["loss"]))
    assert sorted(lines) == ["epochs/loss", "steps/loss"]
    with pytest.raises(KeyError, match="steps/loss"):
        viz.loss_curves(history, keys=["accuracy"])


def test_smoothing_is_a_debiased_moving_average():
    np.testing.assert_allclose(
        viz._smooth(np.array([1.0, 2.0, 3.0]), 0.5), [1.0, 1.25 / 0.75, 2.125 / 0.875]
    )
    np.testing.assert_allclose(viz._smooth(np.full(5, 4.0), 0.9), np.full(5, 4.0))
    lines = lines_by_label(viz.loss_curves({"loss": [1.0, 2.0, 3.0]}, smooth=0.5))
    np.testing.assert_allclose(lines["loss"][:, 1], [1.0, 1.25 / 0.75, 2.125 / 0.875])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        viz.loss_curves({"loss": [1.0]}, smooth=1.0)


def test_bar_table_heights_and_labels():
    results = {"random init": 0.35, "SimCLR": (0.72, 0.01), "skipped": float("nan")}
    fig = viz.bar_table(results, title="linear probe", ylabel="accuracy")
    png_bytes(fig)
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights, [0.35, 0.72, 0.0])
    assert [t.get_text() for t in ax.texts] == ["0.35", "0.72 ± 0.01", "n/a"]
    assert ax.get_ylabel() == "accuracy" and ax.get_title() == "linear probe"
    with pytest.raises(ValueError, match="empty"):
        viz.bar_table({}, title="t", ylabel="y")
    with pytest.raises(ValueError, match=r"\(mean, std\)"):
        viz.bar_table({"a": (1, 2, 3)}, title="t", ylabel="y")


def test_accuracy_curves_mapping_and_few_label_result():
    few_label = {
        "method": "linear",
        "per_class": [1, 10, 100],
        "mean": [0.3, 0.5, 0.7],
        "std": [0.02, 0.01, 0.0],
        "seeds": [0, 1],
    }
    curves = {"SimCLR": few_label, "supervised": {100: 0.6, 1: 0.15, 10: (0.3, 0.05)}}
    fig = viz.accuracy_curves(curves, "labels per class", title="few labels")
    png_bytes(fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"  # 1..100 spans 100x
    lines = lines_by_label(fig)
    np.testing.assert_allclose(lines["supervised"], [[1, 0.15], [10, 0.3], [100, 0.6]])
    np.testing.assert_allclose(lines["SimCLR"][:, 1], [0.3, 0.5, 0.7])
    assert len(ax.collections) == 2  # one spread band per curve with a std
    linear = viz.accuracy_curves({"a": {0.25: 0.5, 0.75: 0.6}}, "mask ratio")
    assert linear.axes[0].get_xscale() == "linear"
    with pytest.raises(ValueError, match="as many x as y"):
        viz.accuracy_curves({"a": {"x": [1, 2], "y": [0.5]}}, "x")


# ------------------------------------------------------------------------------ saving and headless


def test_save_figure_creates_folders(tmp_path):
    fig = viz.bar_table({"a": 1.0}, title="t", ylabel="y")
    for name in ("deep/er/figure.png", "other/figure.pdf"):
        path = viz.save_figure(fig, tmp_path / name)
        assert path == tmp_path / name and path.stat().st_size > 0
    assert (tmp_path / "deep/er/figure.png").read_bytes().startswith(b"\x89PNG")


def test_no_global_matplotlib_state_is_changed():
    before = dict(matplotlib.rcParams)
    viz.image_grid(constant_images([0.5]), title="t")
    viz.loss_curves({"loss": [1.0, 0.5]}, smooth=0.3)
    viz.bar_table({"a": 1.0}, title="t", ylabel="y")
    assert dict(matplotlib.rcParams) == before


def test_renders_without_display_and_without_pyplot(tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from replearn import viz\n"
        "f = viz.image_grid(np.zeros((2, 3, 8, 8), np.uint8))\n"
        "viz.save_figure(f, sys.argv[1])\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    env["PYTHONPATH"] = str(REPO)
    out = tmp_path / "grid.png"
    subprocess.run(
        [sys.executable, "-c", script, str(out)], env=env, check=True, cwd=tmp_path, timeout=120
    )
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow  # starts a Jupyter kernel: ~5 s alone, 25 s on a busy 2-core machine
@pytest.mark.parametrize(
    "backend", ["module://matplotlib_inline.backend_inline", "Agg"], ids=["inline", "agg"]
)
def test_every_figure_a_cell_makes_shows_once_in_an_executed_notebook(monkeypatch, backend):
    """Jupyter's and Colab's inline backend (what run_notebook uses too), and Agg: a figure that is
    the cell's result, one followed by ``plt.show()`` (the notebooks' pattern), several made in a
    loop, one passed to ``display`` next to a pyplot figure: each shows exactly once."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MPLBACKEND", backend)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    cells = {
        "import numpy as np\nfrom replearn import viz\nviz.image_grid(np.zeros((2, 3, 8, 8), np.uint8))": 1,
        "import matplotlib.pyplot as plt\nfig = viz.bar_table({'a': 1.0}, title='t', ylabel='y')\nfig": 1,
        "viz.bar_table({'a': 1.0}, title='t', ylabel='y')\nplt.show()": 1,
        "for i in range(2):\n    viz.bar_table({'a': 1.0}, title=str(i), ylabel='y')\n    plt.show()": 2,
        "from IPython.display import display\ndisplay(viz.bar_table({'a': 1.0}, title='t', ylabel='y'))\n"
        "fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()": 2 if "inline" in backend else 1,
        "print('no figure')": 0,
    }
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    for cell, expected in zip(notebook.cells, cells.values()):
        images = [out for out in cell.outputs if "image/png" in out.get("data", {})]
        assert len(images) == expected, (cell.source, cell.outputs)
