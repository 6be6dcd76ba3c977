"""Known mistakes of Assignment 5, masked autoencoders (hidden: never ships).

Each entry makes one mistake in the reference (``autograder.mistakes.Mistake``) and says what
is wrong, how to fix it and where the lecture or the paper says so. ``python -m autograder
record masked_autoencoders`` records what each gives on the public tests.
"""

from autograder.mistakes import Mistake

MISTAKES = [
    # ---- Part 1: patches -----------------------------------------------------------------------
    Mistake(
        "patchify",
        "channels-first-in-patch",
        "flatten each patch in (p, p, C) order, MAE's: permute to [N, H/p, W/p, p, p, C] before "
        "the last reshape (the decoder predicts exactly these vectors).",
        (("x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 2, 4, 1, 3, 5)"),),
    ),
    Mistake(
        "patchify",
        "patches-column-by-column",
        "number the patches row by row (patch i is in row i // (W/p), column i % (W/p)): the grid "
        "axes go H/p, then W/p.",
        (("x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 4, 2, 3, 5, 1)"),),
    ),
    Mistake(
        "patchify",
        "pixel-columns-first",
        "inside a patch, flatten row by row: the pixel's row in the patch, then its column, then "
        "the channel ((p, p, C) order).",
        (("x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 2, 4, 5, 3, 1)"),),
    ),
    Mistake(
        "patchify",
        "plain-reshape",
        "a plain reshape of [N, C, H, W] cuts rows of pixels, not square patches: reshape to "
        "[N, C, H/p, p, W/p, p], permute, then flatten.",
        (
            (
                "    x = images.reshape(n, c, grid_h, p, grid_w, p)  # [N, C, H/p, p, W/p, p]\n"
                "    x = x.permute(0, 2, 4, 3, 5, 1)  # [N, H/p, W/p, p, p, C]\n",
                "    x = images\n",
            ),
        ),
    ),
    Mistake(
        "unpatchify",
        "channels-first-in-patch",
        "each patch vector is in (p, p, C) order, as patchify makes it: reshape to "
        "[N, H/p, W/p, p, p, C] before moving the channels in front.",
        (
            (
                "x = patches.reshape(n, grid, grid, p, p, c)",
                "x = patches.reshape(n, grid, grid, c, p, p)",
            ),
            ("x = x.permute(0, 5, 1, 3, 2, 4)", "x = x.permute(0, 3, 1, 4, 2, 5)"),
        ),
    ),
    Mistake(
        "unpatchify",
        "transposed",
        "put the patch rows (H/p, then p) before the columns (W/p, then p): permute to "
        "[N, C, H/p, p, W/p, p], or the image comes back transposed.",
        (("x = x.permute(0, 5, 1, 3, 2, 4)", "x = x.permute(0, 5, 2, 4, 1, 3)"),),
    ),
    Mistake(
        "unpatchify",
        "plain-reshape",
        "undo patchify's permutation: a plain reshape of the patches to [N, C, H, W] scrambles "
        "the pixels.",
        (
            (
                "    x = patches.reshape(n, grid, grid, p, p, c)  # [N, H/p, W/p, p, p, C]\n"
                "    x = x.permute(0, 5, 1, 3, 2, 4)  # [N, C, H/p, p, W/p, p]\n",
                "    x = patches\n",
            ),
        ),
    ),
    # ---- Part 2: random masking ----------------------------------------------------------------
    Mistake(
        "random_masking",
        "large-noise-kept",
        "keep the tokens with the SMALLEST noise: argsort ascending, the first L_keep (MAE's "
        "random_masking: 'ascend: small is keep').",
        (
            (
                "ids_shuffle = torch.argsort(noise, dim=1)",
                "ids_shuffle = torch.argsort(noise, dim=1, descending=True)",
            ),
        ),
    ),
    Mistake(
        "random_masking",
        "mask-in-shuffled-order",
        "put the mask back in the image's order (gather it with ids_restore): it is built in the "
        "shuffled order, 0 for the first L_keep.",
        (("    mask = torch.gather(mask, 1, ids_restore)  # [N, L] in the original order\n", ""),),
    ),
    Mistake(
        "random_masking",
        "restore-not-inverted",
        "ids_restore is the INVERSE permutation, argsort(ids_shuffle): it takes every token of "
        "the shuffled order back to its place.",
        (("ids_restore = torch.argsort(ids_shuffle, dim=1)", "ids_restore = ids_shuffle"),),
    ),
    Mistake(
        "random_masking",
        "ratio-kept",
        "mask_ratio is the fraction REMOVED: keep L_keep = int(L * (1 - mask_ratio)) tokens.",
        (("num_keep = int(length * (1 - mask_ratio))", "num_keep = int(length * mask_ratio)"),),
    ),
    Mistake(
        "random_masking",
        "one-shuffle-for-the-batch",
        "draw noise for every sample, [N, L], so that each image loses its own patches (MAE: "
        "per-sample shuffling).",
        (
            (
                "noise = draw(torch.rand, (n, length), generator=generator, device=tokens.device)",
                "noise = draw(torch.rand, (1, length), generator=generator, device=tokens.device).expand(n, -1)",
            ),
        ),
    ),
    # ---- Part 3: sine-cosine positions ---------------------------------------------------------
    Mistake(
        "sincos_pos_embed_2d",
        "cosines-first",
        "in each half, all the sines come first, then all the cosines: [sin(pos * omega), "
        "cos(pos * omega)] (MAE's get_1d_sincos_pos_embed_from_grid).",
        (
            (
                "torch.cat([angles.sin(), angles.cos()], dim=1)",
                "torch.cat([angles.cos(), angles.sin()], dim=1)",
            ),
        ),
    ),
    Mistake(
        "sincos_pos_embed_2d",
        "frequency-exponent",
        "the frequencies are omega_k = 1 / 10000^(k / (d/2)), d = dim/2 the width of one half: "
        "k runs over d/2 = dim/4 values (docstring; Vaswani et al. 2017).",
        (
            (
                "torch.arange(quarter, dtype=torch.float64) / quarter)",
                "torch.arange(quarter, dtype=torch.float64) / dim)",
            ),
        ),
    ),
    Mistake(
        "sincos_pos_embed_2d",
        "no-class-row",
        "with cls_token=True put a row of zeros first: the class token has no position.",
        (("    if cls_token:\n        table =", "    if False:\n        table ="),),
    ),
    Mistake(
        "sincos_pos_embed_2d",
        "float64",
        "return float32, the dtype of the tokens it is added to (docstring).",
        (
            (
                "table = torch.cat([embed_1d(cols), embed_1d(rows)], dim=1).float()",
                "table = torch.cat([embed_1d(cols), embed_1d(rows)], dim=1)",
            ),
            (
                "torch.cat([torch.zeros(1, dim), table], dim=0)",
                "torch.cat([torch.zeros(1, dim, dtype=table.dtype), table], dim=0)",
            ),
        ),
    ),
    # ---- Part 4: the encoder -------------------------------------------------------------------
    Mistake(
        "MAEEncoder.forward",
        "positions-after-masking",
        "add the positions BEFORE masking, so that every kept token carries its own position: "
        "after masking the first L_keep rows of the table go to the wrong tokens (MAE's "
        "forward_encoder).",
        (
            (
                "tokens = self.patch_embed(x) + self.pos_embed[:, 1:]",
                "tokens = self.patch_embed(x)",
            ),
            (
                "visible, mask, ids_restore = random_masking(tokens, mask_ratio, generator)",
                "visible, mask, ids_restore = random_masking(tokens, mask_ratio, generator)\n"
                "        visible = visible + self.pos_embed[:, 1 : 1 + visible.shape[1]]",
            ),
        ),
    ),
    Mistake(
        "MAEEncoder.forward",
        "class-token-without-position",
        "give the class token its position row too, cls_token + pos_embed[:, :1], as MAE's "
        "forward_encoder does.",
        (("cls = (self.cls_token + self.pos_embed[:, :1])", "cls = self.cls_token"),),
    ),
    Mistake(
        "MAEEncoder.forward",
        "no-final-norm",
        "apply the final LayerNorm (self.norm) to the latent after the blocks.",
        (("return self.norm(latent), mask, ids_restore", "return latent, mask, ids_restore"),),
    ),
    Mistake(
        "MAEEncoder.forward",
        "class-token-last",
        "PREPEND the class token: the latent is [cls, visible tokens] (MAE's forward_encoder).",
        (
            (
                "latent = torch.cat([cls, visible], dim=1)",
                "latent = torch.cat([visible, cls], dim=1)",
            ),
        ),
    ),
    # ---- Part 5: the decoder -------------------------------------------------------------------
    Mistake(
        "MAEDecoder.forward",
        "order-not-restored",
        "put the tokens back in image order with ids_restore (gather) before adding the "
        "positions: the mask tokens are appended in the shuffled order (MAE's forward_decoder).",
        (("tokens = torch.gather(shuffled, 1, index)", "tokens = shuffled"),),
    ),
    Mistake(
        "MAEDecoder.forward",
        "class-prediction-kept",
        "drop the class token's row from the prediction ([:, 1:]): the decoder predicts the L "
        "patches only.",
        (("return self.pred(self.norm(tokens))[:, 1:]", "return self.pred(self.norm(tokens))"),),
    ),
    Mistake(
        "MAEDecoder.forward",
        "class-token-dropped-early",
        "keep the class token through the decoder's blocks (it is in the position table too) and "
        "drop its prediction at the end (MAE's forward_decoder).",
        (
            (
                "tokens = torch.cat([x[:, :1], tokens], dim=1) + self.pos_embed",
                "tokens = tokens + self.pos_embed[:, 1:]",
            ),
            ("return self.pred(self.norm(tokens))[:, 1:]", "return self.pred(self.norm(tokens))"),
        ),
    ),
    Mistake(
        "MAEDecoder.forward",
        "no-norm",
        "apply the decoder's LayerNorm (self.norm) before the prediction layer.",
        (("return self.pred(self.norm(tokens))[:, 1:]", "return self.pred(tokens)[:, 1:]"),),
    ),
    # ---- Part 6: the loss and the masked autoencoder -------------------------------------------
    Mistake(
        "mae_loss",
        "every-patch",
        "average over the MASKED patches only, sum(loss * mask) / sum(mask): 'We compute the loss "
        "only on masked patches, similar to BERT' (He et al. 2022, Sec. 3); F.mse_loss with its "
        "default reduction averages over every patch too (use reduction='none').",
        (("return (per_patch * mask).sum() / mask.sum()", "return per_patch.mean()"),),
    ),
    Mistake(
        "mae_loss",
        "biased-variance",
        "normalise each target patch with the UNBIASED variance, Tensor.var's default, as MAE's "
        "code does (docstring step 2); the biased one divides by p*p*C instead of p*p*C - 1.",
        (
            (
                "var = target.var(dim=-1, keepdim=True)",
                "var = target.var(dim=-1, keepdim=True, unbiased=False)",
            ),
        ),
    ),
    Mistake(
        "mae_loss",
        "visible-patches",
        "mask is 1 for a MASKED patch: the loss counts those, not the visible ones (docstring).",
        (
            (
                "    mask = mask.to(per_patch.dtype)  # [N, L]\n",
                "    mask = 1 - mask.to(per_patch.dtype)  # [N, L]\n",
            ),
        ),
    ),
    Mistake(
        "mae_loss",
        "summed-per-patch",
        "each patch's loss is the MEAN of its p*p*C squared errors, not their sum (docstring "
        "step 3).",
        (
            (
                "per_patch = (pred - target).pow(2).mean(dim=-1)",
                "per_patch = (pred - target).pow(2).sum(dim=-1)",
            ),
        ),
    ),
    Mistake(
        "mae_loss",
        "no-epsilon",
        "add 1e-6 to each patch's variance before the square root (NORM_PIX_EPS, as MAE's code): "
        "a flat patch has variance 0.",
        (("(var + NORM_PIX_EPS).sqrt()", "var.sqrt()"),),
    ),
    Mistake(
        "MaskedAutoencoder.forward",
        "norm-pix-ignored",
        "pass self.norm_pix_loss on to mae_loss: the normalised-pixel target is the paper's "
        "default (He et al. 2022, Sec. 3).",
        (
            (
                "mae_loss(x, pred, mask, self.patch_size, self.norm_pix_loss)",
                "mae_loss(x, pred, mask, self.patch_size)",
            ),
        ),
    ),
    Mistake(
        "MaskedAutoencoder.forward",
        "mask-inverted",
        "pass the encoder's mask as it is (1 = masked) to mae_loss, so that the loss counts the "
        "removed patches.",
        (
            (
                "mae_loss(x, pred, mask, self.patch_size, self.norm_pix_loss)",
                "mae_loss(x, pred, 1 - mask, self.patch_size, self.norm_pix_loss)",
            ),
        ),
    ),
]

