"""An export killed at any moment leaves whole files: the old ones or the new ones.

A search that is re-exported (after a resume found a new winner) rewrites every output. Here
that export runs in a forked child process which SIGKILLs itself at the k-th file write, for
every k, in two ways: halfway through writing the temporary file, and after it is written but
before the rename. After each kill every output in the folder must be whole: best_config.yaml,
trials.csv, REPORT.md and the plots equal to what the complete old or complete new export
wrote, `best_model/` the old or the new model (or, killed between the two renames of the swap,
absent: never half-copied). The next export then finishes and clears the leftovers.

Real processes and real signals: the child is a fork of the test process (the export modules
are loaded once), killed by the kernel, waited for with `os.waitpid`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from search_helpers import FAKE_SPEC, write_fake_experiment, write_fake_trial

pytestmark = pytest.mark.slow

OUTPUT_FILES = ("best_config.yaml", "trials.csv", "REPORT.md")
# One searched key keeps the plots (the slow part of an export) few.
SPEC = {**FAKE_SPEC, "space": {"iou_loss": {"choice": ["giou", "diou"]}}}
TRIALS = {  # params, total steps, [(step, metric)], done, errored, checkpoints
    "aaaaa_00000": ({"iou_loss": "giou"}, 1500, [(300, 0.30), (600, 0.20)], True, False, True),
    "aaaaa_00001": ({"iou_loss": "diou"}, 900, [(300, 0.25), (600, 0.15), (900, 0.12)], False,
                    False, True),
}
NEW_WINNER = ({"iou_loss": "giou"}, 900, [(300, 0.2), (600, 0.01)], False, False, True)


def _snapshot(exp: Path, copied_from: Path | None = None) -> dict[str, bytes]:
    """Every export output, by relative path (REPORT.md without its timestamp line); the
    folder's own path (or that of the folder it was copied from) is written `<experiment>`."""
    found = {}
    for name in OUTPUT_FILES:
        if (exp / name).is_file():
            found[name] = (exp / name).read_bytes()
    for folder in ("best_model", "plots"):
        for path in sorted((exp / folder).glob("[!.]*")) if (exp / folder).is_dir() else []:
            found[f"{folder}/{path.name}"] = path.read_bytes()
    if "REPORT.md" in found:
        found["REPORT.md"] = b"\n".join(line for line in found["REPORT.md"].splitlines()
                                        if not line.startswith(b"Generated "))
    for folder in filter(None, (exp, copied_from)):
        here = str(folder.resolve()).encode()  # as the outputs name it
        found = {k: v.replace(here, b"<experiment>") for k, v in found.items()}
    return found


def _export(exp: Path) -> None:
    from search.results.export import export_experiment

    export_experiment(exp, evaluate_winner=False)


def _add_new_winner(exp: Path) -> None:
    write_fake_trial(exp, 2, "aaaaa_00002", NEW_WINNER)


def _patch_writes(write: Callable, replace: Callable) -> None:
    """Route every atomic write and every `os.replace` of this process through the wrappers."""
    from detr_core.files import file_io

    real = file_io.write_bytes_atomic
    for module in list(sys.modules.values()):
        if getattr(module, "write_bytes_atomic", None) is real:
            module.write_bytes_atomic = write
    os.replace = replace


