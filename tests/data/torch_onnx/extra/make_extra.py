"""Make the extra torch files of tests/test_torch_files.py (run once, with torch installed).

Each file comes with what torch itself reads back from it (``*_expected.npz``), so the
tests compare our readers with torch, not with themselves:

- dtypes.pt: one tensor per storage dtype, plus views that share a storage (a transpose, a
  slice with an offset, a strided slice), as torch.save keeps them;
- dtypes.safetensors: the same tensors made contiguous (safetensors holds no views);
- params.pt: ``dict(nn.LSTM.named_parameters())``, which pickles Parameters;
- protocol4.pt: dtypes.pt's tensors pickled with protocol 4 (STACK_GLOBAL, FRAME, MEMOIZE);
- legacy.pt: a state_dict in the pre-1.6 (non-zip) format, which rnncli refuses.

    python tests/data/torch_onnx/extra/make_extra.py
"""

import os
from collections import OrderedDict

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    g = torch.Generator().manual_seed(14)
    m = torch.randn(4, 6, generator=g)
    big = torch.randn(10, generator=g, dtype=torch.float64)
    sd = OrderedDict(
        f32=torch.randn(2, 3, generator=g),
        f64=big,
        f16=torch.randn(5, generator=g).half(),
        bf16=torch.randn(2, 2, generator=g).bfloat16(),
        i64=torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
        i32=torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32),
        i16=torch.tensor([-7, 300], dtype=torch.int16),
        i8=torch.tensor([-128, 127], dtype=torch.int8),
        u8=torch.tensor([0, 255], dtype=torch.uint8),
        bool=torch.tensor([True, False, True]),
        scalar=torch.tensor(2.5),
        empty=torch.zeros(0, 3),
        matrix=m,
        matrix_t=m.t(),                  # shares m's storage, strides (1, 6)
        slice_offset=big[2:5],           # shares big's storage, offset 2
        slice_strided=m[1:, ::2],        # offset 6, strides (6, 2)
    )
    torch.save(sd, os.path.join(HERE, "dtypes.pt"))
    torch.save(sd, os.path.join(HERE, "protocol4.pt"), pickle_protocol=4)
    save_file({k: v.contiguous().clone() for k, v in sd.items()},
              os.path.join(HERE, "dtypes.safetensors"))
    back = torch.load(os.path.join(HERE, "dtypes.pt"), weights_only=True)
    np.savez(os.path.join(HERE, "dtypes_expected.npz"),
             **{k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in back.items()})

    torch.manual_seed(14)
    params = dict(torch.nn.LSTM(3, 2, bidirectional=True).named_parameters())
    torch.save(params, os.path.join(HERE, "params.pt"))
    back = torch.load(os.path.join(HERE, "params.pt"), weights_only=True)
    np.savez(os.path.join(HERE, "params_expected.npz"),
             **{k: v.detach().numpy() for k, v in back.items()})
    torch.save({"w": torch.ones(2)}, os.path.join(HERE, "legacy.pt"),
               _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
