"""Rebuild data/binance-klines/ (the archive's layout) from the upstream kline CSVs named in its README
(given as the source folder argument).

The 55 monthly 1h CSVs are zipped as the archive serves them (``BTCUSDT-1h-YYYY-MM.zip`` holding
``BTCUSDT-1h-YYYY-MM.csv``) with a ``.CHECKSUM`` in Binance's format (``<sha256>  <name>``, no trailing newline).
The zips are deterministic (fixed member time), so rebuilding gives the same bytes. The real 1m zips and their
real CHECKSUMs, and the CHECKSUM-less archive zips, are copied as they are.

Usage: python scripts/bundle_klines.py SOURCE_DIR [DEST_DIR]
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import zipfile
from pathlib import Path

SPOT = "data/spot/{period}/klines/{symbol}/{interval}"
FUTURES = {"BTCUSDT-1m-2022-09-05.zip": "data/futures/um", "BTCUSD_PERP-1m-2022-10-24.zip": "data/futures/cm"}
_NAME = re.compile(r"^(?P<symbol>[A-Z0-9_]+)-(?P<interval>\w+)-(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(zip|csv)$")


def folder(dest: Path, name: str, root: str = "data/spot") -> Path:
    """The archive folder of a kline file named as Binance names them (``SYMBOL-INTERVAL-DATE``) under ``dest``."""
    m = _NAME.match(name)
    assert m, name
    period = "daily" if len(m["date"]) == 10 else "monthly"
    return dest / root / period / "klines" / m["symbol"] / m["interval"]


def checksum(path: Path) -> None:
    """Write ``<path>.CHECKSUM`` in Binance's format: ``<sha256>  <name>``, no trailing newline."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}")


def main(source: Path, dest: Path) -> None:
    """Rebuild ``dest``'s archive layout from ``source`` (see the module docstring); same input, same bytes."""
    for csv in sorted((source / "spot-1h").glob("*.csv")):
        out = folder(dest, csv.name)
        out.mkdir(parents=True, exist_ok=True)
        target = out / (csv.stem + ".zip")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            info = zipfile.ZipInfo(csv.name, date_time=(2022, 3, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, csv.read_bytes())
        checksum(target)
    for z in sorted((source / "spot-1m-checksummed").glob("*.zip")):
        out = folder(dest, z.name)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(z, out / z.name)
        shutil.copyfile(z.with_name(z.name + ".CHECKSUM"), out / (z.name + ".CHECKSUM"))
    for z in sorted((source / "archive-zips").glob("*.zip")):
        out = folder(dest, z.name, FUTURES.get(z.name, "data/spot"))
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(z, out / z.name)  # no CHECKSUM upstream


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "data/binance-klines"))
