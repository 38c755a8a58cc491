"""Compressing a collection: many inputs, one ``.hpz`` each, a resumable ``manifest.jsonl``.

:func:`compress_many` expands files, folders and glob patterns into a sorted list of inputs and
runs :func:`~hyperproj.codec.compress` on each, writing ``OUT/<stem>.hpz`` atomically (a
temporary file renamed into place) and one JSON record per input into ``OUT/manifest.jsonl``
(path, output, bytes, bpp, PSNR, SSIM, seconds, steps, status, error). A bad input — unreadable,
of a kind the codec has no signal for, too small for its budget — gets a record with the error and
the run goes on. A rerun skips every input whose file exists, passes its CRC and was made with the
same settings, and redoes the rest: a run stopped part way (Ctrl-C, a killed machine) loses only
the inputs it had not finished.

Under ``torchrun`` (``torchrun --nproc-per-node=N -m hyperproj compress ...``) the inputs are
shared out by rank (rank ``r`` takes the ``r``-th of ``N`` contiguous shares of the inputs still
to do, the same split on every rank: no scheduler of our own), each rank writes its own files and appends its records to
``manifest.rank<r>.jsonl`` as it goes, and at the end rank 0 merges them into ``manifest.jsonl``.
A rank that dies leaves its finished files and records behind; a rerun completes the rest.

Examples:
    >>> compress_many([], "out")
    Traceback (most recent call last):
    ...
    hyperproj._errors.HyperprojError: hyperproj.compress_many: no image or .wav file in []
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _distributed
from .._errors import HyperprojError
from ..inr.signals import ImageSignal, Signal
from .format import read_container
from .inputs import AUDIO_SUFFIXES, expand_inputs, output_paths, read_signal

__all__ = ["CollectionResult", "compress_many", "expand_inputs", "read_signal", "MANIFEST"]

MANIFEST = "manifest.jsonl"
"""The manifest's file name inside the output folder."""
_WHERE = "hyperproj.compress_many"


def _error(message: str) -> HyperprojError:
    return HyperprojError(f"{_WHERE}: {message}")


def _valid_file(path: Path) -> bool:
    """Whether ``path`` exists and its container reads (magic, version, CRC)."""
    try:
        read_container(path.read_bytes())
        return True
    except (HyperprojError, OSError):
        return False


def _read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Every record of the manifest and of leftover per-rank parts, the latest per input."""
    records: dict[str, dict[str, Any]] = {}
    for part in [out_dir / MANIFEST, *sorted(out_dir.glob("manifest.rank*.jsonl"))]:
        if not part.is_file():
            continue
        for line in part.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a killed process
                continue
            if isinstance(rec, dict) and isinstance(rec.get("input"), str):
                records[rec["input"]] = rec
    return records


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _settings(bpp: float, resize: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """What decides a file: compared on resume (a rerun with other settings redoes the input)."""
    keep = {k: v for k, v in options.items() if k not in ("progress",)}
    return json.loads(json.dumps({"bpp": bpp, "resize": resize, **keep}, sort_keys=True, default=repr))


@dataclass
class CollectionResult:
    """What :func:`compress_many` returns: one record per input (in input order) and the manifest.

    Examples:
        >>> r = CollectionResult([{"input": "a.png", "status": "ok", "bpp": 0.3, "psnr": 30.0,
        ...                        "ssim": 0.9, "seconds": 2.0}], Path("m.jsonl"))
        >>> r.failed, r.summary()["psnr"]
        (0, 30.0)
    """

    records: list[dict[str, Any]]
    manifest: Path
    baselines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """How many inputs failed."""
        return sum(r.get("status") == "failed" for r in self.records)

    def summary(self) -> dict[str, Any]:
        """Counts and the means of bpp, PSNR, SSIM and seconds over the encoded inputs."""
        ok = [r for r in self.records if r.get("status") == "ok"]
        out: dict[str, Any] = {"inputs": len(self.records), "ok": len(ok), "failed": self.failed,
                               "resumed": sum(bool(r.get("resumed")) for r in ok)}
        for key in ("bpp", "psnr", "ssim", "seconds"):
            vals = [r[key] for r in ok if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            out[key] = sum(vals) / len(vals) if vals else None
        return out

    def table(self) -> str:
        """The summary as a small text table, with JPEG/WebP rows when baselines were run."""
        s = self.summary()

        def fmt(v: Any, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        lines = [f"{s['inputs']} inputs: {s['ok']} encoded ({s['resumed']} from an earlier run), {s['failed']} failed",
                 f"{'method':<10} {'bpp':>7} {'PSNR':>7} {'SSIM':>7} {'s/input':>8}",
                 f"{'hyperproj':<10} {fmt(s['bpp'], '.4f'):>7} {fmt(s['psnr'], '.2f'):>7} "
                 f"{fmt(s['ssim'], '.4f'):>7} {fmt(s['seconds'], '.1f'):>8}"]
        for name, rows in self.baselines.items():
            rows = [r for r in rows if r]
            if not rows:
                lines.append(f"{name:<10} (no setting fits the rates reached)")
            else:
                mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("bpp", "psnr", "ssim")}
                lines.append(f"{name:<10} {mean['bpp']:>7.4f} {mean['psnr']:>7.2f} {mean['ssim']:>7.4f} {'':>8}"
                             + (f"  ({len(rows)} of {s['ok']} fit the rate)" if len(rows) < s["ok"] else ""))
        return "\n".join(lines)


def _record_from_file(path: Path, out: Path, resize: int | None) -> dict[str, Any]:
    """A record for a valid file the manifest does not know (its metrics measured again)."""
    from .pipeline import decode

    data = out.read_bytes()
    model = decode(data)
    rec: dict[str, Any] = {"input": str(path), "output": str(out), "status": "ok", "bytes": len(data)}
    signal = read_signal(path, resize)
    count = getattr(signal, "num_pixels", signal.num_samples)
    rec["bpp"] = 8 * len(data) / count
    rec.update(signal.evaluate(model))
    return rec


def _compress_one(path: Path, out: Path, bpp: float, resize: int | None, settings: dict[str, Any],
                  baselines: Sequence[str], options: dict[str, Any]) -> dict[str, Any]:
    """Compress one input into ``out``; the record says what happened (never raises for bad input)."""
    from .pipeline import compress

    tic = time.perf_counter()
    rec: dict[str, Any] = {"input": str(path), "output": str(out), "settings": settings,
                           "rank": _distributed.rank()}
    try:
        signal = read_signal(path, resize)
        _ok_record(rec, out, compress(signal, bpp, **options), signal, baselines)
    except Exception as err:  # noqa: BLE001 - one bad input must not stop the collection
        message = str(err) if isinstance(err, HyperprojError) else f"{type(err).__name__}: {err}"
        rec.update(status="failed", error=message, seconds=time.perf_counter() - tic)
    return rec


def _ok_record(rec: dict[str, Any], out: Path, res: Any, signal: Signal, baselines: Sequence[str]) -> None:
    """Write ``res``'s file to ``out`` (atomically) and fill ``rec`` from its report."""
    from .baselines import classic_at_rate

    _write_atomic(out, res.data)
    rep = res.report
    rec.update(status="ok", family=rep.get("family"), bytes=len(res.data), bpp=rep.get("bpp"), psnr=rep.get("psnr"),
               ssim=rep.get("ssim"), seconds=rep.get("seconds"), steps=rep.get("steps"))
    if isinstance(signal, ImageSignal) and baselines:
        rec["baselines"] = {fmt: classic_at_rate(signal, fmt, rep["bpp"]) for fmt in baselines}


