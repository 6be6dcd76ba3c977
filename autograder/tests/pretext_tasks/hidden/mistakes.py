"""Known mistakes of Assignment 3, part I, discriminative pretext tasks (hidden: never ships).

Each entry makes one mistake in the reference (``autograder.mistakes.Mistake``) and says what
is wrong, how to fix it and where the lecture or the paper says so. ``python -m autograder
record pretext_tasks`` records what each gives on the public tests.
"""

from autograder.mistakes import Mistake

MISTAKES = [
    # ---- Part 1: rotation ----------------------------------------------------------------------
    Mistake(
        "rotation_batch",
        "image-major",
        "order the batch rotation-major: all N images at the first rotation, then all N at the "
        "second, and so on, labels [0]*N + [1]*N + ... (docstring).",
        (
            (
                "torch.cat([augment.rotate90(images, k) for k in rotations])",
                "torch.stack([augment.rotate90(images, k) for k in rotations], dim=1).flatten(0, 1)",
            ),
            (
                "torch.arange(len(rotations), device=images.device).repeat_interleave(n)",
                "torch.arange(len(rotations), device=images.device).repeat(n)",
            ),
        ),
    ),
    Mistake(
        "rotation_batch",
        "labels-are-quarter-turns",
        "a label is the INDEX of the rotation in rotations (0..R-1), not the number of quarter "
        "turns: with rotations=(1, 3) the classes are 0 and 1 (docstring).",
        (
            (
                "torch.arange(len(rotations), device=images.device).repeat_interleave(n)",
                "torch.tensor(rotations, device=images.device).repeat_interleave(n)",
            ),
        ),
    ),
    Mistake(
        "rotation_batch",
        "clockwise",
        "turn counter-clockwise, as torch.rot90(x, k, dims=(2, 3)) does: rotation k is k "
        "quarter turns that way (docstring).",
        (
            (
                "augment.rotate90(images, k) for k in rotations",
                "augment.rotate90(images, -k) for k in rotations",
            ),
        ),
    ),
    Mistake(
        "rotation_loss",
        "softmax-before-cross-entropy",
        "F.cross_entropy takes the raw logits and applies log-softmax itself: a softmax before it "
        "squashes the loss and its gradient.",
        (("F.cross_entropy(logits, labels)", "F.cross_entropy(logits.softmax(dim=1), labels)"),),
    ),
    Mistake(
        "rotation_loss",
        "summed",
        "average the cross-entropy over all R * N rotated images, do not sum it (docstring; "
        "Gidaris et al. 2018, Sec. 2).",
        (("F.cross_entropy(logits, labels)", 'F.cross_entropy(logits, labels, reduction="sum")'),),
    ),
    Mistake(
        "rotation_loss",
        "accuracy-as-count",
        "acc is the FRACTION of rotations predicted correctly (a mean), not their number.",
        (
            (
                "(logits.detach().argmax(dim=1) == labels).float().mean()",
                "(logits.detach().argmax(dim=1) == labels).float().sum()",
            ),
        ),
    ),
    # ---- Part 2: context prediction ------------------------------------------------------------
    Mistake(
        "sample_context_pairs",
        "no-jitter",
        "shift each patch by its own random jitter in -jitter..jitter (the 4th draw), so that the "
        "grid's exact alignment gives nothing away (Doersch et al. 2015, Sec. 3).",
        (
            (
                "shifts = draw(torch.randint, 2 * jitter + 1, (n, 2, 2), generator=generator) - jitter",
                "shifts = torch.zeros(n, 2, 2, dtype=torch.long)",
            ),
        ),
    ),
    Mistake(
        "sample_context_pairs",
        "one-jitter-for-both",
        "jitter the centre and the neighbour independently, one (dy, dx) each: a shared shift "
        "moves the pair together and keeps the gap exact (docstring; Doersch et al. 2015, Sec. 3).",
        (
            (
                "shifts = draw(torch.randint, 2 * jitter + 1, (n, 2, 2), generator=generator) - jitter",
                "shifts = (draw(torch.randint, 2 * jitter + 1, (n, 1, 2), generator=generator) - jitter).expand(n, 2, 2)",
            ),
        ),
    ),
    Mistake(
        "sample_context_pairs",
        "no-gap",
        "neighbouring cells are patch + gap apart: the gap keeps lines and textures from "
        "continuing across the border and giving the answer away (Doersch et al. 2015, Sec. 3).",
        (("    stride = patch + gap\n", "    stride = patch\n"),),
    ),
    Mistake(
        "sample_context_pairs",
        "draws-out-of-order",
        "draw in the documented order (grid top, grid left, labels, jitters), so that a seeded "
        "generator gives the reference's pairs (docstring).",
        (
            (
                "    labels = draw(torch.randint, 8, (n,), generator=generator)  # [N]\n"
                "    shifts = draw(torch.randint, 2 * jitter + 1, (n, 2, 2), generator=generator) - jitter  # [N, 2, 2]",
                "    shifts = draw(torch.randint, 2 * jitter + 1, (n, 2, 2), generator=generator) - jitter  # [N, 2, 2]\n"
                "    labels = draw(torch.randint, 8, (n,), generator=generator)  # [N]",
            ),
        ),
    ),
    Mistake(
        "SiameseContextNet.forward",
        "neighbour-first",
        "concatenate the centre's features first and the neighbour's second: the label says "
        "where the neighbour lies relative to the centre (docstring).",
        (
            (
                "torch.cat([features[:n], features[n:]], dim=1)",
                "torch.cat([features[n:], features[:n]], dim=1)",
            ),
        ),
    ),
    Mistake(
        "SiameseContextNet.forward",
        "features-summed",
        "concatenate the two feature vectors ([N, 2D]); adding them loses which patch is which, "
        "and the relative position with it (Doersch et al. 2015, Fig. 3: late fusion).",
        (
            (
                "pair = torch.cat([features[:n], features[n:]], dim=1)",
                "pair = torch.cat([features[:n] + features[n:], features[:n] + features[n:]], dim=1)",
            ),
        ),
    ),
    # ---- Part 3: jigsaw ------------------------------------------------------------------------
    Mistake(
        "hamming_permutation_set",
        "random-picks",
        "pick, greedily, the candidate whose smallest Hamming distance to the permutations already "
        "chosen is largest (Noroozi & Favaro 2016, Algorithm 1), not a random one.",
        (
            (
                "        pick = int(np.argmax(nearest * (num_tiles * num_permutations + 1) + total))\n",
                "        pick = int(np.argmax(np.where(nearest > 0, 1 + (np.arange(num) * 7919) % 101, 0)))\n",
            ),
        ),
    ),
    Mistake(
        "hamming_permutation_set",
        "total-distance-only",
        "maximise the MINIMUM distance to the chosen set first (then the total): the largest "
        "total distance can sit next to one chosen permutation (Noroozi & Favaro 2016, Algorithm 1).",
        (
            (
                "        pick = int(np.argmax(nearest * (num_tiles * num_permutations + 1) + total))\n",
                "        pick = int(np.argmax(np.where(nearest > 0, total, -1)))\n",
            ),
        ),
    ),
    Mistake(
        "jigsaw_tiles",
        "column-order",
        "number the tiles in reading order: tile k sits in row k // grid and column k % grid.",
        (("rows, cols = index // grid, index % grid", "rows, cols = index % grid, index // grid"),),
    ),
    Mistake(
        "jigsaw_tiles",
        "no-tile-offsets",
        "shift each tile inside its cell by a random offset in 0..cell - tile, so that tile edges "
        "do not line up across the puzzle (Noroozi & Favaro 2016, Sec. 3.2) (docstring, draw 3).",
        (
            (
                "offsets = draw(torch.randint, cell - tile + 1, (n, num_tiles, 2), generator=generator)",
                "offsets = torch.zeros(n, num_tiles, 2, dtype=torch.long)",
            ),
        ),
    ),
    Mistake(
        "jigsaw_tiles",
        "tile-stride",
        "cells are cell px apart and each tile (tile <= cell) sits inside its cell: step by "
        "cell, not by tile, between neighbouring tiles.",
        (
            ("tops = win_top[:, None] + rows * cell", "tops = win_top[:, None] + rows * tile"),
            ("lefts = win_left[:, None] + cols * cell", "lefts = win_left[:, None] + cols * tile"),
        ),
    ),
    Mistake(
        "jigsaw_tiles",
        "window-not-random",
        "with random=True place the grid's window at a random position in the image (draws 1 and "
        "2), not always in the centre.",
        (
            (
                "win_top = draw(torch.randint, height - window + 1, (n,), generator=generator)",
                "win_top = torch.full((n,), (height - window) // 2)",
            ),
            (
                "win_left = draw(torch.randint, width - window + 1, (n,), generator=generator)",
                "win_left = torch.full((n,), (width - window) // 2)",
            ),
        ),
    ),
    Mistake(
        "shuffle_tiles",
        "inverse-applied",
        "position i of the shuffled puzzle shows tile permutation[i]: index the tiles with the "
        "permutation itself, not its inverse (docstring).",
        (
            (
                "tiles[batch, permutations.to(tiles.device)]",
                "tiles[batch, permutations.argsort(dim=1).to(tiles.device)]",
            ),
        ),
    ),
    Mistake(
        "shuffle_tiles",
        "first-permutation-for-all",
        "every puzzle n is shuffled by its own permutation, row n of permutations.",
        (
            (
                "tiles[batch, permutations.to(tiles.device)]",
                "tiles[:, permutations[0].to(tiles.device)]",
            ),
        ),
    ),
    Mistake(
        "invert_permutations",
        "not-inverted",
        "the inverse permutation undoes the shuffle: inverse[permutation[i]] = i, which is "
        "argsort(permutation).",
        (("return torch.argsort(permutations, dim=-1)", "return permutations.clone()"),),
    ),
    Mistake(
        "invert_permutations",
        "wrong-axis",
        "invert each permutation along its own axis (dim=-1), one row per puzzle.",
        (("torch.argsort(permutations, dim=-1)", "torch.argsort(permutations, dim=0)"),),
    ),
    Mistake(
        "JigsawNet.forward",
        "tile-major",
        "flatten [N, T, ...] to [N * T, ...] image-major (tiles.flatten(0, 1)) and reshape back "
        "the same way, so that each row of [N, T * h] holds one puzzle's tiles in position order.",
        (
            (
                "per_tile.reshape(n, -1)",
                "per_tile.reshape(n, self.num_tiles, -1).transpose(0, 1).reshape(n, -1)",
            ),
        ),
    ),
    Mistake(
        "JigsawNet.forward",
        "tiles-summed",
        "put the T tile vectors side by side ([N, T * h]) in position order: the order is what "
        "the permutation changes (Noroozi & Favaro 2016, Fig. 3).",
        (
            (
                "per_tile.reshape(n, -1)",
                "per_tile.reshape(n, self.num_tiles, -1).sum(dim=1, keepdim=True).expand(-1, self.num_tiles, -1).reshape(n, -1)",
            ),
        ),
    ),
    # ---- Part 4: exemplar CNN ------------------------------------------------------------------
    Mistake(
        "exemplar_dataset",
        "seed-major",
        "order the views copy-major: all N seeds once, then all N again (seeds.repeat), with "
        "labels [0..N-1] repeated (docstring).",
        (
            ("seeds.repeat(copies, 1, 1, 1)", "seeds.repeat_interleave(copies, dim=0)"),
            (
                "torch.arange(num_seeds, device=images.device).repeat(copies)",
                "torch.arange(num_seeds, device=images.device).repeat_interleave(copies)",
            ),
        ),
    ),
    Mistake(
        "exemplar_dataset",
        "first-images-as-seeds",
        "choose the seed images at random, torch.randperm(M, generator=generator)[:N], not the "
        "first N (docstring).",
        (
            (
                "seed_index = torch.randperm(len(images), generator=generator)[:num_seeds]",
                "seed_index = torch.arange(num_seeds)",
            ),
        ),
    ),
    Mistake(
        "exemplar_dataset",
        "one-view-copied",
        "transform every copy separately (transform of the repeated batch), so that each seed "
        "gets K different views: copies of one view teach nothing (Dosovitskiy et al. 2014).",
        (
            (
                "views = transform(seeds.repeat(copies, 1, 1, 1), generator)",
                "views = transform(seeds, generator).repeat(copies, 1, 1, 1)",
            ),
        ),
    ),
    Mistake(
        "exemplar_classifier",
        "fixed-width",
        "one surrogate class per seed image: the head has num_seeds outputs (Dosovitskiy et al. "
        "2014; lecture: 'the number of parameters in the final layer depends on N').",
        (("PretextClassifier(encoder, num_seeds)", "PretextClassifier(encoder, 10)"),),
    ),
]

# Correct alternatives the docstrings allow: each passes every public and hidden test of its
# function (tests/test_mistakes.py).
ALLOWED = [
    Mistake(
        "SiameseContextNet.forward",
        "two-trunk-calls",
        "two calls of the trunk, one per patch batch, share the same parameters; the docstring "
        "allows it (in train mode BatchNorm then sees each batch alone).",
        (
            (
                "features = self.trunk(torch.cat([centre, neighbour]))",
                "features = torch.cat([self.trunk(centre), self.trunk(neighbour)])",
            ),
        ),
    ),
]
