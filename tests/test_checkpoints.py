"""The course checkpoints: bundle format, verification, finding, loading, and the training command."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from replearn import checkpoints as C
from replearn import impl, notebook
from replearn.backbones import SmallCNN
from replearn.presets import get_preset


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No bundle from the package, the environment or a pin leaks into a test; no cache shared."""
    monkeypatch.delenv(C.CHECKPOINTS_ENV, raising=False)
    monkeypatch.setenv("REPLEARN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(C, "PACKAGED_DIR", tmp_path / "package" / "course_checkpoints")
    manifest = tmp_path / "package" / "checkpoint_manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"format": C.FORMAT, "current": None, "bundles": {}}))
    monkeypatch.setattr(C, "MANIFEST_PATH", manifest)


def _entry(epochs: int, encoder: torch.nn.Module) -> dict:
    return {
        "architecture": C.describe_encoder(encoder),
        "budget": {"epochs": epochs, "steps": 19 * epochs},
        "seed": 0,
        "command": "python -m instructor.course_checkpoints --methods x",
        "config": {"lr": 0.002},
        "data": {"name": "cifar10-5k", "source": "test"},
        "evaluation": {"course": {"knn": 0.5, "linear": 0.55}, "notebook": {"knn": 0.5}},
    }


def make_bundle(folder: Path, version: str = "test-1") -> tuple[Path, dict[str, torch.nn.Module]]:
    """A two-method bundle: a small SmallCNN in float16 and a tiny MAE ViT in float32."""
    torch.manual_seed(0)
    cnn = SmallCNN(3, (8, 16, 16, 32)).eval()
    vit = C.MAEFeatureEncoder(32, 8, 3, dim=16, depth=1, heads=2).eval()
    methods = {
        "simclr": (C.encoder_tensors(cnn, torch.float16), _entry(3, cnn)),
        "mae": (C.encoder_tensors(vit), _entry(2, vit)),
    }
    C.write_bundle(
        folder, methods, bundle_version=version, about={"reference": {"git_commit": "abc"}}
    )
    return folder, {"simclr": cnn, "mae": vit}


def pin(folder: Path, zip_path: Path | None = None, url: str = "") -> None:
    record = json.loads((folder / C.BUNDLE_FILE).read_text())
    manifest = {
        "format": C.FORMAT,
        "current": record["bundle_version"],
        "bundles": {record["bundle_version"]: C.pin_entry(folder, zip_path, url)},
    }
    C.MANIFEST_PATH.write_text(json.dumps(manifest))


def test_architectures_rebuild_the_reference_encoders_exactly():
    mae = impl.load("masked_autoencoders", impl="solution")
    clip = impl.load("clip_zero_shot", impl="solution")
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)  # [N, C, H, W]
    cases = [
        (SmallCNN(3, (8, 16, 32, 32)), lambda e: e(x)),
        (mae.MAEEncoder(32, 4, 3, dim=32, depth=2, heads=4), lambda e: e.forward_features(x)),
        (clip.ImageEncoder(24, (8, 16, 16, 32), 3), lambda e: e(x)),
    ]
    for reference, output in cases:
        reference.eval()
        built = C.build_encoder(C.describe_encoder(reference))
        built.load_state_dict(C.encoder_tensors(reference))  # the same names and shapes
        assert torch.equal(output(built), output(reference)), type(reference).__name__
        # the course protocol probes the pooled features: the tower's backbone, not its projection
        assert C.probe_view(built)(x).shape == (4, 32)
    tower = C.build_encoder(C.describe_encoder(cases[2][0]))
    assert torch.equal(C.probe_view(tower)(x), tower.features(x))
    with pytest.raises(ValueError, match="register_architecture"):
        C.describe_encoder(torch.nn.Linear(3, 3))


