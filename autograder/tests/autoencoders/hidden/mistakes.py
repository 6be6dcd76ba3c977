"""Known mistakes of Assignment 2, autoencoders (hidden: never ships).

Each entry makes one mistake in the reference (``autograder.mistakes.Mistake``) and says what
is wrong, how to fix it and where the lecture or the paper says so. ``python -m autograder
record autoencoders`` records what each gives on the public tests.
"""

from autograder.mistakes import Mistake

MISTAKES = [
    # ---- Part 1: the autoencoder ---------------------------------------------------------------
    Mistake(
        "reconstruction_loss",
        "mean-over-pixels",
        "sum the squared error over the pixels of each image, then average over the batch "
        "(lecture: ||x - x_hat||^2 per image): a mean over pixels divides by C * H * W too.",
        (("squared.flatten(1).sum(dim=1).mean()", "squared.mean()"),),
    ),
    Mistake(
        "reconstruction_loss",
        "sum-over-batch",
        "average the per-image error over the batch, do not sum it (docstring).",
        (("squared.flatten(1).sum(dim=1).mean()", "squared.sum()"),),
    ),
    Mistake(
        "reconstruction_loss",
        "absolute-error",
        "square the error (an L2 loss), not its absolute value (lecture: ||x - x_hat||^2).",
        (("squared = (x - x_hat) ** 2", "squared = (x - x_hat).abs()"),),
    ),
    Mistake(
        "reconstruction_loss",
        "distance-not-squared",
        "use the SQUARED distance ||x - x_hat||^2 of each image, without the square root.",
        (("squared.flatten(1).sum(dim=1).mean()", "squared.flatten(1).sum(dim=1).sqrt().mean()"),),
    ),
    Mistake(
        "ConvAutoencoder.__init__",
        "no-batchnorm",
        "follow each strided convolution of the encoder with a BatchNorm2d, as the docstring "
        "lists the layers (the grader loads weights by these names).",
        (("                nn.BatchNorm2d(width),\n", ""),),
    ),
    Mistake(
        "ConvAutoencoder.__init__",
        "no-final-sigmoid",
        "end the decoder with a Sigmoid, so that reconstructions lie in [0, 1] like the images "
        "(docstring).",
        (("            nn.Sigmoid(),\n", ""),),
    ),
    Mistake(
        "ConvAutoencoder.__init__",
        "kernel-3",
        "use 4x4 kernels with stride 2 and padding 1 (docstring): they halve H and W exactly, "
        "and ConvTranspose2d with the same settings doubles them back.",
        (
            (
                "nn.Conv2d(prev, width, kernel_size=4, stride=2, padding=1)",
                "nn.Conv2d(prev, width, kernel_size=3, stride=2, padding=1)",
            ),
        ),
    ),
    Mistake(
        "ConvAutoencoder.__init__",
        "decoder-batchnorm-missing",
        "follow each transposed convolution of the decoder but the last with a BatchNorm2d "
        "(docstring).",
        (("                nn.BatchNorm2d(widths[k - 1]),\n", ""),),
    ),
    Mistake(
        "ConvAutoencoder.encode",
        "activation-ignored",
        "apply code_activation to the encoder's output in encode: 'relu' or 'sigmoid' codes "
        "are what the sparse autoencoder of Part 2 penalises (docstring).",
        (
            (
                '        if self.code_activation == "relu":\n            h = F.relu(h)\n'
                '        elif self.code_activation == "sigmoid":\n            h = torch.sigmoid(h)\n',
                "",
            ),
        ),
    ),
    Mistake(
        "ConvAutoencoder.encode",
        "activations-swapped",
        "code_activation='relu' applies a ReLU and 'sigmoid' a sigmoid, not the other way round.",
        (
            ("h = F.relu(h)", "h = torch.sigmoid(h)"),
            (
                'elif self.code_activation == "sigmoid":\n            h = torch.sigmoid(h)',
                'elif self.code_activation == "sigmoid":\n            h = F.relu(h)',
            ),
        ),
    ),
    Mistake(
        "ConvAutoencoder.decode",
        "sigmoid-twice",
        "the decoder already ends with a Sigmoid: a second one squeezes every pixel into "
        "[0.5, 0.73].",
        (("return self.decoder(h)", "return torch.sigmoid(self.decoder(h))"),),
    ),
    # ---- Part 2: the sparse autoencoder --------------------------------------------------------
    Mistake(
        "l1_sparsity_penalty",
        "no-abs",
        "the L1 norm sums ABSOLUTE values: ||h||_1 = sum_j |h_j| (lecture, sparse coding).",
        (("return h.abs().sum(dim=1).mean()", "return h.sum(dim=1).mean()"),),
    ),
    Mistake(
        "l1_sparsity_penalty",
        "mean-over-units",
        "sum |h_j| over the units of each code, then average over the batch (docstring).",
        (("return h.abs().sum(dim=1).mean()", "return h.abs().mean()"),),
    ),
    Mistake(
        "l1_sparsity_penalty",
        "squared",
        "the L1 penalty sums |h_j|, not h_j^2 (an L2 penalty shrinks codes but does not make "
        "them sparse).",
        (("return h.abs().sum(dim=1).mean()", "return h.pow(2).sum(dim=1).mean()"),),
    ),
    Mistake(
        "kl_sparsity_penalty",
        "no-clamp",
        "clamp rho_hat to [eps, 1 - eps] before the logs: a unit that is always 0 (or always 1) "
        "on the batch gives log(0) and an infinite or NaN penalty (docstring).",
        (("rho_hat = h.mean(dim=0).clamp(eps, 1 - eps)", "rho_hat = h.mean(dim=0)"),),
    ),
    Mistake(
        "kl_sparsity_penalty",
        "per-example",
        "rho_hat_j is the AVERAGE activation of unit j over the batch: compare that average "
        "with rho, not every single activation (Ng, CS294A notes, Sec. 2.3).",
        (
            ("rho_hat = h.mean(dim=0).clamp(eps, 1 - eps)", "rho_hat = h.clamp(eps, 1 - eps)"),
            ("    return kl.sum()\n", "    return kl.sum(dim=1).mean()\n"),
        ),
    ),
    Mistake(
        "kl_sparsity_penalty",
        "reversed",
        "the penalty is KL(rho || rho_hat) = rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / "
        "(1 - rho_hat)): rho, the target, comes first (Ng, CS294A notes, Sec. 2.3).",
        (
            (
                "rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))",
                "rho_hat * torch.log(rho_hat / rho) + (1 - rho_hat) * torch.log((1 - rho_hat) / (1 - rho))",
            ),
        ),
    ),
    Mistake(
        "kl_sparsity_penalty",
        "mean-over-units",
        "sum the KL divergences over the hidden units, sum_j KL(rho || rho_hat_j), do not "
        "average them (docstring).",
        (("    return kl.sum()\n", "    return kl.mean()\n"),),
    ),
    Mistake(
        "kl_sparsity_penalty",
        "one-term",
        "the KL divergence of two Bernoulli variables has two terms; the (1 - rho) log((1 - "
        "rho) / (1 - rho_hat)) term is missing (Ng, CS294A notes, Sec. 2.3).",
        (
            (
                "rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))",
                "rho * torch.log(rho / rho_hat)",
            ),
        ),
    ),
    Mistake(
        "sparse_autoencoder_loss",
        "weight-on-reconstruction",
        "the loss is R + lam * penalty: lam weighs the sparsity penalty, not the reconstruction.",
        (("reconstruction_loss(x, x_hat) + lam * s", "lam * reconstruction_loss(x, x_hat) + s"),),
    ),
    Mistake(
        "sparse_autoencoder_loss",
        "penalties-swapped",
        "penalty='l1' adds the L1 penalty and 'kl' the KL penalty, not the other way round.",
        (("        s = l1_sparsity_penalty(h)\n", "        s = kl_sparsity_penalty(h, rho)\n"),),
    ),
    Mistake(
        "sparse_autoencoder_loss",
        "no-weight",
        "multiply the penalty by lam: R + lam * penalty.",
        (("reconstruction_loss(x, x_hat) + lam * s", "reconstruction_loss(x, x_hat) + s"),),
    ),
    Mistake(
        "sparsity",
        "no-abs",
        "a code entry is near zero when |h| <= threshold: negative entries count by their size.",
        (("(h.abs() <= threshold)", "(h <= threshold)"),),
    ),
    Mistake(
        "sparsity",
        "count-not-fraction",
        "return the FRACTION of near-zero entries (a mean over all N * D), not their count.",
        (
            (
                "(h.abs() <= threshold).float().mean().item()",
                "(h.abs() <= threshold).float().sum().item()",
            ),
        ),
    ),
    # ---- Part 3: the denoising autoencoder -----------------------------------------------------
    Mistake(
        "mask_pixels",
        "one-mask-for-the-batch",
        "draw a separate random mask for every image (Vincent et al. 2010, Sec. 4.2: 'chosen at "
        "random for each example'), not one mask for the whole batch.",
        (
            (
                "scores = draw(torch.rand, n, height * width, generator=generator, device=x.device)",
                "scores = draw(torch.rand, 1, height * width, generator=generator, device=x.device).expand(n, -1)",
            ),
        ),
    ),
    Mistake(
        "mask_pixels",
        "global-generator",
        "draw the masks from the generator you are given (replearn.train.draw with "
        "generator=), so that one seed gives the same masks (docstring).",
        (
            (
                "scores = draw(torch.rand, n, height * width, generator=generator, device=x.device)",
                "scores = torch.rand(n, height * width, device=x.device)",
            ),
        ),
    ),
    Mistake(
        "mask_pixels",
        "input-modified",
        "leave x unchanged: masked_fill returns a new tensor, masked_fill_ overwrites the clean "
        "images the loss compares with.",
        (("return x.masked_fill(mask, 0.0), mask", "return x.masked_fill_(mask, 0.0), mask"),),
    ),
    Mistake(
        "mask_pixels",
        "probability-not-count",
        "mask EXACTLY round(fraction * H * W) pixels of every image (for example the k smallest "
        "of H * W uniform numbers), not each pixel with probability fraction (docstring).",
        (
            (
                "    masked_ids = scores.argsort(dim=1)[:, :num_masked]  # [N, k] k random pixels per image\n"
                "    mask = torch.zeros(n, height * width, dtype=torch.bool, device=x.device)  # [N, H*W]\n"
                "    mask.scatter_(1, masked_ids, True)\n",
                "    mask = scores < fraction\n",
            ),
        ),
    ),
    Mistake(
        "denoising_loss",
        "noisy-target",
        "compare the reconstruction with the CLEAN x: the network sees x_noisy but must give "
        "back x (Vincent et al. 2010, Sec. 3.3).",
        (
            (
                "x_noisy, _ = mask_pixels(x, fraction, generator)",
                "x_noisy, _ = mask_pixels(x, fraction, generator)\n    x = x_noisy",
            ),
        ),
    ),
    Mistake(
        "denoising_loss",
        "no-corruption",
        "corrupt x with mask_pixels(x, fraction, generator) and reconstruct from the corrupted "
        "copy: without noise this is a plain autoencoder (Vincent et al. 2010, Sec. 3.3).",
        (("x_hat, _ = model(x_noisy)", "x_hat, _ = model(x)"),),
    ),
    Mistake(
        "denoising_loss",
        "detached",
        "return the loss as a tensor that still has its graph (no .detach() or .item()): the "
        "caller back-propagates it.",
        (
            (
                "return reconstruction_loss(x, x_hat)",
                "return reconstruction_loss(x, x_hat).detach()",
            ),
        ),
    ),
    # ---- Part 4: greedy layer-wise pretraining -------------------------------------------------
    Mistake(
        "layer_input",
        "with-gradient",
        "compute the layer's input without gradients (torch.no_grad()): greedy training leaves "
        "the layers below k as they are (Bengio et al. 2007).",
        (
            (
                "    with torch.no_grad():\n        return stack.encode(x, upto=k)  # [N, D_k]\n",
                "    return stack.encode(x, upto=k)  # [N, D_k]\n",
            ),
        ),
    ),
    Mistake(
        "layer_input",
        "layer-k-included",
        "layer k sees x encoded by the layers 0 .. k-1 (upto=k), not by layer k itself.",
        (("stack.encode(x, upto=k)", "stack.encode(x, upto=k + 1)"),),
    ),
    Mistake(
        "layer_input",
        "raw-input",
        "layer k (k > 0) sees x encoded by the layers below it, not the raw input: each layer "
        "is trained 'on the output of the layer below' (Bengio et al. 2007).",
        (("return stack.encode(x, upto=k)", "return x"),),
    ),
    Mistake(
        "layer_reconstruction_loss",
        "decoder-sigmoid-missing",
        "apply the sigmoid after the decoder too: a_hat = sigmoid(decoders[k](h)), like the "
        "input a in [0, 1] (docstring).",
        (("a_hat = torch.sigmoid(stack.decoders[k](h))", "a_hat = stack.decoders[k](h)"),),
    ),
    Mistake(
        "layer_reconstruction_loss",
        "encoder-sigmoid-missing",
        "apply the sigmoid after the encoder: h = sigmoid(encoders[k](a)) (docstring).",
        (("h = torch.sigmoid(stack.encoders[k](a))", "h = stack.encoders[k](a)"),),
    ),
    Mistake(
        "layer_reconstruction_loss",
        "mean-squared-error",
        "use reconstruction_loss (sum over units, mean over the batch), as the whole stack does, "
        "not a mean over every entry.",
        (("return reconstruction_loss(a, a_hat)", "return ((a - a_hat) ** 2).mean()"),),
    ),
    Mistake(
        "pretrain_layer",
        "no-shuffle",
        "visit the data in a new random order each epoch, torch.randperm(N, generator=generator) "
        "(docstring).",
        (
            (
                "order = torch.randperm(x.shape[0], generator=generator)",
                "order = torch.arange(x.shape[0])",
            ),
        ),
    ),
    Mistake(
        "pretrain_layer",
        "gradients-accumulate",
        "call optimizer.zero_grad() before each backward: otherwise every step adds the "
        "gradients of all the earlier ones (docstring: zero_grad, backward, step).",
        (("            optimizer.zero_grad()\n", ""),),
    ),
    Mistake(
        "pretrain_layer",
        "sgd",
        "use torch.optim.Adam at lr, as the docstring says.",
        (
            (
                "optimizer = torch.optim.Adam(params, lr=lr)",
                "optimizer = torch.optim.SGD(params, lr=lr)",
            ),
        ),
    ),
    Mistake(
        "finetune_stack",
        "no-shuffle",
        "visit the data in a new random order each epoch, torch.randperm(N, generator=generator), "
        "as in pretrain_layer.",
        (
            (
                "order = torch.randperm(x.shape[0], generator=generator)",
                "order = torch.arange(x.shape[0])",
            ),
        ),
    ),
    Mistake(
        "finetune_stack",
        "gradients-accumulate",
        "call optimizer.zero_grad() before each backward, as in pretrain_layer.",
        (("            optimizer.zero_grad()\n", ""),),
    ),
    Mistake(
        "finetune_stack",
        "encoders-only",
        "fine-tune EVERY parameter of the stack, decoders included: the whole autoencoder is "
        "trained end to end for reconstruction (Hinton & Salakhutdinov 2006).",
        (
            (
                "torch.optim.Adam(stack.parameters(), lr=lr)",
                "torch.optim.Adam(stack.encoders.parameters(), lr=lr)",
            ),
        ),
    ),
    # ---- Part 5: the RBM -----------------------------------------------------------------------
    Mistake(
        "free_energy",
        "log-one-plus-exp",
        "use F.softplus for log(1 + exp(x)): exp overflows to inf for x above about 88 "
        "(docstring).",
        (("F.softplus(hidden_input)", "torch.log(1 + torch.exp(hidden_input))"),),
    ),
    Mistake(
        "free_energy",
        "visible-term-sign",
        "F(v) = -b.v - sum_j softplus(c_j + v.W_j): the visible term enters with a minus sign "
        "(Hinton 2010, a practical guide to training RBMs, Sec. 16.1).",
        (("return -(v @ b) - F.softplus", "return (v @ b) - F.softplus"),),
    ),
    Mistake(
        "free_energy",
        "visible-term-missing",
        "F(v) = -b.v - sum_j softplus(c_j + v.W_j): the visible bias term -b.v is missing.",
        (("return -(v @ b) - F.softplus", "return -F.softplus"),),
    ),
    Mistake(
        "free_energy",
        "mean-over-hidden",
        "sum the softplus terms over the hidden units, do not average them.",
        (("F.softplus(hidden_input).sum(dim=1)", "F.softplus(hidden_input).mean(dim=1)"),),
    ),
    Mistake(
        "sample_hidden",
        "inverted-sample",
        "a hidden unit is on (h = 1) where noise < p, so that it is on with probability p "
        "(docstring).",
        (("return p_h, (noise < p_h).to(p_h.dtype)", "return p_h, (noise > p_h).to(p_h.dtype)"),),
    ),
    Mistake(
        "sample_hidden",
        "no-bias",
        "p(h = 1 | v) = sigmoid(v W + c): add the hidden biases c.",
        (("p_h = torch.sigmoid(v @ W + c)", "p_h = torch.sigmoid(v @ W)"),),
    ),
    Mistake(
        "sample_hidden",
        "not-sampled",
        "return binary samples (noise < p) beside the probabilities: the hidden units of an RBM "
        "'communicate only binary values' (Hinton 2010, Sec. 3.1).",
        (("return p_h, (noise < p_h).to(p_h.dtype)", "return p_h, p_h"),),
    ),
    Mistake(
        "sample_visible",
        "inverted-sample",
        "a visible unit is on (v = 1) where noise < p, so that it is on with probability p.",
        (("return p_v, (noise < p_v).to(p_v.dtype)", "return p_v, (noise > p_v).to(p_v.dtype)"),),
    ),
    Mistake(
        "sample_visible",
        "no-bias",
        "p(v = 1 | h) = sigmoid(h W^T + b): add the visible biases b.",
        (("p_v = torch.sigmoid(h @ W.T + b)", "p_v = torch.sigmoid(h @ W.T)"),),
    ),
    Mistake(
        "cd1_update",
        "sampled-negative-phase",
        "use the probabilities p_h1 = p(h = 1 | v1) in the negative statistics, not sampled "
        "states: less noise (docstring step 3; Hinton 2010, Sec. 3.3).",
        (
            (
                "p_h1 = torch.sigmoid(v1 @ W + c)",
                "p_h1 = (noise_h < torch.sigmoid(v1 @ W + c)).float()",
            ),
        ),
    ),
    Mistake(
        "cd1_update",
        "phases-swapped",
        "the update is positive phase minus negative phase, <v h>_data - <v h>_model: the "
        "caller ascends W += lr * dW (docstring).",
        (("dW = (v0.T @ p_h0 - v1.T @ p_h1) / n", "dW = (v1.T @ p_h1 - v0.T @ p_h0) / n"),),
    ),
    Mistake(
        "cd1_update",
        "not-averaged",
        "divide dW by N: the statistics are averages over the batch (docstring step 4).",
        (("dW = (v0.T @ p_h0 - v1.T @ p_h1) / n", "dW = v0.T @ p_h0 - v1.T @ p_h1"),),
    ),
    Mistake(
        "cd1_update",
        "probabilities-drive-reconstruction",
        "drive the reconstruction with the BINARY h0, not with p_h0: 'the hidden units must "
        "communicate only binary values' (docstring step 2; Hinton 2010, Sec. 3.1).",
        (
            (
                "_, v1 = sample_visible(h0, W, b, noise_v)",
                "_, v1 = sample_visible(p_h0, W, b, noise_v)",
            ),
        ),
    ),
]
