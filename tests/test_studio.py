"""The studio's pages through Streamlit's AppTest (the real script, real workers, real preview renders) and
its plain functions: shot -> manifest, background jobs (GPU lock, cancel), run history, manifest checks."""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pipeline import catalog
from pipeline.cli import main
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest, load_manifest_text
from pipeline.storage.outdir import prepare_out_dir
from pipeline.studio import editor, engine, jobs, runs, shots
from pipeline.studio.config import ENV_VAR, StudioConfig
from pipeline.studio.plain import literal
from pipeline.studio.worker import ClipSteps, StatusFile, gpu_locks

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "pipeline" / "studio" / "app.py"
T = TypeVar("T")
USER = "tester"  # who the gate would name (AppTest seeds st.user as Streamlit's trustedUserHeaders would)


def wait_for(condition: Callable[[], T], *, what: str, timeout: float = 240.0) -> T:
    """Wait until `condition()` is truthy (a generous limit only guards against a hang; nothing is timed)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)
    return value


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StudioConfig]:
    (tmp_path / "workspace").mkdir()
    cfg = StudioConfig(out_dir=tmp_path / "out", workspace=tmp_path / "workspace")
    monkeypatch.setenv(ENV_VAR, cfg.to_env())
    yield cfg
    for job in jobs.list_jobs(cfg):  # never leave a worker behind
        if job.active:
            jobs.cancel_job(cfg, job.id, user=job.owner)
            wait_for(lambda j=job: not jobs.read_job(jobs.jobs_dir(cfg) / j.id).active, what="worker to stop")


def app(user: str = USER) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.user = {"name": user}
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str) -> Any:
    [found] = [b for b in at.button if b.label == label]
    return found


def finished(config: StudioConfig, job_id: str) -> jobs.StudioJob | None:
    job = jobs.read_job(jobs.jobs_dir(config) / job_id)
    return None if job.active else job


def test_shot_page_enhance_edit_generate_play_and_save_as_manifest(config: StudioConfig, tmp_path: Path) -> None:
    at = app()
    # the prompts, frames and seed are one form: what was typed travels with the click (AppTest, like the browser,
    # sends a form's values only with its submit), so each step sets its values and clicks in one run
    at.text_area(key="prompt").input("A bee on a flower")
    button(at, "Enhance").click().run()
    # the passthrough enhancer returns the prompt as written, held to the model's limit, and says so
    assert at.text_area(key="final_prompt").value == "A bee on a flower"
    assert any("passthrough" in c.value for c in at.caption)
    edited = "A honey bee lands on a yellow flower, macro lens, early morning light"
    at.text_area(key="final_prompt").input(edited)
    at.selectbox(key=f"frames-{catalog.DEFAULT_VIDEO_MODEL}").set_value(17)
    at.number_input(key="seed").set_value(7)
    button(at, "Generate video").click().run()
    assert not at.exception, at.exception
    tokens, limit = engine.token_count(edited, model=catalog.DEFAULT_VIDEO_MODEL)
    assert any(c.value.startswith(f"~{tokens} / {limit} tokens") for c in at.caption)
    job_id = at.session_state["current_job"]
    job = wait_for(lambda: finished(config, job_id), what="the shot to render")
    assert job.state == "succeeded", job.message

    # the shot is a real run: its report, its cached clip, and what the model received
    report = json.loads((config.out_dir / str(job.report)).read_text())
    [video] = report["videos"]
    [clip] = video["clips"]
    assert (clip["prompt"], clip["frames"], clip["seed"], clip["model"]) == (edited, 17, 7, catalog.DEFAULT_VIDEO_MODEL)
    assert video["duration_s"] == pytest.approx(17 / 8, abs=1e-3)
    assert list((config.out_dir / "cache" / "clip").glob(f"{clip['key']}.mp4"))

    at.run()  # the page shows the player and the download of that video
    videos = at.get("video")
    assert len(videos) == 1
    downloads = [d for d in at.get("download_button")]
    assert len(downloads) == 1

    # Save as manifest: a valid campaign whose clip is the one just made (a re-run executes no clip)
    at.text_input(key="save_campaign").input("bee-teaser").run()
    target = config.workspace / "saved" / "bee.yaml"
    target.parent.mkdir()
    at.text_input(key="save_path").input("saved/bee.yaml").run()
    [save] = [b for b in at.button if b.label == "Save as manifest"]
    save.click().run()
    assert not at.exception, at.exception
    campaign = load_manifest(target)
    assert campaign.name == "bee-teaser" and campaign.videos[0].shots[0].prompt == edited
    out = config.out_dir
    assert main(["run", str(target), "--out", str(out), "--quiet", "--json"]) == 0
    [rerun] = list((out / "runs" / "bee-teaser").glob("*/report.json"))
    clips = [c for v in json.loads(rerun.read_text())["videos"] for c in v["clips"]]
    assert [c["cached"] for c in clips] == [True]


def test_a_new_prompt_replaces_the_text_for_the_model_unless_that_was_edited_in_the_same_submit(
        config: StudioConfig) -> None:
    """Form widgets take no on_change callback, so the page compares each submit with the last: a new prompt
    becomes the text sent to the model (as the old callback did), but an edit of that text made in the same submit
    is kept; what Generate sends is what the boxes held when it was clicked (the request's shot says)."""
    at = app()
    at.text_area(key="prompt").input("A bee")
    button(at, "Enhance").click().run()
    assert at.text_area(key="final_prompt").value == "A bee" and at.session_state["typed_prompt"] == "A bee"
    at.text_area(key="prompt").input("A wasp")  # typed, then Generate at once: the new prompt is what renders
    button(at, "Generate video").click().run()
    assert at.text_area(key="final_prompt").value == "A wasp" and "typed_prompt" not in at.session_state
    first = jobs.read_job(jobs.jobs_dir(config) / at.session_state["current_job"])
    assert first.shot is not None and (first.shot.prompt, first.shot.typed_prompt) == ("A wasp", None)
    at.text_area(key="prompt").input("A moth")
    at.text_area(key="final_prompt").input("A moth at night, lit by a lamp")  # both boxes in one submit
    button(at, "Generate video").click().run()
    assert not at.exception, at.exception
    second = jobs.read_job(jobs.jobs_dir(config) / at.session_state["current_job"])
    assert second.id != first.id and second.shot is not None and second.shot.prompt == "A moth at night, lit by a lamp"
    for job in (first, second):
        assert wait_for(lambda j=job: finished(config, j.id), what="the shots to render").state == "succeeded"


def test_runs_page_lists_runs_newest_first_filters_and_opens_a_report(config: StudioConfig,
                                                                       write_campaign: Callable[..., Path]) -> None:
    for name in ("alpha-run", "beta-run"):
        manifest = write_campaign(f"""
            campaign: {name}
            videos:
              - id: v
                shots:
                  - prompt: A {name} shot
                    frames: 9
                    enhance: false
            """, name=f"{name}.yaml")
        main(["run", str(manifest), "--out", str(config.out_dir), "--quiet"])
    listed = runs.list_runs(config.out_dir)
    assert [r.campaign for r in listed] == ["beta-run", "alpha-run"]  # newest first
    assert [r.campaign for r in runs.list_runs(config.out_dir, campaigns=["alpha-run"])] == ["alpha-run"]
    assert runs.list_runs(config.out_dir, statuses=["failed"]) == []

    at = app()
    at.sidebar.radio(key="page").set_value("Runs").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="run").value.startswith("beta-run / ")
    at.multiselect(key="runs_campaigns").set_value(["alpha-run"]).run()
    assert at.selectbox(key="run").options == [f"alpha-run / {listed[1].run_id} — succeeded"]
    assert [h.value for h in at.header] == [literal(f"alpha-run / {listed[1].run_id}")]
    assert len(at.get("video")) == 1  # the run's video with a player, in place
    at.multiselect(key="runs_status").set_value(["partial"]).run()
    assert any("no runs" in i.value for i in at.info)


