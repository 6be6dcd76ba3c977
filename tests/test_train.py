"""Tests of replearn.train: seeding, the loader, the loop, checkpoints, exact resume, weights."""

from __future__ import annotations

import json
import math
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from replearn.train import (
    BudgetClock,
    BudgetCosine,
    CheckpointError,
    History,
    Hook,
    TensorLoader,
    TrainConfig,
    load_checkpoint,
    load_weights,
    pick_device,
    save_checkpoint,
    save_weights,
    seed_everything,
    step_budget,
    train,
    train_or_load,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


# Tiny tensors: every test runs on one torch thread (the conftest's ``one_thread``).
pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 1x8x8 images [N, 1, 8, 8] and labels [N] from 3 classes."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return images, labels


class _SmallCNN(nn.Module):
    """Conv + BatchNorm + dropout: every kind of state an exact resume must restore."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x).flatten(1)))  # [N, 3]


def _noisy_step(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    """Cross-entropy on inputs jittered with torch, NumPy and Python randomness."""
    images, labels = batch
    noise = torch.randn_like(images) * 0.1  # torch global RNG
    scale = float(np.random.uniform(0.9, 1.1)) * random.uniform(0.95, 1.05)  # numpy + python
    logits = model(images * scale + noise)
    loss = nn.functional.cross_entropy(logits, labels)
    return {"loss": loss, "accuracy": (logits.argmax(1) == labels).float().mean()}


def _build(seed: int = 0, batch_size: int = 16):
    """Model, optimizer, per-step cosine schedule and loader, all seeded."""
    seed_everything(seed)
    images, labels = _data()
    model = _SmallCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loader = TensorLoader(images, labels, batch_size=batch_size, seed=seed)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5 * len(loader))
    return model, optimizer, scheduler, loader


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), f"{name} differs"


class _Momentum(Hook):
    """A MoCo-style momentum copy of the model, updated after each step; checkpointed."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def after_step(self, model: nn.Module, step: int) -> None:
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[name].mul_(0.9).add_(value, alpha=0.1)  # EMA of the weights

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}


def _quiet(**fields) -> TrainConfig:
    return TrainConfig(progress=False, checkpoint_every_s=None, log_every=3, **fields)


# --------------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------------


def test_seed_everything_repeats_every_random_source():
    def draw():
        generator = seed_everything(123)
        return (
            random.random(),
            np.random.rand(),
            torch.rand(3).tolist(),
            torch.rand(2, generator=generator).tolist(),
        )

    assert draw() == draw()
    assert torch.equal(
        torch.rand(4, generator=seed_everything(5)),
        torch.rand(4, generator=torch.Generator().manual_seed(5)),
    )
    with pytest.raises(ValueError, match="non-negative"):
        seed_everything(-1)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device(None) == pick_device("auto")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")


# --------------------------------------------------------------------------------------------
# TensorLoader
# --------------------------------------------------------------------------------------------


def test_loader_batches_depend_only_on_seed_and_epoch():
    x = torch.arange(50)
    a, b = TensorLoader(x, batch_size=8, seed=3), TensorLoader(x, batch_size=8, seed=3)
    epoch0_a, epoch1_a = [t.tolist() for t in a], [t.tolist() for t in a]
    assert epoch0_a == [t.tolist() for t in b] and epoch1_a == [t.tolist() for t in b]
    assert epoch0_a != epoch1_a  # a fresh permutation every epoch
    assert epoch0_a != [t.tolist() for t in TensorLoader(x, batch_size=8, seed=4)]
    assert [t.tolist() for t in b.batches(0)] == epoch0_a  # random access to any epoch
    assert len(a) == 6 and all(len(batch) == 8 for batch in epoch0_a)


def test_loader_covers_every_sample_once_and_keeps_rows_aligned():
    x, y = torch.arange(23), torch.arange(23) * 10
    loader = TensorLoader(x, y, batch_size=5, drop_last=False, seed=0)
    batches = list(loader)
    assert len(loader) == 5 and [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat([b[0] for b in batches]).tolist()) == list(range(23))
    assert all(torch.equal(bx * 10, by) for bx, by in batches)
    unshuffled = TensorLoader(x, batch_size=5, shuffle=False, drop_last=False)
    assert torch.cat(list(unshuffled)).tolist() == list(range(23))


