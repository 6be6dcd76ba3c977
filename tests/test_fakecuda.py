"""The fake CUDA device (tests/fakecuda.py) catches each class of device bug a GPU would reveal,
and the course's code runs on it: the proof, without a GPU, that Colab's road is open.

Each bug class is shown twice: the harness raises on the buggy pattern (written inline, as the
code was before the fix: issue 24, findings 3, 5 and 8), and the fixed course code runs on the
fake device with the numbers it gives on the CPU (the course's rule for random draws,
``replearn.train.draw``: a seed gives the same draws on every device).
"""

import copy
import io

import fakecuda
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from replearn import impl, recipes
from replearn.train import draw, init_


@pytest.fixture
def cuda():
    """The fake GPU for one test; everything is undone afterwards."""
    fakecuda.clear()
    with fakecuda.installed():
        yield torch.device("cuda")
    fakecuda.clear()


def solution(name):
    return impl.load(name, "solution")


# ---- the harness itself ------------------------------------------------------------------------
def test_installed_only_while_installed():
    real = torch.cuda.is_available, torch.Generator, torch.Tensor.to
    with fakecuda.installed():
        assert torch.cuda.is_available() and torch.cuda.device_count() == 1
        x = torch.zeros(2, device="cuda")
        assert x.device == torch.device("cuda", 0) and x.is_cuda and fakecuda.is_fake(x)
    assert (torch.cuda.is_available, torch.Generator, torch.Tensor.to) == real
    assert not torch.zeros(2).is_cuda


def test_cuda_tensors_compute_like_cpu_ones(cuda):
    a, b = torch.rand(3, 4), torch.rand(4, 5)
    got = (a.to(cuda) @ b.cuda()).relu()
    assert got.device.type == "cuda"
    assert torch.equal(got.cpu(), (a @ b).relu()) and not fakecuda.is_fake(got.cpu())
    assert got.tolist() == (a @ b).relu().tolist() and float(got.sum()) == float(
        (a @ b).relu().sum()
    )
    assert torch.tensor([1, 2], device=cuda).device.type == "cuda"
    assert torch.arange(3, device=got.device).device.type == "cuda"


def test_a_model_trains_saves_and_copies_on_the_fake_gpu(cuda, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).to(cuda)
    assert all(p.device.type == "cuda" and isinstance(p, nn.Parameter) for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 4, device=cuda), torch.randint(0, 3, (32,), device=cuda)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    twin = copy.deepcopy(model)
    assert all(p.device.type == "cuda" for p in twin.parameters())
    assert torch.equal(twin(x).cpu(), model(x).cpu())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, map_location="cpu")
    assert torch.equal(state["0.weight"], model[0].weight.cpu())
    from safetensors.torch import load_file, save_model

    save_model(model, str(tmp_path / "m.safetensors"))
    assert torch.equal(load_file(str(tmp_path / "m.safetensors"))["3.bias"], model[3].bias.cpu())


# ---- class 1: a CPU tensor mixed with a CUDA one ---------------------------------------------
def test_mixing_cpu_and_cuda_tensors_raises(cuda):
    x = torch.rand(4, 3, device=cuda)
    for op in (
        lambda: x + torch.rand(4, 3),
        lambda: torch.cat([x, torch.rand(1, 3)]),
        lambda: nn.Linear(3, 2)(x),  # CPU weights, CUDA input
        lambda: nn.Linear(3, 2).to(cuda)(torch.rand(4, 3)),  # CUDA weights, CPU input
        lambda: torch.rand(4, 3)[torch.tensor([0, 1], device=cuda)],  # CUDA index into a CPU tensor
        lambda: torch.where(torch.rand(4, 3) > 0.5, x, x),
    ):
        with pytest.raises(RuntimeError, match="same device|indices should be"):
            op()


