"""The studio's Streamlit script (started by `campaign studio`): thin widgets over pipeline.studio's functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from botocore.exceptions import BotoCoreError, ClientError

from pipeline import catalog
from pipeline.errors import PipelineError
from pipeline.studio import editor, engine, jobs, runs, shots, workspace
from pipeline.studio.config import DEFAULT_CAMPAIGN, StudioConfig
from pipeline.studio.gate import USER_KEY
from pipeline.studio.plain import literal

PAGES = ("Shot", "Runs", "Manifest")


@st.cache_resource
def _backends(raw_config: str) -> Any:
    """Built once per server: the smollm enhancer loads its model on first use and keeps it."""
    return engine.make_backends(StudioConfig.from_env({"CAMPAIGN_STUDIO_CONFIG": raw_config}))


def current_user() -> str | None:
    """Who is using this page: the gate names them (the local user, or the load balancer's signed-in user) in a
    header Streamlit copies into st.user (server.trustedUserHeaders); a client cannot set it (gate.py)."""
    user = st.user.get(USER_KEY)
    return user if isinstance(user, str) and user else None


def main() -> None:
    config = StudioConfig.from_env()
    st.set_page_config(page_title="campaign studio", layout="wide")
    page = st.sidebar.radio("Page", PAGES, key="page", bind="query-params")  # in the URL: kept on refresh
    st.sidebar.caption(f"signed in as {literal(current_user() or 'nobody')} · output folder: {literal(config.out_dir)} · "
                       f"workspace: {literal(config.workspace)}"
                       + (f" · cloud runs: {literal(f's3://{config.output_bucket}/runs')}" if config.output_bucket else ""))
    if page == "Shot":
        shot_page(config)
    elif page == "Runs":
        runs_page(config)
    else:
        manifest_page(config)


# --- Shot ---------------------------------------------------------------------------------------------


def shot_page(config: StudioConfig) -> None:
    """The start image and the model first (each commits on its own click and changes what follows: the models
    that take an image, the model's frame counts), then one form with the prompts, the frames, the seed and both
    buttons. In a form nothing reruns when the prompt box loses the focus: a submit button sends every value of the
    form in one batch with the click (https://docs.streamlit.io/develop/api-reference/execution-flow/st.form), so
    the click that takes the focus from the box is never lost in the rerun that the blur used to start (a rerun
    that moves the page under the pointer swallows the click: streamlit/streamlit#8725)."""
    st.title("Shot")
    backends = _backends(config.to_env())
    source = st.radio("Start image", ("none", "upload", "an edited image of a past run"), horizontal=True, key="image_source")
    image: Path | None = None
    if source == "upload":
        upload = st.file_uploader("Start image", type=["png", "jpg", "jpeg", "webp"], key="upload")
        if upload is not None:
            image = shots.store_upload(upload.getvalue(), name=upload.name, studio_dir=config.studio_dir)
    elif source != "none":
        choices = runs.edited_images(config.out_dir)
        if not choices:
            st.info("no edited images yet: run a campaign with images (make demo) first")
        else:
            label = st.selectbox("Edited image", [c[0] for c in choices], key="past_image")
            image = shots.store_existing(dict(choices)[label], studio_dir=config.studio_dir)
    if image is not None:
        st.image(str(image), width=240)
    models = shots.models_for(image=image is not None)
    model = st.selectbox("Model", models, key="model",
                         index=models.index(catalog.DEFAULT_VIDEO_MODEL) if catalog.DEFAULT_VIDEO_MODEL in models else 0)

    # enter_to_submit=False: Enter in a form clicks its first submit button (Enhance), which would replace the
    # text being edited in the second box; a render or an enhancement starts only from its own button
    with st.form("shot", enter_to_submit=False):
        prompt = st.text_area("Prompt", key="prompt", placeholder="A bee on a flower, early morning light")
        enhance = st.form_submit_button("Enhance")
        _follow_prompt(prompt)
        if enhance and not prompt.strip():
            st.warning("type a prompt first")
        elif enhance:
            with st.spinner(f"enhancing with {backends.enhancer.name}"):
                result = engine.enhance_prompt(prompt, model=model, enhancer=backends.enhancer)
            st.session_state["final_prompt"] = result.text
            st.session_state["typed_prompt"] = prompt
            st.session_state["enhance_note"] = (
                "passthrough enhancer: your prompt as written (start the studio with --enhancer smollm or bedrock)"
                if result.enhancer == "passthrough" else
                f"enhanced by {result.enhancer}" + (f"; trimmed from ~{result.original_tokens} tokens" if result.trimmed else ""))
        if st.session_state.get("enhance_note"):
            st.caption(st.session_state["enhance_note"])
        final = st.text_area("Prompt sent to the model (edit freely)", key="final_prompt")
        st.session_state[_FINAL_SHOWN] = final

        cols = st.columns(2)
        options = shots.frame_options(model)
        labels = dict(options)
        default = catalog.VIDEO_MODELS[model].default_frames
        frames = cols[0].selectbox("Frames", [f for f, _ in options], format_func=labels.__getitem__,
                                   key=f"frames-{model}", index=[f for f, _ in options].index(default))
        seed = cols[1].number_input("Seed", min_value=0, max_value=catalog.VIDEO_SEED_MAX, value=catalog.DEFAULT_SEED,
                                    step=1, key="seed")
        tokens, limit = engine.token_count(final, model=model)
        (st.warning if tokens > limit else st.caption)(
            f"~{tokens} / {limit} tokens for {model}" + (" — it will be trimmed at a word boundary" if tokens > limit else ""))
        generate = st.form_submit_button("Generate video", type="primary")
    if generate and not final.strip():
        st.warning("type a prompt first")
    elif generate:
        spec = shots.ShotSpec(prompt=final, model=model, frames=int(frames), seed=int(seed),
                              image=str(image) if image else None, typed_prompt=st.session_state.get("typed_prompt"),
                              enhancer=backends.enhancer.name if st.session_state.get("typed_prompt") else None)
        job = jobs.start_job(config, campaign=DEFAULT_CAMPAIGN, shot=spec, owner=current_user())
        st.session_state["current_job"] = job.id
    generations(config)
    save_manifest_form(config)


_PROMPT_SEEN, _FINAL_SHOWN = "shot_prompt_seen", "shot_final_shown"


def _follow_prompt(prompt: str) -> None:
    """A new prompt replaces the text for the model until it is enhanced again, unless that text was edited in
    the same submit (then the edit is what the person wants sent). Widgets in a form take no on_change callback
    (st.form's docs), so the run compares what arrived with what the last run saw and showed."""
    state = st.session_state
    if state.get(_PROMPT_SEEN) == prompt:
        return
    if state.get("final_prompt") in (None, state.get(_FINAL_SHOWN)):
        state["final_prompt"] = prompt
    state[_PROMPT_SEEN] = prompt
    for key in ("typed_prompt", "enhance_note"):
        state.pop(key, None)


def _any_active(config: StudioConfig) -> bool:
    return any(j.active for j in jobs.list_jobs(config))


def generations(config: StudioConfig) -> None:
    """The studio's runs, newest first; refreshes itself while one is queued or running."""
    run_every = 1.0 if _any_active(config) else None

    @st.fragment(run_every=run_every)
    def panel() -> None:
        st.subheader("Generations")
        listed = jobs.list_jobs(config)[:10]
        if not listed:
            st.caption("nothing generated yet")
        for job in listed:
            show_job(config, job)
        if run_every and not any(j.active for j in listed):
            st.rerun()  # the last one just finished: redraw the page once, without the timer

    panel()


def show_job(config: StudioConfig, job: jobs.StudioJob) -> None:
    with st.container(border=True):
        title = job.shot.prompt if job.shot else Path(job.manifest).name
        st.markdown(f"**{literal(job.state)}** · {literal(job.id)} · started by {literal(job.owner or 'unknown')} · "
                    f"{literal(title, limit=90)}")
        if job.active:
            st.progress(job.fraction, text=literal(f"{job.done}/{job.total or '?'} job(s) · {job.message}"))
            for job_id, done, of, unit in job.in_progress:  # where the backend reports steps (diffusers) or frames
                st.progress(done / of, text=literal(f"{job_id}: {unit} {done}/{of}"))
            user = current_user()
            if jobs.may_cancel(config, job, user):
                if st.button("Cancel", key=f"cancel-{job.id}"):
                    try:
                        jobs.cancel_job(config, job.id, user=user)
                    except jobs.NotAllowed as exc:
                        st.error(literal(exc))
                    st.rerun()
            else:  # others watch: the owner (or an administrator) cancels
                st.caption(f"only {literal(job.owner or 'its owner')} or an administrator can cancel it")
            return
        if job.message and job.state != "succeeded":
            st.error(literal(job.message, limit=2000))
        report = runs.load_report(config.out_dir / job.report) if job.report else None
        prefix = (job.report or "").rsplit("/", 1)[0]
        for video in (report or {}).get("videos", []):
            if not video.get("path"):
                continue
            try:
                path = runs.local_run_file(config.out_dir, f"{prefix}/{runs.run_relative(video['path'])}")
            except runs.OutsideRun as exc:
                st.error(literal(exc))
                continue
            st.video(str(path), width=640)
            st.download_button("Download", data=path.read_bytes(), file_name=f"{job.campaign}-{job.id}-{video['id']}.mp4",
                               mime="video/mp4", key=f"download-{job.id}-{video['id']}")
            st.caption(literal(f"{video.get('duration_s')} s · {video.get('width')}×{video.get('height')} · "
                               f"{video.get('fps')} fps · report: runs/{job.campaign}/{job.id}/report.html"))


def save_manifest_form(config: StudioConfig) -> None:
    made = [j for j in jobs.list_jobs(config) if j.shot is not None and j.state == "succeeded"]
    if not made:
        return
    with st.expander("Save as manifest"):
        picked = st.multiselect("Shots", [j.id for j in made], default=[made[0].id], key="save_shots",
                                format_func=lambda i: f"{i}: {next(j for j in made if j.id == i).shot.prompt[:60]}")  # type: ignore[union-attr]
        name = st.text_input("Campaign name", value="my-campaign", key="save_campaign")
        typed = st.text_input("Manifest file (in the workspace)", value="my-campaign.yaml", key="save_path")
        one = st.checkbox("Join the shots into one video", key="save_one_video")
        if st.button("Save as manifest", disabled=not picked):
            specs = [j.shot for j in made if j.id in picked and j.shot is not None]
            try:
                path = workspace.manifest_path(config.workspace, typed)
            except workspace.WorkspaceError as exc:
                st.error(literal(exc))
                return
            result = engine.save_manifest(specs, campaign=name, path=path, one_video=one)
            if result.problems:
                for p in result.problems:
                    st.error(literal(f"line {p.line}, column {p.col}: {p.path}: {p.message}"))
            else:
                st.success(literal(f"saved {path} ({len(specs)} shot(s)): campaign run {path}", limit=None))


# --- Runs ---------------------------------------------------------------------------------------------


@st.cache_resource(ttl=60, show_spinner="reading the runs in the output bucket")
def _bucket_runs(bucket: str) -> list[runs.RunSummary]:
    """A bucket's runs, read at most once a minute (one LIST per campaign and one GET per report); Refresh
    reads them again."""
    return runs.read_runs(runs.BucketRuns(bucket))


def runs_page(config: StudioConfig) -> None:
    st.title("Runs")
    found = runs.read_runs(runs.FolderRuns(config.out_dir))
    if config.output_bucket:
        if st.sidebar.button("Refresh cloud runs", key="runs_refresh"):
            _bucket_runs.clear()
        try:
            found += _bucket_runs(config.output_bucket)
        except runs.SourceUnavailable as exc:
            st.error(literal(f"{exc} (local runs are listed below)"))
    cols = st.columns(3 if config.output_bucket else 2)
    picked_campaigns = cols[0].multiselect("Campaign", runs.campaigns(found), key="runs_campaigns")
    picked_status = cols[1].multiselect("Status", runs.STATUSES, key="runs_status")
    where = sorted({r.source.label for r in found})
    picked_source = cols[2].multiselect("Where", where, key="runs_source") if config.output_bucket else []
    found = runs.newest_first(runs.filtered(found, campaigns=picked_campaigns, statuses=picked_status,
                                            where=picked_source))
    if not found:
        places = f"{config.out_dir}/runs" + (f" or s3://{config.output_bucket}/runs" if config.output_bucket else "")
        st.info(literal(f"no runs under {places} yet", limit=None) if not (picked_campaigns or picked_status or picked_source)
                else "no runs match these filters")
        return
    st.dataframe([{"started": r.started, "campaign": r.campaign, "run": r.run_id, "status": r.status,
                   "where": r.source.label, "videos": r.videos, "images": r.images, "errors": r.errors,
                   "cost (USD, est.)": r.cost_usd} for r in found], hide_index=True)
    labels = {r.label: r for r in found}
    chosen = labels[st.selectbox("Open a run", list(labels), key="run")]
    try:
        show_report(chosen, started_by=_started_by(config, chosen), config=config)
    except runs.SourceUnavailable as exc:
        st.error(literal(exc))


def _cells(rows: list[Any]) -> list[dict[str, str]]:
    """Table rows as plain strings for st.dataframe (a grid that shows text as text; st.table reads Markdown)."""
    return [{str(k): "" if v is None else str(v) for k, v in r.items()} for r in rows if isinstance(r, dict)]


def _started_by(config: StudioConfig, run: runs.RunSummary) -> str | None:
    """Who started a local run from the studio (its job's request records them); None for other runs."""
    if run.source.label != runs.LOCAL or not jobs.JOB_ID.fullmatch(run.run_id):
        return None
    folder = jobs.jobs_dir(config) / run.run_id
    return jobs.read_job(folder).owner if (folder / "request.json").is_file() else None


def show_report(run: runs.RunSummary, *, started_by: str | None = None, config: StudioConfig | None = None) -> None:
    report = runs.read_report(run) or {}
    reviewer: StudioConfig | None = config  # local and cloud runs alike (a cloud run's decisions go to its bucket)
    st.header(literal(f"{run.campaign} / {run.run_id}"))
    st.markdown(f"**{literal(report.get('status'))}** · {literal(run.source.label)} · "
                + (f"started by {literal(started_by)} · " if started_by else "") + "backends: "
                + literal(", ".join(f"{k}={v}" for k, v in (report.get("backends") or {}).items())))
    if report.get("description"):
        st.caption(literal(report["description"], limit=2000))
    for err in report.get("errors", []):  # errors first
        st.error(literal(f"{err.get('job')}: {err.get('error')}: {err.get('message')}", limit=2000))
    j = report.get("jobs", {})
    st.caption(literal(f"jobs: {j.get('executed', 0)} executed, {j.get('cached', 0)} cached, {j.get('failed', 0)} "
                       f"failed, {j.get('skipped', 0)} skipped of {j.get('total', 0)}"))
    for r in (report.get("review") or {}).get("replaces") or []:
        if isinstance(r, dict):
            st.info(literal(f"regenerated {r.get('item')}: replaces its version of run {r.get('run_id')} "
                            f"(asked by {r.get('by')}: {r.get('asked')})"))
    panels = {str(r["job"]): r for r in runs.review_items(report)} if reviewer else {}
    for video in report.get("videos", []):
        st.subheader(literal(f"video {video.get('id')}"))
        if video.get("path") and show_media(run, video["path"], kind="video"):
            st.caption(literal(f"{video.get('duration_s')} s (expected {video.get('expected_duration_s')} s) · "
                               f"{video.get('width')}×{video.get('height')} · {video.get('fps')} fps · {video.get('method')}"))
            download(run, video["path"], filename=f"{run.campaign}-{run.run_id}-{video.get('id')}.mp4", mime="video/mp4")
        st.dataframe(_cells([{"shot": c.get("shot"), "prompt": c.get("prompt"),
                              "enhanced prompt": c.get("enhanced_prompt") or "not enhanced", "model": c.get("model"),
                              "frames": c.get("frames"), "seed": c.get("seed"), "backend": c.get("backend"),
                              "status": c.get("status")} for c in video.get("clips", []) if isinstance(c, dict)]),
                     hide_index=True)
        for record in [video, *(video.get("clips") or [])]:
            if reviewer and isinstance(record, dict) and str(record.get("job")) in panels:
                review_panel(reviewer, run, record, started_by=started_by)
    for image in report.get("images", []):
        st.subheader(literal(f"image {image.get('id')}"))
        if image.get("path"):
            show_media(run, image["path"], kind="image")
        st.caption(literal(" → ".join(str(s.get("tool")) for s in image.get("steps", [])) + f" · {image.get('backend')}"))
        if reviewer and str(image.get("job")) in panels:
            review_panel(reviewer, run, image, started_by=started_by)
    cost = report.get("cost") or {}
    if cost:
        st.subheader(f"estimated AWS cost: ${float(cost.get('total_usd') or 0):.2f}")
        st.dataframe(_cells(cost.get("items") or []), hide_index=True)
    download(run, "report.html", filename=f"{run.campaign}-{run.run_id}.html", mime="text/html",
             label="Download report.html")
    with st.expander("report.json"):
        st.json(report, expanded=False)


def review_panel(config: StudioConfig, run: runs.RunSummary, record: dict[str, Any], *, started_by: str | None) -> None:
    """One asset's review state, its versions, and (for whoever may review it) approve / reject with a note /
    regenerate with a new seed or prompt. A form: what was typed is sent with the click, whatever had focus. A
    cloud run's decisions are records in its bucket and its regenerate an execution, through the functions
    `campaign review --bucket` uses; without the state machine's ARN its Regenerate is disabled, the reason said."""
    item = str(record["job"])
    cloud = runs.in_bucket(run) is not None
    no_regenerate = runs.NO_STATE_MACHINE if cloud and not config.state_machine_arn else None
    state = (record.get("review") or {}).get("status") or "unreviewed"
    with st.form(key=f"review-{run.run_id}-{item}", border=True):
        st.markdown(f"**review {literal(item)}**: {literal(state)}")
        for line in runs.history_lines(record):
            st.caption(literal(line, limit=600))
        user = current_user()
        if not runs.may_review(config.admins, started_by, user):
            st.caption(f"only {literal(started_by or 'a signed-in user')} or an administrator can review this run")
            st.form_submit_button("Approve", disabled=True)
            return
        note = st.text_input("Note", key=f"note-{run.run_id}-{item}", max_chars=2000)
        kind = item.split(":", 1)[0]
        seed = st.number_input("New seed (regenerate)", min_value=0, max_value=catalog.VIDEO_SEED_MAX,
                               value=int(record.get("seed") or 0) + 1, step=1, key=f"seed-{run.run_id}-{item}") \
            if kind in ("clip", "video") else None
        prompt = st.text_area("New prompt (regenerate; empty: unchanged)", key=f"prompt-{run.run_id}-{item}") \
            if kind in ("clip", "image") else ""
        cols = st.columns(3)
        clicked = {action: cols[i].form_submit_button(label, disabled=action == "regenerate" and bool(no_regenerate))
                   for i, (action, label) in
                   enumerate((("approve", "Approve"), ("reject", "Reject"), ("regenerate", "Regenerate")))}
        if no_regenerate:
            st.caption(literal(no_regenerate, limit=None))
    assert user is not None
    new_seed = None if seed is None else int(seed)
    try:
        if clicked["regenerate"] and cloud:
            started = runs.regenerate_in_cloud(run, item, state_machine_arn=config.state_machine_arn, user=user,
                                               note=note, seed=new_seed, prompt=prompt.strip() or None)
            st.success(literal(f"regenerating {item} ({started['asked']}): execution {started['run']}; its report, "
                               f"when it ends: {started['report']}", limit=None))
            st.link_button("Open the execution in the console", started["console_url"])
        elif clicked["regenerate"]:
            job = runs.regenerate(config, run, item, user=user, note=note, seed=new_seed, prompt=prompt.strip() or None)
            st.success(literal(f"regenerating {item}: run {job.id} (follow it under Shot or refresh Runs)"))
        elif clicked["approve"] or clicked["reject"]:
            action = "approve" if clicked["approve"] else "reject"
            if cloud:
                runs.decide_in_bucket(run, item, action=action, user=user, note=note)
            else:
                runs.decide(config.out_dir, run, item, action=action, user=user, note=note)
            st.rerun()
    except (PipelineError, OSError, BotoCoreError, ClientError) as exc:
        # refused (a value, a missing manifest) or AWS said no (access, throttling): one line, no traceback
        st.error(literal(f"not done: {exc}"))


def show_media(run: runs.RunSummary, relative: str, *, kind: str) -> bool:
    """A video or image the report names, only if it lies inside the run's folder (False, said once, if not)."""
    try:
        media = run.source.media(run.file(relative))
    except runs.OutsideRun as exc:
        st.error(literal(exc))
        return False
    if kind == "video":
        st.video(media, width=640)
    else:
        st.image(media, width=320)
    return True


def download(run: runs.RunSummary, relative: str, *, filename: str, mime: str, label: str = "Download") -> None:
    """A local file is served by the page; a bucket's through a presigned link, straight from S3. Only files inside
    the run's folder, whatever the report says."""
    try:
        key = run.file(relative)
    except runs.OutsideRun as exc:
        st.error(literal(exc))
        return
    link = run.source.link(key, filename=filename)
    if link is not None:
        st.link_button(label, link)
        return
    data = run.source.read(key)
    if data is not None:
        st.download_button(label, data=data, file_name=filename, mime=mime, key=f"dl-{run.source.label}-{key}")


# --- Manifest -----------------------------------------------------------------------------------------


def manifest_page(config: StudioConfig) -> None:
    st.title("Manifest")
    typed = st.text_input("Manifest file", value="campaign.yaml", key="manifest_path")
    st.caption(f"a \\*.yaml file in the workspace {literal(config.workspace)} (nothing outside it)")
    try:
        path: Path | None = workspace.manifest_path(config.workspace, typed)
    except workspace.WorkspaceError as exc:
        path = None
        st.error(literal(exc))
    if st.button("Load") and path is not None:
        try:
            _, loaded = workspace.read_manifest(config.workspace, typed)
            editor.load_text(st.session_state, text_key="manifest_text", text=loaded)
        except workspace.WorkspaceError as exc:
            st.error(literal(exc))
    if "manifest_text" not in st.session_state:
        starter = engine.STARTER_MANIFEST
        if path is not None and path.is_file():
            try:
                starter = workspace.read_manifest(config.workspace, typed)[1]
            except workspace.WorkspaceError as exc:
                st.error(literal(exc))
        st.session_state["manifest_text"] = starter
    text = st.session_state["manifest_text"]  # the editor's callback keeps it current: Save/Run/Submit read it
    base = path.parent if path is not None else config.workspace.resolve()
    manifest_file = path.name if path else "campaign.yaml"
    check = engine.check_manifest(text, file=manifest_file, base_dir=base, config=config)
    st.caption(f"YAML, checked as you type (after a {editor.DEBOUNCE_MS} ms pause, or when you leave the box)")
    editor.manifest_editor(text_key="manifest_text", problems=check.problems, manifest_file=manifest_file,
                           key="manifest_editor")
    if check.problems:
        st.error(f"{len(check.problems)} problem(s)")
        for p in check.problems:  # a data file's problems name the file, row and column (not a manifest line)
            st.markdown("- " + editor.problem_markdown(p, manifest_file=manifest_file))
    elif check.error:
        st.error(literal(check.error))
    else:
        st.success(f"valid: {len(check.jobs)} job(s)")
        if check.cost:
            st.caption(f"estimated cost if run on AWS: ${check.cost['total_usd']:.2f} · {check.cost['note']}")
        st.dataframe(list(check.jobs), hide_index=True)
    cols = st.columns(3)
    if cols[0].button("Save", disabled=path is None):
        saved = _save(config, typed, text)
        if saved is not None:
            st.success(literal(f"saved {workspace.shown_name(config.workspace, saved)} in the workspace"))
    if cols[1].button("Run locally", disabled=not check.ok or path is None):
        saved = _save(config, typed, text)
        if saved is not None:
            job = jobs.start_job(config, campaign=check.campaign.name if check.campaign else DEFAULT_CAMPAIGN,
                                 manifest=saved, owner=current_user())
            st.success(literal(f"started run {job.id}: follow it below and under Runs"))
    if cols[2].button("Submit to AWS", disabled=not (check.ok and config.input_bucket) or path is None,
                      help="uploads to the input bucket (set --bucket or CAMPAIGN_INPUT_BUCKET)"):
        saved = _save(config, typed, text)
        if saved is not None:
            try:
                result = engine.submit(saved, config=config)
            except (PipelineError, BotoCoreError, ClientError) as exc:  # refused, or AWS said no: one line, no traceback
                st.error(literal(f"not submitted: {exc}"))
            else:
                st.success(literal(" · ".join(f"{k}: {v}" for k, v in result.items()), limit=None))
    generations(config)


def _save(config: StudioConfig, typed: str, text: str) -> Path | None:
    """Write the editor's text to the workspace file typed; the refusal as a one-line error."""
    try:
        return workspace.write_manifest(config.workspace, typed, text)
    except workspace.WorkspaceError as exc:
        st.error(literal(exc))
        return None


main()
