"""Public tests of Assignment 6, CLIP zero-shot (they ship to students).

Run them locally with the grader's one command (see the README). Each test names the functions it
grades; reference values come from ``expected_public.agv``, and closed forms are checked where the
method has one (a scale of 0 makes every pairing equally likely). The test of the text encoder
replaces ``causal_mask`` by a stand-in (``autograder.probes.clip_zero_shot``), so that one mistake
costs only the tests of that part. A tiny text tower (width 16) and a tiny CLIP stand in for real
ones, so the file takes seconds.
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
    with_reference,
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
    got = student.probe(f"{PROBES}:tokens_of", WORDS, texts, 10)
    want = expected("tokenize_10", lambda: reference(REF).tokenize(texts, probes.Vocab(WORDS), 10))
    expect_tensor(
        got["tokens"],
        want[0],
        rtol=0,
        atol=0,
        name="tokens [3, 10]: SOT (1), word ids (lower case, '.' is a word, unknown "
        "words -> UNK = 3), EOT (2), then PAD (0)",
    )
    expect_tensor(got["eot"], want[1], rtol=0, atol=0, name="eot_positions [3] (where EOT sits)")


@pytest.mark.weight(1)
@pytest.mark.functions("tokenize")
def test_tokenize_truncates_long_captions_and_keeps_the_end_of_text_token(student):
    texts = ["a red circle at the top left", "a"]
    got = student.probe(f"{PROBES}:tokens_of", WORDS, texts, 5)
    want = expected("tokenize_5", lambda: reference(REF).tokenize(texts, probes.Vocab(WORDS), 5))
    expect_tensor(
        got["tokens"],
        want[0],
        rtol=0,
        atol=0,
        name="tokens [2, 5] with context_length 5: a caption too long is cut and its "
        "last position is EOT",
    )
    expect_tensor(got["eot"], want[1], rtol=0, atol=0, name="eot_positions [2]")


# ---- Part 2: the text encoder -----------------------------------------------------------------


@pytest.mark.weight(1)
@pytest.mark.functions("causal_mask")
def test_causal_mask_is_minus_infinity_above_the_diagonal(student):
    for length in (1, 5):
        got = student.call("causal_mask", length)
        want = expected(
            f"causal_mask_{length}", lambda length=length: reference(REF).causal_mask(length)
        )
        expect_tensor(
            got,
            want,
            rtol=0,
            atol=0,
            equal_nan=True,
            name=f"causal_mask({length}) [{length}, {length}] float32: 0 on and below "
            "the diagonal, -inf above",
        )


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
    want = expected(
        "text_encoder", lambda: probes.text_encoder_forward(reference(REF), 3, 20, tokens, noisy)
    )
    expect_tensor(
        got["out"],
        want["out"],
        rtol=1e-4,
        atol=1e-5,
        name="TextEncoder output [4, 8] (token + positional embeddings, causal blocks, "
        "ln_final, the state at each row's EOT, text_projection)",
    )
    expect_tensor(
        got["noisy_out"],
        got["out"],
        rtol=1e-5,
        atol=1e-6,
        name="output when the tokens after each EOT change (a causal encoder pooled at "
        "EOT cannot see them)",
    )
    expect_true(got["embedding_grad"] is not None, "the output must depend on token_embedding")
    expect_tensor(
        got["embedding_grad"],
        want["embedding_grad"],
        rtol=1e-3,
        atol=1e-5,
        name="gradient of sum(output^2) w.r.t. token_embedding.weight",
    )


# ---- Part 3: the objective --------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("LogitScale.__init__", "LogitScale.forward", "LogitScale.clamp_")
def test_logit_scale_starts_at_one_over_0_07_and_its_stored_value_is_clipped_at_100(student):
    got = student.probe(f"{PROBES}:logit_scale", 0.07, 100.0, 6.0)
    expect_close(
        got["initial_log_scale"],
        math.log(1 / 0.07),
        rtol=1e-6,
        atol=1e-6,
        name="log_scale at initialisation (log(1 / 0.07))",
    )
    expect_close(got["scale"], 1 / 0.07, rtol=1e-5, atol=1e-5, name="LogitScale()() at init")
    expect_true(got["grad"] is not None, "the scale must be differentiable in log_scale")
    expect_close(
        got["grad"],
        1 / 0.07,
        rtol=1e-5,
        atol=1e-5,
        name="d scale / d log_scale at init (= exp(log_scale))",
    )
    expect_close(
        got["set_grad"] if got["set_grad"] is not None else 0.0,
        math.exp(6.0),
        rtol=1e-5,
        atol=1e-4,
        name="d scale / d log_scale with log_scale = 6 (= exp(6): forward does not clip, or "
        "the gradient above the cap would be 0 and the scale could never come back)",
    )
    small = student.probe(f"{PROBES}:logit_scale", 0.07, 2.0, 6.0)
    expect_close(
        small["clamped_log_scale"],
        math.log(2.0),
        rtol=1e-6,
        atol=1e-6,
        name="log_scale after clamp_() from 6 with max_scale 2 (log 2: the cap of the LOG)",
    )
    expect_close(
        got["clamped_log_scale"],
        math.log(100.0),
        rtol=1e-6,
        atol=1e-6,
        name="log_scale after clamp_() from 6 (clipped in place to log(max_scale) = log 100)",
    )
    want = expected(
        "logit_scale_trace", lambda: probes.logit_scale(reference(REF), 0.07, 100.0, 6.0)
    )
    expect_tensor(
        got["trace"],
        want["trace"],
        rtol=1e-5,
        atol=1e-5,
        name="log_scale after 3 SGD steps from 6: up (then clipped to log 100 after the step), "
        "then down twice",
    )


@pytest.mark.weight(3)
@pytest.mark.functions("clip_loss")
def test_clip_loss_is_the_papers_symmetric_cross_entropy(student):
    images = torch.randn(6, 5, generator=student.rng, dtype=torch.float64)
    texts = torch.randn(6, 5, generator=student.rng, dtype=torch.float64)
    scale = torch.tensor(1 / 0.07, dtype=torch.float64)
    got = student.probe(f"{PROBES}:clip_loss_with_grad", images, texts, scale)
    want = expected(
        "clip_loss", lambda: probes.clip_loss_with_grad(reference(REF), images, texts, scale)
    )
    expect_close(
        got["output"],
        float(want["output"]),
        rtol=1e-9,
        atol=1e-12,
        name="clip_loss (float64): mean of the row-wise (image -> text) and column-wise "
        "(text -> image) cross-entropies of scale * cos(image_i, text_j)",
    )
    for grad, ref, what in zip(
        got["grads"], want["grads"], ("image_features", "text_features", "logit_scale")
    ):
        expect_true(grad is not None, f"clip_loss must be differentiable w.r.t. {what}")
        expect_tensor(grad, ref, rtol=1e-7, atol=1e-10, name=f"d clip_loss / d {what}")
    eye = torch.eye(4, dtype=torch.float64)
    got = student.probe(
        f"{PROBES}:clip_loss_with_grad", 3 * eye, eye, torch.tensor(0.0, dtype=torch.float64)
    )
    expect_close(
        got["output"],
        math.log(4),
        rtol=1e-9,
        atol=1e-12,
        name="clip_loss with scale 0 (every pairing equally likely: log N = log 4)",
    )


# ---- Part 4: zero-shot classification ---------------------------------------------------------


@pytest.mark.weight(3)
@pytest.mark.functions("zero_shot_classifier")
def test_zero_shot_classifier_averages_normalised_prompts_and_renormalises(student):
    classnames, templates = ["cat", "dog", "ship"], ["a photo of a {c}.", "a bad photo of the {c}."]
    texts = [t.format(c=c) for c in classnames for t in templates]
    lengths = torch.rand(6, 1, generator=student.rng) * 5 + 0.1  # the encoder's norms vary
    embeddings = torch.randn(6, 4, generator=student.rng) * lengths  # [6, D]
    got = student.probe(f"{PROBES}:zero_shot_weights", texts, embeddings, classnames, templates)
    want = expected(
        "zero_shot_weights",
        lambda: probes.zero_shot_weights(reference(REF), texts, embeddings, classnames, templates),
    )
    expect_tensor(
        got["weights"],
        want["weights"],
        rtol=1e-5,
        atol=1e-6,
        name="zero_shot_classifier [D=4, K=3]: per class, normalise each template's "
        "embedding, average, renormalise; one COLUMN per class",
    )
    single = student.probe(
        f"{PROBES}:zero_shot_weights", texts, embeddings, classnames, templates[:1]
    )
    want = expected(
        "zero_shot_weights_1",
        lambda: probes.zero_shot_weights(
            reference(REF), texts, embeddings, classnames, templates[:1]
        ),
    )
    expect_tensor(
        single["weights"],
        want["weights"],
        rtol=1e-5,
        atol=1e-6,
        name="zero_shot_classifier with one template",
    )


@pytest.mark.weight(1)
@pytest.mark.functions("zero_shot_predict")
def test_zero_shot_predict_takes_the_most_similar_class(student):
    weights = F.normalize(torch.randn(4, 5, generator=student.rng), dim=0)  # [D, K]
    features = torch.randn(7, 4, generator=student.rng) * torch.tensor(
        [[0.1], [5.0], [1.0], [2.0], [0.3], [9.0], [1.0]]
    )
    got = student.call("zero_shot_predict", features, weights)
    want = expected(
        "zero_shot_predict", lambda: reference(REF).zero_shot_predict(features, weights)
    )
    expect_tensor(
        got, want, rtol=0, atol=0, name="zero_shot_predict [7] int64 (argmax of cosine similarity)"
    )


# ---- Part 5: retrieval ------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("retrieve")
def test_retrieve_returns_top_k_by_cosine_similarity(student):
    gallery = torch.randn(9, 6, generator=student.rng)
    queries = torch.randn(3, 6, generator=student.rng) * torch.tensor([[0.2], [3.0], [1.0]])
    scores, indices = student.call("retrieve", queries, gallery, 4)
    want_scores, want_indices = expected(
        "retrieve", lambda: reference(REF).retrieve(queries, gallery, 4)
    )
    expect_tensor(indices, want_indices, rtol=0, atol=0, name="indices [3, 4] int64, best first")
    expect_tensor(
        scores,
        want_scores,
        rtol=1e-5,
        atol=1e-6,
        name="scores [3, 4]: the cosine similarities, decreasing",
    )


# ---- the whole method -------------------------------------------------------------------------


@pytest.mark.weight(3)
@pytest.mark.functions(
    "clip_loss",
    "TextEncoder.forward",
    "tokenize",
    "causal_mask",
    "LogitScale.__init__",
    "LogitScale.forward",
    "LogitScale.clamp_",
)
def test_clip_smoke_train_matches_fresh_images_to_their_captions(student):
    got = student.probe(f"{PROBES}:smoke_train", 0, 60, timeout=90)
    losses = got["losses"]
    expect_true(len(losses) == 60, f"expected 60 recorded losses, got {len(losses)}")
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    expect_true(
        last < 0.75 * first,
        f"the CLIP loss your model reported fell from {first:.3f} (mean of the first 5 "
        f"steps) only to {last:.3f} (the last 5); expected below {0.75 * first:.3f}",
    )
    # the grader also scores fresh image-caption pairs with the reference's towers and loss
    scores = with_reference(lambda: _heldout_matching(got["state_dict"]))
    if scores is not None:
        before, after = scores
        expect_true(
            after["loss"] < 2.0,
            f"after 60 steps the CLIP loss on fresh image-caption pairs is {after['loss']:.3f} "
            f"(an untrained tiny CLIP: {before['loss']:.3f}); expected below 2.0",
        )
        expect_true(
            after["accuracy"] >= 0.6,
            f"after 60 steps only {after['accuracy']:.0%} of fresh images pick their own "
            "caption among 8 (chance 12.5%); expected at least 60%",
        )


def _heldout_matching(state: dict) -> tuple[dict, dict]:
    """The reference CLIP on FRESH images of the smoke combinations, untrained then ``state``:
    the CLIP loss on 32 image-caption pairs and the zero-shot accuracy among the 8 captions."""
    ref = reference(REF)
    vocab = probes.captions.shapes_vocab()
    data = probes.smoke_data(1000, 32)
    names = [probes.captions.caption(c, probes.SMOKE_TEMPLATE) for c in probes.SMOKE_SEEN]
    tokens, _ = ref.tokenize(data.captions, vocab, probes.SMOKE["context_length"])
    class_tokens, _ = ref.tokenize(names, vocab, probes.SMOKE["context_length"])
    scores = []
    for weights in (None, state):
        torch.manual_seed(0)  # the smoke-train probe's initialisation
        image = ref.ImageEncoder(probes.SMOKE["embed_dim"], probes.SMOKE_WIDTHS)
        text = ref.TextEncoder(len(vocab), **probes.SMOKE)
        model = ref.CLIP(image, text, ref.LogitScale())
        if weights is not None:
            load_weights(model, weights, name="trained CLIP")
        model.eval()
        with torch.no_grad():
            images = model.encode_image(data.images.float() / 255)  # [32, D]
            loss = float(ref.clip_loss(images, model.encode_text(tokens), model.logit_scale()))
            classifier = F.normalize(model.encode_text(class_tokens), dim=-1).T  # [D, 8]
            predicted = ref.zero_shot_predict(images, classifier)  # [32]
        accuracy = float((predicted == data.combination_ids).float().mean())
        scores.append({"loss": loss, "accuracy": accuracy})
    return scores[0], scores[1]
