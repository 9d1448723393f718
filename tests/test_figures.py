"""The report's figures: a PNG and an SVG of the same plot, every series in the legend."""

from PIL import Image

from explorer.figures import Series, line_plot


def test_line_plot_writes_png_and_svg_with_every_label(tmp_path):
    series = [
        Series("concepts (top-1)", [1.0, 0.5, 0.0], [0.1, float("nan"), 0.5]),
        Series("baseline", [1.0, 0.0], [0.2, 0.2], dashed=True),
        Series("linear probe of Δ", [1.0, 0.0], [0.6, 0.7], thin=True),
        Series("never measured", [1.0], [float("nan")]),
    ]
    png = line_plot(series, tmp_path / "figures" / "composition.png", title="mid", xlabel="t",
                    ylabel="mIoU", ylim=(0, 1), x_reversed=True, size=(640, 400))
    assert png == tmp_path / "figures" / "composition.png"
    with Image.open(png) as img:
        # Two legend rows add height under the 640×400 axes area.
        assert img.size[0] == 640 and img.size[1] > 400
    svg = png.with_suffix(".svg").read_text()
    for s in series:
        assert f">{s.label}</text>" in svg  # text stays text in the vector figure (Δ too)
