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


def test_device_variable_overrides_the_presets_device(monkeypatch):
    from replearn.presets import DEVICE_ENV

    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert get_preset("smoke").device == "cuda"
    assert get_preset("smoke").name == "smoke" and PRESETS["smoke"].device == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "")
    assert get_preset("smoke").device == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cpu:0", "tpu"])
def test_a_bad_device_variable_says_what_it_accepts(monkeypatch, bad):
    monkeypatch.setenv("REPLEARN_DEVICE", bad)
    with pytest.raises(ValueError, match="REPLEARN_DEVICE.*auto, cpu, cuda"):
        get_preset("smoke")