def test_bundle_loads_verified_encoders_labelled_as_the_courses(tmp_path):
    folder, originals = make_bundle(tmp_path / "bundle")
    record = json.loads((folder / C.BUNDLE_FILE).read_text())
    assert record["format"] == C.FORMAT and record["format_version"] == C.FORMAT_VERSION
    entry = record["methods"]["simclr"]
    assert entry["dtype"] == "float16" and entry["file"] == "simclr.safetensors"
    assert entry["bytes"] == (folder / "simclr.safetensors").stat().st_size
    assert entry["parameters"] == sum(p.numel() for p in originals["simclr"].parameters())
    assert record["methods"]["mae"]["dtype"] == "float32"

    zipped = C.write_zip(folder, tmp_path / "bundle.zip")
    for location in (folder, zipped):
        encoder, info = C.load_course_encoder("simclr", bundle=location)
        assert info.label == "course checkpoint (reference, 3 epochs)"
        assert info.evaluation["course"] == {"knn": 0.5, "linear": 0.55}
        assert info.pinned is False and info.sha256 == entry["sha256"]
        assert "course checkpoint (reference, 3 epochs)" in info.describe()
        x = torch.rand(2, 3, 32, 32)
        rounded = C.build_encoder(info.architecture)
        rounded.load_state_dict(C.encoder_tensors(originals["simclr"], torch.float16))
        assert not encoder.training and torch.equal(encoder(x), rounded(x))
        vit, _ = C.load_course_encoder("mae", bundle=location)
        assert torch.equal(vit(x), originals["mae"](x))  # float32: the same weights
    assert C.write_zip(folder, tmp_path / "again.zip").read_bytes() == zipped.read_bytes()


def test_sha256_is_verified_and_a_flipped_byte_is_refused(tmp_path):
    folder, _ = make_bundle(tmp_path / "bundle")
    weights = folder / "simclr.safetensors"
    expected = json.loads((folder / C.BUNDLE_FILE).read_text())["methods"]["simclr"]["sha256"]
    assert C.open_bundle(folder).verify() == {
        "mae": C.open_bundle(folder).entry("mae")["sha256"],
        "simclr": expected,
    }
    payload = bytearray(weights.read_bytes())
    payload[len(payload) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(payload))
    with pytest.raises(C.CheckpointBundleError) as error:
        C.load_course_encoder("simclr", bundle=folder)
    message = str(error.value)
    assert error.value.reason == "checksum" and "simclr.safetensors" in message
    assert f"expected sha256 {expected}" in message and C._sha256(bytes(payload)) in message
    assert "Get a good copy" in message and C.CHECKPOINTS_ENV in message
    C.load_course_encoder("mae", bundle=folder)  # the other method is still good

    weights.write_bytes(bytes(payload[:-100]))  # truncated: refused on its size, before hashing
    with pytest.raises(C.CheckpointBundleError, match="truncated") as error:
        C.load_course_encoder("simclr", bundle=folder)
    assert error.value.reason == "corrupt"
    weights.unlink()
    with pytest.raises(C.CheckpointBundleError, match="missing file") as error:
        C.load_course_encoder("simclr", bundle=folder)


def test_a_damaged_zip_is_refused(tmp_path):
    folder, _ = make_bundle(tmp_path / "bundle")
    zipped = C.write_zip(folder, tmp_path / "bundle.zip")
    with zipfile.ZipFile(zipped) as archive:
        member = archive.getinfo("simclr.safetensors")
    payload = bytearray(zipped.read_bytes())
    payload[member.header_offset + 200] ^= 0xFF  # inside the compressed weights
    zipped.write_bytes(bytes(payload))
    with pytest.raises(C.CheckpointBundleError) as error:
        C.load_course_encoder("simclr", bundle=zipped)
    assert error.value.reason in ("corrupt", "checksum") and "simclr.safetensors" in str(
        error.value
    )


