"""Figures written to files with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import os

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
                ax.text(
                    j,
                    i,
                    str(confusion[i, j]),
                    ha='center',
                    va='center',
                    fontsize=8,
                    color='white' if confusion[i, j] > threshold else 'black',
                )
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


def show(item) -> None:
    """Shows a figure file (a path) or an HTML page (a string starting with '<') inline
    in Jupyter; elsewhere prints the path, or the page's size."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, Image, display

        in_kernel = get_ipython() is not None
    except ImportError:
        in_kernel = False
    is_html = isinstance(item, str) and item.lstrip().startswith('<')
    if in_kernel:
        display(HTML(item) if is_html else Image(filename=str(item)))
    else:
        print(f'(an HTML page of {len(item)} characters)' if is_html else item)


def _save(fig, path: str, dpi: int = 100) -> str:
    fig.savefig(path, dpi=dpi, pil_kwargs={'optimize': True})
    _pyplot().close(fig)
    return path


# --------------------------------------------------------------------------- #
# Attention maps.


def plot_attention_map(
    weights: np.ndarray, source: list[str], target: list[str], path: str, title: str = ''
) -> str:
    """A heatmap of weights [len(target), len(source)]: source pieces along the top,
    target pieces down the side, one row per target piece (each row sums to 1)."""
    plt = _pyplot()
    rows, cols = weights.shape
    fig, ax = plt.subplots(figsize=(max(3.0, 0.32 * cols + 1.8), max(2.5, 0.3 * rows + 1.4)))
    image = ax.imshow(
        weights, cmap='Greys', vmin=0.0, vmax=max(float(weights.max()), 1e-6), aspect='auto'
    )
    ax.set_xticks(range(cols), source, rotation=90, fontsize=9)
    ax.set_yticks(range(rows), target, fontsize=9)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    if title:
        ax.set_xlabel(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_attention_maps(maps, folder: str) -> list[str]:
    """FOLDER/<index>.png for each `analysis.AttentionMap`: its heatmap, titled with the
    translation."""
    os.makedirs(folder, exist_ok=True)
    return [
        plot_attention_map(
            m.weights, m.source, m.target, os.path.join(folder, f'{m.index}.png'), m.translation
        )
        for m in maps
    ]


def plot_attention_heads(
    weights: np.ndarray,
    queries: list[str],
    keys: list[str],
    path: str,
    titles: list[str] | None = None,
    suptitle: str = '',
    columns: int = 4,
) -> str:
    """One small heatmap per map of weights [N, Tq, Tk] (e.g. the heads of a layer), up
    to `columns` a row, each with the key labels on x and the query labels on y."""
    plt = _pyplot()
    n, tq, tk = weights.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    size = max(2.2, 0.18 * max(tq, tk) + 1.2)
    fig, axes = plt.subplots(
        rows, columns, figsize=(size * columns, (size + 0.3) * rows), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        ax.imshow(weights[i], cmap='Greys', vmin=0.0, aspect='auto')
        ax.set_xticks(range(tk), keys, rotation=90, fontsize=7)
        ax.set_yticks(range(tq), queries if i % columns == 0 else [''] * tq, fontsize=7)
        if titles:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- #
# Recurrent cells (seqmodels.cells).


def plot_cell_text(text: str, shown, path: str, columns: int = 80, title: str = '') -> str:
    """`text` once per entry of `shown` (seqmodels.cells.Shown), each character on a
    cell coloured by the unit's value (red -1, white 0, blue +1, as in Karpathy et al.'s
    Figure 2), lines wrapped at `columns`; the PNG counterpart of `cells.cells_html`."""
    plt = _pyplot()
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list('cells', ['#d62728', '#ffffff', '#1f77b4'])
    layout = []  # (line, column) of each character
    line = column = 0
    for ch in text:
        if column >= columns:
            line, column = line + 1, 0
        layout.append((line, column))
        line, column = (line + 1, 0) if ch == '\n' else (line, column + 1)
    lines = (layout[-1][0] + 1) if layout else 1
    height_per = 0.19 * lines + 0.45
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(0.105 * columns + 0.4, height_per * len(shown)), squeeze=False
    )
    for ax, entry in zip(axes[:, 0], shown):
        grid = np.full((lines, columns), np.nan)
        for (r, c), v in zip(layout, entry.values):
            grid[r, c] = v
        ax.imshow(grid, cmap=cmap, vmin=-1.0, vmax=1.0, aspect='auto', interpolation='nearest')
        for (r, c), ch in zip(layout, text):
            if ch not in '\n ':
                ax.text(c, r, ch, ha='center', va='center', fontsize=7, family='monospace')
        ax.set_xticks([])
        ax.set_yticks([])
        rs = ', '.join(f'{k} {v:+.2f}' for k, v in entry.correlations.items())
        ax.set_title(entry.title + (f'   r: {rs}' if rs else ''), fontsize=8, loc='left')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi=90)


