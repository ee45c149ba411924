"""A pipeline's output folder: one run at a time, and only its own files.

- `.selfalign.lock` (flock) is taken before any other file is touched: a second run on the same folder is
  refused with one line, and deletes nothing.
- `selfalign-run.json`, the manifest, lists the names the run made (a name also covers the files `storage`
  adds to it: `NAME.partial`, `NAME.lock`, `NAME.corrupt.jsonl`, ...) and, per stage, the key it was started under and whether it finished. The key is
  written when a stage STARTS, so after a kill the next run can tell whether the half-done file was made under
  the same key (resume) or another (start afresh).
- A folder that holds files the manifest does not list is not the run's: refused, unless `allow_foreign`, and
  even then those files are never written, deleted or read (a stage whose file name is taken is an error;
  README.md, report.html and recipe.toml are left as they are).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from selfalign.runner import RunError

MANIFEST = "selfalign-run.json"
LOCK = ".selfalign.lock"
SUFFIXES = ("", ".partial", ".lock", ".corrupt.jsonl", ".partial.tmp", ".tmp")  # what storage adds to a name


def stage_files(label: str) -> list[str]:
    return [f"{label}.jsonl", f"{label}-dropped.jsonl", f"{label}.json"]


class RunFolder:
    """The folder of one pipeline run; `open()` locks it and checks it is the run's."""

    def __init__(self, path: str | os.PathLike, allow_foreign: bool = False):
        if not str(path).strip():
            raise ValueError("the output folder is empty: name a folder (run.out)")
        self.path = Path(path)
        self.allow_foreign = allow_foreign
        self.manifest: dict[str, Any] = self._read()
        self._lock: IO[bytes] | None = None

    # ---- reading (the dry run does only this) --------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("made_by") != "selfalign":
            return {"made_by": "selfalign", "version": 1, "files": [], "stages": {}, "own_folder": None}
        return data

    def owns(self, name: str) -> bool:
        """Whether `name` (relative to the folder) is one the run made: listed, or a listed name's side file,
        lock or set-aside lines (`storage`)."""
        top = name.split("/", 1)[0]
        return top in (LOCK, MANIFEST, MANIFEST + ".tmp") or any(
            top == f + s for f in self.manifest["files"] for s in SUFFIXES)

    def foreign(self) -> list[str]:
        """The entries of the folder that are not the run's."""
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise RunError(f"{self.path} is a file, not a folder") from None
        return [n for n in names if not self.owns(n)]

    def entry(self, label: str) -> dict[str, Any] | None:
        return self.manifest["stages"].get(label)

    # ---- the run -------------------------------------------------------------------------------------
    def open(self, labels: list[str]) -> RunFolder:
        """Take the folder's lock and check the folder is the run's, before anything is written: a folder with
        a lock already is locked first (so a run in progress is told as such), one without is checked first (so
        a refused folder gets no lock file). Then no stage's file name may be taken by a file not the run's."""
        lock = self.path / LOCK
        if lock.is_file():
            self._take(open(lock, "r+b"))  # noqa: SIM115 - held until close(); r+: an existing file only
        try:
            self.manifest = self._read()
            self._refuse_foreign()
            if self._lock is None:
                self.path.mkdir(parents=True, exist_ok=True)
                self._take(open(lock, "a+b"))  # noqa: SIM115 - held until close()
            self.manifest = self._read()  # as the run before us left it
            foreign = self._refuse_foreign()
            if self.manifest["own_folder"] is None:  # the first run here: the folder is its own if it was empty
                self.manifest["own_folder"] = not foreign
            for label in labels:
                for name in stage_files(label):
                    if (self.path / name).exists() and not self.owns(name):
                        raise RunError(f"{self.path / name} is not this run's file and is left alone: give the "
                                       "stage another name, or choose another folder")
            self.save()
        except BaseException:
            self.close()
            raise
        return self

    def _take(self, fp: IO[bytes]) -> None:
        """Hold the lock on `fp`, or raise RunError naming the run that holds it."""
        from selfalign.io.storage import Busy, hold, sign

        try:
            hold(fp, self.path)
        except Busy as e:
            raise RunError(str(e)) from None
        sign(fp)
        self._lock = fp

    def _refuse_foreign(self) -> list[str]:
        foreign = self.foreign()
        if foreign and not self.allow_foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise RunError(f"{self.path} holds files that are not this run's ({shown}): choose a new or empty "
                           "folder, or allow_foreign to write beside them (they are left alone)")
        return foreign

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # the lock file stays: removing it would race a run waiting for it
            self._lock = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / MANIFEST)

    def claim(self, *names: str) -> None:
        """Record names as the run's before they are written (so a kill leaves them listed)."""
        new = [n for n in names if n not in self.manifest["files"]]
        if new:
            self.manifest["files"].extend(new)
            self.save()

    def may_write(self, name: str) -> bool:
        """Whether the run may write `name`: absent or its own (then it is claimed); a foreign file is not."""
        if (self.path / name).exists() and not self.owns(name):
            return False
        self.claim(name)
        return True

    def start(self, label: str, key: str, parts: dict[str, Any], fresh: bool) -> None:
        """A stage starts under `key`: written before its files are touched. `fresh`: its old files go first."""
        self.claim(*stage_files(label))
        if fresh:
            for name in stage_files(label):
                for suffix in SUFFIXES:
                    if not suffix.endswith(".lock"):
                        (self.path / (name + suffix)).unlink(missing_ok=True)
        self.manifest["stages"][label] = {"key": key, "state": "started", "parts": parts}
        self.save()

    def finish(self, label: str) -> None:
        self.manifest["stages"][label]["state"] = "done"
        self.save()


def saved_report(path: Path) -> Any:
    """A finished stage's Report, read back from its NAME.json."""
    from selfalign.report.counts import Report
    from selfalign.report.tokens import Tokens

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    rep = Report(data.get("stage", path.stem))
    rep.read, rep.kept = data.get("read", 0), data.get("kept", 0)
    rep.dropped.update(data.get("dropped", {}))
    rep.principles.update(data.get("principles_cited", {}))
    rep.extra.update({k: v for k, v in data.items() if k in ("options", "key", "key_parts")})
    rep.tokens.add(Tokens.from_dict(data.get("tokens")))
    return rep
