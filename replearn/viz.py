"""Figures for the notebooks: image grids, loss curves, reconstructions, retrieval, embeddings.

Every function returns a :class:`matplotlib.figure.Figure` built directly (not through
``pyplot``) on the Agg canvas, so it renders without a display, in tests and in notebooks run by
nbclient, and never calls ``plt.show()``. In a notebook every figure a cell makes is shown once,
at the end of the cell (as pyplot's inline backend does; a figure that is the cell's result, or
that was passed to ``display``, is not shown twice), whatever the matplotlib backend;
:func:`save_figure` writes one to disk. No
function changes ``matplotlib.rcParams``: the shared look comes from :func:`_style_axis` and the
colour helpers below.

Images are ``[N, C, H, W]`` with C = 1 or 3, either float in [0, 1] or uint8, as torch tensors
or numpy arrays (see the shape legend in ``docs/internals.md``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = [
    "image_grid",
    "loss_curves",
    "reconstructions",
    "nearest_neighbours",
    "embedding_map",
    "attention_maps",
    "bar_table",
    "accuracy_curves",
    "save_figure",
]

# ------------------------------------------------------------------------------------------
# Style: one palette, one axis clean-up, one way to make a figure
# ------------------------------------------------------------------------------------------

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision
# deficiencies. Used for lines and bars.
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
SAME_COLOUR = OKABE_ITO[2]  # neighbour frame: same label as the query
DIFFERENT_COLOUR = OKABE_ITO[3]  # neighbour frame: different label
FONT_SIZE = 9


def _line_colours(count: int) -> list[str]:
    """``count`` line colours from the Okabe-Ito cycle (repeats after 8)."""
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(count)]


def _class_colours(num_classes: int) -> list[tuple[float, ...]]:
    """One colour per class for scatter plots: tab10 / tab20, a sampled colour map beyond."""
    from matplotlib import colormaps

    if num_classes <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(num_classes)]
    if num_classes <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(num_classes)]
    cmap = colormaps["turbo"]
    return [cmap(i / max(num_classes - 1, 1)) for i in range(num_classes)]


def _style_axis(ax, *, grid: bool = True) -> None:
    """The package's plot look: no top/right frame, a faint grid, small ticks."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=FONT_SIZE - 1)
    if grid:
        ax.grid(True, color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)


