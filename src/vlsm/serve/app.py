"""The Gradio page of ``vlsm serve``: pick an image and a prompt, compare runs side by side.

Layout and wiring only; what happens to an image is :mod:`vlsm.serve.session`. Element ids
(``upload``, ``prompt``, ``segment``, ``status``, ``run-<i>-overlay`` ...) are stable: the browser
test finds the page's parts by them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vlsm.errors import UserError
from vlsm.serve.session import (
    DEFAULT_MAX_PIXELS,
    Example,
    Segmenter,
    ServedRun,
    UploadError,
    read_upload,
    upload_name,
    upload_planes,
)

INSTALL_HINT = 'the web app needs Gradio: pip install "vlsm-ensemble[serve]"'
INTRO = ("# vlsm: segment an image\n"
         "Upload an image or pick a test image of the runs' datasets, give a prompt, choose runs, press "
         "**Segment**. Research use only; not a medical device.")
# per run: its box, the summary line, overlay, mask, probability map, TP/FP/FN overlay, uncertainty (TTA), mask download
SLOT_SIZE = 8


def require_gradio():
    try:
        import gradio
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return gradio


class _Handlers:
    """What the page's events do: each returns the new values of the components it updates."""

    def __init__(self, gr, runs: Sequence[ServedRun], segmenter: Segmenter, by_key: dict, max_pixels: int):
        self.gr, self.runs, self.segmenter, self.by_key, self.max_pixels = gr, runs, segmenter, by_key, max_pixels

    def hidden_results(self) -> list:
        return [self.gr.update(visible=False)] + [self.gr.update()] * (SLOT_SIZE - 1)

    def no_results(self) -> list:
        return [out for _ in self.runs for out in self.hidden_results()]

    def on_upload(self, path):
        # the file box is emptied again each time (the image lives in `state`), ready for the next upload
        gr = self.gr
        no_plane = gr.update(visible=False)
        if not path:
            return None, None, None, gr.update(), gr.update(visible=False, choices=[]), no_plane, "", *self.no_results()
        planes = upload_planes(path)  # a volume or a multi-frame file opens at its middle plane
        k = None if planes is None else planes.planes // 2
        try:
            image = read_upload(path, self.max_pixels, k)
        except UploadError as err:
            return (None, None, None, gr.update(value=None), gr.update(visible=False, choices=[]), no_plane,
                    f"⚠️ {err}", *self.no_results())
        state = {"image": image, "name": upload_name(path, planes, k), "gt": None, "path": path}
        message = f"Loaded **{Path(path).name}** ({image.width} × {image.height}). Give a prompt and press Segment."
        plane = no_plane
        if planes is not None:  # the slider shows the others
            plane = gr.update(visible=True, minimum=0, maximum=planes.planes - 1, value=k,
                              label=f"{planes.word} (0–{planes.planes - 1})")
            message = (f"Loaded **{Path(path).name}**, {planes.word} {k} of its {planes.planes} "
                       f"({image.width} × {image.height}; the slider shows another). Give a prompt and press Segment.")
        return (state, None, image, gr.update(value=None), gr.update(visible=False, choices=[]), plane, message,
                *self.no_results())

    def on_plane(self, state, k):
        """Another frame or slice of the uploaded file."""
        if not state or not state.get("path"):
            return state, self.gr.update(), "", *self.no_results()
        planes = upload_planes(state["path"])
        k = None if planes is None else int(k)
        try:
            image = read_upload(state["path"], self.max_pixels, k)
        except UploadError as err:
            return state, self.gr.update(), f"⚠️ {err}", *self.no_results()
        state = {**state, "image": image, "name": upload_name(state["path"], planes, k)}
        return state, image, f"Showing {planes.word if planes else 'plane'} {k} of **{Path(state['path']).name}**.", \
            *self.no_results()

    def on_example(self, key):
        from vlsm.data.images import load_image
        from vlsm.data.masks import load_mask

        gr = self.gr
        example = self.by_key.get(key)
        if example is None:
            return (None, None, gr.update(visible=False, choices=[]), gr.update(), gr.update(visible=False), "",
                    *self.no_results())
        image = load_image(example.record.image_path)
        gt = load_mask(example.record.mask_path)
        state = {"image": image, "name": example.record.name, "gt": gt, "path": None}
        prompts = example.prompts()
        default = next((text for label, text in prompts if label.startswith("p1")), prompts[0][1] if prompts else "")
        message = (f"Example **{key}** ({image.width} × {image.height}) with its ground-truth mask. "
                   f"Give a prompt (or pick one of its p0–p9 prompts) and press Segment.")
        return (state, image, gr.update(visible=bool(prompts), choices=prompts, value=None),
                gr.update(value=default), gr.update(visible=False), message, *self.no_results())

    def on_segment(self, state, prompt, selected):
        if not state:
            return ["Upload an image or pick an example first.", *self.no_results()]
        selected = [int(i) for i in (selected or [])]
        if not selected:
            return ["Tick at least one run.", *self.no_results()]
        outputs = self.segmenter.segment(state["image"], prompt, selected, name=state["name"], gt=state["gt"])
        values = []
        for out in outputs:
            if out is None:
                values += self.hidden_results()
                continue
            values += [self.gr.update(visible=True), out.summary(), out.overlay, out.mask, out.probabilities,
                       self.gr.update(value=out.errors, visible=out.errors is not None),
                       self.gr.update(value=out.uncertainty, visible=out.uncertainty is not None),
                       str(out.mask_file) if out.mask_file else None]
        done = sum(o is not None and not o.message for o in outputs)
        return [f"Segmented **{state['name']}** with {done} run(s).", *values]


