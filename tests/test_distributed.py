"""Tests of replearn.distributed and replearn.pretrain: global-batch losses, DDP runs, resume.

The two-process tests start 2 CPU processes with the gloo backend (``torch.multiprocessing``
for library calls, ``python -m torch.distributed.run`` for the command line), one thread each.
What they check, as the issue asks: the 2-process loss and gradients equal the 1-process ones
on the same global batch (NT-Xent, CLIP loss), a 2-process run ends with identical weights on
both ranks (momentum networks and MoCo's queue included), and a failed run resumes from its
last checkpoint to the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from replearn import captions, distributed, impl, pretrain, recipes
from replearn.distributed import World
from replearn.presets import get_preset
from replearn.train import ShardedLoader

REPO = Path(__file__).resolve().parent.parent
cl = impl.load("contrastive_learning", "solution")
clip = impl.load("clip_zero_shot", "solution")

# A run small enough for seconds on a busy CPU: 200 MNIST digits (shipped with replearn), a
# two-block SmallCNN, global batch 16 (2 x 8), a 96-key queue.
TINY = {
    "widths": "8,16",
    "queue_size": "96",
    "projection_dim": "16",
    "hidden_dim": "32",
    "simsiam_hidden_dim": "8",
}
# MAE's ViT at the same scale: 28x28 digits in 7x7 patches of 4, width 16, one block each side.
TINY_MAE = {"dim": "16", "depth": "1", "heads": "2", "decoder_dim": "16", "decoder_heads": "2"}
# CLIP's image tower at the same scale; digits 7, 8, 9 get no caption in training (zero-shot)
TINY_CLIP = {"cifar_widths": "8,16", "cifar_heldout": "7,8,9"}
TINY_ARGS = [
    "--data",
    "mnist-embedded",
    "--preset",
    "smoke",
    "--batch-size",
    "16",
    "--budget-s",
    "0",
    *[arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")],
]


# Tiny tensors: every test runs on one torch thread (the conftest's ``one_thread``).
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_settings(method: str, tmp: Path, **changes) -> pretrain.PretrainSettings:
    options = dict(
        data="mnist-embedded",
        preset="smoke",
        batch_size=16,
        budget_s=0,
        overrides=dict(TINY),
        checkpoint=None,
        out_dir=None,
        evaluate=False,
        verbose=False,
        impl="solution",
        device="cpu",
    )
    options.update(changes)
    return pretrain.PretrainSettings(method, **options)


# --------------------------------------------------------------------------------------------
# Two processes with torch.multiprocessing
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, worker, out: str, args: tuple) -> None:
    """A spawned rank: torchrun's variables, one thread, the process group, ``worker``."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    world = distributed.init_distributed("cpu", timeout_s=120)
    try:
        torch.save(worker(world, *args), Path(out) / f"rank{rank}.pt")
    finally:
        distributed.shutdown_distributed()


def run_two_ranks(worker, tmp: Path, *args) -> list:
    """``worker(world, *args)`` on 2 gloo ranks; returns what each rank returned."""
    mp.spawn(_entry, args=(2, free_port(), worker, str(tmp), args), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]


