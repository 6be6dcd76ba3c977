"""Hidden tests of Assignment 6, CLIP zero-shot (they stay in the grader)."""

import pytest
import torch
import torch.nn.functional as F

from autograder.api import expect_close, expect_tensor, expect_true, reference
from autograder.probes import clip_zero_shot as probes

REF = "clip_zero_shot"
PROBES = "autograder.probes.clip_zero_shot"


def _seed(student) -> int:
    return int(torch.randint(0, 10_000, (1,), generator=student.rng))


def _int(student, low: int, high: int) -> int:
    return int(torch.randint(low, high, (1,), generator=student.rng))


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("tokenize")
def test_tokenize_on_fresh_captions(student):
    words = [f"w{i}" for i in range(12)]
    texts = []
    for _ in range(5):
        n = _int(student, 0, 9)
        texts.append(" ".join(f"w{_int(student, 0, 16)}" for _ in range(n)))  # w12..w15 unknown
    texts.append(f"W{_int(student, 0, 12)} w{_int(student, 0, 12)}.")  # upper case, a full stop
    length = _int(student, 5, 12)  # room for some words: the public test covers cutting
    got = student.probe(f"{PROBES}:tokens_of", words, texts, length)
    want = reference(REF).tokenize(texts, probes.Vocab(words), length)
    expect_tensor(got["tokens"], want[0], rtol=0, atol=0, name="tokens")
    expect_tensor(got["eot"], want[1], rtol=0, atol=0, name="eot_positions")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("TextEncoder.forward", "causal_mask")
