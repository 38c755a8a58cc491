"""``hyperproj crop``: a grouped Local-Global file cut to a box, no retraining (:func:`hyperproj.codec.crop`)."""

from __future__ import annotations

from pathlib import Path

from ._common import CliError, check_output_folder

NAME = "crop"


def add(sub) -> None:
    k = sub.add_parser(NAME, help="crop a .hpz file of a Local-Global INR without retraining")
    k.add_argument("input", help=".hpz file of a LocalGlobal encoded with groups='partition'")
    k.add_argument("--box", nargs="+", type=float, required=True, metavar="X",
                   help="lower corner then upper corner in model coordinates: x0 y0 x1 y1 for an image "
                        "(coordinate 0 is the row axis, as in ImageSignal.coords), t0 t1 for audio")
    k.add_argument("-o", "--output", help="output .hpz (default: INPUT with suffix _crop.hpz)")


def run(a) -> int:
    from .. import codec

    src = Path(a.input)
    if not src.is_file():
        raise CliError(f"no such file {str(src)!r}")
    if len(a.box) < 2 or len(a.box) % 2:
        raise CliError(f"--box needs the lower corner then the upper corner (an even number of values), got {len(a.box)} values")
    d = len(a.box) // 2
    out = Path(a.output) if a.output else src.with_name(src.stem + "_crop.hpz")
    check_output_folder(out)
    data = src.read_bytes()
    cropped = codec.crop(data, (a.box[:d], a.box[d:]))
    out.write_bytes(cropped)
    rep = codec.info(cropped)
    print(f"{out}: {len(cropped)} bytes ({100 * len(cropped) / len(data):.1f}% of {len(data)}), "
          f"{rep['header']['architecture']['config'].get('partitions')} partitions kept, signal {rep['header']['signal']}")
    return 0