def global_batch(n_total: int, dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    names = ("z1", "z2", "images", "texts", "x1", "x2", "x_img", "x_txt")
    return {name: torch.randn(n_total, dim, generator=g) for name in names}  # [N, D] each


class ClipTowers(nn.Module):
    """Two linear towers and a learnable temperature: enough for DDP to average gradients."""

    def __init__(self, dim: int):
        super().__init__()
        self.image, self.text = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.logit_scale = clip.LogitScale()

    def forward(self, x_img, x_txt):
        return self.image(x_img), self.text(x_txt), self.logit_scale()


def _losses_worker(world: World, n: int, dim: int) -> dict:
    """The global-batch losses seen from this rank, their gradients, and DDP's averaged grads."""
    from torch.nn.parallel import DistributedDataParallel

    data = global_batch(n * world.world_size, dim, seed=0)
    rows = slice(world.rank * n, (world.rank + 1) * n)
    local = {k: v[rows].clone().requires_grad_(True) for k, v in data.items()}  # [n, D] each
    out = {}

    loss = distributed.on_global_batch(cl.nt_xent_loss, (local["z1"], local["z2"]), 0.2)
    loss.backward()
    out.update(nt_xent=loss.detach(), grad_z1=local["z1"].grad, grad_z2=local["z2"].grad)

    scale = clip.LogitScale()
    loss = distributed.on_global_batch(clip.clip_loss, (local["images"], local["texts"]), scale())
    loss.backward()
    out.update(
        clip=loss.detach(),
        grad_images=local["images"].grad,
        grad_texts=local["texts"].grad,
        grad_log_scale=scale.log_scale.grad,
    )

    torch.manual_seed(1)  # the same initial weights on both ranks
    encoder = DistributedDataParallel(nn.Linear(dim, dim))
    z = encoder(torch.cat([data["x1"][rows], data["x2"][rows]]))  # [2n, D]
    distributed.on_global_batch(cl.nt_xent_loss, z.chunk(2), 0.2).backward()
    out["ddp_nt_xent"] = {k: p.grad.clone() for k, p in encoder.module.named_parameters()}

    torch.manual_seed(1)
    towers = DistributedDataParallel(ClipTowers(dim))
    image_features, text_features, logit_scale = towers(data["x_img"][rows], data["x_txt"][rows])
    distributed.on_global_batch(
        clip.clip_loss, (image_features, text_features), logit_scale
    ).backward()
    out["ddp_clip"] = {k: p.grad.clone() for k, p in towers.module.named_parameters()}
    return out


def test_two_process_losses_and_gradients_equal_one_process_on_the_global_batch(tmp_path):
    from open_clip.loss import ClipLoss

    n, dim, world_size = 6, 5, 2
    ranks = run_two_ranks(_losses_worker, tmp_path, n, dim)
    data = global_batch(n * world_size, dim, seed=0)
    full = {k: v.clone().requires_grad_(True) for k, v in data.items()}  # [N, D] each

    # one process on the global batch: the course's NT-Xent and open_clip's ClipLoss
    nt_xent = cl.nt_xent_loss(full["z1"], full["z2"], 0.2)
    nt_xent.backward()
    scale = clip.LogitScale()
    clip_value = ClipLoss()(
        nn.functional.normalize(full["images"], dim=1),
        nn.functional.normalize(full["texts"], dim=1),
        scale(),
    )
    clip_value.backward()

    # every rank computes the global loss
    for r in ranks:
        assert r["nt_xent"].item() == pytest.approx(nt_xent.item(), rel=1e-5)
        assert r["clip"].item() == pytest.approx(clip_value.item(), rel=1e-5)
    for rank, result in enumerate(ranks):
        rows = slice(rank * n, (rank + 1) * n)
        # the gather's backward sums each block's gradient over the W ranks: W times the global one
        for name, key in (
            ("z1", "grad_z1"),
            ("z2", "grad_z2"),
            ("images", "grad_images"),
            ("texts", "grad_texts"),
        ):
            torch.testing.assert_close(
                result[key] / world_size, full[name].grad[rows], rtol=1e-4, atol=1e-6
            )
    mean_scale_grad = sum(r["grad_log_scale"] for r in ranks) / world_size  # DDP's average
    torch.testing.assert_close(mean_scale_grad, scale.log_scale.grad, rtol=1e-4, atol=1e-6)

    # DDP: the averaged parameter gradients are the one-process ones, identical on both ranks
    torch.manual_seed(1)
    encoder = nn.Linear(dim, dim)
    cl.nt_xent_loss(*encoder(torch.cat([data["x1"], data["x2"]])).chunk(2), 0.2).backward()
    torch.manual_seed(1)
    towers = ClipTowers(dim)
    clip.clip_loss(*towers(data["x_img"], data["x_txt"])).backward()
    for key, module in (("ddp_nt_xent", encoder), ("ddp_clip", towers)):
        for name, parameter in module.named_parameters():
            for result in ranks:
                torch.testing.assert_close(result[key][name], parameter.grad, rtol=1e-4, atol=1e-6)


def _train_worker(world: World, methods: list[str], tmp: str) -> dict:
    states = {}
    for method in methods:
        overrides = dict(TINY_MAE) if method == "mae" else dict(TINY)
        settings = tiny_settings(method, Path(tmp), max_steps=3, overrides=overrides)
        outcome = pretrain.run_pretraining(settings, world)
        states[method] = (outcome.model.state_dict(), outcome.history.steps_done, outcome.digest)
    return states


def test_two_process_training_ends_with_identical_weights_on_both_ranks(tmp_path):
    methods = ["simclr", "moco", "byol", "simsiam", "supervised", "mae"]
    rank0, rank1 = run_two_ranks(_train_worker, tmp_path, methods, str(tmp_path))
    for method in methods:
        (state0, steps0, digest0), (state1, steps1, digest1) = rank0[method], rank1[method]
        assert steps0 == steps1 == 3
        assert state0.keys() == state1.keys() and digest0 == digest1
        for name in state0:  # parameters, BatchNorm statistics, momentum networks, queue
            assert torch.equal(state0[name], state1[name]), f"{method}: {name} differs"
    moco = rank0["moco"][0]
    assert int(moco["queue.ptr"]) == 3 * 16  # each step enqueued the 16 keys of both ranks
    cfg = pretrain.apply_overrides(
        recipes.contrastive_learning.ContrastiveConfig.from_preset(get_preset("smoke")), TINY
    )
    torch.manual_seed(0)  # the run's seed: the initial queue of random unit keys
    initial = pretrain.METHODS["moco"].build(cl, cfg, pretrain.BACKBONES["smallcnn"](cfg, 1), None)
    initial_keys = initial.queue.keys  # [K, D]
    assert torch.equal(moco["queue.keys"][48:], initial_keys[48:])  # not reached yet
    assert not torch.isclose(moco["queue.keys"][:48], initial_keys[:48]).all(dim=1).any()
    assert not torch.equal(moco["key_encoder.blocks.0.0.weight"], moco["encoder.blocks.0.0.weight"])
    byol = rank0["byol"][0]
    assert "target_encoder.blocks.0.0.weight" in byol


def _crash_worker(world: World, tmp: str, crash_at: int) -> dict:
    """Fail at step ``crash_at`` (every rank, as when a node dies), resume, and run uninterrupted."""
    import dataclasses

    tmp = Path(tmp)
    normal = pretrain.METHODS["moco"]

    def failing_step(ctx, batch):
        if ctx.step == crash_at:
            raise RuntimeError("injected failure")
        return normal.step(ctx, batch)

    settings = tiny_settings(
        "moco", tmp, max_steps=7, checkpoint=str(tmp / "moco.pt"), checkpoint_every_steps=2
    )
    pretrain.register_method(dataclasses.replace(normal, step=failing_step), replace=True)
    try:
        with pytest.raises(RuntimeError, match="injected failure"):
            pretrain.run_pretraining(settings, world)
    finally:
        pretrain.register_method(normal, replace=True)
    saved = torch.load(tmp / "moco.pt", weights_only=True)["history"]["steps_done"]
    resumed = pretrain.run_pretraining(settings, world)
    fresh = pretrain.run_pretraining(dataclasses.replace(settings, checkpoint=None), world)
    return {
        "saved_at": saved,
        "resumed": resumed.model.state_dict(),
        "resumed_at": resumed.history.resumed_at_step,
        "fresh": fresh.model.state_dict(),
    }


def test_failed_two_process_run_resumes_exactly_from_its_last_checkpoint(tmp_path):
    results = run_two_ranks(_crash_worker, tmp_path, str(tmp_path), 5)
    for result in results:
        assert result["saved_at"] == 4  # checkpoints every 2 steps; the failure hit step 5
        assert result["resumed_at"] == [4]
        for name, tensor in result["fresh"].items():
            assert torch.equal(result["resumed"][name], tensor), f"{name} differs after resume"


# --------------------------------------------------------------------------------------------
# One process: the distributed losses and steps reduce to the module's
# --------------------------------------------------------------------------------------------


def test_on_global_batch_with_one_process_is_the_module_loss_itself():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(7, 9, generator=g), torch.randn(7, 9, generator=g)
    a = [z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)]
    b = [z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)]
    ours = distributed.on_global_batch(cl.nt_xent_loss, a, 0.5)
    reference = cl.nt_xent_loss(*b, 0.5)
    ours.backward(), reference.backward()
    assert torch.equal(ours, reference)
    for x, y in zip(a, b):
        assert torch.equal(x.grad, y.grad)
    # the arguments after the rows reach the loss unchanged (CLIP's learnable scale)
    scale = clip.LogitScale()
    loss = distributed.on_global_batch(clip.clip_loss, (z1, z2), scale())
    loss.backward()
    assert torch.equal(loss.detach(), clip.clip_loss(z1, z2, scale()).detach())
    assert scale.log_scale.grad is not None


