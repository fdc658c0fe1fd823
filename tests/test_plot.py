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
