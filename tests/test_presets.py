import pytest

from replearn.presets import PRESETS, get_preset


def test_four_presets_named_as_in_the_design():
    assert list(PRESETS) == ["smoke", "cpu-quick", "colab", "full"]


def test_budgets_grow_from_smoke_to_full():
    budgets = [PRESETS[n].budget_s for n in PRESETS]
    scales = [PRESETS[n].time_scale for n in PRESETS]
    assert budgets == sorted(budgets) and scales == sorted(scales)
    assert PRESETS["smoke"].budget_s <= 5, "smoke must shrink every budget to seconds"
    assert PRESETS["cpu-quick"].device == "cpu"


def test_environment_variable_chooses_the_preset(monkeypatch):
    monkeypatch.setenv("REPLEARN_PRESET", "smoke")
    assert get_preset().name == "smoke"
    assert get_preset("colab").name == "colab"  # an explicit argument wins


def test_unknown_preset_names_the_choices(monkeypatch):
    monkeypatch.delenv("REPLEARN_PRESET", raising=False)
    with pytest.raises(ValueError, match="cpu-quick"):
        get_preset("cpu-slow")


def test_with_changes_a_copy():
    quick = get_preset("cpu-quick")
    assert quick.with_(batch_size=64).batch_size == 64 and quick.batch_size == 256