@pytest.mark.parametrize("method", ["simclr", "moco", "byol"])
def test_engine_steps_equal_the_module_steps_on_one_process(method):
    settings_cfg = pretrain.apply_overrides(
        recipes.contrastive_learning.ContrastiveConfig.from_preset(get_preset("smoke")), TINY
    )
    images = torch.randint(
        0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(5)
    )
    data = type("Data", (), {"num_classes": 10})()
    entry = pretrain.METHODS[method]
    torch.manual_seed(0)
    encoder = pretrain.BACKBONES["smallcnn"](settings_cfg, 3)
    model = entry.build(cl, settings_cfg, encoder, data)
    twin = copy.deepcopy(model)
    augment = recipes.contrastive_learning.default_augment(settings_cfg, images)
    ctx = pretrain.StepContext(
        cl,
        model,
        entry.trained(model),
        settings_cfg,
        augment,
        torch.Generator().manual_seed(9),
        World(),
    )
    ours = entry.step(ctx, images)["loss"]
    generator = torch.Generator().manual_seed(9)
    if method == "simclr":
        theirs = cl.simclr_step(twin, images, augment, settings_cfg.temperature, generator)["loss"]
    else:
        theirs = twin.step(images, augment, generator)["loss"]
    torch.testing.assert_close(ours, theirs)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"{method}: {name}")  # queue, targets, BN stats


