"""The offline HTML report: SVG pictures, the Page, the PNG writer/reader, pooling, colours."""

import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import numpy as np
import pytest

from rnncli.errors import InputDataError, OutputError
from rnncli.report import Page, external_refs, heatmap, histogram, line_plot, stacked_bars
from rnncli.report.colors import DIVERGING_RGB, STEPS, Scale, rgb_to_lab
from rnncli.report.png import decode_png, encode_png
from rnncli.report.pooling import pool_columns


class Tree(HTMLParser):
    """Every start tag with its attributes, and the text of each <title>/<h2>/<a> with the
    attributes of the element that holds it."""

    def __init__(self, doc):
        super().__init__(convert_charrefs=True)
        self.tags, self.stack, self.texts = [], [], []
        self.feed(doc)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.stack.append((tag, dict(attrs), len(self.tags) - 1))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] in ("title", "h2", "a", "td", "th", "figcaption"):
            parent = self.stack[-2] if len(self.stack) > 1 else (None, {}, -1)
            self.texts.append((self.stack[-1][0], data, parent[0], parent[1]))

    def titles_of(self, parent_tag):
        return [(t, attrs) for kind, t, p, attrs in self.texts if kind == "title" and p == parent_tag]


def demo_page(steps=120, units=16):
    rng = np.random.default_rng(1)
    h = np.tanh(np.cumsum(rng.normal(0, 0.2, (units, steps)), axis=1)).astype(np.float32)
    mask = np.zeros(steps, bool)
    mask[-10:] = True
    grad = 0.9 ** np.arange(steps)[::-1]
    xw, hu = rng.random(steps), rng.random(steps)
    page = Page("Report <demo> & more", subtitle="synthetic")
    page.note("A note with <b>markup</b> & an ampersand.")
    page.section("Hidden state", heatmap(h, title="h_t", masked_cols=mask))
    page.section("Gradient", line_plot({"‖dL/dh‖": grad, "bound": grad * 2}, log_y=True,
                                       title="grad", dashed=["bound"]))
    tot = xw + hu + 0.2
    page.section("Terms", stacked_bars({"x·W": xw / tot, "h·U": hu / tot, "b": 0.2 / tot}))
    page.section("Histogram", histogram(h, title="h values"))
    page.table([["units", units], ["max", 0.123456789], ["<script>", "a & b"]],
               header=["what", "value"], heading="Numbers")
    return page.render(), h


def test_page_is_self_contained_with_every_section_in_the_contents():
    doc, _ = demo_page()
    tree = Tree(doc)
    tags = {t for t, _ in tree.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed", "base"}
    for tag, attrs in tree.tags:
        for k, v in attrs.items():
            if k in ("src", "href", "xlink:href"):
                assert v.startswith("#") or v.startswith("data:"), (tag, k, v[:40])
    assert "url(http" not in doc and "@import" not in doc and "@font-face" not in doc
    assert external_refs(doc) == []
    headings = [t for kind, t, _, _ in tree.texts if kind == "h2"]
    assert headings == ["Hidden state", "Gradient", "Terms", "Histogram", "Numbers"]
    toc_text = [t for kind, t, _, _ in tree.texts if kind == "a"]
    toc_href = [attrs["href"] for tag, attrs in tree.tags if tag == "a"]
    ids = [attrs["id"] for tag, attrs in tree.tags if tag == "section"]
    assert toc_text == headings
    assert toc_href == ["#" + i for i in ids]
    assert sum(1 for t, _ in tree.tags if t == "svg") == 4


def test_page_escapes_all_text():
    doc, _ = demo_page()
    assert "<title>Report &lt;demo&gt; &amp; more</title>" in doc
    assert "&lt;b&gt;markup&lt;/b&gt;" in doc
    cells = [t for kind, t, _, _ in Tree(doc).texts if kind == "td"]
    assert "<script>" in cells and "a & b" in cells and "0.123457" in cells


@pytest.mark.parametrize("markup", ['<img src="https://example.org/x.png">',
                                    '<script>alert(1)</script>',
                                    '<a href="http://example.org">x</a>',
                                    '<div style="background:url(http://e.org/a.png)"></div>',
                                    '<svg><image href="pic.png"/></svg>',
                                    '<p onclick="x()">x</p>',
                                    '<meta http-equiv="refresh" content="0;url=http://e.org">'])
def test_page_refuses_markup_that_leaves_the_file(markup):
    page = Page("t").section("bad", markup)
    with pytest.raises(OutputError, match="outside files"):
        page.render()


def test_every_heatmap_cell_has_its_exact_value():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 7)).astype(np.float32)
    a[2, 3] = np.nan
    a[4, 0] = np.inf
    tree = Tree(heatmap(a, title="cells").svg)
    titles = tree.titles_of("rect")
    assert len(titles) == a.size
    scale = Scale.fit(a)
    seen = set()
    for text, attrs in titles:
        m = re.fullmatch(r"h(\d+) @ t=(\d+): (\S+)", text)
        r, c, v = int(m[1]), int(m[2]), m[3]
        seen.add((r, c))
        want = a[r, c]
        assert np.float32(v) == want or (np.isnan(want) and v == "nan")
        assert attrs["fill"] == scale.hex(want)
    assert len(seen) == a.size
    fills = {attrs["fill"] for _, attrs in titles}
    nan_fill = scale.hex(np.nan)
    assert nan_fill in fills and scale.hex(np.inf) in fills
    assert nan_fill not in scale.hex(np.linspace(-3, 3, 50))  # NaN is off the palette


