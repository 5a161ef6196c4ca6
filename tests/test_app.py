"""The web app for real: `python app.py` in a subprocess on a free local port, driven with
gradio_client (API level) and with Playwright in Debian's Chromium (browser level)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, long_video, truncated_video

ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_runs(tiny_ckpt, tmp_path_factory):
    """The app's runs folder, holding a run as vap train leaves it (checkpoint, config, log, split)."""
    import shutil

    runs = tmp_path_factory.mktemp("runs")
    run = runs / "x"
    run.mkdir()
    shutil.copyfile(tiny_ckpt, run / "best.pt")
    for f in ("config.yaml", "train.log", "split.csv"):
        (run / f).write_text(f"{f} of a run\n")
    shutil.copyfile(Path(tiny_ckpt).parent / "confusion_val.png", run / "confusion_val.png")
    return runs


def app_tmp(runs: Path) -> Path:
    """The app process's temp folder (TMPDIR): its vap-app-* folder lies there."""
    d = runs.parent / "app-tmp"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="module")
def app_url(tiny_ckpt, app_runs):
    port = free_port()
    runs = app_runs
    log = open(runs / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--checkpoint", str(tiny_ckpt), "--port", str(port),
                             "--runs", str(runs), "--max-duration", "60", "backbone.runtime=onnxruntime"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False",
                                     VAP_CACHE=str(runs.parent / "app-cache"), TMPDIR=str(app_tmp(runs))))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((runs / "app.log").read_text())
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("app did not start: " + (runs / "app.log").read_text())
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return long_video(tmp_path_factory.mktemp("clip") / "squat_jump.mp4", ["squat", "jump"], seconds=3.0)


@pytest.fixture(scope="module")
def expected(tiny_ckpt, clip):
    """What the library says about the clip: the app must show the same."""
    from pipeline.inference.predict import Predictor

    return Predictor.from_checkpoint(tiny_ckpt).predict(clip)