def _new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    """A figure on the Agg canvas (renders headless); in a notebook, shown at the end of the cell."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    if _enable_notebook_display():
        _PENDING.append(fig)
    return fig


_NOTEBOOK_DISPLAY_READY = False
_PENDING: list[Figure] = []  # figures the running cell made, shown at its end if not shown yet


def _render_png(fig: Figure) -> bytes:
    from IPython.core.pylabtools import print_figure

    fig._replearn_shown = True  # shown as the cell's result or by display(): not again
    return print_figure(fig, "png", bbox_inches="tight")


def _show_pending() -> None:
    """IPython's ``post_execute`` hook: display the cell's figures that nothing displayed."""
    from IPython.display import display

    pending = list(_PENDING)
    _PENDING.clear()
    for fig in pending:
        if not getattr(fig, "_replearn_shown", False):
            display(fig)


def _enable_notebook_display() -> bool:
    """Teach a running IPython kernel to show our figures; False outside one.

    Figures made without ``pyplot`` are unknown to ``plt.show()`` and to the inline backend. This
    registers a PNG formatter for them (so a figure that is a cell's result shows, once) and a
    ``post_execute`` hook that shows, at the end of the cell, every figure the cell made and
    nothing displayed: the notebooks' ``viz.bar_table(...)`` followed by ``plt.show()`` shows the
    table, with the inline backend as with Agg (``make demo``).
    """
    global _NOTEBOOK_DISPLAY_READY
    if _NOTEBOOK_DISPLAY_READY:
        return True
    if "IPython" not in sys.modules:
        return False
    shell = sys.modules["IPython"].get_ipython()
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", {})
    png = formatters.get("image/png")
    if png is None or not hasattr(shell, "events"):
        return False
    png.for_type(Figure, _render_png)
    # pyplot's inline backend registers its own formatter for Figure when it starts, which would
    # hide that a figure was already shown: ours is registered again before every cell
    shell.events.register("pre_execute", lambda: png.for_type(Figure, _render_png))
    shell.events.register("post_execute", _show_pending)
    _NOTEBOOK_DISPLAY_READY = True
    return True


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


# ------------------------------------------------------------------------------------------
# Input checking and conversion
# ------------------------------------------------------------------------------------------


def _to_numpy(values: Any) -> np.ndarray:
    """Torch tensors (any device, any float dtype) and array-likes to a numpy array."""
    if hasattr(values, "detach"):  # torch.Tensor without importing torch here
        values = values.detach().cpu()
        if values.is_floating_point():
            values = values.float()  # bfloat16/float16 have no numpy equivalent or lose range
        values = values.numpy()
    return np.asarray(values)


def _images_hwc(images: Any, name: str = "images") -> np.ndarray:
    """``[N, C, H, W]`` float [0, 1] or uint8 -> float ``[N, H, W, C]`` in [0, 1] for imshow."""
    array = _to_numpy(images)
    if array.ndim != 4:
        hint = " For a single image pass image[None]." if array.ndim == 3 else ""
        raise ValueError(f"{name} must be [N, C, H, W], got shape {tuple(array.shape)}.{hint}")
    if array.shape[1] not in (1, 3):
        hint = (
            " It looks channels-last [N, H, W, C]: use x.permute(0, 3, 1, 2)."
            if array.shape[-1] in (1, 3)
            else ""
        )
        raise ValueError(
            f"{name} must have 1 or 3 channels in dim 1 ([N, C, H, W]), got shape "
            f"{tuple(array.shape)}.{hint}"
        )
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype == np.bool_:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contain NaN or inf (did training diverge?).")
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
        # Small overshoot (a decoder's output) is clipped; a large one is a different scale.
        if low < -0.5 or high > 1.5:
            raise ValueError(
                f"{name} range from {low:.3g} to {high:.3g}, but float images must be in [0, 1]: "
                "undo the normalisation (x * std + mean) or, for values in [0, 255], pass uint8."
            )
        array = np.clip(array, 0.0, 1.0)
    else:
        raise ValueError(
            f"{name} have dtype {array.dtype}; pass float images in [0, 1] or uint8 in [0, 255]."
        )
    return array.transpose(0, 2, 3, 1)  # [N, H, W, C]


def _labels_array(labels: Any, count: int, name: str) -> np.ndarray | None:
    if labels is None:
        return None
    array = _to_numpy(labels).reshape(-1)
    if array.shape[0] != count:
        raise ValueError(f"{name} has {array.shape[0]} entries but there are {count} images.")
    return array


def _label_text(label: Any, class_names: Sequence[str] | None) -> str:
    if class_names is None:
        return str(label.item() if hasattr(label, "item") else label)
    index = int(label)
    if not 0 <= index < len(class_names):
        raise ValueError(f"label {index} has no entry in class_names (length {len(class_names)}).")
    return str(class_names[index])


def _format_value(value: float) -> str:
    """Short number for annotations: 0.843, 84.3, 1234.5."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _mean_std(value: Any, name: str) -> tuple[float, float]:
    """A number, or a ``(mean, std)`` pair (several seeds), as ``(mean, std)``."""
    array = _to_numpy(value)
    if array.dtype.kind not in "biuf" or array.size not in (1, 2):
        raise ValueError(f"{name} must be a number or a (mean, std) pair, got {value!r}.")
    flat = array.astype(np.float64).reshape(-1)
    return float(flat[0]), float(flat[1]) if flat.size == 2 else 0.0


# ------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------


INCHES_PER_TILE = 1.1  # displayed size of one image
CAPTION_INCHES = 0.2  # room above a tile for its caption
HEADER_INCHES = 0.22  # room above the grid for column names
TITLE_LINE_INCHES = 0.2  # room above everything for each line of the title


def _mosaic(
    grid: Sequence[Sequence[np.ndarray | None]],
    *,
    captions: Sequence[Sequence[str | None]] | None = None,
    frames: Sequence[Sequence[Any]] | None = None,
    row_names: Sequence[str] | None = None,
    column_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw rows of equally sized images as ONE picture: one Axes and one ``imshow``.

    A 64-image grid drawn this way builds in milliseconds, where 64 subplots take about a
    second. Captions are text above each tile, frames are rectangles in the gaps, row names are
    y tick labels and column names top x tick labels, so tests can read them back.

    Args:
        grid: rows of ``[H, W, C]`` float tiles in [0, 1], C = 1 or 3 (None: an empty cell).
        captions, frames: the same nesting, a string / a colour per tile (None: nothing).
        row_names: a name left of each row; column_names: a name above each column.
        title: the figure's title.
    """
    tiles = [tile for row in grid for tile in row if tile is not None]
    height, width = tiles[0].shape[:2]
    rows, columns = len(grid), max(len(row) for row in grid)
    inches_per_px = INCHES_PER_TILE / max(height, width)
    gap = max(2, round((0.18 if frames else 0.06) * max(height, width)))  # px between tiles
    frame_px = gap / 3 if frames else 0.0  # frame width; leaves gap / 3 white between frames
    margin = math.ceil(frame_px)  # room for the outer tiles' frames
    caption_px = math.ceil(CAPTION_INCHES / inches_per_px) if captions else 0
    row_step, column_step = caption_px + height + gap, width + gap

    canvas_h = rows * row_step - gap + 2 * margin
    canvas_w = columns * column_step - gap + 2 * margin
    canvas = np.ones((canvas_h, canvas_w, 3), np.float32)  # white background
    origins = {}  # (row, column) -> top-left pixel of the tile
    for r, row in enumerate(grid):
        for c, tile in enumerate(row):
            if tile is None:
                continue
            y0, x0 = margin + r * row_step + caption_px, margin + c * column_step
            canvas[y0 : y0 + height, x0 : x0 + width] = tile  # [H, W, C] broadcast to RGB
            origins[r, c] = (y0, x0)

    left = 0.1 + 0.065 * max(len(name) for name in row_names) if row_names else 0.05
    title_lines = title.count("\n") + 1 if title else 0
    top = 0.1 + (HEADER_INCHES if column_names else 0.0) + TITLE_LINE_INCHES * title_lines
    image_w, image_h = canvas.shape[1] * inches_per_px, canvas.shape[0] * inches_per_px
    fig_w, fig_h = left + image_w + 0.05, top + image_h + 0.05
    fig = _new_figure(fig_w, fig_h, layout=None)
    ax = fig.add_axes((left / fig_w, 0.05 / fig_h, image_w / fig_w, image_h / fig_h))
    ax.imshow(canvas, interpolation="nearest")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0, labelsize=FONT_SIZE)
    ax.set_xticks([])
    ax.set_yticks([])
    if row_names:
        ax.set_yticks([margin + r * row_step + caption_px + (height - 1) / 2 for r in range(rows)])
        ax.set_yticklabels(row_names)
    if column_names:
        ax.xaxis.tick_top()
        ax.set_xticks(
            [margin + c * column_step + (width - 1) / 2 for c in range(len(column_names))]
        )
        ax.set_xticklabels(column_names)

    offset = frame_px / 2  # a frame's centre line, outside the tile
    for (r, c), (y0, x0) in origins.items():
        if captions and captions[r][c]:
            ax.text(
                x0 + (width - 1) / 2,
                y0 - 1.0 - frame_px,
                captions[r][c],
                ha="center",
                va="bottom",
                fontsize=FONT_SIZE - 1,
            )
        if frames and frames[r][c] is not None:
            ax.add_patch(
                Rectangle(
                    (x0 - 0.5 - offset, y0 - 0.5 - offset),
                    width + frame_px,
                    height + frame_px,
                    fill=False,
                    edgecolor=frames[r][c],
                    linewidth=frame_px * inches_per_px * 72,
                )
            )
    if title:
        fig.suptitle(title, fontsize=FONT_SIZE + 1, y=1.0 - 0.05 / fig_h, va="top")
    return fig


def image_grid(
    images: Any,
    *,
    nrow: int = 8,
    titles: Sequence[str] | None = None,
    labels: Any = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """A grid of images, ``nrow`` per row (as in ``torchvision.utils.make_grid``).

    Args:
        images: ``[N, C, H, W]``, float in [0, 1] or uint8, C = 1 or 3.
        nrow: images per row.
        titles: one caption per image, or
        labels: ``[N]`` integer labels, captioned with ``class_names[label]`` when given.
        title: the figure's title.
    """
    pictures = _images_hwc(images)  # [N, H, W, C]
    count = pictures.shape[0]
    if count == 0:
        raise ValueError("images is empty: nothing to show.")
    if nrow < 1:
        raise ValueError(f"nrow must be at least 1, got {nrow}.")
    if titles is not None and labels is not None:
        raise ValueError("Pass titles= or labels= (captioned via class_names), not both.")
    if titles is not None:
        texts = [str(t) for t in titles]
        if len(texts) != count:
            raise ValueError(f"titles has {len(texts)} entries but there are {count} images.")
    elif labels is not None:
        texts = [_label_text(lab, class_names) for lab in _labels_array(labels, count, "labels")]
    else:
        texts = None

    starts = range(0, count, nrow)
    grid = [list(pictures[start : start + nrow]) for start in starts]
    captions = [texts[start : start + nrow] for start in starts] if texts else None
    return _mosaic(grid, captions=captions, title=title)


def reconstructions(
    originals: Any,
    reconstructed: Any,
    *,
    masked: Any = None,
    n: int = 8,
    row_titles: Sequence[str] = ("input", "prediction", "original"),
) -> Figure:
    """The autoencoder / MAE picture: (masked input,) prediction and original, one row each.

    Args:
        originals: ``[N, C, H, W]`` the clean images.
        reconstructed: ``[N, C, H, W]`` the model's output (small overshoot outside [0, 1] is
            clipped for display).
        masked: ``[N, C, H, W]`` what the encoder saw (MAE: the image with masked patches
            blanked); adds a first row when given.
        n: how many images (the first ``n``).
        row_titles: names of the masked / prediction / original rows; without ``masked`` the
            last two are used.
    """
    original_hwc = _images_hwc(originals, "originals")  # [N, H, W, C]
    predicted_hwc = _images_hwc(reconstructed, "reconstructed")  # [N, H, W, C]
    if original_hwc.shape != predicted_hwc.shape:
        raise ValueError(
            f"originals {tuple(_to_numpy(originals).shape)} and reconstructed "
            f"{tuple(_to_numpy(reconstructed).shape)} must have the same shape."
        )
    rows = [predicted_hwc, original_hwc]
    if masked is not None:
        masked_hwc = _images_hwc(masked, "masked")  # [N, H, W, C]
        if masked_hwc.shape != original_hwc.shape:
            raise ValueError(
                f"masked {tuple(_to_numpy(masked).shape)} must have the shape of originals "
                f"{tuple(_to_numpy(originals).shape)}."
            )
        rows.insert(0, masked_hwc)
    names = [str(name) for name in row_titles]
    if len(names) < len(rows):
        raise ValueError(f"row_titles needs {len(rows)} names, got {names}.")
    count = min(n, original_hwc.shape[0])
    if count < 1:
        raise ValueError("Nothing to show: n must be at least 1 and the images non-empty.")
    grid = [list(pictures[:count]) for pictures in rows]
    return _mosaic(grid, row_names=names[-len(rows) :])


def nearest_neighbours(
    query_images: Any,
    gallery_images: Any,
    neighbour_indices: Any,
    *,
    query_labels: Any = None,
    gallery_labels: Any = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Retrieval: each row a query and its k nearest gallery images, nearest first.

    With both ``query_labels`` and ``gallery_labels`` each neighbour gets a frame, green when
    its label matches the query's and red when not, and the title reports precision@k over the
    rows shown.

    Args:
        query_images: ``[Q, C, H, W]``.
        gallery_images: ``[M, C, H, W]`` (same H, W as the queries).
        neighbour_indices: ``[Q, k]`` integer indices into the gallery (e.g. ``topk`` of a
            cosine-similarity matrix).
        query_labels: ``[Q]``; gallery_labels: ``[M]``; class_names: label -> name.
    """
    queries = _images_hwc(query_images, "query_images")  # [Q, H, W, C]
    gallery = _images_hwc(gallery_images, "gallery_images")  # [M, H, W, C]
    if queries.shape[1:3] != gallery.shape[1:3]:
        raise ValueError(
            f"query images are {queries.shape[1]}x{queries.shape[2]} but gallery images are "
            f"{gallery.shape[1]}x{gallery.shape[2]}: resize one to match."
        )
    indices = _to_numpy(neighbour_indices)  # [Q, k]
    if indices.ndim == 1:
        indices = indices[:, None]  # [Q, 1]
    if indices.ndim != 2 or indices.shape[0] != queries.shape[0] or indices.shape[1] < 1:
        raise ValueError(
            f"neighbour_indices must be [Q, k] with Q = {queries.shape[0]} queries, got shape "
            f"{tuple(indices.shape)}."
        )
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"neighbour_indices must be integers, got dtype {indices.dtype}.")
    if indices.min() < 0 or indices.max() >= gallery.shape[0]:
        raise ValueError(
            f"neighbour_indices range over [{indices.min()}, {indices.max()}] but the gallery "
            f"has {gallery.shape[0]} images."
        )
    query_lab = _labels_array(query_labels, queries.shape[0], "query_labels")
    gallery_lab = _labels_array(gallery_labels, gallery.shape[0], "gallery_labels")
    framed = query_lab is not None and gallery_lab is not None

    num_queries, k = indices.shape
    grid, captions, frames = [], [], []
    for row in range(num_queries):
        grid.append([queries[row]] + [gallery[i] for i in indices[row]])
        frames.append(["0.25"] + [None] * k)
        captions.append(
            [None if query_lab is None else _label_text(query_lab[row], class_names)]
            + [
                None if gallery_lab is None else _label_text(gallery_lab[i], class_names)
                for i in indices[row]
            ]
        )
        if framed:
            same = gallery_lab[indices[row]] == query_lab[row]  # [k]
            frames[row][1:] = [SAME_COLOUR if s else DIFFERENT_COLOUR for s in same]
    heading = f"each query and its {k} nearest neighbours"
    if framed:
        precision = float((gallery_lab[indices] == query_lab[:, None]).mean())  # [Q, k] -> mean
        heading += f"\nprecision@{k} = {precision:.2f} (green frame: same label, red: different)"
    has_captions = query_lab is not None or gallery_lab is not None
    return _mosaic(
        grid,
        captions=captions if has_captions else None,
        frames=frames,
        column_names=["query"] + [str(i) for i in range(1, k + 1)],
        title=heading,
    )