def test_loader_state_dict_resumes_mid_epoch():
    x = torch.arange(40)
    reference = TensorLoader(x, batch_size=4, seed=1)
    expected = [t.tolist() for t in reference] + [t.tolist() for t in reference]

    interrupted = TensorLoader(x, batch_size=4, seed=1)
    seen = []
    for i, batch in enumerate(interrupted):
        seen.append(batch.tolist())
        if i == 6:
            break
    state = interrupted.state_dict()
    assert state["epoch"] == 0 and state["position"] == 7
    resumed = TensorLoader(x, batch_size=4, seed=99)
    resumed.load_state_dict(state)  # the seed travels with the state
    seen += [t.tolist() for t in resumed] + [t.tolist() for t in resumed]
    assert seen == expected


def test_loader_errors_are_clear():
    with pytest.raises(ValueError, match="same first dimension"):
        TensorLoader(torch.zeros(5), torch.zeros(6), batch_size=2)
    with pytest.raises(ValueError, match="no batch at all"):
        TensorLoader(torch.zeros(5), batch_size=8)
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(torch.zeros(5), torch.zeros(5), batch_size=8).load_state_dict(
            {"seed": 0, "epoch": 0, "position": 0, "batch_size": 4, "num_samples": 5}
        )


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


def test_train_learns_and_records_history():
    generator = seed_everything(0)
    x = torch.randn(200, 2, generator=generator)  # [N, 2]
    y = (x[:, 0] + x[:, 1] > 0).long()  # a linearly separable rule
    model = nn.Linear(2, 2)
    history = train(
        lambda m, b: {
            "loss": nn.functional.cross_entropy(m(b[0]), b[1]),
            "batch_mean": b[0].mean(),
        },
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        TensorLoader(x, y, batch_size=20),
        _quiet(epochs=5),
    )
    assert history.steps_done == 50 and history.epochs_done == 5.0 and len(history.epochs) == 5
    assert history.stopped_by == "epochs" and not history.stopped_by_budget
    assert len(history.steps) == 50 and [r["step"] for r in history.steps] == list(range(50))
    assert {"loss", "batch_mean", "lr", "epoch", "time_s"} <= history.steps[0].keys()
    losses = history.metric("loss", "epoch")
    assert losses[-1] < 0.5 * losses[0]
    assert history.recent_mean("loss") == pytest.approx(sum(history.metric("loss")[-20:]) / 20)
    assert history.recent_mean("loss", steps=1) == history.metric("loss")[-1]
    assert math.isnan(History().recent_mean("loss"))
    assert history.images_seen == 1000 and history.images_per_s > 0
    assert (model(x).argmax(1) == y).float().mean() > 0.95
    restored = History.from_dict(json.loads(json.dumps(history.as_dict())))
    assert restored.steps == history.steps and restored.epochs_done == 5.0