def test_app_refuses_settings_that_change_the_model(tiny_ckpt):
    p = subprocess.run([sys.executable, "app.py", "--checkpoint", str(tiny_ckpt), "backbone.input_size=96"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "backbone.input_size: cannot change after training" in p.stderr
    assert "Traceback" not in p.stderr


def test_example_videos_are_bundled(tmp_path):
    from pipeline.app import example_videos
    from pipeline.data.video import probe

    ex = example_videos(str(tmp_path / "no-runs"))
    assert len(ex) == 4 and all(probe(e).num_frames > 0 for e in ex)


def test_api_analyse_a_real_video(app_url, clip, expected):
    from gradio_client import Client, handle_file

    from pipeline.data.video import probe

    c = Client(app_url, verbose=False)
    label, plot, annotated, summary, files = c.predict(handle_file(str(clip)), api_name="/analyse")
    assert label["label"] == expected.topk[0][0] and len(label["confidences"]) == 4
    got = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert all(abs(got[lbl] - p) < 1e-3 for lbl, p in expected.topk)
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image")
    info = probe(annotated)  # the annotated video exists and decodes, frame for frame
    assert info.num_frames == 150 and annotated.endswith(".mp4")
    assert all(f"| {s.start:.1f} | {s.end:.1f} | {s.label} |" in summary for s in expected.segments)
    assert sorted(Path(f).name for f in files) == ["prediction.json", "segments.csv"]


def test_api_a_truncated_upload_shows_the_warning(app_url, tmp_path):
    from gradio_client import Client, handle_file

    cut = truncated_video(tmp_path / "cut.mp4")
    summary = Client(app_url, verbose=False).predict(handle_file(str(cut)), api_name="/analyse")[3]
    assert "**Warning:** only" in summary and "of 32 expected frames decoded" in summary, summary


def test_api_results_do_not_pile_up_in_the_temp_folder(app_url, app_runs):
    """Twelve analyses leave at most KEEP_RESULTS result folders behind in the app's temp folder."""
    from gradio_client import Client, handle_file

    from pipeline.app import KEEP_RESULTS

    clip = long_video(app_runs.parent / "short.mp4", ["jump"], seconds=1.0)
    c = Client(app_url, verbose=False)
    for _ in range(12):
        c.predict(handle_file(str(clip)), api_name="/analyse")
    (work,) = app_tmp(app_runs).glob("vap-app-*")
    assert len(list((work / "results").iterdir())) == KEEP_RESULTS


def test_results_older_than_the_cache_age_are_swept(tmp_path):
    """An idle app's temp folder goes back to its size at start: result folders older than --cache-age go."""
    from pipeline.app import scratch, sweep_results

    old, new = scratch(tmp_path), scratch(tmp_path)
    (old / "annotated.mp4").write_bytes(b"x" * 1000)
    (new / "annotated.mp4").write_bytes(b"x" * 1000)
    past = time.time() - 120
    os.utime(old, (past, past))
    assert sweep_results(tmp_path, age=60) == 1
    assert not old.exists() and (new / "annotated.mp4").is_file()
    assert sweep_results(tmp_path / "nothing-here", age=60) == 0


def test_api_model_tab(app_url, tiny_ckpt):
    from gradio_client import Client

    c = Client(app_url, verbose=False)
    card, image = c.predict(str(tiny_ckpt), api_name="/switch_model")[-2:]
    assert "jump, squat, walk_right, wave" in card and "tiny_cnn" in card and "Validation" in card
    assert image and Path(image).stat().st_size > 1000  # the run's confusion matrix


def test_api_bad_upload_is_a_message_and_the_app_keeps_serving(app_url, tmp_path, clip, expected):
    from gradio_client import Client, handle_file

    c = Client(app_url, verbose=False)
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 100)
    with pytest.raises(Exception) as e:
        c.predict(handle_file(str(bad)), api_name="/analyse")
    assert "notes.mp4" in str(e.value) and "Upload a video file" in str(e.value)
    assert "Traceback" not in str(e.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(Exception, match="empty"):
        c.predict(handle_file(str(empty)), api_name="/analyse")
    label = c.predict(handle_file(str(clip)), api_name="/analyse")[0]  # still serving
    assert label["label"] == expected.topk[0][0]


def test_concurrent_analyses_never_share_a_predictor(tiny_ckpt, synth_test):
    """Each analysis carries its video's moving-region tracker in the predictor it uses: four at once
    must give exactly what each gives alone (the app runs several analyses at once on bigger machines).
    Their predictors are built at the same time too: a random-init backbone (tiny_cnn here) built while
    another thread builds a head used to come out different (both drew from PyTorch's global generator)
    and fail its fingerprint check."""
    import numpy as np

    from pipeline.app import Models

    models = Models()
    videos = sorted(synth_test.glob("*/*_000.mp4"))
    with models.predictor(str(tiny_ckpt)) as p:
        alone = {v: p.predict(v).step_probs for v in videos}
    got, errors = {}, []
    start, held = threading.Barrier(len(videos), timeout=60), threading.Barrier(len(videos), timeout=60)

    def one(v):
        try:
            start.wait()
            with models.predictor(str(tiny_ckpt)) as p:
                held.wait()  # every analysis holds a predictor before any predicts: all of them run at once
                got[v] = p.predict(v).step_probs
        except Exception as e:  # noqa: BLE001 - reported by the assertion below, not lost in a thread
            errors.append(f"{v.name}: {type(e).__name__}: {e}")
            start.abort(), held.abort()  # the others stop waiting for this one

    for _ in range(3):  # the race needs builds to overlap: a few rounds, each a fresh set of predictors
        models = Models()
        threads = [threading.Thread(target=one, args=(v,)) for v in videos]
        [t.start() for t in threads]
        [t.join(120) for t in threads]
        assert not errors, errors
        assert all(np.array_equal(got[v], alone[v]) for v in videos)
        assert len(models._free[(str(tiny_ckpt), False)]) == len(videos)  # the pool: as many as ran at once
        start.reset(), held.reset()


def test_api_eight_concurrent_uploads_all_complete(app_url, clip):
    from gradio_client import Client, handle_file

    results, errors = [], []

    def one():
        try:
            results.append(Client(app_url, verbose=False).predict(handle_file(str(clip)), api_name="/analyse")[0])
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors and len(results) == 8
    assert len({r["label"] for r in results}) == 1  # the same video gives the same answer


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (.ci/run installs it)")
def test_browser_upload_shows_the_label_and_plays_the_video(app_url, clip, tmp_path, expected):
    pw = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app_url)
        page.locator("input[type=file]").first.set_input_files(str(clip))
        page.get_by_role("button", name="Analyse").click()
        page.wait_for_function(
            "() => document.querySelector('#annotated video') && document.querySelector('#annotated video').src",
            timeout=120_000)
        label_text = page.locator(".output-class").first.inner_text(timeout=60_000)
        assert label_text.strip() == expected.topk[0][0]
        kept = page.evaluate("() => { const v = document.querySelector('#upload video'); return v && v.src; }")
        assert kept, "the upload box lost the uploaded video after Analyse"
        playing = page.evaluate("""async () => {
            const v = document.querySelector('#annotated video');
            v.muted = true; await v.play();
            await new Promise(r => setTimeout(r, 1000));
            return {t: v.currentTime, w: v.videoWidth, err: v.error && v.error.code};
        }""")
        assert playing["err"] is None and playing["w"] > 0 and playing["t"] > 0.2, playing
        page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "app.png").stat().st_size > 10_000


