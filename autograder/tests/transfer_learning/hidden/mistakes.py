"""Known mistakes of Assignment 1, transfer learning (hidden: never ships).

Each entry makes one mistake in the reference (``autograder.mistakes.Mistake``) and says what
is wrong, how to fix it and where the lecture or the paper says so. ``python -m autograder
record transfer_learning`` records what each gives on the public tests.
"""

from autograder.mistakes import Mistake

MISTAKES = [
    # ---- Part 1: feature extraction ------------------------------------------------------------
    Mistake(
        "make_feature_extractor",
        "original-changed",
        "work on a copy (copy.deepcopy(model)): the original classifier, head included, must "
        "stay usable for fine-tuning (docstring).",
        (("extractor = copy.deepcopy(model)", "extractor = model"),),
    ),
    Mistake(
        "make_feature_extractor",
        "not-frozen",
        "set requires_grad = False on every parameter of the extractor: a frozen feature "
        "extractor is not trained (lecture: 'freeze these', DeCAF).",
        (("        param.requires_grad_(False)\n", "        pass\n"),),
    ),
    Mistake(
        "make_feature_extractor",
        "train-mode",
        "return the extractor in eval mode: BatchNorm must use its running statistics and "
        "Dropout be off, or each image's features depend on the rest of the batch.",
        (("return extractor.eval()", "return extractor"),),
    ),
    Mistake(
        "make_feature_extractor",
        "head-kept",
        "replace the head by nn.Identity(), so that the extractor returns the penultimate "
        "features [N, D] and not the old task's logits (lecture: 'remove last layer').",
        (("    _set_submodule(extractor, head_name, nn.Identity())\n", ""),),
    ),
    Mistake(
        "extract_features",
        "train-mode",
        "switch the model to eval mode while extracting (BatchNorm running statistics, no "
        "Dropout), then restore the mode it had (docstring).",
        (("    model.eval()\n", ""),),
    ),
    Mistake(
        "extract_features",
        "mode-not-restored",
        "put the model back in the mode it was in when you got it (model.train(was_training)), "
        "even if extraction raised: use try/finally (docstring).",
        (("        model.train(was_training)\n", "        pass\n"),),
    ),
    Mistake(
        "extract_features",
        "uint8-not-scaled",
        "convert uint8 images to floats in [0, 1] (divide by 255) before the model, as the "
        "docstring says.",
        (("batch = batch.float() / 255.0", "batch = batch.float()"),),
    ),
    Mistake(
        "softmax_regression_loss",
        "no-max-shift",
        "subtract each row's maximum logit before exp: exp overflows to inf above about 88 and "
        "the loss becomes NaN, while the shift changes nothing mathematically (docstring; the "
        "log-sum-exp trick).",
        (("shifted = logits - logits.max(dim=1, keepdim=True).values", "shifted = logits"),),
    ),
    Mistake(
        "softmax_regression_loss",
        "regulariser-not-halved",
        "the penalty is reg / 2 * ||W||^2, whose gradient is reg * W (docstring): without the "
        "1/2 the loss and dW disagree.",
        (("0.5 * reg * (W * W).sum()", "reg * (W * W).sum()"),),
    ),
    Mistake(
        "softmax_regression_loss",
        "gradient-not-averaged",
        "divide the logits' gradient by N: the loss is the MEAN cross-entropy over the batch, so "
        "dW and db are means too.",
        (("    dlogits /= num  # mean over the batch\n", ""),),
    ),
    Mistake(
        "softmax_regression_loss",
        "regulariser-gradient-missing",
        "add reg * W to dW, the gradient of the penalty reg / 2 * ||W||^2 (docstring).",
        (("dW = features.T @ dlogits + reg * W", "dW = features.T @ dlogits"),),
    ),
    Mistake(
        "softmax_regression_loss",
        "onehot-not-subtracted",
        "the gradient of -log p_y with respect to the logits is p - onehot(y): subtract 1 at "
        "each row's label.",
        (("    dlogits[rows, labels] -= 1.0  # d(-log p_y)/dlogits = p - onehot(y)\n", ""),),
    ),
    Mistake(
        "softmax_regression_loss",
        "bias-gradient-averaged-twice",
        "db is the SUM over the batch of the per-example gradients, which are already divided "
        "by N; averaging again divides by N twice.",
        (("db = dlogits.sum(dim=0)", "db = dlogits.mean(dim=0)"),),
    ),
    Mistake(
        "train_softmax_classifier",
        "no-momentum",
        "use heavy-ball momentum as step 3 says: v = momentum * v - lr * grad, then param = "
        "param + v.",
        (
            ("vW = momentum * vW - lr * dW", "vW = -lr * dW"),
            ("vb = momentum * vb - lr * db", "vb = -lr * db"),
        ),
    ),
    Mistake(
        "train_softmax_classifier",
        "standardised-weights-returned",
        "fold the standardisation into the weights before returning them (step 4): W / std and "
        "b - (mean / std) @ W apply to raw features.",
        (("return W_raw, b_raw", "return W, b"),),
    ),
    Mistake(
        "train_softmax_classifier",
        "bias-not-shifted",
        "the raw-feature bias is b - (mean / std) @ W (step 4): the mean that standardisation "
        "subtracted must come back through the bias.",
        (("b_raw = b - (mean / std) @ W", "b_raw = b"),),
    ),
    Mistake(
        "train_softmax_classifier",
        "unbiased-std",
        "standardise with the population std, features.std(dim=0, unbiased=False), as step 1 says.",
        (("features.std(dim=0, unbiased=False)", "features.std(dim=0)"),),
    ),
    # ---- Part 2: fine-tuning -------------------------------------------------------------------
    Mistake(
        "replace_head",
        "global-generator",
        "draw the new head's weights from the generator you are given (replearn.train.init_ "
        "with generator=), so that one seed gives one head (docstring).",
        (
            (
                "init_(nn.init.kaiming_uniform_, head.weight, a=5**0.5, generator=generator)",
                "nn.init.kaiming_uniform_(head.weight, a=5**0.5)",
            ),
            (
                "init_(nn.init.uniform_, head.bias, -bound, bound, generator=generator)",
                "nn.init.uniform_(head.bias, -bound, bound)",
            ),
        ),
    ),
    Mistake(
        "replace_head",
        "old-width",
        "the new head maps the old head's in_features to num_classes outputs, the classes of "
        "the new task (lecture: 'add randomly initialized final FC layer for new task').",
        (
            (
                "nn.Linear(old.in_features, num_classes, device=device)",
                "nn.Linear(old.in_features, old.out_features, device=device)",
            ),
        ),
    ),
    Mistake(
        "replace_head",
        "bias-bound",
        "nn.Linear draws its bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in the input "
        "width (docstring: initialised as nn.Linear does by default).",
        (("bound = 1.0 / old.in_features**0.5", "bound = 1.0 / old.in_features"),),
    ),
    Mistake(
        "replace_head",
        "old-head-returned",
        "return the NEW head, the layer now at model.<head_name> (docstring).",
        (("    return head\n", "    return old\n"),),
    ),
    Mistake(
        "param_groups",
        "scale-on-head",
        "the pretrained backbone gets the lower rate lr * backbone_lr_scale and the new head "
        "the full lr, not the other way round (lecture: lower learning rate for the pretrained "
        "layers).",
        (
            ('"lr": lr * backbone_lr_scale,', '"lr": lr,'),
            (
                '{"name": "head", "params": head, "lr": lr,',
                '{"name": "head", "params": head, "lr": lr * backbone_lr_scale,',
            ),
        ),
    ),
    Mistake(
        "param_groups",
        "frozen-included",
        "leave frozen parameters (requires_grad False) out of the groups, so that an optimiser "
        "with weight decay cannot move them.",
        (("        if not param.requires_grad:\n            continue\n", ""),),
    ),
    Mistake(
        "param_groups",
        "no-weight-decay",
        "give both groups the weight_decay you are given (docstring).",
        (
            ('"weight_decay": weight_decay,\n        },', '"weight_decay": 0.0,\n        },'),
            ('"lr": lr, "weight_decay": weight_decay}', '"lr": lr, "weight_decay": 0.0}'),
        ),
    ),
    Mistake(
        "param_groups",
        "groups-swapped",
        "return the backbone's group first and the head's second, as the docstring lists them.",
        (('"weight_decay": weight_decay},\n    ]', '"weight_decay": weight_decay},\n    ][::-1]'),),
    ),
    Mistake(
        "freeze_up_to",
        "stage-left-trainable",
        "freeze up to AND including the stage: its own parameters are frozen too (docstring).",
        (("upstream = set(names[: inside[-1] + 1])", "upstream = set(names[: inside[0]])"),),
    ),
    Mistake(
        "freeze_up_to",
        "stage-only",
        "freeze everything from the input up to the stage, not only the stage itself: lower "
        "layers are the general ones (lecture: 'sometimes freeze lower layers').",
        (("upstream = set(names[: inside[-1] + 1])", "upstream = {names[i] for i in inside}"),),
    ),
    Mistake(
        "freeze_up_to",
        "parameterless-stage-freezes-all",
        "a stage without parameters (a pooling layer) must freeze the layers before it and "
        "leave the head trainable: find the stage among model.named_modules(), not by the "
        "names of parameters (docstring).",
        (
            (
                "    names = [name for name, _ in model.named_modules()]  # pre-order: registration order\n"
                '    inside = [i for i, n in enumerate(names) if n == stage_name or n.startswith(stage_name + ".")]\n'
                "    upstream = set(names[: inside[-1] + 1])  # the stage, its children and every module before\n"
                "    frozen = []\n"
                "    for name, param in model.named_parameters():\n"
                '        if name.rpartition(".")[0] in upstream:  # the module that owns the parameter\n'
                "            param.requires_grad_(False)\n"
                "            frozen.append(name)\n",
                "    frozen, inside = [], False\n"
                "    for name, param in model.named_parameters():\n"
                '        if name.startswith(stage_name + "."):\n'
                "            inside = True\n"
                "        elif inside:\n"
                "            break\n"
                "        param.requires_grad_(False)\n"
                "        frozen.append(name)\n",
            ),
        ),
    ),
    Mistake(
        "freeze_up_to",
        "nothing-returned",
        "return the names of the parameters you froze, in model.named_parameters() order "
        "(docstring).",
        (("    return frozen\n", "    return None\n"),),
    ),
    Mistake(
        "set_bn_eval",
        "whole-model-eval",
        "put only the BatchNorm layers in eval mode: model.eval() also switches Dropout off, "
        "which must keep training (lecture: 'train with BatchNorm in test mode').",
        (
            (
                "    count = 0\n    for module in model.modules():",
                "    model.eval()\n    count = 0\n    for module in model.modules():",
            ),
        ),
    ),
    Mistake(
        "set_bn_eval",
        "affine-frozen-instead",
        "eval mode (module.eval()) is what stops the running statistics from moving; "
        "requires_grad = False only freezes the affine weight and bias (docstring).",
        (("            module.eval()\n", "            module.requires_grad_(False)\n"),),
    ),
    Mistake(
        "set_bn_eval",
        "count-not-returned",
        "return how many BatchNorm layers you switched (docstring).",
        (("    return count\n", "    return None\n"),),
    ),
    Mistake(
        "two_stage_finetune",
        "no-linear-probe",
        "train the head on frozen features first (stage 1, a linear probe) and copy it into the "
        "head before fine-tuning: a random head sends large random gradients into the "
        "pretrained layers (lecture: 'train with frozen feature extraction first').",
        (
            (
                "        head.weight.copy_(W.T.to(device))  # [K, D]\n        head.bias.copy_(b.to(device))  # [K]\n",
                "        pass\n",
            ),
        ),
    ),
    Mistake(
        "two_stage_finetune",
        "no-cosine-decay",
        "step the cosine schedule after every optimiser step, so that each group's rate falls "
        "from its start to 0 over all epochs * ceil(N / batch_size) steps (docstring).",
        (("            schedule.step()\n", ""),),
    ),
    Mistake(
        "two_stage_finetune",
        "batchnorm-trains",
        "before each epoch call train_mode(model, bn_eval): model.train() alone lets BatchNorm "
        "update its pretrained running statistics (lecture: 'train with BatchNorm in test "
        "mode').",
        (("        train_mode(model, bn_eval)\n", "        model.train()\n"),),
    ),
    Mistake(
        "two_stage_finetune",
        "one-learning-rate",
        "build the optimiser from param_groups, so that the pretrained backbone trains at "
        "lr * backbone_lr_scale and the head at lr (lecture: lower learning rate for the "
        "pretrained layers).",
        (
            (
                "for g in param_groups(model, head_name, lr, backbone_lr_scale, weight_decay)",
                "for g in param_groups(model, head_name, lr, 1.0, weight_decay)",
            ),
        ),
    ),
]

# Correct alternatives: each passes every public and hidden test of its function
# (tests/test_mistakes.py).
ALLOWED = [
    Mistake(
        "softmax_regression_loss",
        "one-hot-matrix",
        "subtracting a one-hot matrix of the labels from the probabilities is the same gradient, "
        "p - onehot(y), as subtracting 1 at each row's label.",
        (
            (
                "dlogits[rows, labels] -= 1.0",
                "dlogits = dlogits - torch.nn.functional.one_hot(labels, logits.shape[1]).to(dlogits)",
            ),
        ),
    ),
]