def _attention_patch_map(weights: np.ndarray, grid_h: int, grid_w: int) -> tuple[np.ndarray, str]:
    """``[N, heads, T, T]`` attention -> ``[N, H/p, W/p]`` map scaled to [0, 1] per image."""
    num_images, tokens = weights.shape[0], weights.shape[-1]
    num_patches = grid_h * grid_w  # L
    head_mean = weights.mean(axis=1)  # [N, T, T]
    if tokens == num_patches + 1:
        patch_map = head_mean[:, 0, 1:]  # [N, L] class token -> patches
        caption = "[CLS] attention"
    elif tokens == num_patches:
        patch_map = head_mean.mean(axis=1)  # [N, L] attention received, mean over queries
        caption = "attention received"
    else:
        raise ValueError(
            f"attention has {tokens} tokens, but a {grid_h}x{grid_w} patch grid has "
            f"L = {num_patches} patches: expected {num_patches} tokens, or {num_patches + 1} "
            "with a class token. Check patch_size."
        )
    patch_map = patch_map.reshape(num_images, grid_h, grid_w)  # [N, H/p, W/p]
    low = patch_map.min(axis=(1, 2), keepdims=True)  # [N, 1, 1]
    span = patch_map.max(axis=(1, 2), keepdims=True) - low  # [N, 1, 1]
    return (patch_map - low) / np.where(span > 0, span, 1.0), caption