def plot_gate_saturation(saturation: dict, path: str, title: str = '') -> str:
    """Karpathy et al. 2015, Figure 3: one panel per gate, a dot per unit at (fraction
    of steps left-saturated, fraction right-saturated), coloured by layer.
    `saturation`: gate name -> (left [L, H], right [L, H]) (`cells.gate_saturation`)."""
    plt = _pyplot()
    names = list(saturation)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        left, right = saturation[name]
        for layer in range(left.shape[0]):
            ax.scatter(left[layer], right[layer], s=9, alpha=0.7, label=f'layer {layer}')
        ax.plot([0, 1], [1, 0], color='0.7', lw=0.8)  # the units that are always saturated
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect('equal')
        ax.set_title(f'{name} gate', fontsize=10)
        ax.set_xlabel('fraction left-saturated (< 0.1)', fontsize=8)
    axes[0, 0].set_ylabel('fraction right-saturated (> 0.9)', fontsize=8)
    axes[0, -1].legend(fontsize=7, loc='upper right')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- #
# Positions and ViT's Figure 7.


def plot_position_encodings(tables: dict, similarities: dict, path: str) -> str:
    """Two panels per encoding: the table [positions, dimensions] and the similarity
    of every pair of positions. `tables` and `similarities`: title -> 2-D array."""
    plt = _pyplot()
    names = list(tables)
    fig, axes = plt.subplots(2, len(names), figsize=(4.0 * len(names), 7.2), squeeze=False)
    for j, name in enumerate(names):
        table = np.asarray(tables[name])
        image = axes[0, j].imshow(
            table,
            cmap='RdBu_r',
            aspect='auto',
            interpolation='nearest',
            vmin=-np.abs(table).max(),
            vmax=np.abs(table).max(),
        )
        fig.colorbar(image, ax=axes[0, j], fraction=0.046, pad=0.03)
        axes[0, j].set_title(name, fontsize=10)
        axes[0, j].set_xlabel('dimension', fontsize=8)
        axes[0, j].set_ylabel('position', fontsize=8)
        sim_title, sim = similarities[name]
        image = axes[1, j].imshow(sim, cmap='viridis', interpolation='nearest')
        fig.colorbar(image, ax=axes[1, j], fraction=0.046, pad=0.03)
        axes[1, j].set_title(sim_title, fontsize=9)
        axes[1, j].set_xlabel('position', fontsize=8)
        axes[1, j].set_ylabel('position', fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _mosaic(tiles: np.ndarray, columns: int, gap: float = np.nan) -> np.ndarray:
    """tiles [N, h, w] -> one [rows·(h+1)-1, columns·(w+1)-1] image, tiles separated by
    one row/column of `gap`."""
    n, h, w = tiles.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), gap)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tile
    return out


