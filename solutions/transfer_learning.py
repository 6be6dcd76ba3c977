"""Assignment 1: supervised pretraining for transfer learning.

The lecture's recipe, in its order:

1. Pretrain on a supervised task (ImageNet-1k classification; we load such a network).
2. Remove the task-specific layer and use the rest as a *feature extractor* (DeCAF):
   :func:`make_feature_extractor`, :func:`extract_features`, then a linear classifier on the
   features, written by hand: :func:`softmax_regression_loss`, :func:`train_softmax_classifier`.
3. Or *fine-tune*: a new randomly initialised head (:func:`replace_head`), a lower learning rate
   for the pretrained layers (:func:`param_groups`), lower layers frozen (:func:`freeze_up_to`),
   BatchNorm in "test" mode (:func:`set_bn_eval`), and the frozen head trained first
   (:func:`two_stage_finetune`).

Donahue et al., "DeCAF: A Deep Convolutional Activation Feature for Generic Visual
Recognition", ICML 2014: "features extracted from the activation of a deep convolutional network
trained in a fully supervised fashion on a large, fixed set of object recognition tasks can be
re-purposed to novel generic tasks."

Shapes use the package legend (``docs/internals.md``). Your parts: replace every
``raise NotImplementedError``; everything else is given. The experiments around them (settings
per preset, the decision table) are ``replearn.recipes.transfer_learning``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn.train import init_

# The linear classifier of Part 1 is written by hand: the grader rejects these names inside the
# listed functions. Softmax and log-sum-exp are banned too, because computing them stably
# (subtract the row maximum before exponentiating) is half of the exercise, and
# autograd is banned because the gradient is the other half (the update is three lines).
BANNED_APIS = {
    "softmax_regression_loss": [
        "torch.nn.functional.cross_entropy",
        "torch.nn.CrossEntropyLoss",
        "torch.nn.functional.nll_loss",
        "torch.nn.NLLLoss",
        "torch.nn.functional.log_softmax",
        "torch.log_softmax",
        "torch.nn.functional.softmax",
        "torch.softmax",
        "torch.special.softmax",
        "torch.special.log_softmax",
        "torch.logsumexp",
        "torch.autograd.grad",
        "torch.Tensor.backward",
        "sklearn.linear_model.LogisticRegression",
    ],
    "train_softmax_classifier": [
        "torch.nn.functional.cross_entropy",
        "torch.nn.CrossEntropyLoss",
        "torch.nn.functional.log_softmax",
        "torch.nn.functional.softmax",
        "torch.autograd.grad",
        "torch.Tensor.backward",
        "sklearn.linear_model.LogisticRegression",
    ],
    # the course library's own version (the evaluation protocols use it): write yours
    "extract_features": ["replearn.evaluate.extract_features"],
}


def hello() -> str:
    """Import check: the notebook calls this first to show which file it loaded."""
    return "transfer_learning: ready"


def _check_submodule(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` with an error that lists the names that do exist."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        children = [child for child, _ in model.named_children()]
        raise ValueError(
            f"{type(model).__name__} has no submodule {name!r}; its top-level children are "
            f"{children} (use a dotted path such as 'layer4.1' for nested ones)"
        ) from None


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name`` by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


# ==============================================================================================
# Part 1. Feature extraction (DeCAF): a frozen pretrained network and a linear classifier
# ==============================================================================================


def make_feature_extractor(model: nn.Module, head_name: str = "fc") -> nn.Module:
    """Turn a pretrained classifier into a frozen feature extractor ("remove last layer").

    Returns a *copy* of ``model`` (the original stays usable) in which

    * the task-specific layer ``head_name`` (e.g. ``"fc"``, or a dotted path such as
      ``"classifier.1"``) is replaced by ``nn.Identity()``, so the output is the penultimate
      activation ``[N, D]`` (DeCAF's layer 6/7 features);
    * every parameter has ``requires_grad = False``;
    * the network is in evaluation mode (BatchNorm uses its running statistics, Dropout is off).

    Raises:
        ValueError: ``model`` has no submodule called ``head_name``.
    """
    ### BEGIN SOLUTION
    _check_submodule(model, head_name)
    extractor = copy.deepcopy(model)
    _set_submodule(extractor, head_name, nn.Identity())
    for param in extractor.parameters():
        param.requires_grad_(False)
    return extractor.eval()
    ### END SOLUTION


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
    stages: Sequence[str] | None = None,
    keep_spatial: Sequence[str] = (),
    device: torch.device | str | None = None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Run ``model`` over ``images`` in batches, without gradients, in evaluation mode.

    Args:
        model: the feature extractor (its training flag is restored afterwards).
        images: ``[N, C, H, W]`` uint8 (0..255, divided by 255 here) or float in [0, 1].
        transform: applied to each float batch on ``device`` (e.g. resize to the network's
            resolution and normalise: ``lambda x: prepare(x, net, size=128)``).
        batch_size: images per forward pass.
        stages: names of submodules whose outputs to record as well, via forward hooks
            ("try linear classifier from different stages"). Each output is global-average
            pooled to ``[N, D_s]`` (``[N, C, H, W]`` maps over H, W; ``[N, L, D]`` tokens over L).
        keep_spatial: stages (also listed in ``stages``) whose outputs are kept unpooled, e.g.
            to cache the input of the layers that will be fine-tuned.
        device: where to compute; default: the device of the model's first parameter.

    Returns:
        ``stages`` None: the model's output ``[N, D]`` (float32, CPU). Otherwise a dict with
        one entry per stage plus ``"output"``.
    """
    ### BEGIN SOLUTION
    stages = list(stages or [])
    unknown = [name for name in keep_spatial if name not in stages]
    if unknown:
        raise ValueError(f"keep_spatial names {unknown} that are not in stages={stages}")
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()

    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for name in stages:
        module = _check_submodule(model, name)

        def hook(_module, _inputs, output, name=name):
            if name not in keep_spatial:
                if output.ndim == 4:
                    output = output.mean(dim=(2, 3))  # [N, C, H, W] -> [N, C]
                elif output.ndim == 3:
                    output = output.mean(dim=1)  # [N, L, D] -> [N, D]
            captured[name] = output.float().cpu()

        hooks.append(module.register_forward_hook(hook))

    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in [*stages, "output"]}
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)  # [n, C, H, W]
            if not batch.is_floating_point():
                batch = batch.float() / 255.0  # uint8 -> [0, 1]
            if transform is not None:
                batch = transform(batch)  # [n, C', H', W'], e.g. resized and normalised
            out = model(batch)  # [n, D]
            outputs["output"].append(out.float().flatten(1).cpu())
            for name in stages:
                outputs[name].append(captured.pop(name))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)

    result = {name: torch.cat(parts) for name, parts in outputs.items()}  # [N, ...] each
    return result["output"] if not stages else result
    ### END SOLUTION