# --------------------------------------------------------------------------------------------
# Pieces: the sharded loader, the method table, overrides, errors
# --------------------------------------------------------------------------------------------


def test_sharded_loader_splits_each_global_batch_into_rank_ordered_shares():
    data = torch.arange(40)
    whole = ShardedLoader(data, global_batch_size=8, seed=3)
    shards = [
        ShardedLoader(data, global_batch_size=8, rank=r, world_size=4, seed=3) for r in range(4)
    ]
    for epoch in (0, 1):
        together = zip(*(s.batches(epoch) for s in shards))
        for full, parts in zip(whole.batches(epoch), together, strict=True):
            assert torch.equal(torch.cat(parts), full)  # [8] = 4 shares of 2
    tail = [b.tolist() for b in shards[1].batches(1, start=3)]  # a resumed epoch's batches
    assert tail == [b.tolist() for b in shards[1].batches(1)][3:] and len(tail) == 2
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        ShardedLoader(data, global_batch_size=10, rank=0, world_size=4)


def test_mae_engine_step_is_the_module_forward_and_its_run_evaluates_the_vit(tmp_path):
    mae = impl.load("masked_autoencoders", "solution")
    entry = pretrain.METHODS["mae"]
    cfg = pretrain.apply_overrides(
        recipes.masked_autoencoders.MAEConfig.from_preset(get_preset("smoke")), TINY_MAE
    )
    images = torch.randint(
        0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(5)
    )
    data = type("Data", (), {"image_shape": (1, 28, 28)})()
    torch.manual_seed(0)
    model = entry.build(mae, cfg, None, data)
    augment = entry.augment(mae, cfg, images)
    ctx = pretrain.StepContext(
        mae, model, entry.trained(model), cfg, augment, torch.Generator().manual_seed(9), World()
    )
    ours = entry.step(ctx, augment(images, ctx.generator))["loss"]
    theirs = model(mae.as_float_images(images), cfg.mask_ratio, torch.Generator().manual_seed(9))
    torch.testing.assert_close(ours, theirs["loss"])
    settings = tiny_settings("mae", tmp_path, max_steps=2, overrides=dict(TINY_MAE), evaluate=True)
    outcome = pretrain.run_pretraining(settings)
    assert outcome.history.steps_done == 2 and isinstance(outcome.encoder, mae.MAEEncoder)
    assert set(outcome.metrics) == {"knn", "linear"}


def _clip_worker(world: World, tmp: str) -> dict:
    settings = tiny_settings("clip", Path(tmp), max_steps=3, overrides=dict(TINY_CLIP))
    outcome = pretrain.run_pretraining(settings, world)
    return {
        "state": outcome.model.state_dict(),
        "steps": outcome.history.steps_done,
        "digest": outcome.digest,
        "table": outcome.model.caption_table,
        "losses": outcome.history.metric("loss"),
    }