def test_a_missing_method_says_which_methods_the_bundle_has(tmp_path):
    folder, _ = make_bundle(tmp_path / "bundle")
    with pytest.raises(C.CheckpointBundleError, match="has no 'byol'; it has mae, simclr") as error:
        C.load_course_encoder("byol", bundle=folder)
    assert error.value.reason == "unknown"


def test_a_bundle_json_that_does_not_match_is_refused(tmp_path):
    folder, _ = make_bundle(tmp_path / "bundle")
    path = folder / C.BUNDLE_FILE
    pin(folder)
    _, info = C.load_course_encoder("simclr", bundle=folder)
    assert info.pinned
    record = json.loads(path.read_text())
    record["methods"]["simclr"]["evaluation"]["course"]["knn"] = 0.9  # a better number, by hand
    path.write_text(json.dumps(record, indent=1))
    with pytest.raises(
        C.CheckpointBundleError, match="does not match bundle test-1 as this package pins it"
    ) as error:
        C.load_course_encoder("simclr", bundle=folder)
    assert error.value.reason == "checksum"

    C.MANIFEST_PATH.write_text(json.dumps({"format": C.FORMAT, "current": None, "bundles": {}}))
    record["methods"]["simclr"]["sha256"] = "0" * 64  # the listed hash no longer fits the file
    path.write_text(json.dumps(record))
    with pytest.raises(C.CheckpointBundleError, match="checksum mismatch"):
        C.load_course_encoder("simclr", bundle=folder)
    for change, pattern in [
        ({"file": "../../etc/passwd"}, "not a plain .safetensors name"),
        ({"dtype": "int8"}, "dtype"),
        ({"architecture": {"kind": "resnet-9000"}}, "unknown encoder architecture"),
    ]:
        broken = json.loads(json.dumps(record))
        broken["methods"]["mae"].update(change)
        path.write_text(json.dumps(broken))
        with pytest.raises(C.CheckpointBundleError, match=pattern):
            C.load_course_encoder("mae", bundle=folder)
    record["format_version"] = C.FORMAT_VERSION + 1
    path.write_text(json.dumps(record))
    with pytest.raises(C.CheckpointBundleError, match="upgrade the course package"):
        C.open_bundle(folder)
    path.write_text("{not json")
    with pytest.raises(C.CheckpointBundleError, match="corrupt file"):
        C.open_bundle(folder)


def test_weights_that_do_not_fit_their_architecture_are_refused(tmp_path):
    folder, _ = make_bundle(tmp_path / "bundle")
    path = folder / C.BUNDLE_FILE
    record = json.loads(path.read_text())
    record["methods"]["simclr"]["architecture"]["widths"] = [8, 16, 16, 64]  # a wider last block
    path.write_text(json.dumps(record))
    with pytest.raises(C.CheckpointBundleError, match="do not fit the smallcnn encoder"):
        C.load_course_encoder("simclr", bundle=folder)