def test_step_fn_contract_errors():
    model = nn.Linear(2, 2)
    loader = TensorLoader(torch.randn(8, 2), batch_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no 'loss'"):
        train(lambda m, b: {"total": m(b).sum()}, model, optimizer, loader, _quiet(epochs=1))
    with pytest.raises(ValueError, match="does not require grad"):
        train(lambda m, b: m(b).sum().detach(), model, optimizer, loader, _quiet(epochs=1))
    with pytest.raises(FloatingPointError, match="loss is nan"):
        train(lambda m, b: m(b).sum() * float("nan"), model, optimizer, loader, _quiet(epochs=1))
    with pytest.raises(ValueError, match="needs a limit"):
        TrainConfig()


def test_stops_on_max_steps_and_on_budget():
    model, optimizer, _, loader = _build()
    history = train(_noisy_step, model, optimizer, loader, _quiet(epochs=100, max_steps=7))
    assert history.steps_done == 7 and history.stopped_by == "max_steps"
    assert history.epochs_done == pytest.approx(7 / len(loader)) and len(history.epochs) == 1

    model, optimizer, _, loader = _build()
    history = train(_noisy_step, model, optimizer, loader, _quiet(epochs=10_000, budget_s=0.3))
    assert history.stopped_by == "budget" and history.stopped_by_budget
    assert 0 < history.steps_done < 10_000 * len(loader)
    assert 0.3 <= history.wall_time_s < 5


def test_grad_clip_bounds_the_update_and_scheduler_steps_per_step():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = train(
        lambda m, b: 1000 * m(b).pow(2).mean(),  # huge gradients
        model,
        optimizer,
        TensorLoader(torch.randn(4, 4), batch_size=4),
        _quiet(max_steps=1, grad_clip=0.01),
        scheduler=scheduler,
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 0.01 + 1e-6  # lr 1 x clipped norm 0.01
    assert history.steps[0]["grad_norm"] > 1.0  # the norm before clipping is recorded
    assert history.steps[0]["lr"] == 1.0 and optimizer.param_groups[0]["lr"] == 0.5


def test_hooks_after_step_and_on_epoch_end():
    calls = []

    def after_step(model, step):
        assert not torch.is_grad_enabled()
        calls.append(step)

    def on_epoch_end(model, epoch, history):
        model.eval()  # train() must put the model back in training mode
        return {"probe": 10.0 + epoch}

    model, optimizer, _, loader = _build()
    seen_modes = []
    step = lambda m, b: (seen_modes.append(m.training), _noisy_step(m, b))[1]
    history = train(
        step,
        model,
        optimizer,
        loader,
        _quiet(epochs=2),
        hooks=[Hook(after_step=after_step, on_epoch_end=on_epoch_end)],
    )
    assert calls == list(range(2 * len(loader)))
    assert history.metric("probe", "epoch") == [10.0, 11.0]
    assert all(seen_modes)


def test_amp_on_a_cpu_without_native_bf16_warns_and_trains_in_float32(monkeypatch):
    monkeypatch.setattr("replearn.train.cpu_supports_bf16", lambda: False)
    model, optimizer, _, loader = _build()
    with pytest.warns(UserWarning, match="no effect on this cpu .*AVX512-BF16 or AMX"):
        history = train(
            _noisy_step, model, optimizer, loader, _quiet(max_steps=2, amp=True), device="cpu"
        )
    assert history.amp is None and history.device == "cpu"


def test_amp_on_a_cpu_with_native_bf16_autocasts_the_step_and_auto_does_not(monkeypatch):
    monkeypatch.setattr("replearn.train.cpu_supports_bf16", lambda: True)  # emulated elsewhere
    seen = []

    def step(model, batch):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return _noisy_step(model, batch)

    for amp, expected in ((True, torch.bfloat16), ("auto", False)):
        model, optimizer, _, loader = _build()
        history = train(step, model, optimizer, loader, _quiet(max_steps=2, amp=amp), device="cpu")
        assert seen[-2:] == [expected] * 2
        assert history.amp == ("bfloat16" if amp is True else None)
        assert math.isfinite(history.recent_mean())


def test_channels_last_trains_the_same_model_and_hands_it_back_in_the_default_layout():
    layouts = []

    def step(model, batch):
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        layouts.append(conv.weight.stride()[1] == 1)  # NHWC: channels innermost
        return _noisy_step(model, batch)

    trained = {}
    for channels_last in (False, True):
        model, _, _, loader = _build()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)  # Adam would amplify rounding
        config = _quiet(max_steps=4, channels_last=channels_last)
        trained[channels_last] = (model, train(step, model, optimizer, loader, config))
    assert layouts == [False] * 4 + [True] * 4
    (plain, plain_history), (nhwc, nhwc_history) = trained[False], trained[True]
    assert all(p.stride() == p.contiguous().stride() for p in nhwc.parameters())
    assert nhwc_history.metric("loss") == pytest.approx(plain_history.metric("loss"), rel=1e-4)
    for (name, a), b in zip(plain.state_dict().items(), nhwc.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


# --------------------------------------------------------------------------------------------
# checkpoints and exact resume
# --------------------------------------------------------------------------------------------


def _uninterrupted(epochs: int = 3):
    model, optimizer, scheduler, loader = _build()
    hook = _Momentum(model)
    history = train(
        _noisy_step,
        model,
        optimizer,
        loader,
        _quiet(epochs=epochs),
        scheduler=scheduler,
        hooks=hook,
    )
    return model, hook, history


@pytest.mark.parametrize("interrupt_at", [5, 12])  # mid-epoch, and exactly at an epoch's end
def test_resume_after_step_limit_gives_identical_weights(tmp_path, interrupt_at):
    reference, reference_hook, reference_history = _uninterrupted()
    path = tmp_path / "run.pt"

    model, optimizer, scheduler, loader = _build()
    train(
        _noisy_step,
        model,
        optimizer,
        loader,
        _quiet(epochs=3, max_steps=interrupt_at, checkpoint_path=str(path)),
        scheduler=scheduler,
        hooks=_Momentum(model),
    )
    torch.rand(100)  # other work between the runs must not matter
    np.random.rand(7)

    model, optimizer, scheduler, loader = _build()
    hook = _Momentum(model)
    history = train(
        _noisy_step,
        model,
        optimizer,
        loader,
        _quiet(epochs=3, checkpoint_path=str(path)),
        scheduler=scheduler,
        hooks=hook,
    )
    _assert_same_weights(model, reference)
    assert all(torch.equal(hook.shadow[k], reference_hook.shadow[k]) for k in hook.shadow)
    assert history.metric("loss") == reference_history.metric("loss")
    assert history.metric("loss", "epoch") == reference_history.metric("loss", "epoch")
    assert history.resumed_at_step == [interrupt_at] and history.stopped_by == "epochs"


def test_resume_after_a_crash_gives_identical_weights(tmp_path):
    reference, _, _ = _uninterrupted()
    path = tmp_path / "crash.pt"
    calls = {"n": 0}

    def crashing_step(model, batch):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt("simulated crash")
        return _noisy_step(model, batch)

    model, optimizer, scheduler, loader = _build()
    with pytest.raises(KeyboardInterrupt):
        train(
            crashing_step,
            model,
            optimizer,
            loader,
            _quiet(epochs=3, checkpoint_path=str(path), checkpoint_every_steps=4),
            scheduler=scheduler,
            hooks=_Momentum(model),
        )
    assert load_checkpoint(path)["history"]["steps_done"] == 8  # the last periodic checkpoint
    assert not [p for p in tmp_path.iterdir() if p.name != "crash.pt"]  # no temporary files left

    model, optimizer, scheduler, loader = _build()
    history = train(
        _noisy_step,
        model,
        optimizer,
        loader,
        _quiet(epochs=3, checkpoint_path=str(path)),
        scheduler=scheduler,
        hooks=_Momentum(model),
    )
    _assert_same_weights(model, reference)
    assert history.resumed_at_step == [8] and history.steps_done == 3 * len(loader)


def test_resume_refuses_a_different_loader(tmp_path):
    path = str(tmp_path / "run.pt")
    model, optimizer, _, loader = _build()
    train(_noisy_step, model, optimizer, loader, _quiet(max_steps=2, checkpoint_path=path))
    model, optimizer, _, loader = _build(batch_size=32)
    with pytest.raises(CheckpointError, match="batches per epoch"):
        train(_noisy_step, model, optimizer, loader, _quiet(epochs=1, checkpoint_path=path))


def test_checkpoint_files_are_atomic_and_errors_are_clear(tmp_path):
    path = tmp_path / "sub" / "state.pt"
    save_checkpoint(path, weights=torch.arange(3), note="first")
    assert load_checkpoint(path)["note"] == "first"
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):  # a lambda: unpicklable
        save_checkpoint(path, weights=torch.arange(3), bad=lambda: None)
    assert load_checkpoint(path)["note"] == "first"  # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]  # and no temp file is left

    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint"):
        load_checkpoint(corrupt)


def test_train_or_load_reuses_a_finished_run(tmp_path):
    path = tmp_path / "ckpt" / "model.pt"
    calls = {"steps": 0}

    def counting_step(model, batch):
        calls["steps"] += 1
        return _noisy_step(model, batch)

    def build_and_train(checkpoint_path):
        model, optimizer, scheduler, loader = _build()
        config = _quiet(epochs=2, checkpoint_path=checkpoint_path, resume=True)
        return model, train(counting_step, model, optimizer, loader, config, scheduler=scheduler)

    trained, history = train_or_load(path, build_and_train, verbose=False)
    assert path.exists() and calls["steps"] == history.steps_done == 12
    reused, reused_history = train_or_load(path, build_and_train, verbose=False)
    assert calls["steps"] == 12  # nothing trained the second time
    _assert_same_weights(reused, trained)
    assert reused_history.steps == history.steps and reused_history.stopped_by == "epochs"
    train_or_load(path, build_and_train, retrain=True, verbose=False)
    assert calls["steps"] == 24


# --------------------------------------------------------------------------------------------
# safetensors weights
# --------------------------------------------------------------------------------------------


def test_weights_round_trip_and_limits(tmp_path):
    torch.manual_seed(0)
    model = _SmallCNN()
    model.features[1].running_mean.add_(1.5)  # buffers travel too
    path = save_weights(model, tmp_path / "w.safetensors", metadata={"assignment": "demo"})
    assert path.read_bytes()[8:9] == b"{"  # a JSON header after the 8-byte length: no pickle
    fresh = load_weights(_SmallCNN(), path)
    _assert_same_weights(fresh, model)

    size = path.stat().st_size
    with pytest.raises(ValueError, match="over the"):
        save_weights(model, tmp_path / "big.safetensors", max_bytes=100)
    assert not (tmp_path / "big.safetensors").exists()
    with pytest.raises(ValueError, match="over the"):
        load_weights(_SmallCNN(), path, max_bytes=size - 1)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_weights(_SmallCNN(), tmp_path / "absent.safetensors")
    pickle_file = tmp_path / "pickled.safetensors"
    torch.save(model.state_dict(), pickle_file)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_weights(_SmallCNN(), pickle_file)
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(nn.Linear(16, 3), path)


def test_weights_with_tied_parameters(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 4, bias=False)
            self.unembed = nn.Linear(4, 4, bias=False)
            self.unembed.weight = self.embed.weight

    model = Tied()
    load_weights(fresh := Tied(), save_weights(model, tmp_path / "tied.safetensors"))
    assert torch.equal(fresh.unembed.weight, model.embed.weight)
    assert fresh.unembed.weight is fresh.embed.weight


def test_history_plot_draws_loss_curves():
    import matplotlib

    matplotlib.use("Agg")
    _, _, history = _uninterrupted(epochs=1)
    figure = history.plot(keys=["loss"])
    assert figure.axes and any(ax.lines for ax in figure.axes)
    assert math.isfinite(history.as_dict()["images_per_s"])


def test_budget_cosine_warms_up_and_decays_to_zero():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = BudgetCosine(opt, budget_s=10.0)
    assert sched._factor(0.0) == 0.01 and sched._factor(0.05) == pytest.approx(1.0)
    assert sched._factor(0.525) == pytest.approx(0.5) and sched._factor(1.0) == pytest.approx(0.0)
    sched.load_state_dict({"elapsed": 10.0})
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-6)


