"""detr_core.predict's output folder: it replaces `--out` whole, so it must never
delete what the user keeps there.

`--out` may be new, empty or an earlier predict output; the images folder, a folder holding
it, a file, a folder with anything else (and the same for the `<out>.partial` staging folder)
are refused with one line and exit code 2 before anything is written. Each test calls the real
CLI `main` in-process on real files; a tiny untrained model keeps the runs to seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_image

from detr_core.predict import DETECTIONS_FILE, DRAWN_DIR, main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `save_pretrained` DETR folder (tiny preset, two classes, 64-pixel processor)."""
    from detr_core.config.run_config import ModelConfig
    from detr_core.data.coco import LabelMap
    from detr_core.model.build import build_image_processor, build_model

    folder = tmp_path_factory.mktemp("model") / "tiny-detr"
    model_cfg = ModelConfig(preset="tiny", image_size=64)
    build_model(model_cfg, LabelMap((1, 2), ("a", "b")), "giou", False).save_pretrained(folder)
    build_image_processor(model_cfg).save_pretrained(folder)
    return folder


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """The user's images: a PNG and, in a sub-folder, a JPEG."""
    folder = tmp_path / "photos"
    write_image(folder / "a.png", 40, 30)
    write_image(folder / "sub" / "b.jpg", 32, 48, seed=1)
    return folder


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a folder), to prove nothing changed."""
    return {path.relative_to(root).as_posix(): None if path.is_dir() else path.read_bytes()
            for path in sorted(root.rglob("*"))}


def partial_folders(root: Path) -> list[Path]:
    """Staging folders predict left anywhere under `root`."""
    return [path for path in root.rglob("*") if path.name.endswith(".partial")]


def predict(model: Path, images: Path, out: Path | str, *extra: str) -> int:
    """Run the CLI's `main` in this process, as `python -m detr_core.predict` would."""
    return main(["--model", str(model), "--images", str(images), "--out", str(out), *extra])