def attention_maps(images: Any, attention: Any, *, patch_size: int, n: int = 4) -> Figure:
    """Where a ViT looks: the head-averaged attention over patches, drawn over each image.

    With a class token (``L + 1`` tokens) the map is the attention *from* the class token to the
    patches, ``attention[:, :, 0, 1:]``, the picture of DINO's Figure 1 (Caron et al. 2021,
    "Self-attention from a Vision Transformer with 8x8 patches trained with no supervision. We
    look at the self-attention of the [CLS] token on the heads of the last layer."). Without one
    (``L`` tokens) it is the attention each patch *receives*, averaged over all query patches.
    Either way the map is averaged over heads, scaled to [0, 1] per image, repeated over each
    patch's ``p x p`` pixels and blended over the image (inferno colour map).

    Args:
        images: ``[N, C, H, W]`` the images the ViT saw (H, W multiples of ``patch_size``).
        attention: ``[N, heads, L(+1), L(+1)]`` softmax attention of one block (a list of
            blocks uses the last), or ``[N, L(+1), L(+1)]`` already averaged over heads.
        patch_size: ``p``, the ViT's patch side in pixels.
        n: how many images.
    """
    from matplotlib import colormaps

    pictures = _images_hwc(images)  # [N, H, W, C]
    if isinstance(attention, (list, tuple)):
        if not attention:
            raise ValueError("attention is an empty list of blocks.")
        attention = attention[-1]  # the last block's attention
    weights = _to_numpy(attention).astype(np.float64)
    if weights.ndim == 3:
        weights = weights[:, None]  # [N, 1, T, T]
    if weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(
            f"attention must be [N, heads, T, T] (T tokens), got shape {tuple(weights.shape)}."
        )
    num_images, height, width, _ = pictures.shape
    if weights.shape[0] != num_images:
        raise ValueError(f"attention is for {weights.shape[0]} images but images has {num_images}.")
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(f"patch_size={patch_size} must divide the image size {height}x{width}.")
    count = min(n, num_images)
    if count < 1:
        raise ValueError("Nothing to show: n must be at least 1 and the images non-empty.")

    patch_map, caption = _attention_patch_map(
        weights[:count], height // patch_size, width // patch_size
    )  # [n, H/p, W/p]
    pixel_map = patch_map.repeat(patch_size, axis=1).repeat(patch_size, axis=2)  # [n, H, W]
    heat = colormaps["inferno"](pixel_map)[..., :3]  # [n, H, W, 3]
    alpha = 0.6
    blended = (1 - alpha) * pictures[:count] + alpha * heat  # [n, H, W, 3]
    grid = [list(pictures[:count]), list(blended.astype(np.float32))]
    return _mosaic(grid, row_names=["image", caption])