def test_budget_cosine_without_warmup_is_plain_cosine_and_rejects_bad_budgets():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = BudgetCosine(opt, budget_s=10.0, warmup=0.0)
    assert sched._factor(0.0) == pytest.approx(1.0) and sched._factor(0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="budget_s"):
        BudgetCosine(opt, budget_s=0.0)


def test_a_budget_on_a_given_clock_follows_that_clock_not_the_wall_or_a_step_budget():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    spent = {"units": 0.0}
    with step_budget(3):  # ignored: the loop keeps its own clock (replearn.pretrain's rank 0)
        sched = BudgetCosine(opt, budget_s=8.0, warmup=0.0, clock=lambda: spent["units"])
    assert sched.clock.steps is None
    for units in (2.0, 4.0, 8.0):
        spent["units"] = units
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * sched._factor(units / 8.0))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9) and sched.clock.done()
    assert sched.state_dict() == {"elapsed": 8.0, "ticks": 3}


def _step_budget_run(path=None, max_steps=None, budget_steps=10):
    """A 10-step "budget" of 1000 s with its cosine schedule, seeded."""
    model, optimizer, _, loader = _build()
    with step_budget(budget_steps):
        scheduler = BudgetCosine(optimizer, budget_s=1000.0, warmup=0.0)
        config = _quiet(
            budget_s=1000.0, max_steps=max_steps, checkpoint_path=str(path) if path else None
        )
        history = train(_noisy_step, model, optimizer, loader, config, scheduler=scheduler)
    return model, history


