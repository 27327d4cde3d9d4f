"""ParetoFront (a plot of the front and a labelled grid of the images) and SaveReport."""

from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..comfy_adapter.folders import write_output_json
from ..plots.pareto_plot import FrontData, labelled_grid, pareto_plot, to_comfy_image

CATEGORY = "multireward/pareto"


class ReportError(ValueError):
    pass


def parse_report(text: str) -> dict:
    try:
        report = json.loads(text)
    except (TypeError, json.JSONDecodeError) as error:
        raise ReportError(
            f"report: not JSON ({error}); connect the report of SRSoup KSampler or the json of Reward Score"
        ) from None
    if not isinstance(report, dict) or "scores" not in report or "rewards" not in report:
        raise ReportError(
            "report: needs 'rewards' and 'scores'; connect the report of SRSoup KSampler or the json of Reward Score"
        )
    if len(report["scores"]) == 0:
        raise ReportError("report: has no scores to plot")
    return report


class ParetoFront(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_ParetoFront",
            display_name="Pareto Front",
            category=CATEGORY,
            description="Draws the reward trade-off: one point per image, labelled by its weights, the non-dominated "
            "ones joined, the hypervolume and its reference point in the legend (three or more rewards: a matrix "
            "of pairwise plots). Also a grid of the images labelled by weight.",
            is_output_node=True,
            inputs=[
                io.String.Input(
                    "report",
                    force_input=True,
                    tooltip="The report of SRSoup KSampler / SRSoup Report, "
                    "or the json output of Reward Score.",
                ),
                io.Image.Input(
                    "images",
                    optional=True,
                    tooltip="The decoded images, in report order: thumbnails on "
                    "the plot and the labelled grid.",
                ),
                io.Boolean.Input("thumbnails", default=True, tooltip="Draw each image next to its point."),
                io.Int.Input(
                    "size",
                    default=768,
                    min=256,
                    max=2048,
                    step=64,
                    tooltip="Size of one plot panel in pixels.",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="plot"),
                io.Image.Output(
                    display_name="grid",
                    tooltip="The images labelled by weight (the plot again when no images are connected).",
                ),
            ],
        )

    @classmethod
    def execute(cls, report, images=None, thumbnails=True, size=768) -> io.NodeOutput:
        data = FrontData.from_report(parse_report(report))
        if images is not None and images.shape[0] != len(data.scores):
            raise ReportError(
                f"images: {images.shape[0]} images but the report has {len(data.scores)} rows; connect "
                "the decoded latents of the same run"
            )
        plot = to_comfy_image(
            pareto_plot(data, size, images if (thumbnails and images is not None) else None)
        )
        grid = to_comfy_image(labelled_grid(images, data.labels)) if images is not None else plot
        return io.NodeOutput(plot, grid, ui=ui.PreviewImage(plot, cls=cls))


class SaveReport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_SaveReport",
            display_name="Save Report",
            category=CATEGORY,
            description="Writes a report (JSON text) into ComfyUI's output folder, next to the saved images.",
            is_output_node=True,
            inputs=[
                io.String.Input("report", force_input=True),
                io.String.Input("filename_prefix", default="multireward/report"),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, report, filename_prefix) -> io.NodeOutput:
        saved = write_output_json(filename_prefix, parse_report(report))
        return io.NodeOutput(ui={"reports": [saved]})


NODES = [ParetoFront, SaveReport]