# ------------------------------------------------------------------------------------------
# Embeddings
# ------------------------------------------------------------------------------------------


def embedding_map(
    features: Any,
    labels: Any,
    *,
    method: str = "tsne",
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    max_points: int = 2000,
) -> Figure:
    """A 2-D map of the embeddings, one colour per class.

    ``method="tsne"`` uses scikit-learn's t-SNE (van der Maaten & Hinton 2008; PCA
    initialisation, perplexity min(30, (n - 1) / 3)); ``"pca"`` the first two principal
    components. At most ``max_points`` points, drawn at random with ``seed``, are embedded
    (t-SNE's cost grows quickly with n; it runs on one thread, see below).

    Args:
        features: ``[N, D]`` embeddings.
        labels: ``[N]`` integer classes (None: one colour).
        class_names: label -> name, for the legend.
        seed: seeds the subsample and t-SNE, so the same call draws the same map.
    """
    points = _to_numpy(features).astype(np.float64)
    if points.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(points.shape)}.")
    if points.shape[1] < 2:
        raise ValueError(f"features need at least 2 dimensions to map, got D = {points.shape[1]}.")
    if not np.isfinite(points).all():
        raise ValueError("features contain NaN or inf.")
    classes = _labels_array(labels, points.shape[0], "labels")
    if classes is None:
        classes = np.zeros(points.shape[0], dtype=np.int64)
    method = method.lower()
    if method not in ("tsne", "pca"):
        raise ValueError(f"method={method!r}: use 'tsne' or 'pca'.")
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3, got {max_points}.")

    rng = np.random.default_rng(seed)
    if points.shape[0] > max_points:
        keep = np.sort(rng.choice(points.shape[0], size=max_points, replace=False))
        points, classes = points[keep], classes[keep]  # [max_points, D], [max_points]
    count = points.shape[0]
    if count < 3:
        raise ValueError(f"Need at least 3 points for a map, got {count}.")

    if method == "pca":
        from sklearn.decomposition import PCA

        reducer = PCA(n_components=2, random_state=seed)
        coords = reducer.fit_transform(points)  # [n, 2]
        explained = reducer.explained_variance_ratio_.sum()
        heading = f"PCA of {count} embeddings (D = {points.shape[1]}, {explained:.0%} of variance)"
        axis_names = ("PC 1", "PC 2")
    else:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = min(30.0, max(1.0, (count - 1) / 3))
        reducer = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            learning_rate="auto",
            random_state=seed,
        )
        # One OpenMP thread: t-SNE runs 1000 tiny parallel gradient steps, and threads that
        # spin-wait for a busy core make it many times slower on a shared machine.
        with threadpool_limits(limits=1, user_api="openmp"):
            coords = reducer.fit_transform(points)  # [n, 2]
        heading = f"t-SNE of {count} embeddings (D = {points.shape[1]})"
        axis_names = ("t-SNE 1", "t-SNE 2")

    values = np.unique(classes)
    colours = _class_colours(len(values))
    fig = _new_figure(6.0 if len(values) <= 20 else 5.0, 4.6)
    ax = fig.add_subplot()
    for colour, value in zip(colours, values):
        chosen = classes == value
        name = _label_text(value, class_names) if labels is not None else "all"
        ax.scatter(
            coords[chosen, 0],
            coords[chosen, 1],
            s=8,
            color=colour,
            alpha=0.8,
            linewidths=0,
            label=name,
        )
    _style_axis(ax, grid=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(axis_names[0], fontsize=FONT_SIZE)
    ax.set_ylabel(axis_names[1], fontsize=FONT_SIZE)
    ax.set_title(heading, fontsize=FONT_SIZE + 1)
    if labels is not None and len(values) <= 20:
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            fontsize=FONT_SIZE - 1,
            frameon=False,
            markerscale=2,
        )
    return fig