# Correct alternatives the notebook and the docstrings allow: each passes every public and
# hidden test of its function (tests/test_mistakes.py).
ALLOWED = [
    Mistake(
        "sincos_pos_embed_2d",
        "row-half-first",
        "the row's half first, then the column's, is as good a position code; notebook 05 and the "
        "docstring say either order is correct.",
        (
            (
                "torch.cat([embed_1d(cols), embed_1d(rows)], dim=1)",
                "torch.cat([embed_1d(rows), embed_1d(cols)], dim=1)",
            ),
        ),
    ),
    Mistake(
        "mae_loss",
        "library-mse-per-value",
        "F.mse_loss with reduction='none' is the squared error itself; the module allows it.",
        (
            (
                "per_patch = (pred - target).pow(2).mean(dim=-1)",
                'per_patch = F.mse_loss(pred, target, reduction="none").mean(dim=-1)',
            ),
        ),
    ),
    Mistake(
        "mae_loss",
        "library-mseloss-module",
        "nn.MSELoss(reduction='none') is the squared error itself; the module allows it.",
        (
            (
                "per_patch = (pred - target).pow(2).mean(dim=-1)",
                'per_patch = nn.MSELoss(reduction="none")(pred, target).mean(dim=-1)',
            ),
        ),
    ),
]