def _run_slots(gr, runs: Sequence[ServedRun]) -> list:
    """Per run: its (hidden) box, summary line, overlay, mask, probability map, TP/FP/FN overlay, uncertainty (with
    test-time augmentation), mask download."""
    slots = []
    for i in range(len(runs)):
        with gr.Column(visible=False) as box:
            info = gr.Markdown(elem_id=f"run-{i}-info")
            with gr.Row():
                images = [gr.Image(label=label, format="png", interactive=False, elem_id=f"run-{i}-{key}",
                                   buttons=["download", "fullscreen"], visible=key not in ("errors", "uncertainty"))
                          for key, label in (("overlay", "overlay"), ("mask", "mask"),
                                             ("probabilities", "probability"), ("errors", "TP / FP / FN"),
                                             ("uncertainty", "uncertainty (std over flips)"))]
            download = gr.File(label="mask PNG", interactive=False, elem_id=f"run-{i}-download")
        slots += [box, info, *images, download]
    return slots


def build_app(runs: Sequence[ServedRun], examples: Sequence[Example], *, max_pixels: int = DEFAULT_MAX_PIXELS,
              segmenter: Segmenter | None = None):
    """The app as a ``gradio.Blocks`` (not launched)."""
    gr = require_gradio()
    segmenter = segmenter or Segmenter(list(runs))
    by_key = {e.key: e for e in examples}
    on = _Handlers(gr, runs, segmenter, by_key, max_pixels)
    with gr.Blocks(title="vlsm serve", analytics_enabled=False) as app:
        state = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                upload = gr.File(label="Upload an image", type="filepath", elem_id="upload")
                example = gr.Dropdown(choices=list(by_key), value=None, label="…or pick a test image",
                                      elem_id="example", visible=bool(by_key))
                preview = gr.Image(label="Image", type="pil", format="png", interactive=False, elem_id="preview")
                plane = gr.Slider(minimum=0, maximum=1, step=1, value=0, label="slice", visible=False,
                                  elem_id="plane")
                prompt = gr.Textbox(label="Prompt", placeholder="e.g. polyp", elem_id="prompt")
                suggestions = gr.Dropdown(choices=[], label="The example's prompts (p0–p9)", visible=False,
                                          elem_id="suggestions")
                chosen = gr.CheckboxGroup(choices=[(r.label, i) for i, r in enumerate(runs)],
                                          value=list(range(len(runs))), label="Runs", elem_id="runs")
                button = gr.Button("Segment", variant="primary", elem_id="segment")
            with gr.Column(scale=3):
                status = gr.Markdown("Upload an image or pick an example.", elem_id="status")
                slots = _run_slots(gr, runs)
        upload.upload(on.on_upload, inputs=upload,
                      outputs=[state, upload, preview, example, suggestions, plane, status, *slots])
        plane.release(on.on_plane, inputs=[state, plane], outputs=[state, preview, status, *slots])
        example.input(on.on_example, inputs=example,
                      outputs=[state, preview, suggestions, prompt, plane, status, *slots])
        suggestions.input(lambda text: gr.update(value=text or ""), inputs=suggestions, outputs=prompt)
        button.click(on.on_segment, inputs=[state, prompt, chosen], outputs=[status, *slots])
        prompt.submit(on.on_segment, inputs=[state, prompt, chosen], outputs=[status, *slots])
    app.segmenter = segmenter  # launch() must allow its output folder
    return app


__all__ = ["build_app", "require_gradio", "INSTALL_HINT"]