def test_where_the_bundle_is_found_offline_first(tmp_path, monkeypatch):
    with pytest.raises(C.CheckpointBundleError, match=C.CHECKPOINTS_ENV) as error:
        C.find_bundle()
    assert error.value.reason == "missing"
    monkeypatch.setenv(C.CHECKPOINTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(C.CheckpointBundleError, match="does not exist"):
        C.find_bundle()

    folder, _ = make_bundle(tmp_path / "mine", version="instructor-draft")
    monkeypatch.setenv(C.CHECKPOINTS_ENV, str(folder))
    found = C.find_bundle()
    assert found.origin == f"${C.CHECKPOINTS_ENV}" and not found.pinned

    # the package's copy must be one this package pins
    monkeypatch.delenv(C.CHECKPOINTS_ENV)
    shutil.copytree(folder, C.PACKAGED_DIR)
    with pytest.raises(C.CheckpointBundleError, match="not one this package pins"):
        C.find_bundle()
    pin(C.PACKAGED_DIR)
    found = C.find_bundle()
    assert found.origin == "the course package's copy" and found.pinned
    _, info = C.load_course_encoder("mae")
    assert "the course package's copy" in info.source

    # $REPLEARN_CHECKPOINTS wins, and may hold the pinned zip instead of a folder
    zip_folder = tmp_path / "zips"
    zip_folder.mkdir()
    zipped = C.write_zip(C.PACKAGED_DIR, zip_folder / "course.zip")
    pin(C.PACKAGED_DIR, zipped)
    monkeypatch.setenv(C.CHECKPOINTS_ENV, str(zip_folder))
    assert C.find_bundle().location == zipped


def test_a_download_only_from_a_pinned_address_and_verified(tmp_path, monkeypatch):
    folder, _ = make_bundle(tmp_path / "published")
    zipped = C.write_zip(folder, tmp_path / "site" / "course.zip")
    pin(folder, zipped, url=zipped.as_uri())  # a file:// address: nothing leaves the machine
    with pytest.raises(C.CheckpointBundleError, match="no course-checkpoint bundle found"):
        C.find_bundle(download=False)
    found = C.find_bundle()
    assert (
        found.origin == "downloaded"
        and found.pinned
        and found.location.parent.name == "course_checkpoints"
    )
    assert C.find_bundle(download=False).origin == "downloaded earlier"

    found.location.unlink()
    zipped.write_bytes(zipped.read_bytes() + b"junk")  # the published copy changed
    with pytest.raises(C.CheckpointBundleError, match="does not match the pinned bundle") as error:
        C.find_bundle()
    assert error.value.reason == "checksum" and not found.location.exists()


def test_session_loads_a_course_encoder_and_notes_its_source(tmp_path, monkeypatch, capsys):
    folder, _ = make_bundle(tmp_path / "bundle")
    monkeypatch.setenv(C.CHECKPOINTS_ENV, str(folder))
    session = notebook.Session(
        "contrastive_learning",
        get_preset("smoke"),
        torch.device("cpu"),
        0,
        None,
        "",
        torch.Generator(),
    )
    encoder, info = session.course_encoder("simclr")
    assert isinstance(encoder, SmallCNN) and info.method == "simclr"
    assert session.data_notes[-1].startswith(
        "course checkpoint: simclr: course checkpoint (reference, 3 epochs)"
    )


def test_comparison_rows_name_their_source(tmp_path, monkeypatch):
    """A notebook's table: every course row carries the checkpoint's label, the student's row
    its own source, and the scores are those of the loaded weights."""
    folder, originals = make_bundle(tmp_path / "bundle")
    monkeypatch.setenv(C.CHECKPOINTS_ENV, str(folder))
    session = notebook.Session(
        "contrastive_learning",
        get_preset("smoke"),
        torch.device("cpu"),
        0,
        None,
        "",
        torch.Generator(),
    )
    probe = lambda encoder: {"mean": float(encoder(torch.zeros(2, 3, 32, 32)).detach().mean())}  # noqa: E731
    rows = session.course_rows(["simclr"], probe)
    assert rows["simclr"]["source"] == "course checkpoint (reference, 3 epochs)"
    expected = C.build_encoder(C.describe_encoder(originals["simclr"]))
    expected.load_state_dict(C.encoder_tensors(originals["simclr"], torch.float16))
    assert rows["simclr"]["scores"] == pytest.approx(probe(expected.eval()))
    table = notebook.comparison_table(
        {"yours": {"source": "your run: 5 steps", "scores": {"knn": 0.25}}, **rows}, ["knn", "mean"]
    )
    lines = table.splitlines()
    assert "your run: 5 steps" in lines[1] and "25.0%" in lines[1] and lines[1].endswith("-")
    assert "course checkpoint (reference, 3 epochs)" in lines[2]


@pytest.mark.slow
def test_notebook_07_probes_the_checkpoints_under_the_comparisons_protocol(tmp_path, monkeypatch):
    from replearn import compare

    make_bundle(tmp_path / "bundle")
    monkeypatch.setenv(C.CHECKPOINTS_ENV, str(tmp_path / "bundle"))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)  # [N, C, H, W]
    y = torch.arange(40) % 2
    result = compare.course_checkpoint_rows(
        x, y, x[:10], y[:10], methods=["simclr", "mae"], probe_iters=2
    )
    assert [r["source"] for r in result.values()] == [
        "untrained (seed 0)",
        *["course checkpoint (reference, 3 epochs)", "course checkpoint (reference, 2 epochs)"],
    ]
    assert (
        "block3_linear" in result["simclr"]["scores"]
        and "block3_linear" not in result["mae"]["scores"]
    )
    assert {"knn", "linear", "few_1", "few_10"} <= result["mae"]["scores"].keys()


