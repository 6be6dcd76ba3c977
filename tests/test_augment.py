"""Properties of the batched augmentations in ``replearn.augment``, and parity with torchvision.

Augmentations are random, so these tests check properties (shapes, ranges, identities,
invariances, statistics of the sampled parameters) rather than exact pixels, plus exact agreement
with torchvision's functional ops when both get the same fixed parameters.
"""

import json
import math

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from replearn import augment as A

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_images(n: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images ``[N, 3, size, size]`` in [0, 1] with some saturated pixels."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g)  # [N, 3, s/4, s/4]
    x = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    x[:, :, :2, :2] = 1.0  # pure white corner
    x[:, :, -2:, -2:] = 0.0  # pure black corner
    return x.clamp(0.0, 1.0).contiguous()  # [N, 3, size, size]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Every random op, called with its default parameters and a generator.
RANDOM_OPS = {
    "random_resized_crop": lambda x, g: A.random_resized_crop(x, 24, generator=g),
    "random_horizontal_flip": lambda x, g: A.random_horizontal_flip(x, generator=g),
    "color_jitter": lambda x, g: A.color_jitter(x, generator=g),
    "random_grayscale": lambda x, g: A.random_grayscale(x, generator=g),
    "gaussian_blur": lambda x, g: A.gaussian_blur(x, 5, generator=g),
    "random_rotate90": lambda x, g: A.random_rotate90(x, generator=g)[0],
    "random_erasing": lambda x, g: A.random_erasing(x, generator=g),
    "cutout": lambda x, g: A.cutout(x, 8, generator=g),
    "mask_patches": lambda x, g: A.mask_patches(x, 4, generator=g)[0],
    "simclr": lambda x, g: A.SimCLRAugment(size=32)(x, g),
    "simclr_blur": lambda x, g: A.get_pipeline("crop+color+blur")(x, g),
}


# ---- shapes, dtype, range, device, determinism, no gradients ---------------------------------


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_shape_dtype_range_and_device(name):
    x = make_images()
    out = RANDOM_OPS[name](x, gen())
    want_side = 24 if name == "random_resized_crop" else 32
    assert out.shape == (16, 3, want_side, want_side)
    assert out.dtype == torch.float32
    assert out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_same_seed_same_output_other_seed_differs(name):
    x = make_images()
    first = RANDOM_OPS[name](x, gen(1))
    again = RANDOM_OPS[name](x, gen(1))
    other = RANDOM_OPS[name](x, gen(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_input_is_not_modified_and_no_gradient_is_tracked(name):
    x = make_images().requires_grad_(True)
    before = x.detach().clone()
    out = RANDOM_OPS[name](x, gen())
    assert not out.requires_grad
    assert torch.equal(x.detach(), before)


def test_clear_errors_for_bad_input():
    x = make_images(2)
    with pytest.raises(TypeError, match="to_float"):
        A.color_jitter((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="unsqueeze"):
        A.random_horizontal_flip(x[0])
    with pytest.raises(ValueError, match="3 channels"):
        A.random_grayscale(x[:, :2])
    with pytest.raises(ValueError, match="probability"):
        A.random_horizontal_flip(x, p=1.5)
    with pytest.raises(ValueError, match="scale"):
        A.random_resized_crop(x, 32, scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="odd"):
        A.gaussian_blur(x, 4)
    with pytest.raises(ValueError, match="hue"):
        A.color_jitter(x, hue=0.7)
    with pytest.raises(ValueError, match="crop\\+color"):
        A.get_pipeline("crop+colour")


# ---- identities at zero strength, p = 0, and exact inverses ----------------------------------


def test_identity_at_zero_strength_and_zero_probability():
    x = make_images()
    g = gen()
    assert torch.equal(A.color_jitter(x, 0.0, 0.0, 0.0, 0.0, p=1.0, generator=g), x)
    assert torch.equal(A.color_jitter(x, p=0.0, generator=g), x)
    assert torch.equal(A.random_horizontal_flip(x, p=0.0, generator=g), x)
    assert torch.equal(A.random_grayscale(x, p=0.0, generator=g), x)
    assert torch.equal(A.gaussian_blur(x, 5, p=0.0, generator=g), x)
    assert torch.equal(A.random_erasing(x, p=0.0, generator=g), x)
    assert torch.equal(A.cutout(x, 8, p=0.0, generator=g), x)
    assert torch.equal(A.get_pipeline("none")(x, g), x)
    whole = A.random_resized_crop(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=g)
    torch.testing.assert_close(whole, x, atol=1e-5, rtol=0)


def test_flip_twice_and_rotate_four_times_are_identity():
    x = make_images()
    once = A.random_horizontal_flip(x, p=1.0)
    assert torch.equal(once, x.flip(-1))
    assert torch.equal(A.random_horizontal_flip(once, p=1.0), x)
    turned = x
    for _ in range(4):
        turned = A.rotate90(turned, 1)
    assert torch.equal(turned, x)
    rotated, k = A.random_rotate90(x, generator=gen())
    assert torch.equal(A.rotate90(rotated, -k), x)
    for i in range(len(x)):
        assert torch.equal(rotated[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))
    assert set(k.tolist()) == {0, 1, 2, 3}


def test_hue_shift_zero_is_identity_and_thirds_permute_primaries():
    x = make_images()
    torch.testing.assert_close(A.adjust_hue(x, 0.0), x, atol=1e-6, rtol=0)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    green = red.roll(1, dims=1)  # [0, 1, 0]
    torch.testing.assert_close(A.adjust_hue(red, 1 / 3), green, atol=1e-6, rtol=0)
    # A shift and its opposite cancel.
    back = A.adjust_hue(A.adjust_hue(x, 0.2), -0.2)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)


def test_saturation_zero_and_grayscale_give_equal_channels():
    x = make_images()
    grey = A.adjust_saturation(x, 0.0)
    torch.testing.assert_close(grey[:, 0], grey[:, 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(grey[:, 1], grey[:, 2], atol=1e-6, rtol=0)
    dropped = A.random_grayscale(x, p=1.0)
    assert torch.equal(dropped[:, 0], dropped[:, 1]) and torch.equal(dropped[:, 1], dropped[:, 2])
    luma = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # ITU-R 601
    torch.testing.assert_close(dropped[:, 0], luma, atol=1e-6, rtol=0)


# ---- parity with torchvision on the same fixed parameters -------------------------------------


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue"])
def test_adjust_ops_match_torchvision(op):
    x = make_images(12)
    g = gen(3)
    if op == "hue":
        factors = torch.rand(12, generator=g) - 0.5  # [-0.5, 0.5) turns
    else:
        factors = 2.0 * torch.rand(12, generator=g)  # [0, 2): darker, greyer, flatter and more
    ours = getattr(A, f"adjust_{op}")(x, factors)
    theirs = torch.stack(
        [getattr(TF, f"adjust_{op}")(x[i], float(factors[i])) for i in range(len(x))]
    )
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_grayscale_matches_torchvision():
    x = make_images(4)
    theirs = TF.rgb_to_grayscale(x, num_output_channels=1)
    torch.testing.assert_close(A.rgb_to_grayscale(x), theirs, atol=1e-6, rtol=0)


def test_blur_with_per_sample_sigma_matches_torchvision():
    x = make_images(8)
    sigmas = torch.linspace(0.1, 2.0, 8)
    ours = A.blur(x, 5, sigmas)
    theirs = torch.stack(
        [TF.gaussian_blur(x[i], [5, 5], [float(s), float(s)]) for i, s in enumerate(sigmas)]
    )
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert A.simclr_blur_kernel_size(32) == 3


@pytest.mark.parametrize("out_size", [32, 20])
def test_resized_crop_matches_torchvision(out_size):
    x = make_images(16)
    boxes = A.sample_crop_boxes(16, 32, 32, generator=gen(5))
    ours = A.resized_crop(x, boxes, out_size)
    theirs = torch.stack(
        [
            TF.resized_crop(x[i], *map(int, boxes[i]), [out_size, out_size], antialias=False)
            for i in range(16)
        ]
    )
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    flip = torch.arange(16) % 2 == 0
    flipped = A.resized_crop(x, boxes, out_size, flip=flip)
    torch.testing.assert_close(flipped[flip], theirs[flip].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped[~flip], theirs[~flip], atol=1e-5, rtol=0)


def test_erase_matches_torchvision():
    x = make_images(6)
    boxes = A.sample_erasing_boxes(6, 32, 32, generator=gen(6))
    value = (0.25, 0.5, 0.75)
    ours = A.erase(x, boxes, value)
    fill = torch.tensor(value).view(3, 1, 1)
    theirs = torch.stack(
        [
            TF.erase(
                x[i], *map(int, boxes[i]), v=fill.expand(3, int(boxes[i, 2]), int(boxes[i, 3]))
            )
            for i in range(6)
        ]
    )
    assert torch.equal(ours, theirs)


# ---- sampled parameters: statistics and per-sample variety ------------------------------------


def test_crop_boxes_follow_torchvision_sampling():
    """Area fraction and aspect ratio of our boxes have the distribution of torchvision's."""
    n = 4000
    ours = A.sample_crop_boxes(n, 32, 32, generator=gen(7)).double()  # [n, 4]
    torch.manual_seed(7)
    crop = T.RandomResizedCrop(32)
    image = torch.zeros(3, 32, 32)
    theirs = torch.tensor(
        [list(crop.make_params([image]).values()) for _ in range(n)], dtype=torch.float64
    )  # [n, 4] top, left, height, width
    for boxes in (ours, theirs):
        top, left, h, w = boxes.unbind(1)
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + h <= 32).all() and (left + w <= 32).all() and (h >= 1).all()
    area_ours = ours[:, 2] * ours[:, 3] / 1024
    area_theirs = theirs[:, 2] * theirs[:, 3] / 1024
    log_ar_ours = (ours[:, 3] / ours[:, 2]).log()
    log_ar_theirs = (theirs[:, 3] / theirs[:, 2]).log()
    # Means agree within ~4 standard errors; quartiles of the area within 0.03.
    se = area_theirs.std() / math.sqrt(n)
    assert abs(area_ours.mean() - area_theirs.mean()) < 4 * math.sqrt(2) * se
    assert abs(log_ar_ours.mean() - log_ar_theirs.mean()) < 0.02
    q = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    assert (area_ours.quantile(q) - area_theirs.quantile(q)).abs().max() < 0.03
    # Offsets are uniform over the free space: mean relative position about 1/2.
    slack = 32 - ours[:, 2]
    rel = ours[slack > 0, 0] / slack[slack > 0]
    assert abs(rel.mean() - 0.5) < 0.03


def test_crop_area_measured_on_a_ramp_image():
    """Read each crop's size back from a coordinate ramp: the areas span the requested scale."""
    n, side, out = 256, 64, 8
    ramp = (torch.arange(side, dtype=torch.float32) + 0.5) / side  # [side]
    x = (
        torch.stack(
            [
                ramp.view(1, side).expand(side, side),
                ramp.view(side, 1).expand(side, side),
                torch.zeros(side, side),
            ]
        )
        .expand(n, 3, side, side)
        .contiguous()
    )  # channel 0: column, channel 1: row
    crops = A.random_resized_crop(x, out, scale=(0.2, 0.6), ratio=(1.0, 1.0), generator=gen(8))
    # Output pixels sit at (q + 0.5) * w / out inside the box, so the ramp spans (out-1)/out * w.
    width = (crops[:, 0, 0, -1] - crops[:, 0, 0, 0]) * side * out / (out - 1)  # [n] pixels
    height = (crops[:, 1, -1, 0] - crops[:, 1, 0, 0]) * side * out / (out - 1)  # [n]
    area = width * height / side**2  # [n]
    torch.testing.assert_close(width, height, atol=1e-3, rtol=0)  # ratio (1, 1): squares
    assert area.min() > 0.2 - 0.02 and area.max() < 0.6 + 0.02
    assert abs(float(area.mean()) - 0.4) < 0.02  # uniform on [0.2, 0.6]


def test_every_sample_gets_its_own_parameters():
    x = make_images(1).expand(32, 3, 32, 32).contiguous()  # one image, 32 times
    g = gen(9)
    for out in (
        A.random_resized_crop(x, 32, generator=g),
        A.color_jitter(x, p=1.0, generator=g),
        A.gaussian_blur(x, 5, p=1.0, generator=g),
        A.SimCLRAugment()(x, g),
    ):
        flat = out.flatten(1)  # [32, D]
        distinct = torch.unique(flat, dim=0)
        assert len(distinct) >= 30, f"only {len(distinct)} distinct outputs of 32"


def test_jitter_factors_are_uniform_in_torchvision_range():
    x = torch.full((4000, 3, 2, 2), 0.5)
    out = A.color_jitter(
        x, brightness=0.4, contrast=0, saturation=0, hue=0, p=1.0, generator=gen(10)
    )
    factor = out[:, 0, 0, 0] / 0.5  # [N] brightness factors
    assert factor.min() >= 0.6 - 1e-6 and factor.max() <= 1.4 + 1e-6
    assert abs(float(factor.mean()) - 1.0) < 0.01
    assert abs(float(factor.std()) - 0.8 / math.sqrt(12)) < 0.01  # uniform on [0.6, 1.4]


@pytest.mark.parametrize(
    "op, p",
    [
        (lambda x, g: A.random_horizontal_flip(x, 0.5, g), 0.5),
        (lambda x, g: A.random_grayscale(x, 0.2, g), 0.2),
        (lambda x, g: A.color_jitter(x, p=0.8, generator=g), 0.8),
        (lambda x, g: A.gaussian_blur(x, 3, sigma=(0.5, 2.0), p=0.5, generator=g), 0.5),
    ],
)
def test_apply_probability(op, p):
    x = make_images(1, size=16).expand(2000, 3, 16, 16).contiguous()
    changed = (op(x, gen(11)) != x).flatten(1).any(dim=1).float()  # [N]
    assert abs(float(changed.mean()) - p) < 4 * math.sqrt(p * (1 - p) / 2000)


# ---- occlusion and normalisation --------------------------------------------------------------


def test_random_erasing_area_and_value():
    x = torch.ones(500, 3, 32, 32)
    out = A.random_erasing(x, scale=(0.1, 0.3), value=(0.0, 0.5, 0.0), p=1.0, generator=gen(12))
    erased = (out[:, 1] == 0.5).flatten(1).float().mean(dim=1)  # [N] erased fraction
    assert (out[:, 0] == 0).flatten(1).float().mean(dim=1).equal(erased)
    assert erased.min() > 0.1 - 0.03 and erased.max() < 0.3 + 0.03


def test_cutout_square_inside_image():
    x = torch.ones(300, 1, 32, 32)
    out = A.cutout(x, 8, p=1.0, generator=gen(13))
    erased = (out == 0).flatten(1).sum(dim=1)  # [N] pixels
    assert erased.max() == 64 and erased.min() >= 16  # at least a quarter stays inside


def test_mask_patches_hides_exact_count():
    x = make_images(8)
    masked, mask = A.mask_patches(x, 4, mask_ratio=0.75, value=0.0, generator=gen(14))
    assert mask.shape == (8, 64) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == 64 - int(64 * 0.25)).all()
    pixel_mask = mask.view(8, 8, 8).repeat_interleave(4, 1).repeat_interleave(4, 2)  # [N, H, W]
    assert (masked.permute(1, 0, 2, 3)[:, pixel_mask] == 0).all()
    assert torch.equal(
        masked.permute(1, 0, 2, 3)[:, ~pixel_mask], x.permute(1, 0, 2, 3)[:, ~pixel_mask]
    )


def test_normalize_round_trip():
    x = make_images(4)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    z = A.normalize(x, mean, std)
    torch.testing.assert_close(z[:, 1], (x[:, 1] - 0.48) / 0.24)
    torch.testing.assert_close(A.denormalize(z, mean, std), x, atol=1e-6, rtol=0)


# ---- SimCLR composition and named pipelines ---------------------------------------------------


def test_simclr_defaults_follow_the_paper_for_cifar10():
    aug = A.SimCLRAugment()
    assert aug.jitter == pytest.approx((0.4, 0.4, 0.4, 0.1))  # s = 0.5 (Appendix B.9)
    assert aug.crop_scale == (0.08, 1.0) and aug.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert (aug.flip_p, aug.jitter_p, aug.grayscale_p) == (0.5, 0.8, 0.2)
    assert aug.blur is False  # no blur on CIFAR-10
    assert sorted(A.PIPELINES) == ["color", "crop", "crop+color", "crop+color+blur", "none"]


def test_two_views_differ_and_pipelines_do_what_their_names_say():
    x = make_images(16)
    v1, v2 = A.two_views(x, A.SimCLRAugment(size=32), generator=gen(15))
    assert v1.shape == v2.shape == x.shape and not torch.equal(v1, v2)
    # Geometry-only pipeline: a constant image stays the same constant.
    flat = torch.rand(16, 3, 1, 1, generator=gen(16)).expand(16, 3, 32, 32).contiguous()
    torch.testing.assert_close(A.get_pipeline("crop")(flat, gen()), flat, atol=1e-6, rtol=0)
    # Colour-only pipeline: each image stays spatially constant, and some change colour.
    coloured = A.get_pipeline("color")(flat, gen())
    assert torch.equal(coloured, coloured[:, :, :1, :1].expand_as(coloured))
    assert not torch.allclose(coloured, flat)
    # A different output size.
    assert A.get_pipeline("crop+color", size=24)(x, gen()).shape == (16, 3, 24, 24)
    assert A.simclr_augment(x, gen()).shape == x.shape


# ---- devices ----------------------------------------------------------------------------------


@CUDA
def test_cuda_output_stays_on_device_and_cpu_generator_gives_same_views():
    x = make_images()
    cpu_view = A.SimCLRAugment(blur=True)(x, gen(17))
    cuda_view = A.SimCLRAugment(blur=True)(x.cuda(), gen(17))
    assert cuda_view.device.type == "cuda"
    torch.testing.assert_close(cuda_view.cpu(), cpu_view, atol=1e-4, rtol=0)
    cuda_gen = torch.Generator(device="cuda").manual_seed(0)
    for name, op in RANDOM_OPS.items():
        out = op(x.cuda(), cuda_gen)
        assert out.device.type == "cuda", name


# ---- the benchmark script runs and writes JSON -------------------------------------------------


def test_benchmark_script_writes_valid_json(tmp_path, monkeypatch, repo_root):
    """The benchmark's command line, in-process (no second torch import), for a fraction of a second."""
    monkeypatch.syspath_prepend(str(repo_root))  # benchmarks/ is not an installed package
    from benchmarks.augment_throughput import main

    out = tmp_path / "augment.json"
    main(
        [
            "--seconds",
            "0.2",
            "--rounds",
            "1",
            "--batch",
            "32",
            "--device",
            "cpu",
            "--contenders",
            "batched,torchvision-0w",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    names = {row["name"] for row in report["results"]}
    assert {"batched-cpu", "torchvision-v2-0w"} <= names
    assert all(row["views_per_s"] > 0 for row in report["results"])
    assert report["machine"]["torch"] == torch.__version__
    assert report["ratios"]["batched-cpu / torchvision-v2-0w"] > 0
