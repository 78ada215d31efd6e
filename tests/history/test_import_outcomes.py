"""What ``import_history`` imports and how it ends: only the spot market, a download cache keyed by source and
checksum, and an exit status that is non-zero whenever not everything asked for was imported."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from analytics.models import Candle
from history import archive
from history.run import ImportRequest, RequestError, run_import
from tests.conftest import ROOT, manage, subprocess_env
from tests.history.conftest import BUNDLE, M1, copy_into

pytestmark = pytest.mark.django_db(transaction=True)

TODAY = date(2026, 1, 1)
UM = BUNDLE / "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-09-05.zip"
CM = BUNDLE / "data/futures/cm/daily/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2022-10-24.zip"
DAY1 = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"


def _import(*args: str) -> None:
    call_command("import_history", *args, "--no-indicators")


# 1. --path reads the market from the archive layout and imports spot only.


def test_path_over_a_whole_mirror_imports_spot_only_and_lists_the_futures_it_skipped(capsys):
    # The bundle is what users mirror: spot and futures side by side. The range covers the two spot 1h days and
    # the USDⓈ-M and Coin-M futures days.
    _import("--path", str(BUNDLE), "--from", "2022-09-01", "--to", "2022-10-31")
    out = capsys.readouterr().out
    assert "files: 2 planned, 2 imported" in out
    assert f"  skipped {UM}: futures/um, not the spot market (only spot is imported)" in out
    assert f"  skipped {CM}: futures/cm, not the spot market (only spot is imported)" in out
    assert not Candle.objects.filter(symbol="BTCUSD_PERP").exists()
    day = datetime(2022, 9, 5, tzinfo=UTC)
    assert not Candle.objects.filter(symbol="BTCUSDT", open_time__gte=day, open_time__lt=day + timedelta(1)).exists()
    assert set(Candle.objects.filter(interval="1h").values_list("exchange", "symbol")) == {("binance", "BTCUSDT")}


def test_a_futures_file_alone_or_outside_the_layout_is_skipped_and_the_run_fails(tmp_path, capsys):
    with pytest.raises(CommandError) as exc:
        _import("--path", str(UM))
    assert str(exc.value) == "nothing was imported: no file matched the request (1 skipped, listed above)"
    loose = tmp_path / "downloads"
    loose.mkdir()
    shutil.copyfile(CM, loose / CM.name)  # no layout to tell the market, but the name is a futures contract's
    with pytest.raises(CommandError, match="nothing was imported"):
        _import("--path", str(loose))
    out = capsys.readouterr().out
    assert f"  skipped {UM}: futures/um, not the spot market (only spot is imported)" in out
    assert f"  skipped {loose / CM.name}: BTCUSD_PERP is a futures contract, not a spot symbol" in out
    assert not Candle.objects.exists()


# 2. The download cache is keyed by source and checksum.


def _other_day_as(root: Path, rel: str, source: Path) -> bytes:
    """Serve ``source``'s rows under the name ``rel`` in ``root``, with a CHECKSUM of its own (a valid file of
    another archive that happens to have the same name)."""
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(source) as z, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr(target.name.replace(".zip", ".csv"), z.read(z.namelist()[0]))
    data = target.read_bytes()
    target.with_name(target.name + ".CHECKSUM").write_text(f"{hashlib.sha256(data).hexdigest()}  {target.name}")
    return data


def test_a_file_cached_from_one_source_never_stands_in_for_another_sources(tmp_path, mirror):
    first = mirror(BUNDLE)
    other_root = tmp_path / "other"
    _other_day_as(other_root, DAY1, M1 / "BTCUSDT-1m-2020-01-02.zip")
    other = mirror(other_root)
    cache = tmp_path / "cache"

    def request(url: str) -> ImportRequest:
        return ImportRequest(
            symbol="BTCUSDT",
            interval="1m",
            start=date(2020, 1, 1),
            end=date(2020, 1, 1),
            base_url=url,
            cache_dir=cache,
            indicators=False,
        )

    assert run_import(request(first.url), today=TODAY).imported == 1
    again = run_import(request(other.url), today=TODAY)
    assert (again.imported, again.cached) == (1, 0)
    assert (f"/{DAY1}", None) in other.served  # downloaded from the other source, verified by its CHECKSUM
    jan2 = Candle.objects.filter(interval="1m", open_time__gte=datetime(2020, 1, 2, tzinfo=UTC)).count()
    assert jan2 == 1440  # the other source's rows, not the cached file's
    # A source that has no such file (or no internet): the cached copies are never "imported from the cache".
    (tmp_path / "empty").mkdir()
    gone = mirror(tmp_path / "empty")
    with pytest.raises(CommandError, match=r"^nothing was imported \(0 of 1 file\): 1 missing"):
        _import(
            "--base-url", gone.url, "--symbol", "BTCUSDT", "--interval", "1m", "--from", "2020-01-01",
            "--to", "2020-01-01", "--cache-dir", str(cache),
        )  # fmt: skip


def test_a_file_republished_with_another_checksum_is_downloaded_again(tmp_path, mirror):
    root = tmp_path / "mirror"
    copy_into(root, M1 / "BTCUSDT-1m-2020-01-01.zip")
    server = mirror(root)
    file = archive.ArchiveFile("BTCUSDT", "klines", "1m", date(2020, 1, 1), False)
    http = archive.make_pool(1)
    assert not archive.fetch(http, server.url, file, tmp_path / "cache").cached
    republished = _other_day_as(root, DAY1, M1 / "BTCUSDT-1m-2020-01-03.zip")
    got = archive.fetch(http, server.url, file, tmp_path / "cache")
    assert not got.cached
    assert got.path.read_bytes() == republished
    assert archive.fetch(http, server.url, file, tmp_path / "cache").cached  # same source, same checksum


def test_the_cache_keeps_each_source_in_a_folder_of_its_own(tmp_path, mirror):
    server = mirror(BUNDLE)
    files = archive.plan("BTCUSDT", "klines", "1m", date(2020, 1, 1), date(2020, 1, 1), TODAY)
    [(_, got)] = list(archive.fetch_all(server.url, files, tmp_path / "cache", 1, source="mirror:/somewhere"))
    assert isinstance(got, archive.Fetched)
    assert got.path == tmp_path / "cache" / archive.cache_folder("mirror:/somewhere") / DAY1
    assert archive.cache_folder("https://data.binance.vision") != archive.cache_folder("mirror:/somewhere")
    assert archive.cache_folder("https://data.binance.vision").startswith("https_data.binance.vision-")


# 3. Exit status and messages.


def test_every_file_missing_exits_non_zero(tmp_path):
    (tmp_path / "empty").mkdir()
    args = ["--symbol", "BTCUSDT", "--interval", "1m", "--from", "2020-01-01", "--to", "2020-01-02"]
    done = subprocess.run(
        manage("import_history", "--mirror", str(tmp_path / "empty"), *args, "--cache-dir", str(tmp_path / "c")),
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "CommandError: nothing was imported (0 of 2 files): 2 missing from the archive (404)" in done.stderr


def test_an_interval_the_database_does_not_store_is_refused(tmp_path, mirror):
    with pytest.raises(CommandError) as exc:
        _import("--mirror", str(BUNDLE), "--symbol", "BTCUSDT", "--interval", "2h", "--from", "2020-01-01")
    assert str(exc.value) == "--interval 2h: not an interval the database stores (1m, 5m, 15m, 1h, 4h, 1d)"
    with pytest.raises(RequestError, match="--interval 3m"):
        run_import(ImportRequest(paths=(M1,), interval="3m"), today=TODAY)


def test_a_run_where_every_file_was_refused_says_nothing_was_imported(tmp_path, mirror):
    root = tmp_path / "mirror"
    copy_into(root, M1 / "BTCUSDT-1m-2020-01-01.zip")
    (root / DAY1).write_bytes(b"PK\x03\x04 not the file its CHECKSUM names")
    server = mirror(root)
    with pytest.raises(CommandError) as exc:
        _import(
            "--base-url", server.url, "--symbol", "BTCUSDT", "--interval", "1m", "--from", "2020-01-01",
            "--to", "2020-01-01", "--cache-dir", str(tmp_path / "c"),
        )  # fmt: skip
    assert str(exc.value) == "nothing was imported (0 of 1 file): 1 refused by its checksum"
    assert "imported)" not in str(exc.value)


def test_some_files_missing_exits_non_zero_and_says_which_and_how_many(tmp_path, mirror, capsys):
    root = tmp_path / "mirror"
    copy_into(root, M1 / "BTCUSDT-1m-2020-01-01.zip", M1 / "BTCUSDT-1m-2020-01-03.zip")
    server = mirror(root)
    args = ["--base-url", server.url, "--symbol", "BTCUSDT", "--interval", "1m", "--from", "2020-01-01"]
    with pytest.raises(CommandError) as exc:
        _import(*args, "--to", "2020-01-03", "--cache-dir", str(tmp_path / "c"))
    assert str(exc.value) == "not everything was imported (2 of 3 files): 1 missing from the archive (404)"
    assert "  missing BTCUSDT-1m-2020-01-02.zip: not in the archive" in capsys.readouterr().out
    # A re-run of what is all there and already stored is a success: nothing new to store.
    _import(*args, "--to", "2020-01-01", "--cache-dir", str(tmp_path / "c"))
    assert "nothing new: all 1440 rows were already stored" in capsys.readouterr().out


def test_rows_rejected_make_the_run_incomplete(tmp_path):
    rows = "1577836800000,1,1,1,1,1,1577836859999,1,1,0,0,0\n1577836860000,NaN,1,1,1,1,1577836919999,1,1,0,0,0\n"
    path = tmp_path / "BTCUSDT-1m-2020-01-01.csv"
    path.write_text(rows)
    with pytest.raises(CommandError) as exc:
        _import("--path", str(path))
    assert str(exc.value) == "not everything was imported (1 of 1 file): 1 row rejected"


def test_the_gap_list_says_how_many_gaps_it_leaves_out(tmp_path):
    hour = 3_600_000
    start = 1_609_459_200_000  # 2021-01-01
    # 12 single bars three hours apart: 11 gaps of 2 bars each.
    bars = [start + i * 3 * hour for i in range(12)]
    lines = [f"{t},1,1,1,1,1,{t + hour - 1},1,1,0,0,0" for t in bars]
    (tmp_path / "ETHUSDT-1h-2021-01-01.csv").write_text("\n".join(lines) + "\n")
    summary = run_import(ImportRequest(paths=(tmp_path,), indicators=False), today=TODAY)
    lines_out = summary.lines()
    assert "gaps: 11 (22 missing), reported, not filled" in lines_out
    assert sum(line.startswith("  gap ") for line in lines_out) == 10
    assert "  ... and 1 more gap, not listed (the first 10 are)" in lines_out


def test_a_refused_download_is_named_by_its_own_name_not_the_part_file(tmp_path, mirror):
    root = tmp_path / "mirror"
    copy_into(root, M1 / "BTCUSDT-1m-2020-01-01.zip")
    served = root / DAY1
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0x01
    served.write_bytes(bytes(data))
    server = mirror(root)
    file = archive.ArchiveFile("BTCUSDT", "klines", "1m", date(2020, 1, 1), False)
    with pytest.raises(archive.ChecksumMismatchError) as exc:
        archive.fetch(archive.make_pool(1), server.url, file, tmp_path / "cache")
    assert str(exc.value).startswith("BTCUSDT-1m-2020-01-01.zip: checksum mismatch (CHECKSUM ")
    assert ".part" not in str(exc.value)