def test_a_step_budget_spends_the_seconds_in_a_fixed_number_of_steps():
    model, history = _step_budget_run()
    assert history.steps_done == 10 and history.stopped_by == "budget"
    lrs = history.metric("lr")  # the rate each step used: a cosine over the 10 steps
    expected = [1e-2 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(10)]
    assert lrs == pytest.approx(expected)
    again, _ = _step_budget_run()
    _assert_same_weights(model, again)  # no clock in the result: a rerun repeats it
    with step_budget(4):  # the innermost block counts; a budget-less run is not limited by it
        clock = BudgetClock(8.0)
        with step_budget(2):
            assert BudgetClock(8.0).steps == 2
        clock.tick()
        assert clock.elapsed() == 2.0 and not clock.done()
        model, optimizer, _, loader = _build()
        by_epochs = train(_noisy_step, model, optimizer, loader, _quiet(epochs=1))
        assert by_epochs.steps_done == len(loader) == 6 and by_epochs.stopped_by == "epochs"
    with pytest.raises(ValueError, match="positive number of steps"):
        with step_budget(0):
            pass


def test_a_step_budget_resumes_exactly(tmp_path):
    reference, _ = _step_budget_run()
    path = tmp_path / "run.pt"
    _step_budget_run(path, max_steps=4)  # interrupted after 4 of the 10 steps
    model, history = _step_budget_run(path)
    _assert_same_weights(model, reference)
    assert history.resumed_at_step == [4] and history.steps_done == 10
