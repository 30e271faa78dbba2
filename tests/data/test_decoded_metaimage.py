"""The decode-once cache of a MetaImage: its pixels are in the .raw file its header names, so a changed
.raw (same header) is a new cache entry, not the old image."""
from __future__ import annotations

import os

import numpy as np

from medical_samples import write_metaimage
from vlsm.data.decoded import DecodedCache
from vlsm.data.medical import metaimage_data_file


def test_a_changed_raw_file_is_a_new_cache_entry(tmp_path):
    header = write_metaimage(tmp_path / "case.mhd", np.arange(20 * 24, dtype=np.uint16).reshape(20, 24))
    raw = metaimage_data_file(header)
    assert raw is not None and raw.name == "case.raw" and raw.exists()
    cache = DecodedCache(tmp_path / "cache", image_size=16)
    before = cache.key(header)
    assert before == cache.key(header)  # stable while nothing changes
    stat = header.stat()
    raw.write_bytes(bytes(reversed(raw.read_bytes())))  # other pixels, same size
    os.utime(header, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the header untouched
    assert cache.key(header) != before
    raw.unlink()
    assert cache.key(header) is None  # a missing data file: no entry (the reader names the file)


def test_data_file_of_other_files(tmp_path):
    local = write_metaimage(tmp_path / "one.mha", np.zeros((4, 4), dtype=np.uint8))
    assert metaimage_data_file(local) is None  # .mha: pixels inside
    inline = tmp_path / "inline.mhd"
    inline.write_text("ObjectType = Image\nNDims = 2\nDimSize = 1 1\nElementType = MET_UCHAR\n"
                      "ElementDataFile = LOCAL\n")
    assert metaimage_data_file(inline) is None
    assert metaimage_data_file(tmp_path / "x.png") is None
