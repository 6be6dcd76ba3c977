"""Banned-API detection: the static scan of student source and the literal list."""

from autograder.banned import read_banned, scan

BANNED = {"loss": ["torch.nn.functional.cross_entropy", "torch.nn.CrossEntropyLoss"]}


def test_scan_resolves_aliases_from_imports_and_literal_getattr():
    sources = [
        "import torch.nn.functional as F\ndef loss(a, b):\n    return F.cross_entropy(a, b)\n",
        "from torch.nn.functional import cross_entropy as ce\ndef loss(a, b):\n    return ce(a, b)\n",
        "import torch\ndef loss(a, b):\n    return torch.nn.CrossEntropyLoss()(a, b)\n",
        "from torch import nn\ndef loss(a, b):\n    return getattr(nn.functional, 'cross_entropy')(a, b)\n",
    ]
    for src in sources:
        found = scan(src, BANNED)
        assert [f.function for f in found] == ["loss"], src
        assert "forbids" in found[0].message()


def test_scan_ignores_other_functions_and_unbanned_calls():
    src = (
        "import torch.nn.functional as F\n"
        "def helper(a, b):\n    return F.cross_entropy(a, b)\n"
        "def loss(a, b):\n    return F.log_softmax(a, 1).mean()\n"
    )
    assert scan(src, BANNED) == []
    assert scan("def loss(:\n", BANNED) == []


def test_read_banned_uses_literal_eval_only(tmp_path):
    ref = tmp_path / "m.py"
    ref.write_text("import os\nBANNED_APIS = {'f': ['torch.sum']}\nos.system('false')\n")
    assert read_banned(ref) == {"f": ["torch.sum"]}
    assert read_banned(tmp_path / "missing.py") == {}
