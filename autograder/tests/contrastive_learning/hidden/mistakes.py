"""Known mistakes of Assignment 4, contrastive and Siamese learning (hidden: never ships).

Each entry makes one mistake in the reference (``autograder.mistakes.Mistake``: text
replacements inside one graded function) and says, in one sentence, what is wrong, how to fix
it and where the lecture or the paper says so. ``python -m autograder record
contrastive_learning`` records what each gives on the public tests; ``tests/test_mistakes.py``
checks that every entry fails a public test that names it, and a hidden test.
"""

from autograder.mistakes import Mistake

MISTAKES = [
    # ---- Part 1: margin contrastive loss -------------------------------------------------------
    Mistake(
        "margin_contrastive_loss",
        "sqrt-without-guard",
        "the gradient is NaN when a pair's two embeddings are identical, because the derivative "
        "of sqrt is infinite at 0: use d^2 itself for similar pairs and clamp d^2 (e.g. by "
        "1e-12) before the square root inside the hinge (see the docstring).",
        (
            ("squared.clamp(min=1e-12).sqrt()", "squared.sqrt()"),
            ("torch.where(similar, squared, push)", "torch.where(similar, distance.pow(2), push)"),
        ),
    ),
    Mistake(
        "margin_contrastive_loss",
        "hinge-not-squared",
        "the dissimilar term is max(0, m - d) squared, not max(0, m - d) itself (lecture, margin "
        "loss; Hadsell, Chopra & LeCun 2006, Eq. 4).",
        (("(margin - distance).clamp(min=0).pow(2)", "(margin - distance).clamp(min=0)"),),
    ),
    Mistake(
        "margin_contrastive_loss",
        "terms-swapped",
        "the two terms are swapped: similar pairs (similar == True) are pulled together with "
        "d^2, dissimilar pairs pushed apart with max(0, m - d)^2 (lecture, margin loss).",
        (("torch.where(similar, squared, push)", "torch.where(~similar, squared, push)"),),
    ),
    Mistake(
        "margin_contrastive_loss",
        "hinge-on-squared-distance",
        "the hinge compares the margin with the distance d, not with d^2: max(0, m - d)^2 "
        "(Hadsell, Chopra & LeCun 2006, Eq. 4).",
        (("(margin - distance).clamp(min=0)", "(margin - squared).clamp(min=0)"),),
    ),
    Mistake(
        "margin_contrastive_loss",
        "sum-not-mean",
        "the loss is the mean over the N pairs, not their sum (docstring).",
        (
            (
                "torch.where(similar, squared, push).mean()",
                "torch.where(similar, squared, push).sum()",
            ),
        ),
    ),
    # ---- Part 2: SimCLR ------------------------------------------------------------------------
    Mistake(
        "cosine_similarity_matrix",
        "no-norm-clamp",
        "an all-zero row is divided by a zero norm and gives NaN: clamp each row's norm below by "
        "1e-8 before dividing (docstring).",
        ((".sqrt().clamp(min=1e-8)", ".sqrt()"),),
    ),
    Mistake(
        "cosine_similarity_matrix",
        "columns-normalised",
        "normalise each row (the norm over the feature axis, dim=1), not each column: s_ij = "
        "z_i . z_j / (||z_i|| ||z_j||) (SimCLR Sec. 2.1).",
        (("z.pow(2).sum(dim=1, keepdim=True)", "z.pow(2).sum(dim=0, keepdim=True)"),),
    ),
    Mistake(
        "cosine_similarity_matrix",
        "not-normalised",
        "these are dot products, not cosines: divide each row by its L2 norm before the matrix "
        "product, so that the diagonal is 1 (SimCLR Sec. 2.1: sim(u, v) = u^T v / ||u|| ||v||).",
        (("return unit @ unit.T", "return z @ z.T"),),
    ),
    Mistake(
        "cosine_similarity_matrix",
        "squared-norm",
        "divide by the norm ||z_i||, the square root of the sum of squares, not by the squared "
        "norm (SimCLR Sec. 2.1).",
        ((".sqrt().clamp(min=1e-8)", ".clamp(min=1e-8)"),),
    ),
    Mistake(
        "cosine_similarity_matrix",
        "transposed-product",
        "unit^T @ unit is the [D, D] matrix of feature correlations; the similarities of the M "
        "rows are unit @ unit^T, [M, M].",
        (("return unit @ unit.T", "return unit.T @ unit"),),
    ),
    Mistake(
        "nt_xent_loss_loop",
        "diagonal-in-denominator",
        "the denominator includes k = i, each view's similarity with itself: sum over the other "
        "2N - 1 views only (SimCLR Eq. 1, the indicator 1[k != i]; lecture, NT-Xent).",
        (("            if k != i:\n", "            if True:\n"),),
    ),
    Mistake(
        "nt_xent_loss_loop",
        "positive-left-out",
        "the denominator also holds the positive partner j: it sums exp(s_ik / tau) over every "
        "k != i (SimCLR Eq. 1).",
        (("            if k != i:\n", "            if k != i and k != j:\n"),),
    ),
    Mistake(
        "nt_xent_loss_loop",
        "first-view-only",
        "average L_i over all 2N rows, both (i, j) and (j, i): the loop covers only the first N "
        "(SimCLR Algorithm 1).",
        (("    for i in range(2 * n):\n", "    for i in range(n):\n"),),
    ),
    Mistake(
        "nt_xent_loss_loop",
        "no-temperature",
        "divide the similarities by the temperature tau before the exponential (SimCLR Eq. 1: "
        "exp(sim(z_i, z_k) / tau)).",
        (("torch.cat([z1, z2])) / temperature", "torch.cat([z1, z2]))"),),
    ),
    Mistake(
        "nt_xent_loss_loop",
        "interleaved-partner",
        "with z = [z1; z2] stacked, row i's partner is row (i + N) mod 2N, not its neighbour "
        "(SimCLR's 2k-1, 2k numbering is for interleaved views).",
        (("j = (i + n) % (2 * n)", "j = i ^ 1"),),
    ),
    Mistake(
        "nt_xent_loss",
        "diagonal-not-masked",
        "the diagonal s_ii is left in the softmax denominator: set it to -inf before the "
        "cross-entropy (SimCLR Eq. 1 sums over k != i).",
        (('logits = logits.masked_fill(self_mask, float("-inf"))', "logits = logits"),),
    ),
    Mistake(
        "nt_xent_loss",
        "diagonal-set-to-zero",
        "set the diagonal to -inf, not 0: a logit of 0 still adds exp(0) = 1 to every "
        "denominator (SimCLR Eq. 1 sums over k != i).",
        (('masked_fill(self_mask, float("-inf"))', "masked_fill(self_mask, 0.0)"),),
    ),
    Mistake(
        "nt_xent_loss",
        "first-view-only",
        "average the cross-entropy over all 2N rows, both (i, j) and (j, i), not only the first "
        "view's N rows (SimCLR Sec. 2.1, 'the final loss is computed across all positive pairs').",
        (
            (
                "return F.cross_entropy(logits, targets)",
                "return F.cross_entropy(logits[:n], targets[:n])",
            ),
        ),
    ),
    Mistake(
        "nt_xent_loss",
        "targets-on-diagonal",
        "row i's target is its partner, column (i + N) mod 2N, not column i (the view itself, "
        "masked out).",
        (
            (
                "(torch.arange(2 * n, device=logits.device) + n) % (2 * n)",
                "torch.arange(2 * n, device=logits.device)",
            ),
        ),
    ),
    Mistake(
        "nt_xent_loss",
        "no-temperature",
        "divide the cosine similarities by the temperature tau before the cross-entropy "
        "(SimCLR Eq. 1).",
        (("torch.cat([z1, z2])) / temperature", "torch.cat([z1, z2]))"),),
    ),
    Mistake(
        "ProjectionHead.__init__",
        "no-batchnorm",
        "SimCLR's head puts a BatchNorm1d(hidden_dim) after the first Linear: Linear, "
        "BatchNorm1d, ReLU, Linear (Chen et al. 2020's code; lightly's SimCLRProjectionHead).",
        (("            nn.BatchNorm1d(hidden_dim),\n", ""),),
    ),
    Mistake(
        "ProjectionHead.__init__",
        "relu-before-batchnorm",
        "the BatchNorm1d comes before the ReLU: Linear, BatchNorm1d, ReLU, Linear (docstring).",
        (
            (
                "nn.BatchNorm1d(hidden_dim),\n            nn.ReLU(),",
                "nn.ReLU(),\n            nn.BatchNorm1d(hidden_dim),",
            ),
        ),
    ),
    Mistake(
        "ProjectionHead.__init__",
        "widths-swapped",
        "the hidden layer is hidden_dim wide and the output out_dim: Linear(in_dim, hidden_dim), "
        "BatchNorm1d(hidden_dim), ReLU, Linear(hidden_dim, out_dim).",
        (
            ("nn.Linear(in_dim, hidden_dim)", "nn.Linear(in_dim, out_dim)"),
            ("nn.BatchNorm1d(hidden_dim)", "nn.BatchNorm1d(out_dim)"),
            ("nn.Linear(hidden_dim, out_dim)", "nn.Linear(out_dim, hidden_dim)"),
        ),
    ),
    Mistake(
        "ProjectionHead.__init__",
        "relu-on-output",
        "the head's output layer has no ReLU: z = W2 ReLU(BN(W1 h)) (SimCLR Sec. 2.1).",
        (
            (
                "nn.Linear(hidden_dim, out_dim),\n",
                "nn.Linear(hidden_dim, out_dim),\n            nn.ReLU(),\n",
            ),
        ),
    ),
    Mistake(
        "simclr_step",
        "two-forward-passes",
        "run the model ONCE on the 2N views concatenated: two forward passes normalise each "
        "view's batch separately, unlike SimCLR's global BatchNorm (docstring, step 3).",
        (("z = model(torch.cat([view1, view2]))", "z = torch.cat([model(view1), model(view2)])"),),
    ),
    Mistake(
        "simclr_step",
        "one-view-twice",
        "draw two views, calling augment twice (view1, then view2): two copies of one view "
        "make the positive pair trivial (SimCLR Algorithm 1: t ~ T, t' ~ T).",
        (("view2 = augment(x, generator)", "view2 = view1"),),
    ),
    Mistake(
        "simclr_step",
        "uint8-not-converted",
        "convert the images with as_float_images first: the augmentations expect floats in "
        "[0, 1], and a uint8 batch holds 0..255 (docstring, step 1).",
        (("x = as_float_images(images)", "x = images"),),
    ),
    Mistake(
        "simclr_step",
        "interleaved-split",
        "split z into its first N rows (view 1) and its last N rows (view 2), the order in "
        "which you concatenated the views (z.chunk(2)).",
        (("z1, z2 = z.chunk(2)", "z1, z2 = z[0::2], z[1::2]"),),
    ),
    # ---- Part 3: MoCo --------------------------------------------------------------------------
    Mistake(
        "momentum_update",
        "weights-swapped",
        "the target keeps m of its own weights: theta_k <- m theta_k + (1 - m) theta_q (MoCo "
        "Eq. 2), not m theta_q + (1 - m) theta_k.",
        (
            (
                "theta_k.mul_(momentum).add_(theta_q.detach(), alpha=1.0 - momentum)",
                "theta_k.mul_(1.0 - momentum).add_(theta_q.detach(), alpha=momentum)",
            ),
        ),
    ),
    Mistake(
        "momentum_update",
        "buffers-not-copied",
        "copy the buffers (BatchNorm running statistics and counters) from online to target: "
        "they are not parameters, and zip(parameters) leaves them behind (docstring).",
        (
            (
                "        buffer_k.copy_(buffer_q)  # running statistics are not averaged\n",
                "        pass\n",
            ),
        ),
    ),
    Mistake(
        "momentum_update",
        "buffers-averaged",
        "buffers (BatchNorm running statistics) are copied from online as they are, not "
        "averaged with the momentum (docstring).",
        (
            (
                "        buffer_k.copy_(buffer_q)  # running statistics are not averaged\n",
                "        if buffer_k.is_floating_point():\n"
                "            buffer_k.mul_(momentum).add_(buffer_q, alpha=1.0 - momentum)\n"
                "        else:\n"
                "            buffer_k.copy_(buffer_q)\n",
            ),
        ),
    ),
    Mistake(
        "momentum_update",
        "online-moved",
        "move the target (the second argument) towards the online network, in place, and leave "
        "the online network unchanged (MoCo Eq. 2 updates theta_k).",
        (
            (
                "theta_k.mul_(momentum).add_(theta_q.detach(), alpha=1.0 - momentum)",
                "theta_q.mul_(momentum).add_(theta_k.detach(), alpha=1.0 - momentum)",
            ),
        ),
    ),
    Mistake(
        "KeyQueue.enqueue",
        "pointer-not-wrapped",
        "advance the pointer modulo K: ptr <- (ptr + N) mod K, so that it always names a row "
        "of the queue (docstring).",
        (("self.ptr.copy_((self.ptr + n) % self.size)", "self.ptr.copy_(self.ptr + n)"),),
    ),
    Mistake(
        "KeyQueue.enqueue",
        "pointer-not-advanced",
        "advance the pointer by N after writing the keys, or the next batch overwrites this one "
        "(MoCo Algorithm 1, enqueue and dequeue).",
        (("        self.ptr.copy_((self.ptr + n) % self.size)\n", ""),),
    ),
    Mistake(
        "KeyQueue.enqueue",
        "written-from-row-0",
        "write the keys from the pointer on, rows (ptr + i) mod K, not from row 0: the oldest "
        "entries are the ones replaced (MoCo Sec. 3.2).",
        (
            (
                "rows = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size",
                "rows = torch.arange(n, device=self.keys.device)",
            ),
        ),
    ),
    Mistake(
        "KeyQueue.enqueue",
        "pointer-by-one",
        "advance the pointer by the number of keys N, not by one per batch (docstring: "
        "ptr <- (ptr + N) mod K).",
        (
            (
                "self.ptr.copy_((self.ptr + n) % self.size)",
                "self.ptr.copy_((self.ptr + 1) % self.size)",
            ),
        ),
    ),
    Mistake(
        "moco_loss",
        "keys-not-detached",
        "no gradient may reach the keys k: they come from the momentum encoder, which is never "
        "back-propagated (MoCo Sec. 3.2); detach k.",
        (("F.normalize(k.detach(), dim=1)", "F.normalize(k, dim=1)"),),
    ),
    Mistake(
        "moco_loss",
        "queue-not-detached",
        "no gradient may reach the queue: its keys are constants of this step (MoCo Algorithm "
        "1); detach it.",
        (("F.normalize(queue.detach(), dim=1)", "F.normalize(queue, dim=1)"),),
    ),
    Mistake(
        "moco_loss",
        "positive-not-first",
        "put the positive logit q.k+ in column 0, the target of every row, and the queue's "
        "logits after it (MoCo Algorithm 1: logits = cat([l_pos, l_neg])).",
        (("torch.cat([positive, negative], dim=1)", "torch.cat([negative, positive], dim=1)"),),
    ),
    Mistake(
        "moco_loss",
        "no-temperature",
        "divide the logits by the temperature tau (MoCo Eq. 1: exp(q.k / tau)).",
        (
            (
                "torch.cat([positive, negative], dim=1) / temperature",
                "torch.cat([positive, negative], dim=1)",
            ),
        ),
    ),
    Mistake(
        "moco_loss",
        "query-not-normalised",
        "normalise the queries q too: the logits are cosine similarities over tau, so q, k and "
        "the queue are all unit vectors (docstring; MoCo's encoders output unit vectors).",
        (("    q = F.normalize(q, dim=1)  # [N, D]\n", ""),),
    ),
    Mistake(
        "MoCo.step",
        "enqueue-before-loss",
        "compute the loss with the queue as it was, then enqueue k: the current keys must not "
        "be their own negatives (MoCo Algorithm 1: enqueue after the update).",
        (
            (
                "        loss = moco_loss(q, k, self.queue.keys.clone(), self.temperature)\n"
                "        self.queue.enqueue(k)\n",
                "        self.queue.enqueue(k)\n"
                "        loss = moco_loss(q, k, self.queue.keys.clone(), self.temperature)\n",
            ),
        ),
    ),
    Mistake(
        "MoCo.step",
        "no-momentum-update",
        "update the key encoder and the key projector with momentum_update at the start of "
        "each step (MoCo Eq. 2), or they stay at their initial weights.",
        (
            (
                "        momentum_update(self.encoder, self.key_encoder, self.momentum)\n"
                "        momentum_update(self.projector, self.key_projector, self.momentum)\n",
                "",
            ),
        ),
    ),
    Mistake(
        "MoCo.step",
        "projector-not-updated",
        "the key projector follows the query projector with momentum too, not only the key "
        "encoder (MoCo v2: the key encoder f_k includes its MLP head).",
        (("        momentum_update(self.projector, self.key_projector, self.momentum)\n", ""),),
    ),
    Mistake(
        "MoCo.step",
        "keys-from-query-encoder",
        "the keys come from the momentum key encoder, k = self.keys(view_k), not from the query "
        "encoder (MoCo Fig. 1).",
        (("k = self.keys(view_k)", "k = F.normalize(self(view_k), dim=1).detach()"),),
    ),
    Mistake(
        "MoCo.step",
        "one-view",
        "queries and keys come from two different views, view_q and view_k, each drawn with "
        "augment (MoCo Algorithm 1: x_q = aug(x), x_k = aug(x)).",
        (("view_k = augment(x, generator)", "view_k = view_q"),),
    ),
    # ---- Part 4: BYOL --------------------------------------------------------------------------
    Mistake(
        "byol_loss",
        "target-not-detached",
        "no gradient may reach the target z: BYOL back-propagates into the online network only "
        "(Grill et al. 2020, Fig. 2 'sg'); detach z.",
        (("F.normalize(z.detach(), dim=1)", "F.normalize(z, dim=1)"),),
    ),
    Mistake(
        "byol_loss",
        "not-normalised",
        "normalise p and z to unit length before comparing them: the loss is "
        "||p/||p|| - z/||z||||^2 = 2 - 2 cos(p, z) (BYOL Eq. 2).",
        (("(F.normalize(p, dim=1) * F.normalize(z.detach(), dim=1))", "(p * z.detach())"),),
    ),
    Mistake(
        "byol_loss",
        "negative-cosine",
        "BYOL's loss is 2 - 2 cos(p, z) (BYOL Eq. 2), in [0, 4]: -cos(p, z) has half the "
        "gradient and another value.",
        (("return (2 - 2 * cosine).mean()", "return (-cosine).mean()"),),
    ),
    Mistake(
        "byol_loss",
        "sum-over-batch",
        "average the per-sample loss over the batch, not sum it (docstring: averaged over the "
        "batch).",
        (("return (2 - 2 * cosine).mean()", "return (2 - 2 * cosine).sum()"),),
    ),
    Mistake(
        "BYOL.step",
        "one-direction",
        "symmetrise the loss, (L(p1, z2) + L(p2, z1)) / 2: each view is predicted from the other "
        "(BYOL Sec. 3.1).",
        (("loss = (byol_loss(p1, z2) + byol_loss(p2, z1)) / 2", "loss = byol_loss(p1, z2)"),),
    ),
    Mistake(
        "BYOL.step",
        "same-view-targets",
        "predict the OTHER view's target: pair p1 with z2 and p2 with z1 (BYOL Sec. 3.1).",
        (
            (
                "(byol_loss(p1, z2) + byol_loss(p2, z1)) / 2",
                "(byol_loss(p1, z1) + byol_loss(p2, z2)) / 2",
            ),
        ),
    ),
    Mistake(
        "BYOL.step",
        "no-momentum-update",
        "update the target encoder and target projector with momentum_update at the start of "
        "each step (BYOL Eq. 1), or the target never moves.",
        (
            (
                "        momentum_update(self.encoder, self.target_encoder, self.momentum)\n"
                "        momentum_update(self.projector, self.target_projector, self.momentum)\n",
                "",
            ),
        ),
    ),
    Mistake(
        "BYOL.step",
        "terms-summed",
        "the course averages the two terms, (L(p1, z2) + L(p2, z1)) / 2, to keep the loss in "
        "[0, 4]; the paper sums them (docstring, step 4).",
        (
            (
                "(byol_loss(p1, z2) + byol_loss(p2, z1)) / 2",
                "(byol_loss(p1, z2) + byol_loss(p2, z1))",
            ),
        ),
    ),
    Mistake(
        "BYOL.step",
        "targets-from-online",
        "the targets come from the target network, z = self.targets(views), not from the online "
        "projector (BYOL Sec. 3.1).",
        (
            (
                "z1, z2 = self.targets(views).chunk(2)",
                "z1, z2 = self.projector(self.encoder(views)).detach().chunk(2)",
            ),
        ),
    ),
    # ---- Part 5: SimSiam -----------------------------------------------------------------------
    Mistake(
        "simsiam_loss",
        "stop-gradient-ignored",
        "with stop_gradient=True no gradient may reach z1 or z2: detach them (SimSiam Eq. 4 and "
        "Sec. 4.1: without it the outputs collapse).",
        (("        z1, z2 = z1.detach(), z2.detach()  # the stop-gradient\n", "        pass\n"),),
    ),
    Mistake(
        "simsiam_loss",
        "predictions-detached",
        "the stop-gradient goes on the projections z, not on the predictions p: "
        "D(p1, stopgrad(z2)) (SimSiam Eq. 4).",
        (("z1, z2 = z1.detach(), z2.detach()", "p1, p2 = p1.detach(), p2.detach()"),),
    ),
    Mistake(
        "simsiam_loss",
        "one-term",
        "symmetrise: L = D(p1, z2)/2 + D(p2, z1)/2 (SimSiam Eq. 2).",
        (("return first / 2 + second / 2", "return first"),),
    ),
    Mistake(
        "simsiam_loss",
        "positive-cosine",
        "D is the NEGATIVE cosine similarity, -p/||p|| . z/||z||, which the training minimises "
        "(SimSiam Eq. 1).",
        (
            ("first = -(F.normalize(p1, dim=1)", "first = (F.normalize(p1, dim=1)"),
            ("second = -(F.normalize(p2, dim=1)", "second = (F.normalize(p2, dim=1)"),
        ),
    ),
    Mistake(
        "simsiam_loss",
        "same-view-pairs",
        "each prediction is compared with the OTHER view's projection: D(p1, z2) and D(p2, z1) "
        "(SimSiam Eq. 2).",
        (
            (
                "F.normalize(z2, dim=1)).sum(dim=1).mean()  # D(p1, z2)",
                "F.normalize(z1, dim=1)).sum(dim=1).mean()  # D(p1, z2)",
            ),
            (
                "F.normalize(z1, dim=1)).sum(dim=1).mean()  # D(p2, z1)",
                "F.normalize(z2, dim=1)).sum(dim=1).mean()  # D(p2, z1)",
            ),
        ),
    ),
    Mistake(
        "output_std",
        "not-normalised",
        "normalise each output to unit length before taking the std: SimSiam's Fig. 2 tracks "
        "the std of z / ||z||_2, about 1/sqrt(d) when healthy.",
        (("unit = F.normalize(z.float(), dim=1)", "unit = z.float()"),),
    ),
    Mistake(
        "output_std",
        "std-over-channels",
        "take the std of each channel over the N samples (dim=0), then average the D values; "
        "the std over dim=1 measures something else (SimSiam Fig. 2).",
        (("unit.std(dim=0).mean()", "unit.std(dim=1).mean()"),),
    ),
    Mistake(
        "output_std",
        "columns-normalised",
        "normalise each row (each sample's output, dim=1) to unit length, not each column "
        "(SimSiam Fig. 2: the std of z / ||z||_2).",
        (("F.normalize(z.float(), dim=1)", "F.normalize(z.float(), dim=0)"),),
    ),
    Mistake(
        "output_std",
        "biased-std",
        "use torch.std's default, Bessel-corrected (divide by N - 1), as the docstring asks, "
        "not the biased std.",
        (("unit.std(dim=0).mean()", "unit.std(dim=0, unbiased=False).mean()"),),
    ),
    Mistake(
        "simsiam_step",
        "std-of-predictions",
        "monitor the std of the projections z1, not of the predictions p1 (SimSiam Fig. 2 "
        "tracks the encoder's output z).",
        (('"std": output_std(z1)', '"std": output_std(p1)'),),
    ),
    Mistake(
        "simsiam_step",
        "stop-gradient-not-passed",
        "pass stop_gradient on to simsiam_loss: the ablation without it is run through this flag "
        "(SimSiam Sec. 4.1).",
        (("simsiam_loss(p1, p2, z1, z2, stop_gradient)", "simsiam_loss(p1, p2, z1, z2)"),),
    ),
    Mistake(
        "simsiam_step",
        "two-forward-passes",
        "run the model once on the two views concatenated, so that BatchNorm sees all 2N views "
        "as one batch (docstring).",
        (
            (
                "p, z = model(torch.cat([view1, view2]))",
                "(p_a, z_a), (p_b, z_b) = model(view1), model(view2)\n"
                "    p, z = torch.cat([p_a, p_b]), torch.cat([z_a, z_b])",
            ),
        ),
    ),
    Mistake(
        "simsiam_step",
        "projections-swapped",
        "pass the projections in order, simsiam_loss(p1, p2, z1, z2): the loss itself pairs p1 "
        "with z2 (SimSiam Algorithm 1).",
        (
            (
                "simsiam_loss(p1, p2, z1, z2, stop_gradient)",
                "simsiam_loss(p1, p2, z2, z1, stop_gradient)",
            ),
        ),
    ),
]

# Correct alternatives the docstrings allow: each passes every public and hidden test of its
# function (tests/test_mistakes.py).
ALLOWED = [
    Mistake(
        "nt_xent_loss_loop",
        "max-shift",
        "subtracting the row's largest logit before exp (a stable softmax) cancels in the ratio; "
        "the docstring allows it.",
        (
            (
                "        denominator = 0.0\n",
                "        top = max(s[i, k] for k in range(2 * n) if k != i)\n"
                "        denominator = 0.0\n",
            ),
            ("torch.exp(s[i, k])", "torch.exp(s[i, k] - top)"),
            ("torch.exp(s[i, j]) / denominator", "torch.exp(s[i, j] - top) / denominator"),
        ),
    ),
    Mistake(
        "nt_xent_loss",
        "log-softmax-by-hand",
        "the cross-entropy written as the mean of minus the log-softmax at each row's partner is "
        "F.cross_entropy itself; only lightly's loss is banned here.",
        (
            (
                "return F.cross_entropy(logits, targets)",
                "return -logits.log_softmax(dim=1)[torch.arange(2 * n), targets].mean()",
            ),
        ),
    ),
]