def test_manifest_page_shows_each_problem_with_line_and_column_then_plans_and_runs(config: StudioConfig) -> None:
    bad = "campaign: Bad Name\nvideos:\n  - id: v\n    shots:\n      - prompt: hi\n        frames: 10\n"
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest_text(bad, file="campaign.yaml", base_dir=config.studio_dir / "manifests")
    at = app()
    at.sidebar.radio(key="page").set_value("Manifest").run()
    type_into_editor(at, bad)
    shown = [m.value for m in at.markdown]
    for p in exc.value.problems:
        assert any(f"line {p.line}, column {p.col}:" in m and literal(p.message) in m for m in shown), (p, shown)
    assert {p.line for p in exc.value.problems} >= {1, 6}
    # the editor receives the same problems, to mark their lines
    marked = editor_data(at)["problems"]
    assert [(m["line"], m["col"]) for m in marked] == [(p.line, p.col) for p in exc.value.problems]
    assert all(p.message in m["message"] for p, m in zip(exc.value.problems, marked, strict=True))

    type_into_editor(at, engine.STARTER_MANIFEST)
    assert not at.exception, at.exception
    assert editor_data(at)["problems"] == []
    assert any(s.value.startswith("valid:") for s in at.success)
    [run] = [b for b in at.button if b.label == "Run locally"]
    run.click().run()
    [job] = jobs.list_jobs(config)
    done = wait_for(lambda: finished(config, job.id), what="the manifest's run")
    assert done.state == "succeeded" and done.campaign == "my-campaign" and done.owner == USER, done.message
    assert (config.workspace / "campaign.yaml").read_text() == engine.STARTER_MANIFEST  # saved in the workspace
    assert [r.campaign for r in runs.list_runs(config.out_dir)] == ["my-campaign"]
    submit = [b for b in at.button if b.label == "Submit to AWS"]
    assert submit[0].disabled  # no input bucket configured