def test_heatmap_labels_masks_and_caption():
    a = np.linspace(-1, 2, 40).reshape(4, 10)
    mask = np.zeros(10, bool)
    mask[7:] = True
    fig = heatmap(a, row_labels=list("abcd"), col_labels=[f"s{i}" for i in range(10)],
                  masked_cols=mask, title="t")
    assert "3 masked columns hatched grey" in fig.caption and "±2" in fig.caption
    tree = Tree(fig.svg)
    assert ("b @ s4: " + str(a[1, 4])) in [t for t, _ in tree.titles_of("rect")]
    hatch = [a for t, a in tree.tags if t == "rect" and "hatch" in a.get("fill", "")]
    assert len(hatch) == 2  # over columns 7-9, and in the legend
    assert hatch[0]["pointer-events"] == "none" and hatch[1]["width"] == "14"
    with pytest.raises(InputDataError, match="expected one per column"):
        heatmap(a, masked_cols=[True])
    with pytest.raises(InputDataError, match="2-D"):
        heatmap(np.zeros(5))


def test_pooled_heatmap_titles_are_the_known_means():
    a = np.arange(30, dtype=np.float64).reshape(3, 10)
    fig = heatmap(a, max_cells=12, large="pool")  # at most 4 columns: groups of 3
    assert "10 columns pooled into 4 columns of 3 consecutive columns each" in fig.caption
    assert "the last holds 1" in fig.caption
    titles = [t for t, _ in Tree(fig.svg).titles_of("rect")]
    assert len(titles) == 12
    assert "h1 @ t=3–t=5 (mean of 3): 14.0" in titles
    assert "h2 @ t=9 (mean of 1): 29.0" in titles


def test_pool_columns_keeps_nan_spikes_and_masks():
    a = np.array([[1.0, -5.0, 2.0, 0.5, np.nan, 1.0]])
    mean = pool_columns(a, 3)
    assert mean.per_group == 2
    np.testing.assert_array_equal(mean.values, [[-2.0, 1.25, np.nan]])
    np.testing.assert_array_equal(pool_columns(a, 3, "maxabs").values, [[-5.0, 2.0, np.nan]])
    masked = pool_columns(a, 3, masked=[0, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(masked.values[0, :2], [1.0, 1.25])
    assert masked.masked.tolist() == [False, False, True]
    with pytest.raises(InputDataError, match="expected one of mean, maxabs"):
        pool_columns(a, 3, "median")


def test_large_heatmap_is_an_image_with_the_right_pixels():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 700)).astype(np.float32)
    fig = heatmap(a, title="big")
    assert "one colour per cell" in fig.caption
    images = [attrs for t, attrs in Tree(fig.svg).tags if t == "image"]
    assert len(images) == 1
    uri = images[0]["href"]
    assert uri.startswith("data:image/png;base64,")
    import base64
    pix = decode_png(base64.b64decode(uri.split(",", 1)[1]))
    ch = pix.shape[0] // 40
    cw = pix.shape[1] // 700
    assert pix.shape == (40 * ch, 700 * cw, 3)
    np.testing.assert_array_equal(pix[::ch, ::cw], Scale.fit(a).rgb(a))
    rows = Tree(fig.svg).titles_of("rect")
    assert len(rows) == 40 and rows[0][0].startswith("h0: min ")


