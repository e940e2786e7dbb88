"""What a notebook shows: Batch, Job and Comparison as HTML, cmp.plot() and batch.report() as figures, and lp.show's
grid of images fetched without any credential, with a size cap and a timeout."""

from __future__ import annotations

import asyncio
import http.server
import io
import threading
import time
from pathlib import Path

import labelport as lp
import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


def png(colour=(10, 120, 200), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


class ImageServer:
    """Serves /ok.png, /big.png (over the cap used below) and /slow.png (answers after 3 s); keeps every request's
    headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        seen = self.headers
        body = png()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                seen.append(dict(self.headers))
                if self.path == "/slow.png":
                    time.sleep(3)
                data = body if self.path != "/big.png" else body + b"\0" * 200_000
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()  # no Content-Length: the cap must hold while reading
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def images():
    s = ImageServer()
    yield s
    s.close()


def grey_tile(grid, index: int, columns: int) -> bool:
    """Is tile ``index`` the grey 'no image' tile? (its image area's top right corner)"""
    x = (index % columns) * 256 + 250
    y = (index // columns) * (256 + 18) + 18 + 4
    return grid.getpixel((x, y)) == (200, 200, 200)


def test_show_draws_images_from_urls_paths_and_file_urls_without_credentials(lp_sandbox, images, tmp_path):
    local = tmp_path / "local.png"
    local.write_bytes(png((200, 30, 30)))
    sb = lp_sandbox("alegion", accuracy=1.0)
    records = [
        {"image_id": "a", "image_url": images.url + "/ok.png"},
        {"image_id": "b", "image_url": str(local)},
        {"image_id": "c", "image_url": local.as_uri()},
        {"image_id": "d", "image_url": images.url + "/big.png"},
        {"image_id": "e", "image_url": "ftp://x/y.png"},
    ]
    batch = sb.client().create_batch("pictures")
    batch.upload(records, key="image_id", progress=False)
    batch.wait(timeout=30, poll_interval=0.2, progress=False)
    results = sorted(batch.results(progress=False), key=lambda r: r["key"])
    grid = lp.show(results, n=9, label="label", max_bytes=100_000, columns=5)
    assert grid.size == (5 * 256, 256 + 18)
    assert [grey_tile(grid, i, 5) for i in range(5)] == [False, False, False, True, True]
    # Boxes (Alegion's output.box, shares of the image) are drawn in red on the fetched image.
    reds = sum(1 for x in range(256) for y in range(18, 274) if grid.getpixel((x, y)) == (255, 40, 40))
    assert reds > 50
    assert len(images.headers) == 2  # ok.png and big.png: nothing else went to the network
    secrets = [v for v in sb.credentials.values()]
    for h in images.headers:
        names = {k.lower() for k in h}
        assert not names & {"authorization", "cookie", "x-api-key", "proxy-authorization"}
        assert not any(s in str(h) for s in secrets)


def test_show_gives_up_on_a_slow_image_at_its_timeout(images):
    start = time.monotonic()
    grid = lp.show(
        [{"key": "slow", "input": {"image_url": images.url + "/slow.png"}, "output": {}}], timeout=0.5
    )
    assert time.monotonic() - start < 2.5
    assert grey_tile(grid, 0, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"n": 0}, "n"), ({"max_bytes": -1}, "max_bytes"), ({"timeout": 0}, "timeout"), ({"boxes": 3}, "boxes")],
)
def test_show_refuses_bad_arguments(kwargs, field):
    with pytest.raises(lp.InvalidInput) as e:
        lp.show([{"key": "x", "input": {}, "output": {}}], **kwargs)
    assert e.value.field == field
    with pytest.raises(lp.InvalidInput):
        lp.show([])


def test_batch_job_and_comparison_show_as_html(lp_sandbox):
    sb = lp_sandbox("alegion", exception_rate=0.2, accuracy=0.8)
    sama = lp_sandbox("sama", accuracy=0.8)
    records, key = lp.sandbox.sample_records("alegion", 40)
    batches = {"alegion": sb.client().create_batch("html"), "sama": sama.client().create_batch("html")}
    jobs = lp.fan_out(records, batches, key=key, progress=False)
    for b in batches.values():
        b.wait(timeout=30, poll_interval=0.2, progress=False)

    page = batches["alegion"]._repr_html_()
    status = batches["alegion"].status()
    assert "labelport.Batch" in page and "html" in page
    assert f"exception<br><b>{status['exception']:,}</b>" in page and status["exception"] > 0
    assert "40 of 40 finished (100%)" in page
    job_page = jobs["sama"]._repr_html_()
    assert "state completed" in job_page and "40 of 40 held by the vendor" in job_page

    cmp = lp.compare(batches, fields={"label": "category"})
    page = cmp._repr_html_()
    assert "agreement" in page and "turnaround" in page and "<table" in page

    # The latest error, when the vendor cannot be reached: shown, with no secret in it.
    sb.stop()
    page = batches["alegion"]._repr_html_()
    assert "latest error" in page
    assert not any(v in page for v in sb.credentials.values())


def test_plots_draw_agreement_turnaround_and_label_counts(lp_sandbox, tmp_path: Path):
    fast = lp_sandbox("alegion", accuracy=0.9, complete_after=2.0)
    slow = lp_sandbox("sama", accuracy=0.7, complete_after=6.0)
    records, key = lp.sandbox.sample_records("sama", 50)
    batches = {"alegion": fast.client().create_batch("p"), "sama": slow.client().create_batch("p")}
    lp.fan_out(records, batches, key=key, progress=False)
    fast.advance(10)
    slow.advance(10)
    for b in batches.values():
        b.wait(timeout=30, poll_interval=0.2, progress=False)
    fig = lp.compare(batches, fields={"label": "category"}).plot()
    agree_ax, time_ax, count_ax = fig.axes[:3]
    assert [t.get_text() for t in agree_ax.get_yticklabels()] == ["label"]
    assert [t.get_text() for t in time_ax.get_yticklabels()] == ["alegion", "sama"]
    assert len(count_ax.patches) == 2 * len(lp.sandbox.TRUTH_CLASSES)  # one bar per class and source
    assert sum(p.get_height() for p in count_ax.patches) == 100
    fig.savefig(tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 10_000

    report = batches["alegion"].report()
    status_ax, _, counts_ax = report.axes[:3]
    assert sum(p.get_height() for p in status_ax.patches) == 50
    assert sum(p.get_height() for p in counts_ax.patches) == 50

    async def async_report() -> object:
        client = lp.AsyncClient("alegion", project=fast.project, base_url=fast.url, **fast.credentials)
        return await (await client.batch(batches["alegion"].id)).report()

    again = asyncio.run(async_report())
    status_ax, _, counts_ax = again.axes[:3]  # type: ignore[attr-defined]
    assert sum(p.get_height() for p in status_ax.patches) == 50
    assert sum(p.get_height() for p in counts_ax.patches) == 50
