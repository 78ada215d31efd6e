"""What ``import_history`` downloads: a cache keyed by source and checksum (issue 28)."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from analytics.models import Candle
from history import archive
from history.run import ImportRequest, run_import
from tests.history.conftest import BUNDLE, M1, copy_into

pytestmark = pytest.mark.django_db(transaction=True)

TODAY = date(2026, 1, 1)
DAY1 = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"


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
    gone_run = run_import(request(gone.url), today=TODAY)
    assert (gone_run.imported, gone_run.cached, len(gone_run.missing)) == (0, 0, 1)


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