def test_png_roundtrip_and_by_hand():
    rng = np.random.default_rng(4)
    for channels in (3, 4):
        img = rng.integers(0, 256, size=(7, 5, channels), dtype=np.uint8)
        img[3] = img[2]  # a repeated row: stored with the Up filter, all zeros
        img[5] = np.arange(15 if channels == 3 else 20).reshape(5, channels)  # a ramp
        data = encode_png(img)
        np.testing.assert_array_equal(decode_png(data), img)
        # by hand: chunks, checksums, header, and the rows undone byte by byte
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        pos, chunks = 8, {}
        while pos < len(data):
            n, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + n]
            assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
            chunks[kind] = body
            pos += 12 + n
        w, h, depth, ctype = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
        assert (w, h, depth, ctype) == (5, 7, 8, 2 if channels == 3 else 6)
        raw = zlib.decompress(chunks[b"IDAT"])
        assert _unfilter_by_hand(raw, 5, 7, channels) == img.tobytes()
        stride = 5 * channels + 1
        assert raw[3 * stride] == 2 and not any(raw[3 * stride + 1:4 * stride])
    with pytest.raises(InputDataError, match="uint8"):
        encode_png(np.zeros((2, 2, 3)))


def _predict(kind, a, b, c):
    p = a + b - c
    paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else \
        (b if abs(p - b) <= abs(p - c) else c)
    return [0, a, b, (a + b) // 2, paeth][kind]


def _unfilter_by_hand(raw, w, h, bpp):
    """The PNG spec's row filters undone byte by byte."""
    stride, out, prev = w * bpp, b"", bytearray(w * bpp)
    for y in range(h):
        kind = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            c = prev[i - bpp] if i >= bpp else 0
            row[i] = (row[i] + _predict(kind, a, prev[i], c)) & 0xFF
        out += bytes(row)
        prev = row
    return out


def _png_with_filters(img):
    """A PNG whose rows use filters 0, 1, 2, 3, 4 in turn (reference filtering)."""
    h, w, c = img.shape
    out, prev = b"", bytearray(w * c)
    for y in range(h):
        kind, row = y % 5, img[y].tobytes()
        f = bytearray()
        for i, x in enumerate(row):
            a = row[i - c] if i >= c else 0
            cc = prev[i - c] if i >= c else 0
            f.append((x - _predict(kind, a, prev[i], cc)) & 0xFF)
        out += bytes([kind]) + bytes(f)
        prev = bytearray(row)

    def chunk(k, d):
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(out)) + chunk(b"IEND", b""))


