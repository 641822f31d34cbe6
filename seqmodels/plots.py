"""Figures written to files with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import numpy as np


def _pyplot():
    # Imported on first use: matplotlib costs a second at import and most runs draw nothing.
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_confusion_matrix(confusion: np.ndarray, class_names, path: str, title: str) -> str:
    plt = _pyplot()
    n = len(class_names)
    size = max(5.0, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap='Blues')
    ax.set_xticks(range(n), class_names, rotation=45, ha='right')
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel('predicted class')
    ax.set_ylabel('true class')
    ax.set_title(title)
    if n <= 30:
        threshold = confusion.max() / 2
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(confusion[i, j]), ha='center', va='center', fontsize=8,
                        color='white' if confusion[i, j] > threshold else 'black')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_attention(image: np.ndarray, scores: np.ndarray, path: str, title: str) -> str:
    """Three panels: the image; the patch-grid map upsampled to its pixels, with a colour
    bar of the attention weights; the map stretched to [min, max] over the image."""
    plt = _pyplot()
    lo, hi = image.min(), image.max()
    image = (image - lo) / max(hi - lo, 1e-8)
    shown = image[..., 0] if image.shape[-1] == 1 else image
    cmap = 'gray' if image.shape[-1] == 1 else None
    # Each patch's score covers its P x P pixels exactly (no smoothing across patches).
    p = image.shape[0] // scores.shape[0]
    heat = np.kron(scores, np.ones((p, p)))
    stretched = (heat - heat.min()) / max(heat.max() - heat.min(), 1e-12)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    axes[0].imshow(shown, cmap=cmap)
    bar = axes[1].imshow(heat, cmap='viridis')
    fig.colorbar(bar, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(shown, cmap=cmap)
    axes[2].imshow(stretched, cmap='jet', alpha=0.45, vmin=0.0, vmax=1.0)
    for ax, name in zip(axes, ('image', 'attention per patch', 'overlay')):
        ax.set_axis_off()
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