def test_the_command_line_verifies_and_lists(tmp_path, capsys):
    folder, _ = make_bundle(tmp_path / "bundle")
    assert C.main(["verify", "--bundle", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "verified 2 method(s)" in out and "simclr" in out and "float16" in out
    (folder / "mae.safetensors").write_bytes(b"0" * 10)
    assert C.main(["verify", "--bundle", str(folder)]) == 1
    assert "truncated or a different file" in capsys.readouterr().err


def test_write_bundle_replaces_the_old_one_atomically(tmp_path):
    folder, _ = make_bundle(tmp_path / "out" / "bundle", version="one")
    make_bundle(folder, version="two")
    assert C.open_bundle(folder).version == "two"
    assert [p.name for p in folder.parent.iterdir()] == ["bundle"]  # no staging folder left
    with pytest.raises(ValueError, match="share one dtype"):
        cnn = SmallCNN(3, (8, 8, 8, 8))
        mixed = C.encoder_tensors(cnn)
        mixed["blocks.0.0.weight"] = mixed["blocks.0.0.weight"].half()
        C.write_bundle(folder, {"x": (mixed, _entry(1, cnn))}, bundle_version="three")
    assert C.open_bundle(folder).version == "two"  # a failed write leaves the old bundle
    assert [p.name for p in folder.parent.iterdir()] == ["bundle"]


# ---- the training command (instructor tooling) -------------------------------------------------

SMOKE = [
    "--preset",
    "smoke",
    "--train-per-class",
    "10",
    "--eval-train-per-class",
    "20",
    "--eval-test-per-class",
    "10",
    "--epochs",
    "1",
    "--quiet",
]


def test_epochs_are_per_method_with_stated_defaults():
    from instructor import course_checkpoints as cc

    assert cc._parse_epochs([], ["simclr", "mae"]) == {"simclr": 200, "mae": 200}
    assert cc._parse_epochs(["3", "mae=7"], ["simclr", "mae"]) == {"simclr": 3, "mae": 7}
    for bad in (["byol=3"], ["simclr=0"], ["simclr=x"]):
        with pytest.raises(SystemExit):
            cc._parse_epochs(bad, ["simclr", "mae"])
    from replearn.pretrain import METHODS

    assert {m.pretrain for m in cc.COURSE_METHODS.values()} <= set(METHODS)


@pytest.mark.slow
def test_the_command_trains_evaluates_and_writes_a_bundle_reproducibly(tmp_path):
    """Two methods for one epoch at the smoke preset's sizes, then SimCLR again: the same bytes."""
    from instructor import course_checkpoints as cc

    out = tmp_path / "out" / "bundle"
    assert (
        cc.main(["--methods", "simclr", "mae", "--out", str(out), "--bundle-version", "t", *SMOKE])
        == 0
    )
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "bundle",
        f"{C.FORMAT}-t.zip",
    ]  # work removed
    bundle = C.open_bundle(out)
    assert bundle.methods == ["mae", "simclr"] and bundle.record["command"].endswith("--quiet")
    for name in bundle.methods:
        entry = bundle.entry(name)
        assert entry["budget"]["epochs"] == 1 and entry["budget"]["steps"] == 3  # 100 images / 32
        assert entry["command"].startswith(
            f"python -m instructor.course_checkpoints --methods {name} --epochs {name}=1"
        )
        assert entry["data"]["name"] == "cifar10-5k" and entry["seed"] == 0
        assert (
            set(entry["evaluation"]["course"]) == {"knn", "linear"}
            and entry["evaluation"]["notebook"]
        )
        precision = entry["precision"]
        assert precision["stored"] == entry["dtype"] and set(precision["float16"]) == {
            "knn",
            "linear",
        }
        assert entry["evaluation"]["course"] == precision[entry["dtype"]]
        encoder, info = C.load_course_encoder(name, bundle=out)
        assert info.label == "course checkpoint (reference, 1 epoch)"
    assert (
        bundle.entry("mae")["config"]["dim"] == 32
        and bundle.entry("mae")["architecture"]["kind"] == "mae-vit"
    )
    assert (
        C.load_course_encoder("simclr", bundle=out.parent / f"{C.FORMAT}-t.zip")[1].pinned is False
    )

    again = tmp_path / "again"
    assert cc.main(["--methods", "simclr", "--out", str(again), "--no-zip", *SMOKE]) == 0
    assert C.open_bundle(again).entry("simclr")["sha256"] == bundle.entry("simclr")["sha256"]


def test_install_pins_the_bundle_and_copies_it_into_the_package(tmp_path, monkeypatch):
    from instructor import course_checkpoints as cc
    from instructor import release

    folder, _ = make_bundle(tmp_path / "bundle", version="v9")
    zipped = C.write_zip(folder, tmp_path / "course-v9.zip")
    identity = release.CourseIdentity("replearn", "0.1.0", "https://github.com/o/course", "v0.1.0")
    monkeypatch.setattr(release, "course_identity", lambda repo=None: identity)
    pinned = cc.install(folder, zipped, copy=True)
    assert pinned["url"] == "https://github.com/o/course/releases/download/v0.1.0/course-v9.zip"
    manifest = json.loads(C.MANIFEST_PATH.read_text())
    assert (
        manifest["current"] == "v9"
        and manifest["bundles"]["v9"]["zip"]["bytes"] == zipped.stat().st_size
    )
    found = C.find_bundle()
    assert found.origin == "the course package's copy" and found.pinned


def test_merge_joins_bundles_trained_apart_and_refuses_a_method_twice(tmp_path):
    from instructor import course_checkpoints as cc

    a, originals = make_bundle(tmp_path / "a", version="a")
    C.write_bundle(
        tmp_path / "b",
        {
            "rotation": (
                C.encoder_tensors(originals["simclr"], torch.float16),
                _entry(4, originals["simclr"]),
            )
        },
        bundle_version="b",
        about={"command": "train b", "seconds": 2.0},
    )
    out = tmp_path / "merged"
    assert (
        cc.main(["--merge", str(a), str(tmp_path / "b"), "--out", str(out), "--no-zip", "--quiet"])
        == 0
    )
    merged = C.open_bundle(out)
    assert sorted(merged.methods) == ["mae", "rotation", "simclr"]
    for name, bundle in (("simclr", C.open_bundle(a)), ("rotation", C.open_bundle(tmp_path / "b"))):
        assert merged.entry(name)["sha256"] == bundle.entry(name)["sha256"]
        assert merged.entry(name)["evaluation"] == bundle.entry(name)["evaluation"]
    assert [p["methods"] for p in merged.record["parts"]] == [["mae", "simclr"], ["rotation"]]
    with pytest.raises(SystemExit, match="two of the bundles"):
        cc.main(
            ["--merge", str(a), str(a), "--out", str(tmp_path / "twice"), "--no-zip", "--quiet"]
        )
