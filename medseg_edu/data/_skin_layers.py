"""The layers of the skin phantom: noise fields, lesion shape, skin, pigment, artefacts and camera.

Private to :mod:`medseg_edu.data.skin_phantom`, which paints a dermoscopy image from these pieces
in the order light reaches the camera (see its module docstring). Each function draws from the
random generator it is given, so the same generator state gives the same layer.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Optional

import numpy as np
from scipy import ndimage

__all__ = ["MELANIN_ABSORPTION", "HAEMOGLOBIN_ABSORPTION", "FIELD_OF_VIEW_MM", "smooth_noise", "fractal_noise",
           "cell_edges", "smoothstep", "blend", "lesion_shape", "skin_layer", "lesion_pigment", "hair_alpha",
           "bubbles", "ruler_alpha", "camera"]

MELANIN_ABSORPTION = np.array([0.75, 1.15, 1.45], dtype=np.float32)   # R, G, B
HAEMOGLOBIN_ABSORPTION = np.array([0.05, 0.65, 0.45], dtype=np.float32)
FIELD_OF_VIEW_MM = 20.0    # width of the image in millimetres (for lesion_diameter_mm)


# ----------------------------------------------------------------------------------------------
# small building blocks
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _bspline_taps(size: int, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid indices (size, 4) and cubic B-spline weights (size, 4) to resample a grid to size pixels."""
    position = np.arange(size, dtype=np.float32) / cell + 1.5
    index = np.floor(position).astype(int)[:, None] + np.arange(-1, 3)[None, :]
    d = np.abs(position[:, None] - index)
    weights = np.where(d < 1, 2 / 3 - d ** 2 + d ** 3 / 2, (2 - d) ** 3 / 6).astype(np.float32)
    return index, weights


def smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Smooth random field (size, size), zero mean, unit std; features about ``cell`` pixels wide.

    Random values on a coarse grid (one every ``cell`` pixels) are interpolated with a cubic
    B-spline (each pixel mixes 4 x 4 grid values): smooth, without ringing, and fast.
    """
    cell = max(float(cell), 1.5)
    n = int(np.ceil(size / cell)) + 4
    grid = rng.standard_normal((n, n), dtype=np.float32)
    index, weights = _bspline_taps(size, cell)
    rows = np.einsum("ik,ikn->in", weights, grid[index])            # (size, n)
    field = np.einsum("jk,ijk->ij", weights, rows[:, index])        # (size, size)
    return (field - field.mean()) / (field.std() + 1e-6)


def fractal_noise(rng: np.random.Generator, size: int, cells: Sequence[float],
                   persistence: float = 0.6) -> np.ndarray:
    """Sum of smooth fields at several scales (largest first), normalised to unit std."""
    total = np.zeros((size, size), dtype=np.float32)
    for octave, cell in enumerate(cells):
        total += persistence ** octave * smooth_noise(rng, size, cell)
    return total / (total.std() + 1e-6)


def cell_edges(rng: np.random.Generator, size: int, cell: float, width: float) -> np.ndarray:
    """Net of thin lines (size, size) in [0, 1] around random polygonal cells about ``cell`` px wide.

    One random point per grid square; a pixel is on a line where its nearest and second-nearest
    points are almost equally far (a Voronoi diagram). Used for the pigment network inside the
    lesion and for the faint polygonal furrows of the skin surface.
    """
    cell = max(float(cell), 2.0)
    n = int(np.ceil(size / cell)) + 2
    points_y = (np.arange(n)[:, None] - 1 + rng.uniform(0.1, 0.9, (n, n))) * cell
    points_x = (np.arange(n)[None, :] - 1 + rng.uniform(0.1, 0.9, (n, n))) * cell
    points_y, points_x = points_y.astype(np.float32), points_x.astype(np.float32)
    pixel = np.arange(size, dtype=np.float32)
    home = np.floor(pixel / cell).astype(int) + 1
    first = np.full((size, size), np.inf, np.float32)     # squared distance to the nearest point
    second = np.full((size, size), np.inf, np.float32)    # ... and to the second nearest
    for di in (-1, 0, 1):
        rows_y, rows_x = points_y[home + di], points_x[home + di]      # (size, n) each
        for dj in (-1, 0, 1):
            cols = home + dj
            d2 = (rows_y[:, cols] - pixel[:, None]) ** 2 + (rows_x[:, cols] - pixel[None, :]) ** 2
            second = np.minimum(second, np.maximum(first, d2))
            first = np.minimum(first, d2)
    return np.exp(-((np.sqrt(second) - np.sqrt(first)) / width) ** 2)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def blend(image: np.ndarray, colour, alpha: np.ndarray) -> np.ndarray:
    """Paint ``colour`` (3,) or (3, H, W) over ``image`` (3, H, W) with opacity ``alpha`` (H, W)."""
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 1:
        colour = colour[:, None, None]
    return image * (1.0 - alpha) + colour * alpha


def lesion_shape(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray):
    """Normalised distance ``f`` (H, W): below 1 inside the lesion, 1 on its border."""
    radius = size * rng.uniform(0.13, 0.27)
    centre = size / 2 + rng.uniform(-0.08, 0.08, size=2) * size

    def blob(cy, cx, r, aspect, angle, wobble):
        # rotated, stretched coordinates as one complex number z = u + i v = rho * exp(i theta)
        rotation = complex(np.cos(angle), -np.sin(angle))
        z = ((xx - float(cx)) + 1j * (yy - float(cy))).astype(np.complex64) * rotation
        z = (z.real / aspect + 1j * z.imag * aspect).astype(np.complex64)
        rho = np.abs(z)
        unit = z / np.maximum(rho, 1e-6)           # exp(i theta)
        # boundary(theta) = 1 + sum_k a_k cos(k theta + phi_k), random harmonics k = 2..10
        boundary = np.ones_like(rho)
        power = unit * unit
        for k in range(2, 11):
            amp = wobble * rng.standard_normal() / k ** 1.3
            phase = rng.uniform(0, 2 * np.pi)
            boundary += (amp * complex(np.cos(phase), np.sin(phase)) * power).real
            power = power * unit
        return rho / (float(r) * np.clip(boundary, 0.55, None))

    f = blob(centre[0], centre[1], radius, rng.uniform(1.0, 1.35), rng.uniform(0, np.pi),
             rng.uniform(0.08, 0.3))
    for _ in range(rng.choice([0, 0, 1, 2])):   # extra lobes for some lesions
        angle = rng.uniform(0, 2 * np.pi)
        dist = radius * rng.uniform(0.5, 0.85)
        lobe = blob(centre[0] + dist * np.sin(angle), centre[1] + dist * np.cos(angle),
                    radius * rng.uniform(0.35, 0.6), rng.uniform(1.0, 1.5), rng.uniform(0, np.pi), 0.15)
        f = np.minimum(f, lobe)
    # fine border irregularity, so the lesion is not exactly star-shaped
    f = f + 0.07 * smooth_noise(rng, size, size / 24) + 0.03 * smooth_noise(rng, size, size / 70)
    return f


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------

def skin_layer(rng, size, tone):
    """Skin colour (3, H, W) with texture; returns (base colour field, multiplicative texture)."""
    base = np.broadcast_to(np.asarray(tone, np.float32)[:, None, None], (3, size, size)).copy()
    # patchy redness (blood in the dermis)
    redness = 0.08 * np.clip(smooth_noise(rng, size, size / 5), 0, None)
    base *= np.exp(-redness[None] * HAEMOGLOBIN_ABSORPTION[:, None, None])
    # multi-scale luminance texture, furrows and pores
    texture = 1.0 + 0.035 * fractal_noise(rng, size, (size / 4, size / 14, size / 45))
    texture += 0.015 * smooth_noise(rng, size, 2.0)                   # fine grain
    furrows = cell_edges(rng, size, size / 12, size / 220)             # polygonal skin lines
    texture *= 1.0 - rng.uniform(0.02, 0.05) * furrows
    pores = np.zeros((size, size), np.float32)
    count = int(size * size / 220 * rng.uniform(0.5, 1.5))
    py, px = rng.integers(0, size, count), rng.integers(0, size, count)
    pores[py, px] = rng.uniform(0.4, 1.0, count)
    pores = ndimage.gaussian_filter(pores, 0.9)
    texture *= 1.0 - 0.6 * pores
    return base, texture


def lesion_pigment(rng, size, f, alpha, strength):
    """Melanin density, haemoglobin density and blue-grey opacity maps (H, W) of the lesion."""
    inner = np.clip(1.0 - f, 0.0, 1.0)         # 0 at the border, up to 1 at the centre
    density = rng.uniform(0.5, 1.4) * (1.0 + 0.3 * fractal_noise(rng, size, (size / 8, size / 20)))
    # darker (or, sometimes, lighter) centre
    density *= 1.0 + rng.uniform(-0.25, 0.6) * inner
    # dark brown-black blotches
    blotches = smoothstep((smooth_noise(rng, size, size / 12) - rng.uniform(0.5, 1.3)) / 1.2)
    density += rng.uniform(0.4, 1.3) * blotches
    # pigment-network-like mesh, strongest towards the periphery
    mesh = cell_edges(rng, size, size * rng.uniform(1 / 55, 1 / 35), size / 200)
    mesh_patches = smoothstep(0.7 * smooth_noise(rng, size, size / 8) + 0.3)   # network fades in and out
    density *= 1.0 + rng.uniform(0.15, 0.6) * (mesh - 0.3) * mesh_patches * (1.0 - 0.5 * inner)
    # brown dots and globules, in some lesions
    if rng.random() < 0.5:
        dots = np.zeros_like(f)
        count = int(rng.uniform(0.002, 0.01) * size * size)
        dy, dx = rng.integers(0, size, count), rng.integers(0, size, count)
        dots[dy, dx] = rng.uniform(0.5, 1.0, count)
        sigma = size * rng.uniform(1 / 180, 1 / 90)
        dots = ndimage.gaussian_filter(dots, sigma) * (2 * np.pi * sigma ** 2)   # peak about 1
        density += rng.uniform(0.5, 1.2) * dots * smoothstep(smooth_noise(rng, size, size / 6) + 0.3)
    density = np.clip(density, 0.05, None) * strength * alpha
    # reddish (vascular) and blue-grey zones, in some lesions
    haemoglobin = np.zeros_like(f)
    if rng.random() < 0.4:
        zone = smoothstep(smooth_noise(rng, size, size / 7) - 0.3)
        haemoglobin = rng.uniform(0.15, 0.45) * strength * zone * alpha
        density *= 1.0 - 0.3 * zone
    blue_grey = np.zeros_like(f)
    if rng.random() < 0.35:
        zone = smoothstep((smooth_noise(rng, size, size / 9) - 0.4) / 0.8)
        blue_grey = rng.uniform(0.15, 0.4) * zone * alpha * (0.4 + 0.6 * inner)
    return density, haemoglobin, blue_grey


def hair_alpha(rng, size):
    """Opacity map (H, W) of a few dark, thin, curved hairs (quadratic Bezier curves)."""
    hair = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(1, 13))):
        p0 = rng.uniform(-0.1, 1.1, 2) * size
        angle = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 1.1) * size
        p2 = p0 + length * np.array([np.sin(angle), np.cos(angle)])
        normal = np.array([np.cos(angle), -np.sin(angle)])
        p1 = (p0 + p2) / 2 + normal * np.clip(rng.normal(0, 0.12), -0.25, 0.25) * length
        t = np.linspace(0, 1, int(2 * length))[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
        width = rng.choice([1, 1, 2])
        for offset in np.arange(width) - (width - 1) / 2:
            yx = np.rint(pts + offset * normal).astype(int)
            keep = np.all((yx >= 0) & (yx < size), axis=1)
            hair[yx[keep, 0], yx[keep, 1]] = 1.0
    return np.clip(ndimage.gaussian_filter(hair, 0.6) * 2.2, 0, 1) * rng.uniform(0.7, 0.95)


def bubbles(rng, size, yy, xx):
    """Bright air bubbles / specular spots: (white opacity, dark-rim opacity) maps (H, W)."""
    white = np.zeros((size, size), np.float32)
    rim = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(1, 7))):
        cy, cx = rng.uniform(0, size, 2)
        r = size * rng.uniform(0.015, 0.07)
        # work in a window around the bubble only
        y0, y1 = max(int(cy - r - 4), 0), min(int(cy + r + 5), size)
        x0, x1 = max(int(cx - r - 4), 0), min(int(cx + r + 5), size)
        if y0 >= y1 or x0 >= x1:
            continue
        win = (slice(y0, y1), slice(x0, x1))
        rho = np.hypot(yy[win] - cy, xx[win] - cx)
        rim[win] = np.maximum(rim[win], 0.35 * np.exp(-((rho - r) / 0.9) ** 2))
        white[win] = np.maximum(white[win], 0.08 * (rho < r))
        hy, hx = cy - 0.45 * r, cx - 0.35 * r       # highlight in the bubble's upper left
        spot = 0.9 * np.exp(-(np.hypot(yy[win] - hy, xx[win] - hx) / (0.18 * r + 0.6)) ** 2)
        white[win] = np.maximum(white[win], spot)
    return white, rim


def ruler_alpha(rng, size, yy, xx, inner_radius: Optional[float]):
    """Opacity map (H, W) of a millimetre ruler near one edge of the field of view."""
    px_per_mm = size / FIELD_OF_VIEW_MM
    angle = rng.choice([0.0, np.pi / 2, np.pi, 3 * np.pi / 2]) + rng.normal(0, 0.08)
    reach = (inner_radius if inner_radius is not None else 0.5) * size * 0.86
    cy = size / 2 + reach * np.cos(angle)
    cx = size / 2 + reach * np.sin(angle)
    u = (xx - cx) * np.cos(angle) - (yy - cy) * np.sin(angle)     # along the ruler
    v = (xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)     # towards the image edge
    half = size * rng.uniform(0.15, 0.3)
    on_ruler = np.abs(u) < half
    baseline = (np.abs(v) < 0.8) & on_ruler
    tick_phase = np.abs(((u / px_per_mm) + 0.5) % 1.0 - 0.5) * px_per_mm
    major = np.abs(((u / px_per_mm / 5) + 0.5) % 1.0 - 0.5) * px_per_mm * 5 < 0.7
    tick_len = np.where(major, 2.2 * px_per_mm, 1.1 * px_per_mm)
    ticks = (tick_phase < 0.6) & (v > 0) & (v < tick_len) & on_ruler
    return ndimage.gaussian_filter((baseline | ticks).astype(np.float32), 0.5) * 0.85


def camera(rng, image, site, yy, xx):
    """Apply the site's white balance, vignetting, field of view, optical blur and sensor noise."""
    size = image.shape[-1]
    image = image * site["brightness"] * np.asarray(site["gains"], np.float32)[:, None, None]
    cy, cx = size / 2 + rng.normal(0, 0.02, 2) * size
    rho = np.hypot(yy - cy, xx - cx) / (size / 2)
    image = image * (1.0 - site["vignetting"] * np.clip(rho / np.sqrt(2), 0, 1) ** 2)[None]
    image = ndimage.gaussian_filter(image, (0, 0.6, 0.6))
    if site["fov_radius"] is not None:
        inside = smoothstep((site["fov_radius"] * 2 - rho) / 0.04)
        image = blend(image, (0.015, 0.012, 0.012), 1.0 - inside)
    image = image + site["noise"] * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)