def softmax_regression_loss(
    W: torch.Tensor, b: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, reg: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression: loss and its gradients, computed by hand.

    ``loss = mean_i [-log softmax(x_i W + b)[y_i]] + reg/2 * ||W||^2`` (no penalty on ``b``).

    Args:
        W: ``[D, K]`` weights. b: ``[K]`` biases.
        features: ``[N, D]``. labels: ``[N]`` int64 in ``0..K-1``.
        reg: L2 strength.

    Returns:
        ``(loss, dW, db)``: a scalar tensor, ``[D, K]`` and ``[K]``.

    Subtract each row's maximum logit before exponentiating so that large logits do not
    overflow. Banned here: see ``BANNED_APIS`` (no cross-entropy, softmax, log-softmax,
    logsumexp or autograd from the library).
    """
    ### BEGIN SOLUTION
    num = features.shape[0]
    logits = features @ W + b  # [N, K]
    shifted = logits - logits.max(dim=1, keepdim=True).values  # [N, K], max is 0 per row
    exp = shifted.exp()  # [N, K]
    log_norm = exp.sum(dim=1, keepdim=True).log()  # [N, 1]
    log_probs = shifted - log_norm  # [N, K]
    rows = torch.arange(num, device=features.device)  # [N]
    loss = -log_probs[rows, labels].mean() + 0.5 * reg * (W * W).sum()
    dlogits = exp / exp.sum(dim=1, keepdim=True)  # [N, K] softmax probabilities
    dlogits[rows, labels] -= 1.0  # d(-log p_y)/dlogits = p - onehot(y)
    dlogits /= num  # mean over the batch
    dW = features.T @ dlogits + reg * W  # [D, K]
    db = dlogits.sum(dim=0)  # [K]
    return loss, dW, db
    ### END SOLUTION


def train_softmax_classifier(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    reg: float = 1e-3,
    steps: int = 300,
    momentum: float = 0.9,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit softmax regression on frozen features with full-batch gradient descent.

    Follow these steps exactly (the grader compares your ``W`` and ``b`` with the reference):

    1. Standardise: ``mean``/``std`` of ``features`` over N (``std`` with ``unbiased=False``),
       plus a tenth of its mean so that near-constant features are not blown up into huge
       weights (``std = std + 0.1 * std.mean() + 1e-8``); ``Z = (features - mean) / std``.
    2. Step size from the curvature bound of the loss: ``lr = 1 / L`` with
       ``L = 0.5 * sigma_max(Z)^2 / N + reg`` (``torch.linalg.matrix_norm(Z, ord=2)``).
    3. Start from ``W = 0`` ``[D, K]``, ``b = 0`` ``[K]``, velocities 0; for each of ``steps``
       steps (heavy-ball momentum): ``v = momentum * v - lr * grad``; ``param = param + v``,
       with the gradients of :func:`softmax_regression_loss` at ``reg``.
    4. Fold the standardisation into the weights, so that the result applies to raw features:
       ``W_raw = W / std[:, None]``, ``b_raw = b - (mean / std) @ W``.

    Returns:
        ``(W_raw, b_raw)``: ``[D, K]`` and ``[K]``, float32, such that
        ``features @ W_raw + b_raw`` are the logits.
    """
    ### BEGIN SOLUTION
    features = features.float()
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(
            f"features must be [N, D] and labels [N]; got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    num, dim = features.shape
    mean = features.mean(dim=0)  # [D]
    std = features.std(dim=0, unbiased=False)  # [D]
    std = std + 0.1 * std.mean() + 1e-8  # [D], floored: no division by ~0
    Z = (features - mean) / std  # [N, D]
    lipschitz = 0.5 * torch.linalg.matrix_norm(Z, ord=2) ** 2 / num + reg
    lr = 1.0 / float(lipschitz)

    W = torch.zeros(dim, num_classes, device=features.device)  # [D, K]
    b = torch.zeros(num_classes, device=features.device)  # [K]
    vW, vb = torch.zeros_like(W), torch.zeros_like(b)
    for _ in range(steps):
        _, dW, db = softmax_regression_loss(W, b, Z, labels, reg)
        vW = momentum * vW - lr * dW
        vb = momentum * vb - lr * db
        W, b = W + vW, b + vb
    W_raw = W / std[:, None]  # [D, K]
    b_raw = b - (mean / std) @ W  # [K]
    return W_raw, b_raw
    ### END SOLUTION


def predict(W: torch.Tensor, b: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Class predictions ``[N]`` of the linear classifier ``(W [D, K], b [K])``."""
    return (features.float() @ W + b).argmax(dim=1)  # [N]


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of correct predictions."""
    return float((predictions.cpu() == labels.cpu()).float().mean())


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    reg: float = 1e-3,
    steps: int = 300,
) -> float:
    """Train the hand-written softmax classifier on one split and score it on the other."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    W, b = train_softmax_classifier(train_features, train_labels, num_classes, reg=reg, steps=steps)
    return accuracy(predict(W, b, test_features), test_labels)


# ==============================================================================================
# Part 2. Fine-tuning: new head, lower learning rate, frozen lower layers, BatchNorm "test" mode
# ==============================================================================================


def replace_head(
    model: nn.Module, num_classes: int, head_name: str = "fc", *, generator=None
) -> nn.Linear:
    """Put a new, randomly initialised ``nn.Linear`` in place of the head (in place).

    "Add randomly initialized final FC layer for new task." The new layer keeps the old one's
    input width, maps to ``num_classes``, sits on the old layer's device, and is initialised as
    ``nn.Linear`` does by default, drawing from ``generator`` when one is given
    (``torch.nn.init`` functions accept ``generator=``). Returns the new layer.

    The layer may sit on a GPU while ``generator`` is the course's CPU generator, and a CUDA
    kernel refuses a CPU generator. The course's rule for random draws: draw where the
    generator lives, then move the numbers to the tensor they serve, which
    ``replearn.train.init_`` (imported here) does for an init function:
    ``init_(nn.init.uniform_, head.bias, low, high, generator=generator)``.
    """
    ### BEGIN SOLUTION
    old = _check_submodule(model, head_name)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"the head {head_name!r} is a {type(old).__name__}, expected nn.Linear")
    device = old.weight.device
    head = nn.Linear(old.in_features, num_classes, device=device)
    # nn.Linear.reset_parameters, with our generator: kaiming_uniform(a=sqrt(5)) and
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias, drawn where the generator lives.
    init_(nn.init.kaiming_uniform_, head.weight, a=5**0.5, generator=generator)
    bound = 1.0 / old.in_features**0.5
    init_(nn.init.uniform_, head.bias, -bound, bound, generator=generator)
    _set_submodule(model, head_name, head)
    return head
    ### END SOLUTION


def param_groups(
    model: nn.Module,
    head_name: str = "fc",
    lr: float = 0.01,
    backbone_lr_scale: float = 0.1,
    weight_decay: float = 0.0,
) -> list[dict]:
    """Two optimizer parameter groups: the pretrained layers at a lower learning rate.

    "Lower the learning rate: use ~1/10 of LR used in original training." Returns
    ``[{"name": "backbone", "params": [...], "lr": lr * backbone_lr_scale, "weight_decay": wd},
    {"name": "head", "params": [...], "lr": lr, "weight_decay": wd}]`` where ``head`` holds the
    parameters of the submodule ``head_name`` and ``backbone`` all the others; frozen parameters
    (``requires_grad`` False) are left out of both, and a group may be empty. Parameters appear in
    ``model.named_parameters()`` order.
    """
    ### BEGIN SOLUTION
    _check_submodule(model, head_name)
    prefix = head_name + "."
    backbone, head = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (head if name.startswith(prefix) else backbone).append(param)
    return [
        {
            "name": "backbone",
            "params": backbone,
            "lr": lr * backbone_lr_scale,
            "weight_decay": weight_decay,
        },
        {"name": "head", "params": head, "lr": lr, "weight_decay": weight_decay},
    ]
    ### END SOLUTION


def freeze_up_to(model: nn.Module, stage_name: str) -> list[str]:
    """Freeze every parameter from the input up to and including the stage ``stage_name``.

    "Sometimes freeze lower layers to save computation." Layers are taken in
    ``model.named_modules()`` order (the order they were registered, which is the order data
    flows through for sequential networks such as ResNets and EfficientNets): the parameters of
    the modules before the stage and inside it get ``requires_grad = False``, the rest are left
    as they are. A stage without parameters (a pooling layer, a ReLU) freezes what comes before
    it, and nothing after it.

    Returns:
        the names of the parameters frozen, in ``model.named_parameters()`` order.

    Raises:
        ValueError: no submodule called ``stage_name``.
    """
    ### BEGIN SOLUTION
    _check_submodule(model, stage_name)
    names = [name for name, _ in model.named_modules()]  # pre-order: registration order
    inside = [i for i, n in enumerate(names) if n == stage_name or n.startswith(stage_name + ".")]
    upstream = set(names[: inside[-1] + 1])  # the stage, its children and every module before
    frozen = []
    for name, param in model.named_parameters():
        if name.rpartition(".")[0] in upstream:  # the module that owns the parameter
            param.requires_grad_(False)
            frozen.append(name)
    return frozen
    ### END SOLUTION


def set_bn_eval(model: nn.Module) -> int:
    """Put every BatchNorm layer in evaluation ("test") mode; return how many there are.

    "Train with BatchNorm in 'test' mode": normalise with the running mean and variance learnt
    on ImageNet and do not update them, while the rest of the network trains (the affine
    weight and bias still learn unless frozen). Call it after every ``model.train()``, which
    switches them back; :func:`train_mode` does both.
    """
    ### BEGIN SOLUTION
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            count += 1
    return count
    ### END SOLUTION


def train_mode(model: nn.Module, bn_eval: bool = True) -> nn.Module:
    """``model.train()``, then BatchNorm back to "test" mode when ``bn_eval``."""
    model.train()
    if bn_eval:
        set_bn_eval(model)
    return model


def two_stage_finetune(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    head_name: str = "fc",
    lr: float = 0.01,
    backbone_lr_scale: float = 0.1,
    epochs: int = 3,
    batch_size: int = 64,
    weight_decay: float = 5e-4,
    bn_eval: bool = True,
    probe_steps: int = 300,
    probe_reg: float = 1e-3,
    max_grad_norm: float = 5.0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Fine-tune ``model`` in two stages; return the loss of every stage-2 step.

    "Train with frozen feature extraction first before fine-tuning": a randomly initialised
    head sends large, random gradients into the pretrained layers on its first steps.

    Stage 1 (frozen features, trained head): compute the penultimate features of ``inputs``
    with :func:`make_feature_extractor` and :func:`extract_features` (same ``transform``), fit
    :func:`train_softmax_classifier` (``probe_steps``, ``probe_reg``), and copy the result
    into the head (``head.weight = W.T``, ``head.bias = b``).

    Stage 2 (fine-tuning): ``torch.optim.SGD`` over :func:`param_groups` (momentum 0.9,
    ``weight_decay``; the backbone at ``lr * backbone_lr_scale``); ``epochs`` passes over the
    data in a random order drawn from ``generator`` (``torch.randperm``), batches of
    ``batch_size``; before each epoch :func:`train_mode` (BatchNorm in "test" mode when
    ``bn_eval``); cross-entropy loss (allowed here); gradients clipped to a total norm of
    ``max_grad_norm`` (``nn.utils.clip_grad_norm_``); after every optimiser step, every group's
    rate follows a cosine from its start to 0 over all ``epochs * ceil(N / batch_size)`` steps
    (``torch.optim.lr_scheduler.CosineAnnealingLR``; "SGDR", Loshchilov & Hutter, ICLR 2017,
    without restarts). Parameters already frozen (e.g. by :func:`freeze_up_to`) stay frozen.

    Why the cosine: a short run that ends at its full rate stops wherever its last noisy step
    left it; decaying to 0 lets the last steps settle.

    Args:
        model: a classifier whose head ``head_name`` is an ``nn.Linear`` with the new number of
            classes (see :func:`replace_head`).
        inputs: ``[N, ...]`` what the model takes (uint8 or float images, or cached
            activations of the frozen layers); ``labels``: ``[N]``.
        transform: applied to each float batch before the model (as in
            :func:`extract_features`).
    """
    ### BEGIN SOLUTION
    head = _check_submodule(model, head_name)
    device = head.weight.device
    # Stage 1: the head, trained on frozen features (a linear probe).
    extractor = make_feature_extractor(model, head_name)
    feats = extract_features(
        extractor, inputs, transform=transform, batch_size=max(batch_size, 256)
    )
    W, b = train_softmax_classifier(
        feats, labels, head.out_features, reg=probe_reg, steps=probe_steps
    )
    with torch.no_grad():
        head.weight.copy_(W.T.to(device))  # [K, D]
        head.bias.copy_(b.to(device))  # [K]
    del extractor

    # Stage 2: everything that is not frozen, the pretrained layers at a lower rate.
    groups = [
        g
        for g in param_groups(model, head_name, lr, backbone_lr_scale, weight_decay)
        if g["params"]
    ]
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    steps = epochs * -(-inputs.shape[0] // batch_size)  # ceil(N / batch_size) per epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    losses = []
    for _ in range(epochs):
        train_mode(model, bn_eval)
        order = torch.randperm(inputs.shape[0], generator=generator)  # [N]
        for start in range(0, inputs.shape[0], batch_size):
            index = order[start : start + batch_size]
            batch = inputs[index].to(device)  # [n, ...]
            if not batch.is_floating_point():
                batch = batch.float() / 255.0
            if transform is not None:
                batch = transform(batch)
            loss = F.cross_entropy(model(batch), labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], max_grad_norm)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    model.eval()
    return losses
    ### END SOLUTION
