"""Two RocksDB workers given one --data-dir: the second is refused, instead of deleting the
first's table files under it (it would find them not marked clean)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.table_files import DataFolderInUse, hold_data_folder


def test_a_data_folder_is_held_by_one_worker_at_a_time(tmp_path: Path):
    first = hold_data_folder(tmp_path / "data")
    with pytest.raises(DataFolderInUse, match="--data-dir of its own"):
        hold_data_folder(tmp_path / "data")
    first.close()  # the first worker ends: the folder is free again
    hold_data_folder(tmp_path / "data").close()


def test_the_lock_holds_across_processes_and_goes_with_the_process(tmp_path: Path):
    folder = tmp_path / "data"
    held = subprocess.Popen([sys.executable, "-c",
                             "import sys, time; from pathlib import Path; "
                             "from streams.table_files import hold_data_folder; "
                             f"h = hold_data_folder(Path({str(folder)!r})); "
                             "print('held', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "held"
        with pytest.raises(DataFolderInUse):
            hold_data_folder(folder)
    finally:
        held.kill()  # as SIGKILL ends a worker: no cleanup runs
        held.wait()
    hold_data_folder(folder).close()
