"""Pictures: the plotted data is the history itself, the files are real images, and a missing
matplotlib is one clear error."""

import sys

import numpy as np
import pytest

from symbp.plot import mathtext_lines, plot_formula, plot_history

HISTORY = {
    "loss": [2.0, 0.5, 0.02, 0.004],
    "val_loss": [2.2, 0.7, 0.1, 0.05],
    "accuracy": [0.3, 0.7, 0.9, 0.95],
    "val_accuracy": [0.25, 0.6, 0.85, 0.9],
    "lr": [0.1, 0.1, 0.01, 0.01],
}
PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_history_panels_hold_the_history(tmp_path):
    pytest.importorskip("matplotlib")
    fig = plot_history(HISTORY, tmp_path / "curves.png", title="run")
    width, height = png_size(tmp_path / "curves.png")
    assert width > 400 and height > 200
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["loss", "accuracy", "lr"]
    for ax, keys in zip(panels, (["loss", "val_loss"], ["accuracy", "val_accuracy"], ["lr"])):
        lines = ax.get_lines()
        assert len(lines) == len(keys)
        for line, key in zip(lines, keys):
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
            np.testing.assert_array_equal(line.get_ydata(), HISTORY[key])
        assert [line.get_linestyle() for line in lines] == ["-", "--"][: len(keys)]
    assert panels[0].get_yscale() == "log"  # the loss spans 2.5 decades
    assert panels[1].get_yscale() == "linear"


def test_several_runs_one_colour_each(tmp_path):
    pytest.importorskip("matplotlib")
    runs = {"SGD": {"loss": [1.0, 0.8]}, "Adam": {"loss": [1.0, 0.4]}}
    fig = plot_history(runs, tmp_path / "compare.svg")
    assert (tmp_path / "compare.svg").read_text().lstrip().startswith("<?xml")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["SGD", "Adam"]
    assert lines[0].get_color() != lines[1].get_color()
    np.testing.assert_array_equal(lines[1].get_ydata(), [1.0, 0.4])


def test_empty_history_is_an_error():
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="holds no metrics"):
        plot_history({})


def test_mathtext_lines_split_an_aligned_block():
    latex = r"""\begin{aligned}
&\textbf{backward} \\
\delta_{2} &= \left(o - t\right) \odot o \\
\frac{\partial E}{\partial b_{2}} &= \delta_{2}
\end{aligned}"""
    assert mathtext_lines(latex) == [
        ("", r"\mathbf{backward}"),
        (r"\delta_{2}", r"= \left(o - t\right) \odot o"),
        (r"\frac{\partial E}{\partial b_{2}}", r"= \delta_{2}"),
    ]
    assert mathtext_lines(r"$x^2 \, \& y$") == [("", r"x^2   \& y")]


def test_formula_png(tmp_path):
    pytest.importorskip("matplotlib")

    class Formulas:  # anything with latex(), as symbp.formulas(loss) returns
        def latex(self):
            return (
                r"\begin{aligned} E &= \frac{1}{2}\sum (o - t)^2 \\"
                r" \delta &= (o - t) \odot o \odot (1 - o) \end{aligned}"
            )

    plot_formula(Formulas(), tmp_path / "f.png", dpi=100)
    wide, tall = png_size(tmp_path / "f.png")
    plot_formula(r"\sigma(x)", tmp_path / "g.png", dpi=100)
    narrow, short = png_size(tmp_path / "g.png")
    assert wide > narrow and tall > short  # the figure is sized to its rows


def test_bad_latex_names_the_row():
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match=r"cannot render row 2 .*\\frac\{1\}"):
        plot_formula("a &= b \\\\ c &= \\frac{1}")


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install 'symbp\[plot\]'"):
        plot_history(HISTORY)
    with pytest.raises(ImportError, match="needs matplotlib"):
        plot_formula("x")


def test_history_into_the_users_axes(tmp_path):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    try:
        right.plot([0, 1], [5, 6])  # the user's own panel stays as it was
        out = plot_history(HISTORY, tmp_path / "mine.png", ax=left, metrics=["loss"])
        assert out is fig and png_size(tmp_path / "mine.png")[0] > 100
        assert len(fig.axes) == 2  # no axes added
        lines = left.get_lines()
        assert [line.get_linestyle() for line in lines] == ["-", "--"]
        np.testing.assert_array_equal(lines[0].get_ydata(), HISTORY["loss"])
        np.testing.assert_array_equal(lines[1].get_ydata(), HISTORY["val_loss"])
        np.testing.assert_array_equal(right.get_lines()[0].get_ydata(), [5, 6])
        # one axes per panel, from an array of axes as plt.subplots gives
        fig2, axes = plt.subplots(1, 3)
        plot_history(HISTORY, ax=axes)
        assert [a.get_title() for a in axes] == ["loss", "accuracy", "lr"]
        np.testing.assert_array_equal(axes[2].get_lines()[0].get_ydata(), HISTORY["lr"])
        plt.close(fig2)
        with pytest.raises(ValueError, match=r"3 panels .* need 3 axes, ax= gave 1"):
            plot_history(HISTORY, ax=left)
        with pytest.raises(ValueError, match=r"metrics \['f1'\] are not in the history"):
            plot_history(HISTORY, ax=left, metrics=["f1"])
    finally:
        plt.close(fig)


def test_formula_into_the_users_axes(tmp_path):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    latex = r"\begin{aligned} E &= \frac{1}{2}(o - t)^2 \\ \delta &= o - t \end{aligned}"
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    try:
        canvas = fig.canvas
        out = plot_formula(latex, tmp_path / "mine.png", ax=right)
        assert out is fig and fig.canvas is canvas  # measured elsewhere, the canvas untouched
        assert png_size(tmp_path / "mine.png") == (800, 300)
        texts = right.texts
        assert [t.get_text() for t in texts] == [
            "$E$",
            r"$= \frac{1}{2}(o - t)^2$",
            r"$\delta$",
            "$= o - t$",
        ]
        assert not right.axison and left.axison and not left.texts
        # the "&" column: left parts end where right parts start, rows top to bottom
        xs = [t.get_position()[0] for t in texts]
        ys = [t.get_position()[1] for t in texts]
        assert xs[0] == xs[2] < xs[1] == xs[3] and ys[0] == ys[1] > ys[2] == ys[3]
        assert [t.get_ha() for t in texts] == ["right", "left", "right", "left"]
        assert all(t.get_fontsize() == 16 for t in texts)
        # a small axes: the text shrinks to fit inside it
        small = fig.add_axes((0.0, 0.0, 0.05, 0.05))
        plot_formula(latex, ax=small)
        assert all(t.get_fontsize() < 16 for t in small.texts)
        fig.canvas.draw()
        box = small.get_window_extent()
        for t in small.texts:
            ext = t.get_window_extent()
            assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1
    finally:
        plt.close(fig)
