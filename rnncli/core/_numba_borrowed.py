"""Arrays the compiled loops use without counting references to them (numba; imported only
with the kernels).

numba counts the references to an array's memory: every view it makes (``a[b, :P]``, a
row of x, the range an activation covers) adds one, and drops it when done, with an
atomic increment and decrement of a shared counter. A row of an LSTM step made about
twenty such views, and the atomic operations, each a barrier to the CPU's reordering,
took more of the step than its arithmetic: a (4, 1000, 32, 16) LSTM scan, 0.60 -> 0.38
us a step (one thread) once the kernels took their arrays ``borrowed``.

A borrowed array is the same array with no owner: views of it count nothing. It must not
outlive what owns its memory: the caller's arguments (alive for the whole call), or an
array the kernel made and hands to :func:`alive` after its last borrowed use.
"""

import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _without_owner(context, builder, array_type, value):
    array = context.make_array(array_type)(context, builder, value)
    array.meminfo = cgutils.get_null_value(array.meminfo.type)
    array.parent = cgutils.get_null_value(array.parent.type)
    return array._getvalue()


@intrinsic
def borrowed(typingctx, arrays):
    """An array, or a tuple of arrays, the same but owned by nothing (see the module's
    docstring)."""
    if isinstance(arrays, types.Array):
        def codegen(context, builder, sig, args):
            return _without_owner(context, builder, sig.args[0], args[0])

        return arrays(arrays), codegen
    if isinstance(arrays, types.BaseTuple) and all(isinstance(t, types.Array) for t in arrays):
        def codegen(context, builder, sig, args):
            out = args[0]
            for i, array_type in enumerate(sig.args[0]):
                value = builder.extract_value(args[0], i)
                out = builder.insert_value(
                    out, _without_owner(context, builder, array_type, value), i)
            return out

        return arrays(arrays), codegen
    return None  # a typing error: arrays only


@numba.njit(nogil=True)
def alive(array):
    """Nothing: a use of ``array`` that keeps it (and the memory borrowed from it) alive
    until here, numba dropping an array after its last use."""
    return None
