"""A picture of what a trained flow learned, logged as the run's ``samples.png``.

2-D data: the model density exp(log p(x)) on a grid beside a scatter of model samples.
Images: a grid of model samples mapped back to data space (``deq.to_data``). Other data: none.
"""

from __future__ import annotations

import io
import math

import torch

__all__ = ["samples_png"]


@torch.no_grad()
def samples_png(flow, deq, data_kind: str, reference: torch.Tensor, device: torch.device,
                n: int = 64, grid: int = 160, classes: int | None = None) -> bytes | None:
    """PNG bytes of the picture for this flow, or None when there is none to draw.

    A class-conditional flow (``classes``) draws its image grid one class per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = tuple(deq.model_shape)
    flow.eval()
    if shape == (2,) and data_kind == "continuous" and classes is None:
        ref = reference.double().cpu()
        lo = torch.quantile(ref, 0.005, dim=0) - 0.5
        hi = torch.quantile(ref, 0.995, dim=0) + 0.5
        xs = torch.linspace(float(lo[0]), float(hi[0]), grid)
        ys = torch.linspace(float(lo[1]), float(hi[1]), grid)
        gx, gy = torch.meshgrid(xs, ys, indexing="xy")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).float().to(device)
        dens = torch.cat([flow.log_prob(pts[i : i + 4096]).exp().cpu()
                          for i in range(0, len(pts), 4096)]).reshape(grid, grid)
        dens = torch.nan_to_num(dens, nan=0.0, posinf=0.0)
        smp = flow.sample(2000).cpu()
        fig, axes = plt.subplots(1, 2, figsize=(8, 4), dpi=80)
        axes[0].imshow(dens.numpy(), origin="lower", cmap="viridis", aspect="auto",
                       extent=(float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])))
        axes[0].set_title("model density")
        axes[1].scatter(smp[:, 0], smp[:, 1], s=2, alpha=0.5)
        axes[1].set_xlim(float(lo[0]), float(hi[0]))
        axes[1].set_ylim(float(lo[1]), float(hi[1]))
        axes[1].set_title("model samples")
    elif len(shape) == 3 and data_kind == "discrete":
        context = None
        if classes:
            side = classes
            n = side * side
            context = torch.nn.functional.one_hot(torch.arange(n, device=device) % classes,
                                                  classes).float()
        x = deq.to_data(flow.sample(n, context=context)).float().cpu()
        levels = float(deq.levels or 256)
        x = (x / max(1.0, levels - 1)).clamp(0, 1)
        side = classes or int(math.ceil(math.sqrt(n)))
        fig, axes = plt.subplots(side, side, figsize=(side, side), dpi=80)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < len(x):
                img = x[i].permute(1, 2, 0).numpy()
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray",
                          vmin=0, vmax=1)
    else:
        return None
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
