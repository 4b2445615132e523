"""Write-then-rename of an output file: readers never see a partial file under the final name."""
from __future__ import annotations

import os
from pathlib import Path

from effdet_video.errors import UserError


def check_output_path(output: Path, inputs: tuple[Path, ...], overwrite: bool) -> None:
    """Refuse an output that would clobber an input, or an existing file without `overwrite`."""
    for source in inputs:
        same = output.resolve() == source.resolve() or (
            output.exists() and source.exists() and os.path.samefile(source, output))
        if same:
            raise UserError(f"output {output} is the input file; choose another output name")
    if output.exists() and not overwrite:
        raise UserError(f"output {output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise UserError(f"output folder {output.parent} does not exist")


class PartialFile:
    """A temporary path beside `final` (same folder, so the rename is atomic; same extension, so
    formats are still chosen from it), published with `commit` or removed with `discard`."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temporary = final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")

    def commit(self) -> None:
        os.replace(self.temporary, self.final)

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)