def _units(todo: list[tuple[Path, Path]], batch: int) -> list[list[tuple[Path, Path]]]:
    """The units of work: single inputs, or with ``batch > 1`` runs of up to ``batch`` consecutive
    images of one size and mode (read from the file's header), which train together."""
    if batch <= 1:
        return [[item] for item in todo]
    from PIL import Image

    def key(path: Path) -> Any:
        if path.suffix.lower() in AUDIO_SUFFIXES:
            return None
        try:
            with Image.open(path) as img:
                return img.size, img.mode
        except Exception:  # noqa: BLE001 - unreadable: a unit of its own, whose record says why
            return None

    units: list[list[tuple[Path, Path]]] = []
    last = object()
    for item in todo:
        k = key(item[0])
        if k is not None and k == last and len(units[-1]) < batch:
            units[-1].append(item)
        else:
            units.append([item])
        last = k
    return units


def _compress_unit(unit: list[tuple[Path, Path]], bpp: float, resize: int | None, settings: dict[str, Any],
                   baselines: Sequence[str], options: dict[str, Any]) -> list[dict[str, Any]]:
    """One input (:func:`_compress_one`), or several trained together
    (:func:`~hyperproj.codec.pipeline.compress_together`); a batch that fails goes one at a time."""
    if len(unit) == 1:
        return [_compress_one(*unit[0], bpp, resize, settings, baselines, options)]
    from .pipeline import compress_together

    try:
        signals = [read_signal(path, resize) for path, _ in unit]
        results = compress_together(signals, bpp, **options)
        records = []
        for (path, out), signal, res in zip(unit, signals, results):
            rec = {"input": str(path), "output": str(out), "settings": settings, "rank": _distributed.rank(),
                   "batch": len(unit)}
            _ok_record(rec, out, res, signal, baselines)
            records.append(rec)
        return records
    except Exception:  # noqa: BLE001 - each input again on its own, with its own record
        return [_compress_one(path, out, bpp, resize, settings, baselines, options) for path, out in unit]


