"""Public tests of Assignment 6, CLIP zero-shot (they ship to students).

Run them locally with the grader's one command (see the README). Each test names the functions it
grades. Most expected values are computed here by trusted code (the paper's loss as a loop, the
mask and the classifier in closed form); the text encoder is compared with the reference
through a recorded copy. A tiny text tower (width 16) and a tiny CLIP stand in for real ones, so
the file takes seconds.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from autograder.api import (
    expect_close,
    expect_tensor,
    expect_true,
    expected,
    load_weights,
    reference,
)
from autograder.probes import clip_zero_shot as probes

REF = "clip_zero_shot"
PROBES = "autograder.probes.clip_zero_shot"
WORDS = ["a", "red", "blue", "circle", "square", "at", "the", "top", "left", "."]  # ids 4..13


# ---- Part 1: tokenisation ---------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("tokenize")
def test_tokenize_brackets_pads_and_marks_unknown_words(student):
    texts = ["a red circle at the top left", "A blue SQUARE.", "a green circle"]
    got = student.probe(f"{PROBES}:tokenize", WORDS, texts, 10)
    want = probes.trusted_tokenize(texts, probes.Vocab(WORDS), 10)
    expect_tensor(got["tokens"], want[0], rtol=0, atol=0,
                  name="tokens [3, 10]: SOT (1), word ids (lower case, '.' is a word, unknown "
                       "words -> UNK = 3), EOT (2), then PAD (0)")  # fmt: skip
    expect_tensor(got["eot"], want[1], rtol=0, atol=0, name="eot_positions [3] (where EOT sits)")


@pytest.mark.weight(1)
@pytest.mark.functions("tokenize")
def test_tokenize_truncates_long_captions_and_keeps_the_end_of_text_token(student):
    texts = ["a red circle at the top left", "a"]
    got = student.probe(f"{PROBES}:tokenize", WORDS, texts, 5)
    want = probes.trusted_tokenize(texts, probes.Vocab(WORDS), 5)
    expect_tensor(got["tokens"], want[0], rtol=0, atol=0,
                  name="tokens [2, 5] with context_length 5: a caption too long is cut and its "
                       "last position is EOT")  # fmt: skip
    expect_tensor(got["eot"], want[1], rtol=0, atol=0, name="eot_positions [2]")


# ---- Part 2: the text encoder -----------------------------------------------------------------


@pytest.mark.weight(1)
@pytest.mark.functions("causal_mask")
def test_causal_mask_is_minus_infinity_above_the_diagonal(student):
    for length in (1, 5):
        got = student.call("causal_mask", length)
        expect_tensor(got, probes.trusted_causal_mask(length), rtol=0, atol=0, equal_nan=True,
                      name=f"causal_mask({length}) [{length}, {length}] float32: 0 on and below "
                           "the diagonal, -inf above")  # fmt: skip


def _tokens_and_noisy(rng: torch.Generator, vocab_size: int = 20):
    eot = torch.tensor([3, 6, 1, 11])  # [N] the end-of-text positions
    tokens = torch.randint(4, vocab_size, (4, 12), generator=rng)  # [N, T]
    tokens[:, 0] = 1
    after = torch.arange(12)[None] > eot[:, None]  # [N, T]
    tokens[torch.arange(4), eot] = 2
    noisy = tokens.clone()
    tokens[after] = 0  # padding
    noisy[after] = torch.randint(4, vocab_size, (int(after.sum()),), generator=rng)
    return tokens, noisy


@pytest.mark.weight(3)
@pytest.mark.functions("TextEncoder.forward")
def test_text_encoder_is_causal_and_pools_at_the_end_of_text_token(student):
    tokens, noisy = _tokens_and_noisy(student.rng)
    got = student.probe(f"{PROBES}:text_encoder_forward", 3, 20, tokens, noisy)
    want = expected("text_encoder", lambda: probes.text_encoder_forward(reference(REF), 3, 20, tokens, noisy))  # fmt: skip
    expect_tensor(got["out"], want["out"], rtol=1e-4, atol=1e-5,
                  name="TextEncoder output [4, 8] (token + positional embeddings, causal blocks, "
                       "ln_final, the state at each row's EOT, text_projection)")  # fmt: skip
    expect_tensor(got["noisy_out"], got["out"], rtol=1e-5, atol=1e-6,
                  name="output when the tokens after each EOT change (a causal encoder pooled at "
                       "EOT cannot see them)")  # fmt: skip
    expect_true(got["embedding_grad"] is not None, "the output must depend on token_embedding")
    expect_tensor(got["embedding_grad"], want["embedding_grad"], rtol=1e-3, atol=1e-5,
                  name="gradient of sum(output^2) w.r.t. token_embedding.weight")  # fmt: skip


# ---- Part 3: the objective --------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("LogitScale.__init__", "LogitScale.forward")
def test_logit_scale_starts_at_one_over_0_07_and_is_clipped_at_100(student):
    got = student.probe(f"{PROBES}:logit_scale", 0.07, 100.0, 6.0)
    expect_close(got["initial_log_scale"], math.log(1 / 0.07), rtol=1e-6, atol=1e-6,
                 name="log_scale at initialisation (log(1 / 0.07))")  # fmt: skip
    expect_close(got["scale"], 1 / 0.07, rtol=1e-5, atol=1e-5, name="LogitScale()() at init")
    expect_true(got["grad"] is not None, "the scale must be differentiable in log_scale")
    expect_close(got["grad"], 1 / 0.07, rtol=1e-5, atol=1e-5, name="d scale / d log_scale at init (= exp(log_scale))")  # fmt: skip
    expect_close(got["set_scale"], 100.0, rtol=1e-5, atol=1e-4,
                 name="the scale with log_scale = 6 (exp(6) = 403 is clipped to max_scale 100)")  # fmt: skip
    expect_true(got["set_grad"] is None or float(got["set_grad"]) == 0.0,
                "above the clip the scale must not depend on log_scale (clamp the log, then exp)")  # fmt: skip


@pytest.mark.weight(3)
@pytest.mark.functions("clip_loss")
def test_clip_loss_is_the_papers_symmetric_cross_entropy(student):
    images = torch.randn(6, 5, generator=student.rng, dtype=torch.float64)
    texts = torch.randn(6, 5, generator=student.rng, dtype=torch.float64)
    scale = torch.tensor(1 / 0.07, dtype=torch.float64)
    got = student.probe(f"{PROBES}:clip_loss_with_grad", images, texts, scale)
    leaves = [t.clone().requires_grad_(True) for t in (images, texts, scale)]
    loss = probes.trusted_clip_loss(*leaves)
    loss.backward()
    expect_close(got["output"], float(loss.detach()), rtol=1e-9, atol=1e-12,
                 name="clip_loss (float64): mean of the row-wise (image -> text) and column-wise "
                      "(text -> image) cross-entropies of scale * cos(image_i, text_j)")  # fmt: skip
    for grad, leaf, what in zip(got["grads"], leaves, ("image_features", "text_features", "logit_scale")):  # fmt: skip
        expect_true(grad is not None, f"clip_loss must be differentiable w.r.t. {what}")
        expect_tensor(grad, leaf.grad, rtol=1e-7, atol=1e-10, name=f"d clip_loss / d {what}")
    eye = torch.eye(4, dtype=torch.float64)
    got = student.probe(f"{PROBES}:clip_loss_with_grad", 3 * eye, eye, torch.tensor(0.0, dtype=torch.float64))  # fmt: skip
    expect_close(got["output"], math.log(4), rtol=1e-9, atol=1e-12,
                 name="clip_loss with scale 0 (every pairing equally likely: log N = log 4)")  # fmt: skip


# ---- Part 4: zero-shot classification ---------------------------------------------------------


@pytest.mark.weight(3)
@pytest.mark.functions("zero_shot_classifier")
def test_zero_shot_classifier_averages_normalised_prompts_and_renormalises(student):
    classnames, templates = ["cat", "dog", "ship"], ["a photo of a {c}.", "a bad photo of the {c}."]
    texts = [t.format(c=c) for c in classnames for t in templates]
    lengths = torch.rand(6, 1, generator=student.rng) * 5 + 0.1  # the encoder's norms vary
    embeddings = torch.randn(6, 4, generator=student.rng) * lengths  # [6, D]
    got = student.probe(f"{PROBES}:zero_shot_weights", texts, embeddings, classnames, templates)
    want = probes.trusted_zero_shot_weights(embeddings.view(3, 2, 4))  # [D, K]
    expect_tensor(got["weights"], want, rtol=1e-5, atol=1e-6,
                  name="zero_shot_classifier [D=4, K=3]: per class, normalise each template's "
                       "embedding, average, renormalise; one COLUMN per class")  # fmt: skip
    single = student.probe(f"{PROBES}:zero_shot_weights", texts, embeddings, classnames, templates[:1])  # fmt: skip
    expect_tensor(single["weights"], probes.trusted_zero_shot_weights(embeddings.view(3, 2, 4)[:, :1]),
                  rtol=1e-5, atol=1e-6, name="zero_shot_classifier with one template")  # fmt: skip


@pytest.mark.weight(1)
@pytest.mark.functions("zero_shot_predict")
def test_zero_shot_predict_takes_the_most_similar_class(student):
    weights = F.normalize(torch.randn(4, 5, generator=student.rng), dim=0)  # [D, K]
    features = torch.randn(7, 4, generator=student.rng) * torch.tensor([[0.1], [5.0], [1.0], [2.0], [0.3], [9.0], [1.0]])  # fmt: skip
    got = student.call("zero_shot_predict", features, weights)
    want = (F.normalize(features, dim=1) @ weights).argmax(dim=1)
    expect_tensor(got, want, rtol=0, atol=0, name="zero_shot_predict [7] int64 (argmax of cosine similarity)")  # fmt: skip


# ---- Part 5: retrieval ------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("retrieve")
def test_retrieve_returns_top_k_by_cosine_similarity(student):
    gallery = torch.randn(9, 6, generator=student.rng)
    queries = torch.randn(3, 6, generator=student.rng) * torch.tensor([[0.2], [3.0], [1.0]])
    scores, indices = student.call("retrieve", queries, gallery, 4)
    cos = F.normalize(queries, dim=1) @ F.normalize(gallery, dim=1).T  # [3, 9]
    want_scores, want_indices = cos.topk(4, dim=1)
    expect_tensor(indices, want_indices, rtol=0, atol=0, name="indices [3, 4] int64, best first")
    expect_tensor(scores, want_scores, rtol=1e-5, atol=1e-6, name="scores [3, 4]: the cosine similarities, decreasing")  # fmt: skip


# ---- the whole method -------------------------------------------------------------------------


@pytest.mark.weight(3)
@pytest.mark.functions("clip_loss", "TextEncoder.forward", "tokenize", "causal_mask",
                       "LogitScale.__init__", "LogitScale.forward")  # fmt: skip
def test_clip_smoke_train_matches_fresh_images_to_their_captions(student):
    got = student.probe(f"{PROBES}:smoke_train", 0, 60, timeout=90)
    vocab_size = len(probes.captions.shapes_vocab())
    trained = load_weights(probes.TrustedCLIP(vocab_size), got["state_dict"], name="trained CLIP")
    torch.manual_seed(0)
    before = probes.heldout_matching(probes.TrustedCLIP(vocab_size), 0)
    after = probes.heldout_matching(trained, 0)
    expect_true(len(got["losses"]) == 60, f"expected 60 recorded losses, got {len(got['losses'])}")
    expect_true(after["loss"] < 2.0,
                f"after 60 steps the CLIP loss on fresh image-caption pairs is {after['loss']:.3f} "
                f"(an untrained tiny CLIP: {before['loss']:.3f}); expected below 2.0")  # fmt: skip
    expect_true(after["accuracy"] >= 0.6,
                f"after 60 steps only {after['accuracy']:.0%} of fresh images pick their own "
                "caption among 8 (chance 12.5%); expected at least 60%")  # fmt: skip