def test_what_cuda_accepts_from_the_cpu_is_accepted(cuda):
    x = torch.rand(4, 3, device=cuda)
    assert (x * torch.tensor(2.0)).device.type == "cuda"  # a 0-dim CPU tensor is a scalar
    assert x[torch.tensor([0, 2])].shape == (2, 3)  # CPU indices into a CUDA tensor
    x[torch.tensor([1])] = torch.tensor(0.5)
    x[0:2] = torch.zeros(2, 3)  # a copy between devices
    assert torch.rand(2, 3).copy_(x[:2]).device.type == "cpu"


# ---- class 2: a CPU generator for a CUDA draw ------------------------------------------------
def test_a_cpu_generator_for_a_cuda_draw_raises(cuda):
    g = torch.Generator().manual_seed(0)
    w = torch.empty(3, 4, device=cuda)
    for op in (
        lambda: torch.rand(3, generator=g, device=cuda),
        lambda: torch.randperm(5, generator=g, device=cuda),
        lambda: w.uniform_(generator=g),
        lambda: nn.init.normal_(w, generator=g),
        lambda: torch.bernoulli(torch.full((3,), 0.5, device=cuda), generator=g),
    ):
        with pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator"):
            op()
    on_gpu = torch.Generator(device="cuda").manual_seed(0)
    assert on_gpu.device.type == "cuda" and isinstance(on_gpu, torch.Generator)
    assert torch.rand(3, generator=on_gpu, device=cuda).device.type == "cuda"
    with pytest.raises(RuntimeError, match="Expected a 'cpu' device type for generator"):
        torch.rand(3, generator=on_gpu)