def refused(capsys: pytest.CaptureFixture[str], model: Path, images: Path,
            out: Path | str) -> str:
    """Run predict, expecting the user-error exit: code 2 and one `error:` line, no traceback;
    return that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        predict(model, images, out)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_rerun_replaces_its_own_output_and_a_killed_runs_leftover(
        tiny_model: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    assert predict(tiny_model, photos, out) == 0
    first = json.loads((out / DETECTIONS_FILE).read_text())
    assert [image["file_name"] for image in first["images"]] == ["a.png", "sub/b.jpg"]
    assert (out / DRAWN_DIR / "sub" / "b.jpg.png").is_file()
    leftover = tmp_path / "preds.partial" / DRAWN_DIR  # as a run killed mid-way leaves it
    write_image(leftover / "a.png", 8, 8)

    assert predict(tiny_model, photos, out, "--threshold", "0.25") == 0
    again = json.loads((out / DETECTIONS_FILE).read_text())
    assert again["info"]["score_threshold"] == 0.25
    assert sorted(snapshot(out)) == ["detections.json", "images", "images/a.png",
                                     "images/sub", "images/sub/b.jpg.png"]
    assert partial_folders(tmp_path) == []


@pytest.mark.parametrize("user_files", [
    {"keep.txt": b"mine"},
    {"images/cat.png": b"a photo of mine"},  # images/ without predict's detections.json
    {"detections.json": b'{"images": [], "annotations": []}', "images/cat.png": b"mine"},
    {"detections.json": b"not json", "images/cat.png": b"mine"},
    {"detections.json": b'{"info": {"score_threshold": 0.5}}', "images/cat.jpg": b"mine"},
], ids=["other-file", "images-only", "foreign-coco", "broken-json", "non-png-drawing"])
def test_out_holding_user_files_is_refused_untouched(
        capsys: pytest.CaptureFixture[str], tiny_model: Path, photos: Path, tmp_path: Path,
        user_files: dict[str, bytes]) -> None:
    out = tmp_path / "x"
    for name, data in user_files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    before, photos_before = snapshot(out), snapshot(photos)
    line = refused(capsys, tiny_model, photos, out)
    assert line.startswith(f"error: {out}: --out: holds files predict did not write (")
    assert "choose another --out" in line
    assert snapshot(out) == before and snapshot(photos) == photos_before
    assert partial_folders(tmp_path) == []


@pytest.mark.parametrize("pick_out, says", [
    (lambda photos: photos, "is the --images folder"),
    (lambda photos: photos.parent, "contains the --images folder"),
    (lambda photos: photos / "sub" / "..", "is the --images folder"),  # resolved first
    (lambda photos: photos / "preds", "is inside the --images folder"),
], ids=["same", "parent", "same-via-dotdot", "inside"])
def test_out_at_or_around_the_images_is_refused(
        capsys: pytest.CaptureFixture[str], tiny_model: Path, photos: Path, tmp_path: Path,
        pick_out: Callable[[Path], Path], says: str) -> None:
    out = pick_out(photos)
    before = snapshot(tmp_path)
    line = refused(capsys, tiny_model, photos, out)
    assert line.startswith(f"error: {out.resolve()}: --out: {says}")
    assert snapshot(tmp_path) == before


def test_out_naming_a_file_is_refused(capsys: pytest.CaptureFixture[str], tiny_model: Path,
                                      photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    line = refused(capsys, tiny_model, photos, out)
    assert line == f"error: {out}: --out: is a file, not a folder: choose another --out"
    line = refused(capsys, tiny_model, photos, out / "preds")
    assert line == f"error: {out / 'preds'}: --out: {out} is a file: choose another --out"
    assert out.read_text() == "mine"
    assert sorted(snapshot(tmp_path)) == ["notes.txt", "photos", "photos/a.png", "photos/sub",
                                          "photos/sub/b.jpg"]


def test_staging_folder_holding_user_files_is_refused(
        capsys: pytest.CaptureFixture[str], tiny_model: Path, photos: Path,
        tmp_path: Path) -> None:
    staging = tmp_path / "preds.partial"
    (staging / "keep.txt").parent.mkdir()
    (staging / "keep.txt").write_text("mine")
    line = refused(capsys, tiny_model, photos, tmp_path / "preds")
    assert line.startswith(f"error: {staging}: --out staging folder: holds files predict did "
                           "not write (keep.txt)")
    assert (staging / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "preds").exists()


def test_out_dot_is_the_current_folder(capsys: pytest.CaptureFixture[str], tiny_model: Path,
                                       photos: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    monkeypatch.chdir(busy)
    line = refused(capsys, tiny_model, photos, ".")
    assert line.startswith(f"error: {busy}: --out: holds files predict did not write (keep.txt)")
    assert snapshot(busy) == {"keep.txt": b"mine"}

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert predict(tiny_model, photos, ".") == 0
    assert (empty / DETECTIONS_FILE).is_file() and (empty / DRAWN_DIR / "a.png").is_file()
    assert partial_folders(tmp_path) == []


def test_files_added_to_out_while_the_model_runs_are_kept(
        capsys: pytest.CaptureFixture[str], tiny_model: Path, photos: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder is checked again just before it is replaced, not only at the start."""
    import detr_core.predict as module

    out = tmp_path / "preds"
    assert predict(tiny_model, photos, out) == 0
    run_model = module.predict_images

    def user_writes_meanwhile(*args: object) -> list:
        (out / "notes.txt").write_text("mine")
        return run_model(*args)

    monkeypatch.setattr(module, "predict_images", user_writes_meanwhile)
    before = snapshot(out)
    line = refused(capsys, tiny_model, photos, out)
    assert line.startswith(f"error: {out}: --out: holds files predict did not write "
                           "(notes.txt)")
    assert snapshot(out) == before | {"notes.txt": b"mine"}
    assert partial_folders(tmp_path) == []


def test_out_where_nothing_can_be_written_is_one_line(capsys: pytest.CaptureFixture[str],
                                                      tiny_model: Path, photos: Path) -> None:
    """sysfs refuses new folders to every user, root included (a PermissionError traceback
    before); nothing is left there."""
    out = Path("/sys") / f"detr-predict-{os.getpid()}"
    line = refused(capsys, tiny_model, photos, out)
    assert line.startswith(f"error: {out}: --out: cannot write there ({out}.partial"), line
    assert not out.exists() and not Path(f"{out}.partial").exists()
