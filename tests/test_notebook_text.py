"""What the notebooks tell a student agrees with the module they fill in and with the papers.

Every part a notebook asks for ("Implement `x`, `y` ...") is a graded part of its module, and
every graded part is asked for somewhere, so that a student never writes what is given nor
misses what is graded. The other tests pin corrections of what the notebooks once said wrongly
about the papers (a review against them found these).
"""

import json
import re
from pathlib import Path

import pytest

from instructor.handout_leaks import graded_parts

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = {
    path.stem.split("_", 1)[1]: path for path in sorted((REPO / "assignments").glob("0*_*.ipynb"))
}


def _markdown(module: str) -> list[str]:
    cells = json.loads(NOTEBOOKS[module].read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _asked_for(module: str) -> set[str]:
    """The names in backticks of each "Implement ..." sentence (not those in parentheses)."""
    names = set()
    for text in _markdown(module):
        for sentence in re.finditer(r"Implement(.*?)(?:\.\s|\.$|\n\n|$)", text, re.S):
            outside = re.sub(r"\([^()]*\)", "", sentence.group(1))
            names.update(re.findall(r"`([A-Za-z_][\w.]*)`", outside))
    return names


@pytest.mark.parametrize("module", sorted(graded_parts(REPO / "solutions")))
def test_the_notebook_asks_for_exactly_the_graded_parts(module):
    graded = set(graded_parts(REPO / "solutions")[module])
    asked = _asked_for(module)
    given = {n for n in asked if n not in graded and not any(g.startswith(n + ".") for g in graded)}
    assert not given, f"{module}: the notebook asks for {sorted(given)}, which the module gives"
    missed = {g for g in graded if g not in asked and g.split(".")[0] not in asked}
    assert not missed, f"{module}: graded but never asked for in the notebook: {sorted(missed)}"


def _text(module: str) -> str:
    return "\n".join(_markdown(module)).replace("\n", " ")


def test_layer_wise_pretraining_credits_rbms_to_hinton_and_autoencoders_to_bengio():
    text = _text("autoencoders")
    assert "Hinton and Salakhutdinov (2006) and Bengio et al. (2007) trained them" not in text
    assert re.search(r"Hinton and Salakhutdinov \(2006\).{0,120}restricted Boltzmann", text)
    assert re.search(r"Bengio et al\. \(2007\) stacked small autoencoders", text)


def test_jigsaw_tile_normalisation_and_exemplar_transformations_are_stated():
    text = _text("pretext_tasks")
    assert re.search(r"normalises the mean and standard deviation of every tile", text)
    assert re.search(r"translation, scaling, rotation, contrast and colour", text)


def test_moco_without_shuffling_bn_is_disclosed_in_the_notebook():
    assert "**shuffling BN**" in _text("contrastive_learning")


def test_mae_tables_cited_are_the_papers():
    """He et al. (2022): Table 1 (a) decoder depth, (b) width, (c) mask token, (d) target,
    (e) data augmentation, (f) mask sampling; Table 2 (wall-clock time) has no parts."""
    sources = [
        path.read_text().replace("\n", " ")
        for path in (
            REPO / "solutions" / "masked_autoencoders.py",
            REPO / "replearn" / "recipes" / "masked_autoencoders.py",
            REPO / "benchmarks" / "mae_quality.py",
        )
        if path.is_file()
    ]
    for text in (_text("masked_autoencoders"), *sources):
        assert not re.search(r"Table 2[a-f]", text)
        assert not re.search(r"Table 1f", text)  # mask sampling: the course does not ablate it
        for match in re.finditer(r"Table 1([a-f])", text):
            context = text[max(0, match.start() - 300) : match.end() + 100].lower()
            topic = {"c": "token", "d": "target", "e": "crop"}.get(match.group(1))
            assert topic and topic in context, f"Table 1{match.group(1)}: {context!r}"


def test_clip_notebook_says_same_class_captions_are_false_negatives():
    assert "**false negative**" in _text("clip_zero_shot")


HEADER_WORDS = 360  # "about 350": goals, the preset table and one paragraph of expectations


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
def test_a_header_reads_in_two_minutes(notebook):
    header = _markdown(notebook)[0]
    words = [t for t in header.split() if re.search(r"[A-Za-z0-9]", t)]  # table rules aside
    assert len(words) <= HEADER_WORDS, (
        f"the header of {NOTEBOOKS[notebook].name} has {len(words)} words, over {HEADER_WORDS}: "
        "keep the goals, the preset table and one paragraph; measurements go to benchmarks/"
    )


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
def test_a_header_states_a_measured_cpu_quick_time(notebook):
    header = _markdown(notebook)[0]
    quick = next(line for line in header.splitlines() if line.startswith("| `cpu-quick`"))
    time_cell = quick.split("|")[3]
    assert re.search(r"\d+(\.\d+)? min", time_cell), time_cell
    assert "not" not in time_cell.split(), f"a time that was not measured: {time_cell!r}"