def test_two_process_clip_run_ends_with_identical_replicas(tmp_path):
    rank0, rank1 = run_two_ranks(_clip_worker, tmp_path, str(tmp_path))
    assert rank0["steps"] == rank1["steps"] == 3 and rank0["digest"] == rank1["digest"]
    assert rank0["losses"] == rank1["losses"]  # logged: the mean over ranks of the local losses
    torch.testing.assert_close(rank0["table"], rank1["table"], rtol=0, atol=0)  # rank 0's, sent
    assert rank0["state"].keys() == rank1["state"].keys()
    for name in rank0["state"]:  # the image tower, its BatchNorm statistics, the temperature
        assert torch.equal(rank0["state"][name], rank1["state"][name]), f"clip: {name} differs"
    log_scale = rank0["state"]["clip.logit_scale.log_scale"]
    assert log_scale.item() != pytest.approx(math.log(1 / 0.07), abs=1e-7)  # the temperature learns


def test_clip_engine_step_is_the_module_forward_and_its_run_evaluates_zero_shot(tmp_path):
    clip = impl.load("clip_zero_shot", "solution")
    entry = pretrain.METHODS["clip"]
    cfg = pretrain.apply_overrides(
        recipes.clip_zero_shot.CLIPConfig.from_preset(get_preset("smoke")), TINY_CLIP
    )
    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=g)  # [n, C, H, W]
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])  # [n] seen digits only
    names = [str(digit) for digit in range(10)]
    data = type("Data", (), {"image_shape": (1, 28, 28), "class_names": names, "name": "digits"})()
    torch.manual_seed(0)
    model = entry.build(clip, cfg, None, data)
    assert isinstance(model.encoder, clip.ImageEncoder) and model.encoder.embed_dim == 384
    texts = recipes.clip_zero_shot.sentence_encoder_fn(
        [t.format(c="3") for t in captions.CIFAR_TEMPLATES]
    )
    torch.testing.assert_close(model.caption_table[3], texts)  # [18, 384] the module's text side
    twin = copy.deepcopy(model)

    augment = entry.augment(clip, cfg, images)
    ctx = pretrain.StepContext(
        clip, model, entry.trained(model), cfg, augment, torch.Generator().manual_seed(9), World()
    )
    ours = entry.step(ctx, (images, labels))
    ours["loss"].backward()
    # train_cifar_aligned's step: a template per image, then the augmentation, same generator
    generator = torch.Generator().manual_seed(9)
    which = torch.randint(len(captions.CIFAR_TEMPLATES), (8,), generator=generator)  # [n]
    view = recipes.clip_zero_shot.cifar_augment(generator)
    theirs = twin.clip(view(clip.as_float_images(images)), twin.caption_table[labels, which])
    theirs["loss"].backward()
    torch.testing.assert_close(ours["loss"], theirs["loss"])
    torch.testing.assert_close(ours["logit_scale"], theirs["logit_scale"])
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=f"clip: gradient of {name}")

    settings = tiny_settings(
        "clip",
        tmp_path,
        max_steps=2,
        overrides=dict(TINY_CLIP),
        evaluate=True,
        checkpoint=str(tmp_path / "clip.pt"),
    )
    outcome = pretrain.run_pretraining(settings)
    assert outcome.history.steps_done == 2 and isinstance(outcome.encoder, clip.ImageEncoder)
    assert set(outcome.metrics) == {
        "linear",
        "zero_shot_heldout",
        "zero_shot_seen",
        "zero_shot_heldout_among_all",
        "zero_shot_all",
    }
    assert all(0 <= value <= 1 for value in outcome.metrics.values())
    run = torch.load(tmp_path / "clip.pt", weights_only=True)["run"]
    assert run["num_samples"] == 140  # 20 digits of each of the 7 seen classes, none of 7, 8, 9
    with pytest.raises(ValueError, match=r"held-out classes \['cat'\] are not classes"):
        pretrain.run_pretraining(
            tiny_settings("clip", tmp_path, max_steps=1, overrides={"cifar_heldout": "cat"})
        )