def compress_many(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    bpp: float = 0.3,
    *,
    resize: int | None = None,
    resume: bool = True,
    batch: int = 1,
    baselines: Sequence[str] = (),
    progress: bool = True,
    **options: Any,
) -> CollectionResult:
    """Compress every input into ``out_dir/<stem>.hpz`` and record each in ``out_dir/manifest.jsonl``.

    Args:
        inputs: files, folders (their images and ``.wav`` files) and glob patterns.
        out_dir: the output folder (created if missing).
        bpp: the budget of every file (see :func:`~hyperproj.codec.compress`).
        resize: make every image's longer side this many pixels first.
        resume: skip inputs whose file exists, reads (CRC) and was made with the same settings.
        batch: train up to this many consecutive same-sized images together
            (:func:`~hyperproj.codec.pipeline.compress_together`; fixed ``steps`` only). Default 1:
            measured no faster on a CPU (docs/collections.md).
        baselines: Pillow formats (``"JPEG"``, ``"WEBP"``, ``"JPEG2000"``) to encode each image
            with at the rate its file reached, for the summary table.
        progress: a progress bar over the inputs (rank 0 only).
        **options: passed to :func:`~hyperproj.codec.compress` (``steps``, ``time_budget``,
            ``seed``, ``family``, ...).

    Under torchrun every rank runs this same call; see the module docstring. Bad inputs never
    raise: their records hold the error (``status == "failed"``) and
    :attr:`CollectionResult.failed` counts them. Bad *arguments* (no input matches, two inputs
    writing one file) raise :class:`~hyperproj.HyperprojError` before any work.

    Returns:
        :class:`CollectionResult`: the records of these inputs in input order (on every rank).

    Examples:
        >>> import tempfile, skimage.data
        >>> from PIL import Image
        >>> d = tempfile.mkdtemp()
        >>> Image.fromarray(skimage.data.astronaut()).resize((32, 32)).save(f"{d}/a.png")
        >>> res = compress_many([f"{d}/a.png"], f"{d}/out", bpp=4.0, steps=30, progress=False)
        >>> res.records[0]["status"], res.failed
        ('ok', 0)
    """
    _distributed.init_from_env()
    paths = expand_inputs(inputs)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise _error(f"out_dir {str(out_dir)!r} exists and is not a folder")
    unknown = [b for b in baselines if b not in ("JPEG", "WEBP", "JPEG2000")]
    if unknown:
        raise _error(f"baselines must be among ('JPEG', 'WEBP', 'JPEG2000'), got {unknown!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise _error(f"batch must be an int >= 1, got {batch!r}")
    outs = output_paths(paths, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = _settings(bpp, resize, {**options, **({"batch": batch} if batch > 1 else {})})
    options = {**options, "progress": False}
    previous = _read_manifest(out_dir) if resume else {}
    rank, world = _distributed.rank(), _distributed.world_size()

    todo = []
    for path, out in zip(paths, outs):
        rec = previous.get(str(path))
        same = rec is None or (rec.get("status") == "ok" and rec.get("settings") == settings)
        if not (resume and same and _valid_file(out)):
            todo.append((path, out))
    units = _units(todo, batch)
    start, stop = _distributed.shard_range(len(units), rank, world)
    mine = units[start:stop]  # the same split on every rank: no coordination needed
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, mine)), desc=f"compress (rank 0 of {world})" if world > 1 else "compress",
                   unit="input")
    with open(out_dir / f"manifest.rank{rank}.jsonl", "a") as part:
        for unit in mine:
            for rec in _compress_unit(unit, bpp, resize, settings, baselines, options):
                part.write(json.dumps(rec) + "\n")
                part.flush()
                if bar is not None:
                    bar.set_postfix_str(f"{Path(rec['input']).name}: {rec['status']}")
                    bar.update(1)
    if bar is not None:
        bar.close()
    _distributed.barrier()
    if rank == 0:
        _merge(out_dir, paths, outs, resize, settings)
    _distributed.barrier()
    merged = _read_manifest(out_dir)
    redone = {str(p) for p, _ in todo}
    records = []
    for path in paths:
        rec = dict(merged.get(str(path)) or {"input": str(path), "status": "failed", "error": "no record"})
        if str(path) not in redone:
            rec["resumed"] = True
        records.append(rec)
    table: dict[str, list[dict[str, Any]]] = {fmt: [] for fmt in baselines}
    for rec in records:
        for fmt in baselines:
            if rec.get("status") == "ok":
                table[fmt].append((rec.get("baselines") or {}).get(fmt))
    return CollectionResult(records, out_dir / MANIFEST, table)


def _merge(out_dir: Path, paths: Sequence[Path], outs: Sequence[Path], resize: int | None,
           settings: dict[str, Any]) -> None:
    """Rank 0: the manifest and every rank's part, one record per input, written atomically; the
    parts are removed. A valid file that no record describes is measured again."""
    merged = _read_manifest(out_dir)
    for path, out in zip(paths, outs):
        if str(path) not in merged and _valid_file(out):
            try:
                merged[str(path)] = {**_record_from_file(path, out, resize), "settings": settings}
            except HyperprojError as err:
                merged[str(path)] = {"input": str(path), "output": str(out), "status": "failed", "error": str(err)}
    order = [str(p) for p in paths]
    rest = [k for k in merged if k not in set(order)]
    lines = [json.dumps(merged[k]) for k in order + rest if k in merged]
    _write_atomic(out_dir / MANIFEST, ("\n".join(lines) + "\n").encode() if lines else b"")
    for part in out_dir.glob("manifest.rank*.jsonl"):
        part.unlink()