def test_text_encoder_on_fresh_tokens(student):
    seed, vocab_size = _seed(student), _int(student, 8, 40)
    n = _int(student, 1, 6)
    eot = torch.randint(1, 12, (n,), generator=student.rng)
    tokens = torch.randint(4, vocab_size, (n, 12), generator=student.rng)
    tokens[:, 0] = 1
    tokens[torch.arange(n), eot] = 2
    noisy = tokens.clone()
    after = torch.arange(12)[None] > eot[:, None]
    tokens[after] = 0
    got = student.probe(f"{PROBES}:text_encoder_forward", seed, vocab_size, tokens, noisy)
    want = probes.text_encoder_forward(reference(REF), seed, vocab_size, tokens, noisy)
    expect_tensor(got["out"], want["out"], rtol=1e-4, atol=1e-5, name="TextEncoder output")
    expect_tensor(
        got["noisy_out"],
        want["out"],
        rtol=1e-4,
        atol=1e-5,
        name="TextEncoder output with other tokens after EOT",
    )
    mask = student.call("causal_mask", 7)
    expect_tensor(
        mask, reference(REF).causal_mask(7), rtol=0, atol=0, equal_nan=True, name="causal_mask(7)"
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("LogitScale.__init__", "LogitScale.forward", "LogitScale.clamp_")
def test_logit_scale_with_other_temperature_and_cap(student):
    temperature = 0.02 + float(torch.rand(1, generator=student.rng)) * 0.5
    cap = 20.0 + float(torch.rand(1, generator=student.rng)) * 60
    got = student.probe(f"{PROBES}:logit_scale", temperature, cap, 5.0)
    want = probes.logit_scale(reference(REF), temperature, cap, 5.0)
    expect_close(got["scale"], 1 / temperature, rtol=1e-5, atol=1e-5, name="the scale at init")
    expect_close(got["set_scale"], want["set_scale"], rtol=1e-5, atol=1e-4, name="exp(5)")
    expect_close(
        got["clamped_log_scale"],
        want["clamped_log_scale"],
        rtol=1e-6,
        atol=1e-6,
        name="log_scale after clamp_()",
    )
    expect_tensor(got["trace"], want["trace"], rtol=1e-5, atol=1e-5, name="three SGD steps")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("clip_loss")
def test_clip_loss_on_fresh_inputs_matches_reference_and_open_clip(student):
    from open_clip.loss import ClipLoss

    n, d = _int(student, 1, 20), _int(student, 2, 12)
    images = torch.randn(n, d, generator=student.rng, dtype=torch.float64) * 3
    texts = torch.randn(n, d, generator=student.rng, dtype=torch.float64)
    scale = torch.tensor(float(torch.rand(1, generator=student.rng)) * 100, dtype=torch.float64)
    got = student.probe(f"{PROBES}:clip_loss_with_grad", images, texts, scale)
    want = probes.clip_loss_with_grad(reference(REF), images, texts, scale)
    theirs = ClipLoss()(F.normalize(images, dim=1), F.normalize(texts, dim=1), scale)
    expect_close(got["output"], float(want["output"]), rtol=1e-9, atol=1e-12, name="clip_loss")
    expect_close(
        got["output"], float(theirs), rtol=1e-9, atol=1e-12, name="clip_loss vs open_clip ClipLoss"
    )
    for g, w in zip(got["grads"], want["grads"]):
        expect_true(g is not None, "clip_loss must be differentiable in every input")
        expect_tensor(g, w, rtol=1e-7, atol=1e-10, name="clip_loss gradient")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("zero_shot_classifier", "zero_shot_predict")
def test_zero_shot_on_an_open_clip_model_equals_open_clips_builder(student):
    import open_clip

    from replearn import captions

    seed = _seed(student)
    names = [captions.CIFAR10_CLASSES[i] for i in torch.randperm(10, generator=student.rng)[:4]]
    templates = [captions.CIFAR_TEMPLATES[i] for i in torch.randperm(18, generator=student.rng)[:5]]
    images = torch.randn(5, 3, 32, 32, generator=student.rng)
    got = student.probe(f"{PROBES}:open_clip_weights", seed, images, names, templates, timeout=60)
    model, tokenizer = probes.tiny_open_clip(seed)
    theirs = open_clip.build_zero_shot_classifier(
        model, tokenizer, names, [lambda c, t=t: t.format(c=c) for t in templates]
    )
    expect_tensor(
        got["weights"],
        theirs,
        rtol=1e-4,
        atol=1e-5,
        name="zero-shot weights on a tiny open_clip model vs open_clip.build_zero_shot_classifier",
    )
    with torch.no_grad():
        want = (F.normalize(model.encode_image(images), dim=-1) @ theirs).argmax(dim=1)
    expect_tensor(got["predictions"], want, rtol=0, atol=0, name="zero-shot predictions")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("zero_shot_classifier")
def test_zero_shot_classifier_with_embeddings_of_many_lengths(student):
    classnames, templates = ["ant", "bee"], ["{c}", "a {c}.", "the {c} again"]
    texts = [t.format(c=c) for c in classnames for t in templates]
    lengths = torch.rand(6, 1, generator=student.rng) * 8 + 0.1  # [6, 1]
    embeddings = torch.randn(6, 5, generator=student.rng) * lengths  # [6, D]
    got = student.probe(f"{PROBES}:zero_shot_weights", texts, embeddings, classnames, templates)
    want = probes.zero_shot_weights(reference(REF), texts, embeddings, classnames, templates)
    expect_tensor(got["weights"], want["weights"], rtol=1e-5, atol=1e-6, name="zero-shot weights")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("retrieve", "zero_shot_predict")
def test_retrieve_and_predict_on_fresh_inputs(student):
    m, d = _int(student, 2, 30), _int(student, 2, 10)
    k = _int(student, 1, m + 1)
    gallery = torch.randn(m, d, generator=student.rng, dtype=torch.float64)
    queries = torch.randn(4, d, generator=student.rng, dtype=torch.float64)
    scores, indices = student.call("retrieve", queries, gallery, k)
    want_scores, want_indices = reference(REF).retrieve(queries, gallery, k)
    expect_tensor(indices, want_indices, rtol=0, atol=0, name="retrieve indices")
    expect_tensor(scores, want_scores, rtol=1e-9, atol=1e-12, name="retrieve scores")
    weights = F.normalize(torch.randn(d, 3, generator=student.rng, dtype=torch.float64), dim=0)
    got = student.call("zero_shot_predict", queries, weights)
    expect_tensor(
        got,
        reference(REF).zero_shot_predict(queries, weights),
        rtol=0,
        atol=0,
        name="zero_shot_predict",
    )
