"""Layer kernels shared by the models and by tiled execution (`runtime/tiling.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# For each output phase (0: even row, 1: odd row), which of the 3x3 kernel's rows fall on
# low-resolution rows (i-1, i) (phase 0) or (i, i+1) (phase 1) after nearest upsampling.
_PHASE_TAPS = (((0,), (1, 2)), ((0, 1), (2,)))


def phase_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The four output phases' 2x2 kernels of a 3x3 conv after nearest x2 upsampling: [4*C_out, C_in, 2, 2]."""
    p = torch.zeros(2, 2, 3, dtype=weight.dtype, device=weight.device)  # [phase, tap, kernel row]
    for a, taps in enumerate(_PHASE_TAPS):
        for r, rows in enumerate(taps):
            p[a, r, list(rows)] = 1
    k = torch.einsum("arY,bsX,oiYX->aboirs", p, p, weight)
    return k.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


def upsample2_conv3x3_padded(xp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                             kernel: torch.Tensor | None = None) -> torch.Tensor:
    """conv3x3(pad 1) of nearest-x2-upsampled `x`, from `xp` = `x` zero-padded by 1 on every side.

    Nearest upsampling repeats each pixel 2x2, so each of the four output phases sees only
    a 2x2 neighbourhood of `x` with summed kernel taps: the same numbers (up to float
    rounding) as upsampling then convolving, at 16/36 of the multiply-adds and without
    the upsampled intermediate. `kernel`: `phase_kernel(weight)`, when already made. Returns [B, C_out, 2(h-2), 2(w-2)] for `xp` [B, C_in, h, w].
    """
    b, _c, hp, wp = xp.shape
    h, w = hp - 2, wp - 2
    c_out = weight.shape[0]
    k = phase_kernel(weight) if kernel is None else kernel
    y = F.conv2d(xp, k,
                 None if bias is None else bias.repeat(4))  # [B, 4*C_out, h+1, w+1]
    y = y.view(b, 2, 2, c_out, h + 1, w + 1)
    if xp.is_contiguous(memory_format=torch.channels_last) and not xp.is_contiguous():
        phys = xp.new_empty(b, h, 2, w, 2, c_out)  # NHWC storage: the result is channels_last
        out = phys.permute(0, 5, 1, 2, 3, 4)
    else:
        phys = out = xp.new_empty(b, c_out, h, 2, w, 2)
    for a in range(2):
        for bb in range(2):
            out[:, :, :, a, :, bb] = y[:, a, bb, :, a : a + h, bb : bb + w]
    if phys is out:
        return out.view(b, c_out, 2 * h, 2 * w)
    return phys.view(b, 2 * h, 2 * w, c_out).permute(0, 3, 1, 2)