def plot_vit_figure7(
    components: np.ndarray,
    similarity: np.ndarray,
    distances: np.ndarray,
    path: str,
    patch_size: int,
    image_size: int,
    title: str = '',
) -> str:
    """Dosovitskiy et al. 2021, Figure 7, in three panels: principal components of the
    patch-embedding filters [k, P, P, C] (their first channel); the cosine similarity
    [N, N] of each patch's position embedding with every other patch's, one small
    grid per patch in grid order; the mean attention distance [L, heads] in pixels of
    every head against the depth of its layer."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), gridspec_kw={'width_ratios': [1, 1, 1.15]})
    k = components.shape[0]
    tiles = components[..., 0] / np.abs(components[..., 0]).max(axis=(1, 2), keepdims=True)
    # Components have a sign: red +, blue -, on grey separators.
    cmap = plt.get_cmap('RdBu_r').with_extremes(bad='0.6')
    axes[0].imshow(
        _mosaic(tiles, int(np.ceil(np.sqrt(k)))),
        cmap=cmap,
        vmin=-1,
        vmax=1,
        interpolation='nearest',
    )
    axes[0].set_title(
        f'patch-embedding filters: first {k} principal components\n'
        f'({patch_size}x{patch_size} pixels each)',
        fontsize=9,
    )
    g = int(round(np.sqrt(similarity.shape[0])))
    maps = similarity.reshape(g * g, g, g)
    image = axes[1].imshow(
        _mosaic(maps, g), cmap='viridis', vmin=-1, vmax=1, interpolation='nearest'
    )
    fig.colorbar(image, ax=axes[1], fraction=0.046, pad=0.03)
    axes[1].set_title(
        'position embedding similarity (cosine)\ntile (row, col): that patch against every patch',
        fontsize=9,
    )
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    layers, heads = distances.shape
    for h in range(heads):
        axes[2].scatter(np.arange(layers) + 1, distances[:, h], s=16, label=f'head {h}')
    axes[2].set_xticks(range(1, layers + 1))
    axes[2].set_ylim(0, image_size * 0.75)
    axes[2].set_xlabel('network depth (layer)', fontsize=9)
    axes[2].set_ylabel('mean attention distance (pixels)', fontsize=9)
    axes[2].set_title('attention distance of each head', fontsize=9)
    axes[2].legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- #
# Sampling.


def plot_sampling_distributions(
    distributions: dict, labels: list[str], path: str, top: int = 12, title: str = ''
) -> str:
    """One bar panel per sampling setting: the probability of each of the `top` tokens
    with the highest mean probability over the settings, in that order. `distributions`:
    setting -> probabilities [V]; `labels`: the text of each token id."""
    plt = _pyplot()
    names = list(distributions)
    mean = np.mean([np.asarray(p) for p in distributions.values()], axis=0)
    order = np.argsort(-mean, kind='stable')[:top]
    shown = [repr(labels[i])[1:-1] if labels[i].strip() else repr(labels[i]) for i in order]
    fig, axes = plt.subplots(
        1, len(names), figsize=(2.5 * len(names), 3.4), sharey=True, squeeze=False
    )
    for ax, name in zip(axes[0], names):
        probs = np.asarray(distributions[name])
        kept = probs[order] > 0
        ax.bar(range(len(order)), probs[order], color=np.where(kept, 'C0', 'C7'))
        ax.set_xticks(range(len(order)), shown, fontsize=10, family='monospace')
        drawable = int((probs > 0).sum())
        ax.set_title(
            f'{name}\n{drawable} token{"s" if drawable > 1 else ""} can be drawn', fontsize=9
        )
    axes[0, 0].set_ylabel('probability')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- #
# Gradient flow through time.


def plot_gradient_flow(norms_by_name: dict, path: str, title: str = '') -> str:
    """||dL/dh_t|| against the distance T - t from the loss, log y-axis, one line per
    entry of `norms_by_name` (name -> norms [T], t = 1..T; seqmodels.gradient_flow)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, norms in norms_by_name.items():
        norms = np.asarray(norms)
        ax.plot(np.arange(len(norms))[::-1], norms, label=name)
    ax.set_yscale('log')
    ax.set_xlabel('steps back from the loss, T - t')
    ax.set_ylabel('||dL / dh_t||')
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
