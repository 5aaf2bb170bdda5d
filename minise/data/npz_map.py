"""Reading an uncompressed .npz file as memory maps: the arrays' bytes stay in the file (and the
page cache, shared by every process that maps it) until they are read."""
import struct
import zipfile

import numpy
from numpy.lib import format as npy_format

_LOCAL_HEADER = 30          # a zip member's fixed-size local header; its name and extra field follow


def memmap_npz(path):
    """{name: read-only numpy.memmap} for every array of the .npz at ``path``, which must be
    written uncompressed (``numpy.savez``). Raises ValueError for a compressed member or one
    holding Python objects."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: member {info.filename} is compressed; only numpy.savez's stored "
                                 "members can be memory-mapped")
            f.seek(info.header_offset)
            header = f.read(_LOCAL_HEADER)
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            f.seek(info.header_offset + _LOCAL_HEADER + name_length + extra_length)
            version = npy_format.read_magic(f)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError(f"{path}: member {info.filename} holds Python objects")
            offset = f.tell()
            if offset + dtype.itemsize * int(numpy.prod(shape)) > info.header_offset + info.file_size + \
                    _LOCAL_HEADER + name_length + extra_length:
                raise ValueError(f"{path}: member {info.filename} is shorter than its header's shape {shape}")
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            arrays[name] = numpy.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                                        order="F" if fortran_order else "C")
    return arrays