def _die_at(k: int, how: str) -> Callable[[], None]:
    """Patch the child so that its k-th write (`mid-write`) or rename (`rename`) kills it."""
    from detr_core.files import file_io

    calls = {"write": 0, "rename": 0}
    real_write, real_replace = file_io.write_bytes_atomic, os.replace

    def kill() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def write(path, data):  # type: ignore[no-untyped-def]
        calls["write"] += 1
        if how == "mid-write" and calls["write"] == k:
            with open(file_io.temp_path(Path(path)), "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
            kill()
        return real_write(path, data)

    def replace(src, dst):  # type: ignore[no-untyped-def]
        calls["rename"] += 1
        if how == "rename" and calls["rename"] == k:
            kill()
        return real_replace(src, dst)

    return lambda: _patch_writes(write, replace)


def _kind(path: Path) -> str:
    """What a written path is: a plot, or the output's own name (`best_model`, `REPORT.md`)."""
    return "plot" if path.parent.name == "plots" else path.name


def _kill_points(kinds: list[str]) -> list[int]:
    """1-based indices of the first write of each kind, and of every later non-plot write
    (all plots are written the same way; one of them stands for the rest)."""
    return [k for k, kind in enumerate(kinds, start=1)
            if kind != "plot" or kinds.index(kind) == k - 1]


def _count_writes(exp: Path) -> dict[str, list[str]]:
    """What each atomic write and each rename of one export of `exp` writes (a forked child)."""
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            from detr_core.files import file_io

            counted: dict[str, list[str]] = {"write": [], "rename": []}
            real_write, real_replace = file_io.write_bytes_atomic, os.replace

            def write(path, data):  # type: ignore[no-untyped-def]
                counted["write"].append(_kind(Path(path)))
                return real_write(path, data)

            def replace(src, dst):  # type: ignore[no-untyped-def]
                counted["rename"].append(_kind(Path(dst)))
                return real_replace(src, dst)

            copy = exp.with_name(exp.name + "-count")
            shutil.copytree(exp, copy)
            _patch_writes(write, replace)
            _export(copy)
            os.write(write_end, json.dumps(counted).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read) as handle:
        return json.loads(handle.read())


def _killed_export(work: Path, install: Callable[[], None]) -> None:
    pid = os.fork()
    if pid == 0:  # the child: export until the patched write kills it
        try:
            install()
            _export(work)
        finally:
            os._exit(0)  # not killed: the test below fails on the exit status
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def _assert_whole(work: Path, before: Path, old: dict[str, bytes], new: dict[str, bytes],
                  where: str) -> None:
    now = _snapshot(work, copied_from=before)
    for name, content in now.items():
        assert content in (old.get(name), new.get(name)), (where, name)
    for name in OUTPUT_FILES:  # files are replaced, never removed
        assert name in now, (where, name)
    models = {k for k in now if k.startswith("best_model/")}
    old_model = {k for k in old if k.startswith("best_model/")}
    new_model = {k for k in new if k.startswith("best_model/")}
    if models:
        assert models in (old_model, new_model), where
        picked = old if all(now[k] == old[k] for k in models) else new
        assert all(now[k] == picked[k] for k in models), (where, "best_model/ mixes copies")


def test_export_killed_at_every_write_leaves_only_whole_files(tmp_path: Path) -> None:
    before = write_fake_experiment(tmp_path / "before" / "iou", SPEC, TRIALS)
    _export(before)
    old = _snapshot(before)
    _add_new_winner(before)
    finished = tmp_path / "finished" / "iou"
    shutil.copytree(before, finished)
    _export(finished)
    new = _snapshot(finished, copied_from=before)
    assert old["best_config.yaml"] != new["best_config.yaml"]
    assert old["best_model/config.json"] != new["best_model/config.json"]

    written = _count_writes(before)
    # trials.csv, the plots, best_config.yaml, REPORT.md; best_model/ swapped in two renames
    assert {"trials.csv", "plot", "best_config.yaml", "REPORT.md"} <= set(written["write"])
    assert written["rename"].count("best_model") == 2, written
    for how, kinds in (("mid-write", written["write"]), ("rename", written["rename"])):
        for k in _kill_points(kinds):
            work = tmp_path / f"{how}-{k}" / "iou"
            shutil.copytree(before, work)
            _killed_export(work, _die_at(k, how))
            _assert_whole(work, before, old, new, f"{how} {k}")
        # the next export finishes the job and clears the leftovers (checked on the last kill)
        _export(work)
        assert _snapshot(work, copied_from=before) == new, how
        assert not [p.name for p in work.rglob(".*") if ".tmp-" in p.name], how
