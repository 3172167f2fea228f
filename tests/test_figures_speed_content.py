"""What the fast figure paths must still draw: the PNG's pixels are Agg's, the data spots
sit on their points (right way up, in every snapshot panel), diverged markers reach the file,
and the blitted, transparency-encoded GIF decodes to each evaluation's full drawing.

Each test guards one plausible bug of those paths: a PNG of other pixels (alpha dropped, a
stale buffer), data spots flipped or drawn in one panel only, a moving artist left in the GIF's
background, a frame encoded against the wrong previous frame, an evaluation missing its texts.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image
from test_report import case_grid_point, case_optimizer, diverged_marks

from jaxopt_cmp import animation, figures, render


def decoded(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im)


def rendered(fig: Figure) -> np.ndarray:
    """``fig`` drawn as the files are drawn: the RGB(A) pixels of Agg's buffer."""
    with render.agg_canvas(fig) as canvas:
        canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()


def is_red(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)


def test_png_bytes_are_the_rendered_pixels_and_leave_figure_and_settings_alone():
    fig = figures.plot_final_fit(case_grid_point())
    canvas, hinting = fig.canvas, matplotlib.rcParams["text.hinting"]
    png = render.figure_bytes(fig)
    assert fig.canvas is canvas and matplotlib.rcParams["text.hinting"] == hinting
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "RGB" and im.size == (800, 400) and im.info["dpi"] == pytest.approx((100, 100), abs=0.01)
        np.testing.assert_array_equal(np.asarray(im), rendered(fig)[..., :3])
    clear = Figure(figsize=(2, 1), dpi=50, facecolor="none")
    clear.add_subplot().plot([0, 1], "r")
    pixels = decoded(render.figure_bytes(clear))  # a see-through figure keeps its alpha
    assert pixels.shape == (50, 100, 4) and pixels[0, 0, 3] == 0
    np.testing.assert_array_equal(pixels, rendered(clear))


def test_data_spots_are_2x2_squares_at_their_points_right_way_up():
    fig = Figure(figsize=(4, 3), dpi=100)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8), xlim=(0, 10), ylim=(0, 5))
    ax.set_axis_off()
    x, y = np.array([1.0, 8.0, 5.0, 12.0]), np.array([4.0, 1.0, 2.5, 1.0])  # the last one outside
    ax.add_artist(figures.DataSpots(x, y, (0, 10), (0, 5), [(0, 10, 0, 5)]))
    red = is_red(rendered(fig))
    assert red.sum() == 3 * 4  # one 2x2 square per point inside the limits
    height = red.shape[0]
    for px, py in ax.transData.transform(np.stack([x[:3], y[:3]], axis=1)):
        col, row = int(px), height - 1 - int(py)  # the pixel holding the point, rows from the top
        assert red[row - 1 : row + 1, col : col + 2].all(), (px, py)  # it and the pixels up and right


def test_every_snapshot_panel_shows_all_the_data():
    result = case_grid_point()
    fig = figures.plot_snapshots(result)
    (ax,) = fig.axes
    for artist in [*ax.lines, *ax.texts, *fig.legends]:
        artist.set_visible(False)  # only the data left: the fits would hide some of it
    red = is_red(rendered(fig))
    height, (pw, ph) = red.shape[0], figures.PANEL_IN
    (spots,) = [a for a in ax.artists if isinstance(a, figures.DataSpots)]
    counts = []
    for x0, _, y0, _ in spots.boxes:
        (left, bottom), (right, top) = ax.transData.transform([(x0, y0), (x0 + pw, y0 + ph)])
        counts.append(red[height - int(top) : height - int(bottom), int(left) : int(right) + 2].sum())
    assert len(counts) == len(result.eval_steps) and min(counts) > 50 and len(set(counts)) == 1, counts
    assert red.sum() == sum(counts)  # nothing red outside the panels