def test_the_app_serves_no_checkpoint_config_log_or_cache_file(app_url, app_runs, tiny_ckpt):
    """Gradio's file route refuses what lies in the runs folder and the feature cache (the checkpoint
    the app itself runs included), while the files of a result it showed are served."""
    from gradio_client import Client

    cache = app_runs.parent / "app-cache" / "ab" / "entry.npz"  # an entry of the app's feature cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(b"features of someone's video")
    secret = [app_runs / "x" / "best.pt", app_runs / "x" / "config.yaml", app_runs / "x" / "train.log", cache]
    for path in secret:
        try:
            with urllib.request.urlopen(f"{app_url}gradio_api/file={path}", timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert status in (403, 404), (path, status)
    # what the page shows is served: the confusion matrix of a run in that folder, through a copy
    card, image = Client(app_url, verbose=False).predict(str(app_runs / "x" / "best.pt"), api_name="/switch_model")[-2:]
    assert Path(image).read_bytes() == (app_runs / "x" / "confusion_val.png").read_bytes()


def test_webcam_handler_carries_state_and_resets(tiny_ckpt):
    import numpy as np

    from pipeline.app import Models, stream_frame

    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    label, text, state, people = stream_frame(Models(), str(tiny_ckpt), frame, None)
    assert people is None  # the per-person frame only when asked for
    assert set(label) <= {"jump", "squat", "walk_right", "wave"} and "ms per frame" in text
    sp = state["sp"]
    for _ in range(3):
        time.sleep(0.15)  # past the model's 8 fps sampling interval: every push is a new step
        label, text, state, _ = stream_frame(Models(), str(tiny_ckpt), frame, state)
    assert state["sp"] is sp and sp.n_steps == 4 and "4 steps" in text  # one predictor per session
    _, _, fresh, _ = stream_frame(Models(), str(tiny_ckpt), frame, None)  # reset = state None
    assert fresh["sp"].n_steps == 1


def test_timeline_of_a_clip_shorter_than_a_window_shows_the_steps(tmp_path, tiny_ckpt):
    from pipeline.app import timeline_figure
    from pipeline.inference.predict import Predictor

    pred = Predictor.from_checkpoint(tiny_ckpt).predict(long_video(tmp_path / "short.mp4", ["wave"], seconds=1.5))
    assert len(pred.window_times) == 1  # one 2 s window: its curve alone would be a single invisible point
    lines = timeline_figure(pred).axes[0].lines
    assert len(pred.step_times) >= 12  # 1.5 s sampled at the model's 8 fps
    assert lines and all(len(ln.get_xdata()) == len(pred.step_times) for ln in lines)
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    timeline_figure(pred)
    assert len(plt.get_fignums()) == before  # pyplot keeps no figure per analysis (it grew the server)


def test_api_analyse_per_person(app_url, tmp_path):
    from gradio_client import Client, handle_file

    from pipeline.data.people import make_people_videos
    from pipeline.data.video import probe

    video = make_people_videos(tmp_path / "p", videos=1, seconds=4.0, seed=5) / "people_000.mp4"
    c = Client(app_url, verbose=False)
    label, plot, annotated, summary, files = c.predict(handle_file(str(video)), True, api_name="/analyse")
    rows = json.loads(Path(next(f for f in files if f.endswith("prediction.json"))).read_text())
    assert len(rows) >= 2 and all(isinstance(r["track_id"], int) and r["boxes"] for r in rows)
    assert {x["label"] for x in label["confidences"]} == {f"#{r['track_id']} {r['label']}" for r in rows}
    assert f"**{len(rows)} people** tracked" in summary and plot["type"] == "matplotlib"
    assert probe(annotated).num_frames == 100  # every frame, boxes drawn
    # the same upload without the box ticked: one label for the video, as before
    label = c.predict(handle_file(str(video)), False, api_name="/analyse")[0]
    assert not label["label"].startswith("#")


def test_webcam_handler_per_person_draws_each_person(tiny_ckpt, tmp_path):
    import numpy as np

    from pipeline.app import Models, stream_frame
    from pipeline.data.people import make_people_videos
    from pipeline.data.video import iter_frames

    video = make_people_videos(tmp_path / "p", videos=1, seconds=2.0, seed=5) / "people_000.mp4"
    frames = next(iter_frames(video, sampling="all"))[0]
    state = None
    for f in frames[:10]:
        label, text, state, img = stream_frame(Models(), str(tiny_ckpt), f, state, per_person=True)
        time.sleep(0.13)  # past the model's sampling interval
    assert len(label) >= 2 and all(k.startswith("#") for k in label) and f"{len(label)} people" in text
    assert img.shape == f.shape and np.abs(img.astype(int) - f).sum() > 0  # boxes and names drawn


def write_y4m(path: Path, frames, fps: int = 25) -> Path:
    """RGB frames (T, H, W, 3) -> a YUV4MPEG2 file, which Chromium plays as a fake camera."""
    import cv2

    T, H, W = frames.shape[:3]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for fr in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(fr, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (.ci/run installs it)")
def test_browser_webcam_per_person_on_a_fake_camera(app_url, tmp_path):
    """Chromium's fake camera plays a synthetic scene of two people; the webcam tab, per person, shows each
    person's label and the frame with their boxes - the frame as the camera sent it, not mirrored."""
    import cv2
    import numpy as np

    pw = pytest.importorskip("playwright.sync_api")
    from pipeline.data.people import render_people

    frames, _ = render_people(np.random.default_rng([5, 1]), 2, 6.0, 320, 240, 25.0)
    cam = write_y4m(tmp_path / "people.y4m", frames)
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={cam}"])
        page = browser.new_context(viewport={"width": 1280, "height": 1000}, permissions=["camera"]).new_page()
        page.goto(app_url)
        page.get_by_role("tab", name="Webcam").click()
        page.locator("#cam_per_person input").check()
        page.get_by_text("Click to Access Webcam").click()
        page.get_by_role("button", name="capture photo").click()  # starts streaming
        page.wait_for_function("() => document.querySelector('#people_frame img')", timeout=120_000)
        time.sleep(3)
        labels = page.locator(".output-class").first.inner_text(timeout=60_000)
        src = page.locator("#people_frame img").get_attribute("src")
        browser.close()
    assert labels.strip().startswith("#")  # a person's id and action
    with urllib.request.urlopen(src, timeout=10) as r:
        shown = cv2.cvtColor(cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert shown.shape == frames.shape[1:]
    err = lambda a: np.abs(a.astype(np.int16) - shown).mean(axis=(1, 2, 3)).min()  # noqa: E731 (best frame)
    assert err(frames) < 0.5 * err(frames[:, :, ::-1])  # the camera's own frames, not their mirror image