def test_a_submit_aws_refuses_is_one_line_on_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     offline_aws: None) -> None:
    """Submit to a bucket that does not exist (moto): the page says so in one line; no traceback, no success."""
    from moto import mock_aws

    (tmp_path / "workspace").mkdir()
    cfg = StudioConfig(out_dir=tmp_path / "out", workspace=tmp_path / "workspace", input_bucket="no-such-bucket")
    monkeypatch.setenv(ENV_VAR, cfg.to_env())
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        at = app()
        at.sidebar.radio(key="page").set_value("Manifest").run()
        type_into_editor(at, engine.STARTER_MANIFEST)
        [submit] = [b for b in at.button if b.label == "Submit to AWS"]
        submit.click().run()
    assert not at.exception, at.exception
    assert not [s for s in at.success if "manifest" in s.value and "s3://" in s.value]
    errors = [e.value for e in at.error]
    assert any(e.startswith(literal("not submitted: ")) and "NoSuchBucket" in e for e in errors), errors


def editor_data(at: AppTest) -> dict[str, Any]:
    """What the page sent the manifest editor (a components-v2 element: AppTest shows it as an UnknownElement
    whose proto carries the JSON `data`)."""
    [element] = at.get("bidi_component")
    assert element.proto.component_name == "campaign_manifest_editor"
    data: dict[str, Any] = json.loads(element.proto.json)
    return data


def type_into_editor(at: AppTest, text: str) -> None:
    """An edit as the browser sends it, through the editor's own callback body. AppTest cannot send a
    components-v2 value: its widget states come only from the element classes it knows (element_tree.py's
    get_widget_states), so the browser test drives the real component."""
    assert editor.take_edit(at.session_state, text_key="manifest_text",
                            edit={"text": text, "revision": editor_data(at)["revision"]})
    at.run()
    assert not at.exception, at.exception