# ------------------------------------------------------------------------------------------
# Curves and tables
# ------------------------------------------------------------------------------------------

# Keys that are an x-axis rather than a curve, in order of preference. replearn.train.History
# records ``step`` per optimizer step and ``end_step`` per epoch, so both share one step axis.
_AXIS_KEYS = ("step", "end_step", "steps", "iteration", "epoch", "epochs", "time_s", "wall_s")
_AXIS_NAMES = {"end_step": "step", "steps": "step", "epochs": "epoch", "time_s": "time (s)"}
# Bookkeeping series that are not learning curves (drawn only when asked for by name).
_NOT_CURVES = ("images_per_s", "resumed_at_step")


def _series_from(history: Any) -> dict[str, list[float]]:
    """Flatten a History / dict of lists / list of records into ``name -> list of floats``.

    Nested dicts become ``outer/inner`` names and a list of per-record dicts becomes one series
    per key, so ``History.as_dict()`` gives ``steps/loss``, ``steps/lr``, ``epochs/loss``...;
    scalars and strings (run metadata) are skipped.
    """
    if hasattr(history, "as_dict"):
        history = history.as_dict()
    is_records = isinstance(history, Sequence) and all(isinstance(r, Mapping) for r in history)
    if not isinstance(history, Mapping) and not (is_records and len(history) > 0):
        raise TypeError(
            "loss_curves takes a replearn.train.History, a dict of lists or a list of per-step "
            f"dicts, got {type(history).__name__}."
        )
    series: dict[str, list[float]] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                visit(f"{prefix}/{key}" if prefix else str(key), inner)
        elif isinstance(value, (str, bytes)):
            return
        elif isinstance(value, Sequence) or hasattr(value, "tolist"):
            items = value.tolist() if hasattr(value, "tolist") else list(value)
            if not isinstance(items, list):
                return  # a 0-d array: a scalar
            if items and all(isinstance(item, Mapping) for item in items):
                for key in dict.fromkeys(k for item in items for k in item):
                    visit(f"{prefix}/{key}" if prefix else str(key), [i.get(key) for i in items])
                return
            numbers = []
            for item in items:
                if item is None:
                    numbers.append(math.nan)  # a metric missing from some records
                elif isinstance(item, (int, float, np.number)) and not isinstance(item, bool):
                    numbers.append(float(item))
                else:
                    return  # not a numeric series (e.g. a list of strings)
            if numbers:
                series[prefix] = numbers

    visit("", history)
    return series