def test_method_table_and_overrides():
    assert {"simclr", "moco", "byol", "simsiam", "supervised", "mae", "clip"} <= set(
        pretrain.METHODS
    )
    with pytest.raises(ValueError, match="already registered"):
        pretrain.register_method(pretrain.METHODS["simclr"])
    with pytest.raises(ValueError, match="choose one of"):
        pretrain.get_method("mae-typo")
    cfg = recipes.contrastive_learning.ContrastiveConfig.from_preset(get_preset("smoke"))
    changed = pretrain.apply_overrides(cfg, {"widths": "8,16", "lr": "0.5", "checkpoints": "true"})
    assert changed.widths == (8, 16) and changed.lr == 0.5 and changed.checkpoints is True
    with pytest.raises(ValueError, match="has no field 'lrr'"):
        pretrain.apply_overrides(cfg, {"lrr": "1"})
    with pytest.raises(ValueError, match="expected a int"):
        pretrain.apply_overrides(cfg, {"queue_size": "many"})


def test_single_process_run_checkpoints_and_reuses_a_finished_run(tmp_path):
    settings = tiny_settings(
        "simsiam",
        tmp_path,
        max_steps=2,
        checkpoint=str(tmp_path / "s.pt"),
        out_dir=str(tmp_path / "out"),
    )
    first = pretrain.run_pretraining(settings)
    assert first.history.steps_done == 2 and first.history.stopped_by == "max_steps"
    assert first.world.world_size == 1 and Path(first.files["encoder"]).is_file()
    again = pretrain.run_pretraining(settings)  # finished: restored, no step taken
    assert again.history.steps_done == 2 and again.digest == first.digest
    with pytest.raises(ValueError, match="global_batch_size=16 but this run has"):
        pretrain.run_pretraining(
            tiny_settings(
                "simsiam", tmp_path, batch_size=8, max_steps=3, checkpoint=str(tmp_path / "s.pt")
            )
        )
    with pytest.raises(ValueError, match="needs GPUs"):
        world = World(rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")
        pretrain.run_pretraining(
            tiny_settings("simclr", tmp_path, sync_bn=True, max_steps=1), world
        )


def test_distributed_helpers_without_a_process_group():
    world = distributed.init_distributed("cpu")
    assert (world.rank, world.world_size, world.distributed, world.is_main) == (0, 1, False, True)
    x = torch.randn(3, 2)
    assert distributed.gather_with_grad(x) is x
    torch.testing.assert_close(distributed.gather_no_grad(x), x)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert distributed.check_replicas(model) == distributed.state_digest(model)
    with pytest.raises(ValueError, match="same number of rows"):
        distributed.on_global_batch(cl.nt_xent_loss, (torch.randn(3, 2), torch.randn(4, 2)), 0.2)
    with pytest.raises(ValueError, match="same number of rows"):
        distributed.on_global_batch(cl.nt_xent_loss, (), 0.2)


# --------------------------------------------------------------------------------------------
# The command line under torchrun
# --------------------------------------------------------------------------------------------


def torchrun(args: list[str], cwd: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "replearn.pretrain",
        *args,
    ]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def test_torchrun_two_processes_from_the_command_line(tmp_path):
    process = torchrun(
        [
            "--method",
            "simclr",
            *TINY_ARGS,
            "--max-steps",
            "3",
            "--no-eval",
            "--checkpoint",
            "run.pt",
            "--out-dir",
            "out",
            "--log-every",
            "1",
        ],
        tmp_path,
    )
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert "2 process(es), backend gloo" in output and "global batch 16 = 2 x 8" in output
    assert "replicas identical" in output
    assert output.count("step 1 epoch 0") == 1  # rank 0 logs, alone
    state = torch.load(tmp_path / "run.pt", weights_only=True)
    assert state["history"]["steps_done"] == 3 and state["run"]["world_size"] == 2
    assert (tmp_path / "out" / "simclr-mnist-embedded-smoke-seed0-encoder.safetensors").is_file()


def test_a_torchrun_run_is_what_the_notebooks_full_preset_loads(tmp_path, capsys):
    """The full preset's cells call ``Session.pretrain`` (``load_or_pretrain``): a run launched on 2
    processes from the course folder with the default checkpoint is loaded, not trained again."""
    process = torchrun(
        ["--method", "byol", *TINY_ARGS, "--max-steps", "3", "--no-eval", "--log-every", "1"],
        tmp_path,
    )
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    run_name = "byol-mnist-embedded-smoke-seed0"
    assert (tmp_path / "checkpoints" / "pretrain" / f"{run_name}.pt").is_file()
    torchrun_digest = output.split("replicas identical (sha256 ")[1][:12]
    loaded = pretrain.load_or_pretrain(
        "byol",
        "smoke",
        module=cl,
        device="cpu",
        root=tmp_path,
        data="mnist-embedded",
        batch_size=16,
        budget_s=0,
        max_steps=3,
        overrides=dict(TINY),
    )
    said = capsys.readouterr().out
    assert "loading or resuming" in said and "torchrun --nproc_per_node N" in said
    assert loaded.history.steps_done == 3 and loaded.digest.startswith(torchrun_digest)
    assert math.isfinite(loaded.final_loss) and not loaded.encoder.training
    # never run: trained here, in one process, under the same checkpoint name
    fresh = pretrain.load_or_pretrain(
        "simsiam",
        "smoke",
        module=cl,
        device="cpu",
        root=tmp_path,
        data="mnist-embedded",
        batch_size=16,
        budget_s=0,
        max_steps=2,
        overrides=dict(TINY),
        verbose=False,
    )
    assert fresh.world.world_size == 1 and fresh.history.steps_done == 2
    assert (
        tmp_path / "checkpoints" / "pretrain" / "simsiam-mnist-embedded-smoke-seed0.pt"
    ).is_file()
    with pytest.raises(ValueError, match="unknown method"):
        pretrain.load_or_pretrain("simclr-v2", "smoke", root=tmp_path)


def test_notebook_sessions_use_the_entry_point_in_the_full_preset(tmp_path, monkeypatch):
    from replearn import notebook

    monkeypatch.delenv(notebook.ENTRY_POINT_ENV, raising=False)
    session = notebook.setup("contrastive_learning", preset="smoke", impl="solution", device="cpu")
    assert not session.uses_entry_point
    assert notebook.setup(
        "contrastive_learning", preset="full", impl="solution", device="cpu"
    ).uses_entry_point
    monkeypatch.setenv(notebook.ENTRY_POINT_ENV, "1")
    assert session.uses_entry_point
    session.course_root = str(tmp_path)
    outcome = session.pretrain(
        "simclr",
        data="mnist-embedded",
        batch_size=16,
        budget_s=0,
        max_steps=2,
        overrides=dict(TINY),
        verbose=False,
    )
    assert outcome.history.steps_done == 2 and outcome.model.encoder is outcome.encoder
    assert (
        tmp_path / "runs" / "pretrain" / "simclr-mnist-embedded-smoke-seed0-encoder.safetensors"
    ).is_file()


def worker_pids(launcher: int) -> list[int]:
    """The processes torchrun started (each in its own session, so a group kill misses them)."""
    return [
        int(pid) for pid in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    ]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks through /proc")
def test_torchrun_run_killed_mid_training_resumes_to_the_uninterrupted_weights(tmp_path):
    args = [
        "--method",
        "moco",
        *TINY_ARGS,
        "--max-steps",
        "150",
        "--epochs",
        "20",
        "--no-eval",
        "--out-dir",
        "none",
        "--checkpoint-every-steps",
        "5",
        "--log-every",
        "50",
    ]
    process = torchrun([*args, "--checkpoint", "killed.pt"], tmp_path)
    checkpoint = tmp_path / "killed.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in worker_pids(process.pid):  # both ranks die at once, as when a machine fails
        os.kill(pid, signal.SIGKILL)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output
    killed_at = torch.load(checkpoint, weights_only=True)["history"]["steps_done"]
    assert 0 < killed_at < 150, "the run finished before it could be killed; raise --max-steps"

    resumed = torchrun([*args, "--checkpoint", "killed.pt"], tmp_path)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resuming killed.pt at step {killed_at}" in output
    fresh = torchrun([*args, "--checkpoint", "fresh.pt"], tmp_path)
    fresh_output, _ = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, fresh_output
    after = torch.load(checkpoint, weights_only=True)
    reference = torch.load(tmp_path / "fresh.pt", weights_only=True)
    assert after["history"]["steps_done"] == reference["history"]["steps_done"] == 150
    for name, tensor in reference["model"].items():
        assert torch.equal(after["model"][name], tensor), f"{name} differs after the resume"