def test_manifest_editor_load_replaces_the_text_and_an_edit_typed_before_it_cannot_undo_it(
        config: StudioConfig, tmp_path: Path) -> None:
    bad = "campaign: Bad Name\nvideos: []\n"
    target = config.workspace / "loaded.yaml"
    target.write_text(bad)
    at = app()
    at.sidebar.radio(key="page").set_value("Manifest").run()
    first = editor_data(at)
    assert (first["text"], first["debounce_ms"], first["problems"]) == (engine.STARTER_MANIFEST, editor.DEBOUNCE_MS, [])

    at.text_input(key="manifest_path").input("loaded.yaml").run()
    [load] = [b for b in at.button if b.label == "Load"]
    load.click().run()
    loaded = editor_data(at)
    assert loaded["revision"] == first["revision"] + 1 and loaded["text"] == bad  # the browser replaces its text
    assert 1 in {m["line"] for m in loaded["problems"]}

    # an edit typed into the starter text that arrives after the Load is refused, so it cannot undo the Load
    late = {"text": engine.STARTER_MANIFEST + "# typed before Load\n", "revision": first["revision"]}
    assert not editor.take_edit(at.session_state, text_key="manifest_text", edit=late)
    assert at.session_state["manifest_text"] == bad

    # one typed into the loaded text is the text Save writes; typing never raises the revision
    type_into_editor(at, engine.STARTER_MANIFEST)
    assert editor_data(at)["revision"] == loaded["revision"]
    assert any(s.value.startswith("valid:") for s in at.success)
    [save] = [b for b in at.button if b.label == "Save"]
    save.click().run()
    assert target.read_text() == engine.STARTER_MANIFEST

    with pytest.raises(ValueError, match="expected an edit .* got 'oops'"):
        editor.take_edit({}, text_key="manifest_text", edit="oops")


