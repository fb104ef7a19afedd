"""The Optuna study of a search: a journal file in the experiment folder, on any storage.

Optuna's `JournalFileBackend` appends to a local file: on an object store a local copy, uploaded
whole after every write (a few KB per trial), which pickles as its remote file alone, so the
searcher state Tune saves (and may restore on another machine) never holds a local path.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search.store.layout import STUDY_FILE
from search.store.storage import ExperimentPath, StorageUnavailable, UriPath


class SyncedJournalFileBackend(JournalFileBackend):
    """A journal file kept locally and uploaded to `remote` after every append."""

    def __init__(self, remote: UriPath) -> None:
        self.remote = remote
        work = Path(tempfile.mkdtemp(prefix="detr-study-"))
        atexit.register(shutil.rmtree, work, True)
        local = work / STUDY_FILE
        local.write_bytes(remote.read_bytes() if remote.is_file() else b"")
        super().__init__(str(local))

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        super().append_logs(logs)
        try:
            self.remote.write_bytes(Path(self._file_path).read_bytes())
        except StorageUnavailable as exc:  # the local file keeps every record: the next
            print(f"warning: {exc}; the study is kept locally until then",  # append uploads
                  file=sys.stderr, flush=True)  # it whole; raising here would end the search

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its remote file (filesystem + path): unpickling downloads it again."""
        return (type(self), (self.remote,))


def journal_storage(experiment: ExperimentPath) -> JournalStorage:
    """Optuna storage of the experiment's journal (picklable, no database server)."""
    if isinstance(experiment, UriPath) and not experiment.is_local_fs:
        return JournalStorage(SyncedJournalFileBackend(experiment / STUDY_FILE))
    folder = Path(experiment.path) if isinstance(experiment, UriPath) else Path(experiment)
    folder.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(folder / STUDY_FILE)))
