"""Reading a pandas DataFrame from a pickle without letting the pickle run code.

A pickle is a program: its ``GLOBAL`` opcodes import any name (``os.system``,
``builtins.eval``, ``subprocess.Popen``) and its ``REDUCE`` opcodes call them. The MAF
archive ships GAS only as a pickled DataFrame (``gas/ethylene_CO.pickle``), so
:func:`read_frame_pickle` unpickles it with an allow-list: a name is resolved only if it is
one of the few a DataFrame of numbers needs, anything else is refused with a
:class:`~harness.data.errors.DataError` naming the file and the name, before it is imported.

The allowed names, found by tracing what pandas 3.1 writes (``DataFrame.to_pickle`` and
``pickle.dumps`` at protocols 2–5, string column labels in Arrow or Python storage) and
what pandas 0.14–0.20 wrote (the MAF archive is from 2017): the frame, its block manager,
``Index`` / ``RangeIndex`` and their unpickling helper, NumPy arrays and dtypes, and pandas'
string arrays with the PyArrow helpers behind them. Names that older versions used
(``pandas.indexes.*``, ``pandas.core.index``, ``Int64Index``, ``numpy.core.*``) are mapped to
today's. Three helpers are narrowed further: ``_codecs.encode`` only to Latin-1 (how protocol
2 stores bytes), PyArrow arrays are fully validated when rebuilt, and ``BUILD`` (set the
state of an object) is refused on anything callable, so no class or function can be altered.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import pickle
from pathlib import Path
from typing import Any

from .errors import DataError

__all__ = ["ALLOWED", "RENAMED", "read_frame_pickle"]

# (module, name) as older pandas / NumPy wrote them → where they live now
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("pandas.core.internals", "BlockManager"): ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.frame", "DataFrame"): ("pandas", "DataFrame"),
    ("pandas.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.index", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.indexes.base", "Index"): ("pandas", "Index"),
    ("pandas.core.index", "Index"): ("pandas", "Index"),
    ("pandas.core.indexes.base", "Index"): ("pandas", "Index"),
    ("pandas.indexes.range", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas.core.indexes.range", "RangeIndex"): ("pandas", "RangeIndex"),
    **{(mod, cls): ("pandas", "Index")
       for mod in ("pandas.indexes.numeric", "pandas.core.indexes.numeric", "pandas.core.index")
       for cls in ("Int64Index", "UInt64Index", "Float64Index")},
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
}

ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("pandas", "DataFrame"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas", "Index"),
    ("pandas", "RangeIndex"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas", "StringDtype"),
    ("pandas.arrays", "StringArray"),
    ("pandas.arrays", "ArrowStringArray"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("pyarrow.lib", "_restore_array"),
    ("pyarrow.lib", "py_buffer"),
    ("pyarrow.lib", "type_for_alias"),
    ("builtins", "slice"),
    ("builtins", "bytearray"),
    ("builtins", "object"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),
})


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes (Latin-1 only)."""
    try:
        latin1 = codecs.lookup(encoding).name == "iso8859-1"
    except (LookupError, TypeError):
        latin1 = False
    if not latin1:
        raise _Refused(f"_codecs.encode with encoding {encoding!r} (only latin-1 is part of a "
                       "DataFrame pickle)")
    return codecs.encode(text, "latin-1", errors)


def _validated_arrow_array(data: Any) -> Any:
    """PyArrow's ``_restore_array``, then a full validation of the buffers it was given."""
    import pyarrow.lib

    array = pyarrow.lib._restore_array(data)
    array.validate(full=True)
    return array


_WRAPPED = {("_codecs", "encode"): _latin1_encode,
            ("pyarrow.lib", "_restore_array"): _validated_arrow_array}


def _unpickler_class() -> type:
    """pandas' compatibility unpickler (it rebuilds frames written by older pandas), with
    :data:`ALLOWED` as the only names it resolves."""
    from pandas.compat.pickle_compat import Unpickler

    class FrameUnpickler(Unpickler):
        dispatch = Unpickler.dispatch.copy()

        def find_class(self, module: str, name: str) -> Any:
            if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle maps them
                if (module, name) in _compat_pickle.NAME_MAPPING:
                    module, name = _compat_pickle.NAME_MAPPING[(module, name)]
                elif module in _compat_pickle.IMPORT_MAPPING:
                    module = _compat_pickle.IMPORT_MAPPING[module]
            key = RENAMED.get((module, name), (module, name))
            if key not in ALLOWED:
                raise _Refused(f"{module}.{name}")
            if key in _WRAPPED:
                return _WRAPPED[key]
            return super().find_class(*key)

        def load_build(self) -> None:
            if callable(self.stack[-2]):  # a class or function: state may not change it
                raise _Refused(f"setting the state of {self.stack[-2]!r}")
            super().load_build()

        dispatch[pickle.BUILD[0]] = load_build

        def persistent_load(self, pid: Any) -> Any:
            raise _Refused("a persistent id")

    return FrameUnpickler


class _Refused(pickle.UnpicklingError):
    """A name or operation outside a DataFrame pickle's allow-list."""


def read_frame_pickle(path: Path) -> Any:
    """The pandas DataFrame pickled in the file at ``path``, unpickled with the allow-list.

    Raises:
        DataError: the pickle asks for anything outside :data:`ALLOWED` (naming it; nothing
            of it has run), is not a DataFrame, or cannot be read.
    """
    import pandas as pd

    try:
        with open(path, "rb") as f:
            obj = _unpickler_class()(f, encoding="latin1").load()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err})") from None
    except _Refused as err:
        raise DataError(
            f"{path}: refused to unpickle: it asks for {err}, which is not part of a pandas "
            "DataFrame of numbers (a data file may not run code). Replace the file with the "
            "one from the published archive") from None
    except Exception as err:  # noqa: BLE001 - any other failure means a damaged file
        raise DataError(f"{path}: cannot be read as a pickled DataFrame ({type(err).__name__}: "
                        f"{str(err)[:200]}); the file looks corrupt or truncated: delete it "
                        "and download it again (load with download=True)") from None
    if not isinstance(obj, pd.DataFrame):
        raise DataError(f"{path}: holds a {type(obj).__name__}, expected a pandas DataFrame")
    return obj