def test_diverged_markers_reach_the_png():
    result = case_optimizer()  # sgd diverged at evaluation 1, every seed
    fig = figures.plot_mse_curves(result)
    ax = fig.axes[0]
    assert diverged_marks(ax) == {("sgd", float(result.eval_steps[1]))}
    (marker,) = [line for line in ax.lines if line.get_gid() == "diverged:sgd"]
    (px, py), height = marker.get_transform().transform(marker.get_xydata())[0], fig.bbox.height
    rgb = decoded(render.figure_bytes(fig)).astype(int)
    around = rgb[int(height - py) - 4 : int(height - py) + 5, int(px) - 4 : int(px) + 5]
    green = (around[..., 1] > 90) & (around[..., 0] < 60) & (around[..., 2] < 60)  # sgd's "g"
    assert green.sum() >= 6


def frames_drawn_whole(fig, update, n):
    out = []
    for k in range(n):
        update(k)
        out.append(rendered(fig)[..., :3])
    return out


def test_blitted_frames_equal_whole_redraws():
    fig = Figure(figsize=(3, 2), dpi=60)
    ax = fig.add_subplot(xlim=(0, 4), ylim=(0, 4))
    (line,) = ax.plot([0.5, 3.5], [3, 3], "b")  # inside the axes: blitting draws it over the spines
    text = ax.text(0.5, 0.5, "", color="g")

    def update(k):
        line.set_ydata([1 + k / 2, 3 - k / 2])
        ax.set_title(f"frame {k}")
        text.set_text(f"MSE {k / 7:.3g}")

    frames = animation._frames(fig, update, 4, [line, ax.title, text])
    whole = frames_drawn_whole(fig, update, 4)
    assert len(frames) == 4 and len({f.tobytes() for f in frames}) == 4
    for k, (blitted, redrawn) in enumerate(zip(frames, whole)):
        np.testing.assert_array_equal(blitted, redrawn, err_msg=f"frame {k}")


def test_gif_bytes_decode_to_the_frames():
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (40, 3), dtype=np.uint8)  # fewer than 255: the palette is exact
    frames = []
    for k in range(5):
        f = np.full((30, 40, 3), 255, np.uint8)
        f[:, :20] = colours[k::5][: 30 // 5].repeat(5, axis=0)[:, None]  # changes every frame
        f[5 + k : 15 + k, 25:35] = colours[-1]  # a square that moves down
        if k == 3:
            f = frames[-1].copy()  # one frame equal to the one before
        frames.append(f)
    frames[-1][0, -len(colours) :] = colours  # the last frame (the palette's source) has every colour
    gif = animation.gif_bytes(frames, fps=5)
    with Image.open(io.BytesIO(gif)) as im:
        assert (im.n_frames, im.info["loop"], im.info["duration"]) == (5, 0, 200)
        for k, f in enumerate(frames):
            im.seek(k)
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), f, err_msg=f"frame {k}")


def test_fits_gif_draws_each_evaluations_step_and_mses(monkeypatch):
    result = case_optimizer()  # sgd diverged from evaluation 1
    drawn = []
    draw = matplotlib.text.Text.draw
    monkeypatch.setattr(matplotlib.text.Text, "draw", lambda self, r: (drawn.append(self.get_text()), draw(self, r)))
    gif = animation.fits_gif(result)
    iters = result.config.train.iters
    steps = [t for t in drawn if t.startswith("[") and t.endswith(f"/{iters}]")]
    assert steps == [f"[{s}/{iters}]" for s in result.eval_steps]  # one title per frame, in order
    for e in range(len(result.eval_steps)):
        mse = result.mse_EHS["adam"][e, 0, 0]
        assert f"adam MSE {mse:.3g}" in drawn
    assert sum(t.startswith("sgd") and t.endswith("diverged") for t in drawn) == len(result.eval_steps) - 1
    with Image.open(io.BytesIO(gif)) as im:
        assert im.n_frames == len(result.eval_steps) and im.size == (640, 304)
