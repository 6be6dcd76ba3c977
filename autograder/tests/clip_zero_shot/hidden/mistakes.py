"""Known mistakes of Assignment 6, CLIP zero-shot (hidden: never ships).

Each entry makes one mistake in the reference (``autograder.mistakes.Mistake``) and says what
is wrong, how to fix it and where the lecture or the paper says so. ``python -m autograder
record clip_zero_shot`` records what each gives on the public tests.
"""

from autograder.mistakes import Mistake

MISTAKES = [
    # ---- Part 1: tokenisation ------------------------------------------------------------------
    Mistake(
        "tokenize",
        "no-start-token",
        "bracket every caption with SOT and EOT: 'The text sequence is bracketed with [SOS] and "
        "[EOS] tokens' (Radford et al. 2021, Sec. 2.4).",
        (
            (
                "ids = [vocab.sot_id, *words][: context_length - 1] + [vocab.eot_id]",
                "ids = [*words][: context_length - 1] + [vocab.eot_id]",
            ),
        ),
    ),
    Mistake(
        "tokenize",
        "end-token-cut",
        "when a caption is too long, cut the words and keep EOT in the last position, as "
        "open_clip's tokenizer does: the encoder pools at EOT (docstring).",
        (
            (
                "ids = [vocab.sot_id, *words][: context_length - 1] + [vocab.eot_id]",
                "ids = [vocab.sot_id, *words, vocab.eot_id][:context_length]",
            ),
        ),
    ),
    Mistake(
        "tokenize",
        "plain-split",
        "split with vocab.split(text): it lower-cases and makes punctuation marks words of their "
        "own; str.split leaves 'A' and 'SQUARE.' unknown (docstring).",
        (("for word in vocab.split(text)]", "for word in text.split()]"),),
    ),
    Mistake(
        "tokenize",
        "unknown-as-padding",
        "a word the vocabulary lacks becomes vocab.unk_id, not padding: the caption still has a "
        "word there (docstring).",
        (("vocab.index.get(word, vocab.unk_id)", "vocab.index.get(word, vocab.pad_id)"),),
    ),
    Mistake(
        "tokenize",
        "end-position-off-by-one",
        "eot_positions[i] is the index of EOT in row i: len(ids) - 1.",
        (("eot_positions[i] = len(ids) - 1", "eot_positions[i] = len(ids)"),),
    ),
    # ---- Part 2: the text encoder --------------------------------------------------------------
    Mistake(
        "causal_mask",
        "diagonal-masked",
        "a token may attend to itself: -inf only STRICTLY above the diagonal (j > i), 0 on it "
        "(docstring).",
        (("return mask.triu(diagonal=1)", "return mask.triu(diagonal=0)"),),
    ),
    Mistake(
        "causal_mask",
        "past-masked",
        "mask the FUTURE, the entries above the diagonal (j > i): query i may read keys j <= i "
        "(docstring).",
        (("return mask.triu(diagonal=1)", "return mask.tril(diagonal=-1)"),),
    ),
    Mistake(
        "causal_mask",
        "boolean-mask",
        "return an ADDITIVE float mask, 0 where allowed and -inf where not, of the dtype you are "
        "given (docstring).",
        (("return mask.triu(diagonal=1)", "return mask.triu(diagonal=1) != 0"),),
    ),
    Mistake(
        "TextEncoder.forward",
        "no-causal-mask",
        "pass the causal mask to every block: with it a token cannot read the ones after it, so "
        "the state at EOT ignores the padding (Radford et al. 2021, Sec. 2.4: masked "
        "self-attention).",
        (("x = block(x, mask)", "x = block(x, None)"),),
    ),
    Mistake(
        "TextEncoder.forward",
        "pooled-at-last-position",
        "pool at each row's EOT token (the first EOT of the row), not at the last position, "
        "which is padding for short captions (Radford et al. 2021, Sec. 2.4).",
        (("pooled = x[torch.arange(n, device=x.device), eot]", "pooled = x[:, -1]"),),
    ),
    Mistake(
        "TextEncoder.forward",
        "mean-pooled",
        "take the state at the EOT token, not the mean over the positions: 'the activations of "
        "the highest layer of the transformer at the [EOS] token' (Radford et al. 2021, Sec. 2.4).",
        (("pooled = x[torch.arange(n, device=x.device), eot]", "pooled = x.mean(dim=1)"),),
    ),
    Mistake(
        "TextEncoder.forward",
        "no-final-norm",
        "apply ln_final after the blocks, before pooling (Radford et al. 2021, Sec. 2.4: 'layer "
        "normalized and then linearly projected').",
        (("        x = self.ln_final(x)  # [N, L, W]\n", ""),),
    ),
    Mistake(
        "TextEncoder.forward",
        "no-positions",
        "add positional_embedding[:T] to the token embeddings: without it the words are a bag.",
        (
            (
                "self.token_embedding(tokens) + self.positional_embedding[:length]",
                "self.token_embedding(tokens)",
            ),
        ),
    ),
    # ---- Part 3: the objective -----------------------------------------------------------------
    Mistake(
        "LogitScale.__init__",
        "scale-stored",
        "store the LOG of the scale, log(1 / temperature): learning the log keeps the scale "
        "positive (docstring).",
        (
            (
                "nn.Parameter(torch.tensor(math.log(1.0 / temperature)))",
                "nn.Parameter(torch.tensor(1.0 / temperature))",
            ),
        ),
    ),
    Mistake(
        "LogitScale.__init__",
        "log-temperature",
        "the stored value is log(1 / temperature) = -log(temperature): the scale exp(log_scale) "
        "starts at 1 / 0.07 (Radford et al. 2021, Sec. 2.5).",
        (("torch.tensor(math.log(1.0 / temperature))", "torch.tensor(math.log(temperature))"),),
    ),
    Mistake(
        "LogitScale.forward",
        "clipped-in-forward",
        "do not clip inside forward: above the cap its gradient is 0 and a scale that passed it "
        "can never come back; clip the stored value in clamp_(), which runs after each "
        "optimiser step, as open_clip's training loop does.",
        (
            (
                "return self.log_scale.exp()",
                "return self.log_scale.clamp(max=math.log(self.max_scale)).exp()",
            ),
        ),
    ),
    Mistake(
        "LogitScale.forward",
        "log-returned",
        "return the scale exp(log_scale), not the stored log.",
        (("return self.log_scale.exp()", "return self.log_scale * 1.0"),),
    ),
    Mistake(
        "LogitScale.forward",
        "temperature-returned",
        "return the inverse temperature exp(log_scale) = 1 / tau, the factor the logits are "
        "multiplied by, not tau.",
        (("return self.log_scale.exp()", "return (-self.log_scale).exp()"),),
    ),
    Mistake(
        "LogitScale.clamp_",
        "not-in-place",
        "change the stored value IN PLACE (Tensor.clamp_): clamp without the underscore returns "
        "a new tensor and leaves log_scale as it was.",
        (
            (
                "self.log_scale.clamp_(0.0, math.log(self.max_scale))",
                "self.log_scale.clamp(0.0, math.log(self.max_scale))",
            ),
        ),
    ),
    Mistake(
        "LogitScale.clamp_",
        "cap-not-logged",
        "the stored value is a LOG: clip it at log(max_scale), not at max_scale (docstring).",
        (
            (
                "self.log_scale.clamp_(0.0, math.log(self.max_scale))",
                "self.log_scale.clamp_(0.0, self.max_scale)",
            ),
        ),
    ),
    Mistake(
        "clip_loss",
        "one-direction",
        "average the two cross-entropies, image -> text over the rows and text -> image over the "
        "columns: (loss_i + loss_t) / 2 (Radford et al. 2021, Fig. 3).",
        (("return (loss_images + loss_texts) / 2", "return loss_images"),),
    ),
    Mistake(
        "clip_loss",
        "not-normalised",
        "L2-normalise both embeddings before the dot products: the logits are scaled cosine "
        "similarities (Radford et al. 2021, Fig. 3: l2_normalize).",
        (
            ("images = F.normalize(image_features, dim=1)", "images = image_features"),
            ("texts = F.normalize(text_features, dim=1)", "texts = text_features"),
        ),
    ),
    Mistake(
        "clip_loss",
        "scale-not-applied",
        "multiply the cosine similarities by logit_scale, exp(t) (Radford et al. 2021, Fig. 3).",
        (
            (
                "logits_per_image = logit_scale * images @ texts.T",
                "logits_per_image = images @ texts.T + 0 * logit_scale",
            ),
        ),
    ),
    Mistake(
        "clip_loss",
        "summed",
        "the loss is the MEAN of the two directions, not their sum (Radford et al. 2021, Fig. 3: "
        "loss = (loss_i + loss_t) / 2).",
        (("return (loss_images + loss_texts) / 2", "return loss_images + loss_texts"),),
    ),
    # ---- Part 4: zero-shot classification ------------------------------------------------------
    Mistake(
        "zero_shot_classifier",
        "raw-embeddings-averaged",
        "normalise each template's embedding before averaging: otherwise the prompts whose "
        "embeddings happen to be long dominate (CLIP's prompt ensembling averages unit vectors).",
        (
            (
                "embeddings = F.normalize(encode_text(texts).float(), dim=-1)",
                "embeddings = encode_text(texts).float()",
            ),
        ),
    ),
    Mistake(
        "zero_shot_classifier",
        "not-renormalised",
        "renormalise each class's mean embedding to unit length: an average of unit vectors is "
        "shorter than 1, by how much the templates disagree.",
        (("columns.append(mean / mean.norm())", "columns.append(mean)"),),
    ),
    Mistake(
        "zero_shot_classifier",
        "one-row-per-class",
        "one COLUMN per class, [D, K], so that image features [N, D] @ weights give [N, K] "
        "(docstring).",
        (("return torch.stack(columns, dim=1)", "return torch.stack(columns, dim=0)"),),
    ),
    Mistake(
        "zero_shot_classifier",
        "first-template-only",
        "embed every template for every class and average them (prompt ensembling, Radford et "
        "al. 2021, Sec. 3.1.4), not only the first template.",
        (("for template in templates]", "for template in templates[:1]]"),),
    ),
    Mistake(
        "zero_shot_predict",
        "argmax-over-images",
        "take the argmax over the K classes of each image (dim=1), not over the images.",
        (("return (images @ weights).argmax(dim=1)", "return (images @ weights).argmax(dim=0)"),),
    ),
    # ---- Part 5: retrieval ---------------------------------------------------------------------
    Mistake(
        "retrieve",
        "gallery-not-normalised",
        "normalise the gallery too: retrieval ranks by COSINE similarity, and long gallery "
        "vectors would win otherwise.",
        (
            (
                "gallery = F.normalize(gallery_features.detach().to(queries.dtype), dim=1)",
                "gallery = gallery_features.detach().to(queries.dtype)",
            ),
        ),
    ),
    Mistake(
        "retrieve",
        "worst-first",
        "return the k LARGEST similarities, best first (topk's default).",
        (
            (
                "(queries @ gallery.T).topk(k, dim=1)",
                "(queries @ gallery.T).topk(k, dim=1, largest=False)",
            ),
        ),
    ),
    Mistake(
        "retrieve",
        "queries-not-normalised",
        "normalise the queries too: the scores are cosine similarities, in [-1, 1].",
        (
            (
                "queries = F.normalize(query_features.detach(), dim=1)",
                "queries = query_features.detach()",
            ),
        ),
    ),
]

# Correct alternatives: each passes every public and hidden test of its function
# (tests/test_mistakes.py).
ALLOWED = [
    Mistake(
        "clip_loss",
        "log-softmax-by-hand",
        "the two cross-entropies written as minus the log-softmax on the diagonal, over the rows "
        "for the images and over the columns for the texts, are the paper's Figure 3 itself.",
        (
            (
                "loss_images = F.cross_entropy(logits_per_image, targets)",
                "loss_images = -logits_per_image.log_softmax(dim=1).diagonal().mean()",
            ),
            (
                "loss_texts = F.cross_entropy(logits_per_image.T, targets)",
                "loss_texts = -logits_per_image.log_softmax(dim=0).diagonal().mean()",
            ),
        ),
    ),
]