def test_png_reader_undoes_every_filter():
    img = np.random.default_rng(5).integers(0, 256, size=(10, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(_png_with_filters(img)), img)


def test_line_plot_points_and_gaps():
    y = np.array([1.0, 0.1, 0.0, 1e-3, np.nan, 1e-5])
    fig = line_plot({"g": y, "bound": np.ones(6)}, log_y=True, x_label="t", dashed=["bound"],
                    bands={"g": (y * 0.5, y * 2)})
    titles = [t for t, _ in Tree(fig.svg).titles_of("circle")]
    assert "g @ t=3: 0.001" in titles and "bound @ t=0: 1.0" in titles
    assert len(titles) == 4 + 6  # 0 and NaN are not drawn on a log axis
    assert "2 points not drawn" in fig.caption
    assert 'stroke-dasharray="5 3"' in fig.svg and "<polygon" in fig.svg
    with pytest.raises(InputDataError, match="at least one"):
        line_plot({})


def test_stacked_bars_shares_titles_and_pooling():
    xw, hu, b = np.array([0.5, 0.25]), np.array([0.25, 0.5]), np.array([0.25, 0.25])
    fig = stacked_bars({"x·W": xw, "h·U": hu, "b": b}, ["t=0", "t=1"], title="z")
    titles = [t for t, _ in Tree(fig.svg).titles_of("rect")]
    assert len(titles) == 6 and "t=1 · h·U: 0.5 (50.0%)" in titles
    assert ">100%<" in fig.svg
    many = stacked_bars({"a": np.ones(1000), "b": np.zeros(1000)}, max_bars=100)
    assert "1000 steps pooled into 100 columns of 10" in many.caption
    assert len(Tree(many.svg).titles_of("rect")) == 200
    with pytest.raises(InputDataError, match="negative"):
        stacked_bars({"a": np.array([-1.0])})


def test_histogram_counts_and_non_finite():
    v = np.array([0.0, 0.1, 0.1, 0.9, 1.0, np.nan, np.inf])
    fig = histogram(v, bins=2)
    titles = [t for t, _ in Tree(fig.svg).titles_of("rect")]
    assert titles == ["[0, 0.5): 3", "[0.5, 1]: 2"]
    assert "1 NaN, 1 +inf" in fig.caption and "5 values in 2 bins" in fig.caption


def test_diverging_palette_is_even_and_symmetric():
    lab = rgb_to_lab(DIVERGING_RGB[:STEPS])
    light = lab[:, 0]
    mid = STEPS // 2
    assert light[mid - 1] > 95 and light[mid] > 95  # white at 0
    assert np.all(np.diff(light[:mid]) > 0) and np.all(np.diff(light[mid:]) < 0)
    np.testing.assert_allclose(light[:mid], light[::-1][:mid], atol=1.5)  # equal depth
    assert DIVERGING_RGB[0, 2] > DIVERGING_RGB[0, 0]  # blue end
    assert DIVERGING_RGB[STEPS - 1, 0] > DIVERGING_RGB[STEPS - 1, 2]  # red end


def test_a_long_sequence_page_stays_small():
    rng = np.random.default_rng(6)
    h = np.tanh(np.cumsum(rng.normal(0, 0.2, (64, 1000)), axis=1)).astype(np.float32)
    page = Page("big").section("h", heatmap(h)).section(
        "g", line_plot({"g": 0.9 ** np.arange(1000)}, log_y=True))
    assert len(page.render().encode()) < 2_000_000


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium")
                                       else None)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_browser_draws_the_page(tmp_path):
    doc, _ = demo_page()
    html_file = tmp_path / "page.html"
    html_file.write_text(doc, encoding="utf-8")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1000,900", html_file.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if not shot.exists():
        pytest.skip("chromium ran but wrote no screenshot here")
    pix = decode_png(shot.read_bytes())[..., :3]
    assert pix.shape[:2] == (900, 1000)
    colours = np.unique(pix.reshape(-1, 3), axis=0)
    assert len(colours) > 50
    # the heatmap's ends: strong blues and strong reds are on screen
    flat = pix.reshape(-1, 3).astype(int)
    assert ((flat[:, 2] - flat[:, 0] > 80) & (flat[:, 2] > 120)).sum() > 500
    assert ((flat[:, 0] - flat[:, 2] > 80) & (flat[:, 0] > 120)).sum() > 500


def test_every_picture_is_a_well_formed_standalone_svg():
    import xml.etree.ElementTree as ET
    a = np.array([[0.0, np.nan], [np.inf, -np.inf]])
    figures = [heatmap(a, title="a & <b>", row_labels=["<r>", "&"]),
               heatmap(np.arange(6).reshape(2, 3), diverging=False),
               heatmap(np.random.default_rng(7).normal(size=(30, 900))),
               line_plot({"<x>": np.array([1.0, np.nan, 2.0])}, title="&"),
               stacked_bars({"a&b": np.array([0.2, 0.8])}),
               histogram(np.array([np.nan]))]
    for fig in figures:
        root = ET.fromstring(fig.svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert not list(root.iter("{http://www.w3.org/2000/svg}script"))
    assert ET.fromstring(figures[0].svg).find("{http://www.w3.org/2000/svg}title").text == "a & <b>"


def test_sequential_heatmap_runs_pale_to_dark():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    fig = heatmap(a, diverging=False)
    fills = {t: attrs["fill"] for t, attrs in Tree(fig.svg).titles_of("rect")}
    scale = Scale.fit(a, diverging=False)
    assert (scale.lo, scale.hi) == (0.0, 5.0) and "Pale at 0, dark at 5" in fig.caption
    lab = rgb_to_lab(np.array([[int(fills[k][i:i + 2], 16) for i in (1, 3, 5)]
                               for k in ("h0 @ t=0: 0.0", "h1 @ t=2: 5.0")], dtype=np.uint8))
    assert lab[0, 0] > 90 and lab[1, 0] < 30


def test_an_all_zero_heatmap_does_not_call_its_scale_the_largest_magnitude():
    """A zero bias's caption read 'full colour at ±1 (the largest magnitude)'."""
    zero = heatmap(np.zeros((2, 3)), title="bias")
    assert "(every value is 0)" in zero.caption and "largest magnitude" not in zero.caption
    some = heatmap(np.array([[0.0, -0.5], [0.25, 0.0]]), title="w")
    assert "full colour at ±0.5 (the largest magnitude)" in some.caption
