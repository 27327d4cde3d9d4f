"""The live front: with previews on, every step's preview is one grid of all chains; with previews
off, no preview work at all.

Ground truth: ComfyUI's own previewer (Latent2RGB, the method a user picks with --preview-method)
applied to the final latents, and the previews that reach ComfyUI's progress-bar hook.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.srsoup_graphs import srsoup_graph

STEPS = 4


@pytest.fixture
def previews(monkeypatch):
    """What reaches ComfyUI's progress hook (the server sends it to the browser): (value, preview)."""
    import comfy.utils

    received = []
    monkeypatch.setattr(
        comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, **_: received.append((value, preview))
    )
    return received


def preview_method(monkeypatch, method: str) -> None:
    """The --preview-method a user starts ComfyUI with (0.33 resets to its start-up value per prompt)."""
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod, args

    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod(method))
    if hasattr(latent_preview, "default_preview_method"):
        monkeypatch.setattr(latent_preview, "default_preview_method", LatentPreviewMethod(method))


@pytest.fixture
def previewer_calls(monkeypatch):
    """Every latent ComfyUI's previewers are asked to draw."""
    import latent_preview

    calls = []
    for previewer in (latent_preview.Latent2RGBPreviewer, latent_preview.TAESDPreviewerImpl):
        original = previewer.decode_latent_to_preview

        def counting(self, x0, original=original):
            calls.append(x0.shape[0])
            return original(self, x0)

        monkeypatch.setattr(previewer, "decode_latent_to_preview", counting)
    return calls


def stock_picture(latent: torch.Tensor):
    """ComfyUI's own Latent2RGB preview of one output latent (back in the model's internal space)."""
    import comfy.latent_formats
    import latent_preview

    latent_format = comfy.latent_formats.SD15()
    previewer = latent_preview.get_previewer("cpu", latent_format)
    return previewer.decode_latent_to_preview(latent_format.process_in(latent[None]))


def test_every_step_previews_all_chains_as_one_grid(comfy, monkeypatch, previews, previewer_calls):
    preview_method(monkeypatch, "latent2rgb")
    result = comfy.run(srsoup_graph(steps=STEPS, grid_divisions=3))  # four chains
    chains = result.output("7", 0)["samples"]
    shown = [(value, preview) for value, preview in previews if preview is not None]
    assert [value for value, _ in shown] == list(range(1, STEPS + 1))
    assert previewer_calls == [1] * (STEPS * chains.shape[0])  # each chain, each step
    kind, grid, max_size = shown[-1][1]
    assert kind == "JPEG" and max_size == 512

    # The last step's prediction is the final image: each grid cell is ComfyUI's own preview of
    # that chain's output latent, enlarged pixel for pixel, in chain order (2 x 2 grid).
    cells = []
    for k in range(chains.shape[0]):
        picture = stock_picture(chains[k])
        scale = 128 // picture.size[0]
        expected = pixels(picture.resize((128, 128), 0))
        cells.append(expected)
        column, row = k % 2, k // 2
        caption = (grid.size[1] - 2 * 128) // 2
        box = (column * 128, row * (128 + caption), column * 128 + 128, row * (128 + caption) + 128)
        got = pixels(grid.crop(box).convert("RGB"))
        assert scale == 32 and got.shape == expected.shape
        assert (got - expected).abs().max() <= 2, k
    assert grid.size == (2 * 128, 2 * (128 + caption)) and caption > 0
    assert not torch.equal(cells[0], cells[-1])  # the chains differ, so the order is checked


def pixels(picture) -> torch.Tensor:
    """A picture's RGB values as signed integers (so differences can go below zero)."""
    return torch.from_numpy(np.asarray(picture)).to(torch.int16)


def test_no_grid_work_when_previews_are_off(comfy, monkeypatch, previews, previewer_calls):
    preview_method(monkeypatch, "none")
    import multireward.pack_nodes.srsoup as srsoup_nodes

    pictures = []
    monkeypatch.setattr(srsoup_nodes, "labelled_grid", lambda *args: pictures.append(args))
    comfy.run(srsoup_graph(steps=STEPS, grid_divisions=3))
    assert [value for value, _ in previews] == list(range(1, STEPS + 1))  # progress goes on
    assert all(preview is None for _, preview in previews)
    assert previewer_calls == [] and pictures == []