def test_the_course_rule_draws_the_same_numbers_on_every_device(cuda):
    on_cpu = draw(torch.rand, (4, 5), generator=torch.Generator().manual_seed(3), device="cpu")
    on_gpu = draw(torch.rand, (4, 5), generator=torch.Generator().manual_seed(3), device=cuda)
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)
    w = torch.empty(3, 4, device=cuda)
    init_(nn.init.kaiming_uniform_, w, a=5**0.5, generator=torch.Generator().manual_seed(1))
    want = nn.init.kaiming_uniform_(
        torch.empty(3, 4), a=5**0.5, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(w.cpu(), want)


# ---- class 3: .numpy() of a CUDA tensor ------------------------------------------------------
def test_numpy_of_a_cuda_tensor_raises(cuda):
    x = torch.rand(2, 3, device=cuda)
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        x.numpy()
    with pytest.raises(TypeError, match="cuda:0"):
        np.asarray(x)  # what matplotlib does with a tensor
    assert np.asarray(x.cpu()).shape == (2, 3)


def test_record_mode_collects_every_violation_and_goes_on():
    fakecuda.clear()
    with fakecuda.installed(strict=False):
        x = torch.rand(2, device="cuda")
        y = x + torch.rand(2)
        z = torch.rand(2, generator=torch.Generator(), device="cuda")
    found = fakecuda.violations()
    fakecuda.clear()
    assert y.shape == z.shape == (2,) and len(found) == 2
    assert "same device" in found[0] and "test_fakecuda.py" in found[0]
    assert "generator" in found[1]


# ---- the findings of issue 24, old pattern against fixed code ------------------------------
def test_finding_3_replace_head_with_a_cpu_generator_on_cuda(cuda):
    """Notebook 01, cell 14: the new head lives on CUDA, the course's generator on the CPU."""
    g = torch.Generator().manual_seed(0)
    with pytest.raises(RuntimeError, match="generator"):  # the old replace_head
        head = nn.Linear(16, 10, device=cuda)
        nn.init.kaiming_uniform_(head.weight, a=5**0.5, generator=g)
    tl = solution("transfer_learning")
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    model.fc = nn.Linear(16, 1000)
    model.to(cuda)
    head = tl.replace_head(model, 10, "fc", generator=torch.Generator().manual_seed(0))
    assert head.weight.device.type == "cuda" and model.fc is head
    on_cpu = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    on_cpu.fc = nn.Linear(16, 1000)
    want = tl.replace_head(on_cpu, 10, "fc", generator=torch.Generator().manual_seed(0))
    assert torch.equal(head.weight.cpu(), want.weight) and torch.equal(head.bias.cpu(), want.bias)


def test_finding_5_random_masking_with_a_cpu_generator_on_cuda(cuda):
    """Notebook 05 with the device passed, ``S.pretrain("mae")`` and gpu_check's pretrain-mae."""
    tokens = torch.rand(4, 16, 8)  # [N, L, D]
    with pytest.raises(RuntimeError, match="generator"):  # the old random_masking's draw
        torch.rand(
            (4, 16), generator=torch.Generator().manual_seed(0), device=tokens.to(cuda).device
        )
    mae = solution("masked_autoencoders")
    got = mae.random_masking(tokens.to(cuda), 0.75, torch.Generator().manual_seed(0))
    want = mae.random_masking(tokens, 0.75, torch.Generator().manual_seed(0))
    assert got[0].device.type == "cuda"
    for a, b in zip(got, want):
        assert torch.equal(a.cpu(), b)


def test_finding_5_the_entry_points_mae_runs_on_cuda(cuda):
    from replearn.pretrain import PretrainSettings, run_pretraining

    settings = PretrainSettings(
        "mae",
        preset="smoke",
        device="cuda",
        max_steps=2,
        budget_s=0,
        checkpoint=None,
        out_dir=None,
        evaluate=False,
        verbose=False,
    )
    outcome = run_pretraining(settings)
    assert outcome.history.steps_done == 2
    assert next(outcome.encoder.parameters()).device.type == "cuda"


def test_finding_8_rbm_noise_drawn_on_the_cpu(cuda):
    """Notebook 02's RBM: sampling noise from the CPU generator while the RBM is on the GPU."""
    aec = solution("autoencoders")
    g = torch.Generator().manual_seed(0)
    v = (torch.rand(20, 12, generator=g) > 0.5).float()  # [N, D_v]
    rbm = aec.RBM(12, 5, generator=torch.Generator().manual_seed(0)).to(cuda)
    with pytest.raises(RuntimeError, match="same device"):  # the old train_rbm's step
        noise_h = torch.rand(10, 5, generator=g)
        aec.sample_hidden(v[:10].to(cuda), rbm.W, rbm.c, noise_h)
    errors = recipes.autoencoders.train_rbm(
        aec, rbm, v, epochs=2, batch_size=10, generator=torch.Generator().manual_seed(1)
    )
    samples = recipes.autoencoders.gibbs_samples(
        aec, rbm, v[:4], 3, torch.Generator().manual_seed(2)
    )
    on_cpu = aec.RBM(12, 5, generator=torch.Generator().manual_seed(0))
    want = recipes.autoencoders.train_rbm(
        aec, on_cpu, v, epochs=2, batch_size=10, generator=torch.Generator().manual_seed(1)
    )
    assert errors == pytest.approx(want, rel=1e-6) and rbm.W.device.type == "cuda"
    assert torch.allclose(rbm.W.cpu(), on_cpu.W, atol=1e-6)
    want_samples = recipes.autoencoders.gibbs_samples(
        aec, on_cpu, v[:4], 3, torch.Generator().manual_seed(2)
    )
    assert torch.allclose(samples.cpu(), want_samples, atol=1e-6)


def test_finding_6_the_comparison_trains_on_the_given_device(cuda, monkeypatch):
    """Notebook 07 (``replearn.compare``) used to pass no device anywhere."""
    from replearn import compare

    seen = []
    real = compare.evaluate

    def spy(trained, *args, **kwargs):
        seen.append(next(trained.features.parameters()).device.type)
        return real(trained, *args, **kwargs)

    monkeypatch.setattr(compare, "evaluate", spy)
    result = compare.run(
        "smoke",
        (0,),
        budget_s=0.5,
        methods=["random init", "rotation"],
        out=None,
        clock="wall",
        verbose=False,
        device="cuda",
    )
    assert seen == ["cuda", "cuda"] and result["device"] == "cuda"


def test_setup_takes_the_device_from_the_environment(cuda, monkeypatch):
    from replearn import notebook

    monkeypatch.setenv("REPLEARN_DEVICE", "cuda")
    session = notebook.setup(preset="smoke")
    assert session.device.type == "cuda" and session.preset.device == "cuda"