def _smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased; NaNs are skipped."""
    smoothed = np.full_like(values, np.nan)
    average, steps = 0.0, 0
    for index, value in enumerate(values):
        if math.isnan(value):
            continue
        steps += 1
        average = weight * average + (1.0 - weight) * value
        smoothed[index] = average / (1.0 - weight**steps)
    return smoothed


def _last_part(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _panel_of(key: str) -> str:
    name = _last_part(key).lower()
    if "acc" in name or name.startswith("knn"):
        return "accuracy"
    if name in ("lr", "learning_rate") or name.endswith("_lr"):
        return "learning rate"
    return "loss"


def loss_curves(
    history_or_dict: Any,
    *,
    keys: Sequence[str] | None = None,
    smooth: float = 0.0,
    title: str | None = None,
) -> Figure:
    """Training curves: losses in one panel, accuracies and the learning rate in their own.

    Args:
        history_or_dict: a ``replearn.train.History`` (anything with ``.as_dict()``; its
            per-step records give ``steps/<name>`` curves, its per-epoch records
            ``epochs/<name>``), or a dict mapping names to lists of numbers (None for a missing
            value). A series named ``step`` (History's epochs: ``end_step``; also ``epoch``,
            ``iteration``, ``time_s``) of the same length and in the same record is the x-axis;
            otherwise the x-axis is the entry's index.
        keys: which series to draw; a bare name like ``"loss"`` selects ``steps/loss`` and
            ``epochs/loss``. Default: every numeric series except x-axes and bookkeeping.
        smooth: exponential-moving-average weight in [0, 1) as in TensorBoard; when > 0 the raw
            curve is drawn faintly behind the smoothed one (the learning rate is never smoothed).
        title: the figure's title.
    """
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}.")
    series = _series_from(history_or_dict)
    if keys is None:
        chosen = [key for key in series if _last_part(key) not in (*_AXIS_KEYS, *_NOT_CURVES)]
    else:
        chosen = []
        for wanted in keys:
            matches = [k for k in series if k == wanted] or [
                k for k in series if _last_part(k) == wanted
            ]
            if not matches:
                raise KeyError(f"{wanted!r} is not in the history; it has {sorted(series)}.")
            chosen += [k for k in matches if k not in chosen]
    if not chosen:
        raise ValueError(f"Nothing to plot: no numeric series besides {sorted(series)}.")

    def x_for(key: str) -> tuple[np.ndarray, str]:
        prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        length = len(series[key])
        for candidate in _AXIS_KEYS:
            name = prefix + candidate
            if name != key and name in series and len(series[name]) == length:
                return np.asarray(series[name]), _AXIS_NAMES.get(candidate, candidate)
        return np.arange(1, length + 1, dtype=np.float64), "entry"

    panels: dict[str, list[str]] = {}
    for key in chosen:
        panels.setdefault(_panel_of(key), []).append(key)
    order = [panel for panel in ("loss", "accuracy", "learning rate") if panel in panels]
    fig = _new_figure(4.2 * len(order), 3.2)
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    colours = dict(zip(chosen, _line_colours(len(chosen))))
    for ax, panel in zip(axes, order):
        x_names = set()
        for key in panels[panel]:
            x, x_name = x_for(key)
            x_names.add(x_name)
            y = np.asarray(series[key], dtype=np.float64)  # [len]
            if smooth > 0 and panel != "learning rate":
                ax.plot(x, y, color=colours[key], alpha=0.25, linewidth=1.0)
                y = _smooth(y, smooth)
            few = np.isfinite(y).sum() <= 30  # mark the points of short (per-epoch) series
            ax.plot(
                x,
                y,
                color=colours[key],
                linewidth=1.6,
                label=key,
                marker="o" if few else None,
                markersize=3,
            )
        _style_axis(ax)
        ax.set_xlabel(" / ".join(sorted(x_names)), fontsize=FONT_SIZE)
        ax.set_ylabel(panel, fontsize=FONT_SIZE)
        if panel == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.legend(fontsize=FONT_SIZE - 1, frameon=False)
    if title:
        fig.suptitle(title, fontsize=FONT_SIZE + 1)
    return fig


def bar_table(results: Mapping[str, Any], *, title: str, ylabel: str) -> Figure:
    """Compare runs as labelled bars, the number written on each (an ablation "table").

    Args:
        results: name -> value, or name -> ``(mean, std)`` drawn with an error bar; NaN shows
            as "n/a" (e.g. a run that was skipped).
        title: the figure's title; ylabel: what the values are (e.g. "linear-probe accuracy").
    """
    if not results:
        raise ValueError("results is empty: nothing to compare.")
    names = [str(name) for name in results]
    pairs = [_mean_std(value, f"results[{name!r}]") for name, value in results.items()]
    means = np.array([m for m, _ in pairs])  # [K] one bar per run
    stds = np.array([s for _, s in pairs])  # [K]
    heights = np.nan_to_num(means, nan=0.0)

    fig = _new_figure(max(3.2, 0.75 * len(names) + 1.2), 3.4)
    ax = fig.add_subplot()
    bars = ax.bar(names, heights, color=_line_colours(len(names)), width=0.65)
    spread = stds > 0  # error bars only where a spread was given
    if spread.any():
        positions = np.arange(len(names))[spread]
        ax.errorbar(
            positions,
            means[spread],
            yerr=stds[spread],
            fmt="none",
            ecolor="0.3",
            capsize=3,
            linewidth=1.0,
        )
    annotations = [
        _format_value(m) + (f" ± {_format_value(s)}" if s else "") for m, s in zip(means, stds)
    ]
    ax.bar_label(bars, labels=annotations, fontsize=FONT_SIZE - 1, padding=2)
    _style_axis(ax)
    ax.grid(False, axis="x")
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    ax.margins(y=0.15)
    if max(len(name) for name in names) > 8:
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    return fig


def accuracy_curves(
    curves: Mapping[str, Mapping],
    x_label: str,
    *,
    title: str | None = None,
    ylabel: str = "accuracy",
    log_x: bool | None = None,
) -> Figure:
    """Several methods' accuracy against one knob (labels per class, mask ratio, epochs...).

    Args:
        curves: method -> ``{x: y}``, y a number or a ``(mean, std)`` pair drawn as a band;
            or method -> columns ``{"x": [...], "y": [...], "std": [...] (optional)}``, which
            includes the result of ``replearn.evaluate.few_label_curve`` (``per_class``,
            ``mean``, ``std``).
        x_label: what the x-axis is, e.g. "labelled images per class".
        log_x: logarithmic x-axis; default: when all x > 0 and they span 20x or more (few-label
            curves such as 1, 10, 100 labels per class).
    """
    if not curves:
        raise ValueError("curves is empty: nothing to plot.")
    parsed: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, curve in curves.items():
        if not isinstance(curve, Mapping):
            raise TypeError(
                f"curves[{name!r}] must be a dict {{x: y}}, got {type(curve).__name__}."
            )
        x_key = next((key for key in ("x", "per_class") if key in curve), None)
        y_key = next((key for key in ("y", "mean") if key in curve), None)
        if x_key and y_key:  # columns, e.g. replearn.evaluate.few_label_curve's result
            x = _to_numpy(curve[x_key]).astype(np.float64).reshape(-1)
            y = _to_numpy(curve[y_key]).astype(np.float64).reshape(-1)
            std = (
                _to_numpy(curve["std"]).astype(np.float64).reshape(-1)
                if curve.get("std") is not None
                else np.zeros_like(y)
            )
        else:
            x = np.array([float(key) for key in curve], dtype=np.float64)
            pairs = [_mean_std(v, f"curves[{name!r}][{k!r}]") for k, v in curve.items()]
            y = np.array([m for m, _ in pairs])
            std = np.array([s for _, s in pairs])
        if not (x.shape == y.shape == std.shape) or x.size == 0:
            raise ValueError(
                f"curves[{name!r}] needs as many x as y values (and std), got {x.size}, "
                f"{y.size}, {std.size}."
            )
        order = np.argsort(x)
        parsed[str(name)] = (x[order], y[order], std[order])

    all_x = np.concatenate([x for x, _, _ in parsed.values()])
    if log_x is None:
        log_x = bool((all_x > 0).all() and all_x.max() / all_x.min() >= 20)

    fig = _new_figure(5.0, 3.4)
    ax = fig.add_subplot()
    for colour, (name, (x, y, std)) in zip(_line_colours(len(parsed)), parsed.items()):
        ax.plot(x, y, color=colour, marker="o", markersize=4, linewidth=1.6, label=name)
        if std.any():
            ax.fill_between(x, y - std, y + std, color=to_rgba(colour, 0.2), linewidth=0)
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(np.unique(all_x))
        ax.set_xticklabels([f"{v:g}" for v in np.unique(all_x)])
        ax.minorticks_off()
    _style_axis(ax)
    ax.set_xlabel(x_label, fontsize=FONT_SIZE)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=FONT_SIZE + 1)
    ax.legend(fontsize=FONT_SIZE - 1, frameon=False)
    return fig