def test_a_gpu_backend_renders_one_job_per_model_and_a_waiting_job_can_be_cancelled(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    models = tmp_path / "models"
    (models / "cogvideox-5b").mkdir(parents=True)
    (models / "cogvideox-5b" / "model_index.json").write_text(json.dumps({"_class_name": "CogVideoXPipeline"}))
    config = StudioConfig(out_dir=tmp_path / "out", backend_argv=("--video", "diffusers", "--models", str(models)))
    prepare_out_dir(config.out_dir)  # as `campaign studio` does before it writes there: only a marked folder is ours
    lock = config.studio_dir / "locks" / "diffusers-cogvideox-5b.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as held:  # another renderer of this model holds the GPU
        fcntl.flock(held, fcntl.LOCK_EX)
        # started as from `nohup campaign studio &`: the worker inherits SIGINT ignored, and Cancel must still work
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            job = jobs.start_job(config, campaign="studio", shot=shots.ShotSpec(prompt="A bee", frames=9), owner=USER)
        finally:
            signal.signal(signal.SIGINT, previous)
        waiting = wait_for(lambda: (j := jobs.read_job(jobs.jobs_dir(config) / job.id)).message.startswith("waiting")
                           and j, what="the job to wait for the renderer")
        assert waiting.state == "queued" and "cogvideox-5b" in waiting.message
        assert jobs.cancel_job(config, job.id, user=USER)
        done = wait_for(lambda: finished(config, job.id), what="the cancelled worker to stop")
    assert done.state == "cancelled"
    assert not list((config.out_dir / "cache").glob("clip/*.mp4"))  # it never rendered


def test_a_generation_reports_each_clips_frames_as_it_renders(config: StudioConfig) -> None:
    """The preview backend reports each frame drawn (diffusers each denoising step: tests/test_container.py);
    the worker keeps the latest per clip in status.json, where the page shows it under the job's progress."""
    job = jobs.start_job(config, campaign="studio", shot=shots.ShotSpec(prompt="A bee", frames=17), owner=USER)
    done = wait_for(lambda: finished(config, job.id), what="the generation")
    assert done.state == "succeeded", done.message
    assert done.rendering == (("clip:shot/01", 17, 17, "frame"),) and done.in_progress == ()
    status = json.loads((jobs.jobs_dir(config) / job.id / "status.json").read_text())
    assert status["rendering"] == {"clip:shot/01": [17, 17, "frame"]}


def test_the_shot_page_shows_the_steps_of_a_clip_being_rendered(config: StudioConfig) -> None:
    """A job mid-render, as a diffusers worker leaves it (status.json written by the worker's own StatusFile)."""
    folder = jobs.jobs_dir(config) / "20261125T000000Z-demo"
    folder.mkdir(parents=True)
    (folder / "request.json").write_text(json.dumps({"id": folder.name, "campaign": "studio", "manifest": "m.yaml",
                                                     "shot": shots.ShotSpec(prompt="A bee").to_dict()}))
    status = StatusFile(folder)
    ClipSteps(status, {"k1": "clip:shot/01"})("k1", 12, 50, "step")
    status.update(state="running", total=2, done=1)
    worker = subprocess.Popen(["sleep", "600"])  # stands in for the worker process while the page looks
    try:
        (folder / "pid").write_text(str(worker.pid))
        at = app()
        texts = [p.proto.text for p in at.get("progress")]
        # progress text reads Markdown, so the page passes it through plain.literal
        assert literal("clip:shot/01: step 12/50") in texts and any(t.startswith(literal("1/2 job(s)")) for t in texts), texts
    finally:
        worker.kill()
        worker.wait()


def test_previews_take_no_lock(tmp_path: Path) -> None:
    with gpu_locks(tmp_path, backend="preview", models=["cogvideox-5b"], on_wait=lambda m: None):
        assert not (tmp_path / "locks").exists()
    seen: list[str] = []
    with gpu_locks(tmp_path, backend="diffusers", models=["cogvideox-5b"], on_wait=seen.append):
        assert (tmp_path / "locks" / "diffusers-cogvideox-5b.lock").is_file() and seen == []


def test_shots_become_a_self_contained_manifest_with_start_images_beside_it(tmp_path: Path) -> None:
    """An upload lives in the studio's folder; the saved manifest gets its own copy under assets/, so it
    validates (assets stay inside the manifest's folder) and can be moved or submitted as it is."""
    studio = tmp_path / "out" / "studio"
    image = shots.store_upload((Path(__file__).parents[1] / "manifests/assets/sofa.png").read_bytes(), name="sofa.png",
                               studio_dir=studio)
    specs = [shots.ShotSpec(prompt="A sofa in a loft", image=str(image), frames=17, seed=3),
             shots.ShotSpec(prompt="A bee", model="cogvideox1.5-5b", frames=33)]
    target = tmp_path / "elsewhere" / "two.yaml"
    saved = engine.save_manifest(specs, campaign="two-shots", path=target, one_video=True)
    assert saved.problems == ()
    campaign = load_manifest(target)
    [video] = campaign.videos
    first, second = video.shots
    copy = campaign.assets[str(first.image)].path
    assert copy is not None and copy.parent == target.parent.resolve() / "assets"
    assert copy.read_bytes() == image.read_bytes()
    assert (first.prompt, first.frames, first.seed, first.enhance) == ("A sofa in a loft", 17, 3, False)
    assert (second.model, second.frames, second.image) == ("cogvideox1.5-5b", 33, None)
    bad = engine.save_manifest(specs[:1], campaign="No", path=tmp_path / "bad.yaml")
    assert bad.problems and bad.problems[0].line == 1 and not (tmp_path / "bad.yaml").exists()


def test_only_image_to_video_models_are_offered_with_a_start_image() -> None:
    with_image = shots.models_for(image=True)
    assert set(with_image) == {m for m, spec in catalog.VIDEO_MODELS.items() if spec.image_to_video}
    assert "wan2.2-ti2v-5b" in with_image  # one folder does both: no separate image-to-video repository
    assert "cogvideox-2b" not in with_image  # text-to-video only
    assert set(shots.models_for(image=False)) == set(catalog.VIDEO_MODELS)
    frames = dict(shots.frame_options("cogvideox-5b"))
    assert frames[49] == "49 frames (6.125 s)"


def test_studio_command_rejects_a_bad_backend_before_serving(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["studio", "--out", str(tmp_path), "--video", "diffusers"]) == 2  # a configuration error
    assert "--models" in capsys.readouterr().err


