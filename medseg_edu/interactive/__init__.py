"""Promptable and interactive segmentation: boxes and clicks as extra input channels of a U-Net.

- :mod:`~medseg_edu.interactive.prompts`: the prompt encodings (box channel, Gaussian click disks)
  and the simulated user (box of a mask with jitter; the next click on the largest error);
- :mod:`~medseg_edu.interactive.refine`: :func:`add_prompts` (a transform, so training runs through
  :func:`medseg_edu.training.fit`), :func:`refine` and :func:`click_session`;
- :mod:`~medseg_edu.interactive.evaluation`: NoC@85/NoC@90, box-prompted vs automatic Dice, and one
  grey channel for zero-shot transfer between data sets;
- :mod:`~medseg_edu.interactive.viewer`: :class:`ClickViewer` (mouse clicks with ipyevents, sliders
  and buttons without) and its static twin :func:`draw_prompts`;
- :mod:`~medseg_edu.interactive.sam`: an adapter for SAM/MedSAM checkpoints (extra ``[sam]``).

The viewer and the SAM adapter are not imported here (ipywidgets, and the optional
segment-anything package, load only when they are used); import them from their modules or from
the top level (``from medseg_edu import ClickViewer``).
"""
from medseg_edu.interactive.evaluation import box_vs_automatic_dice, grey_channel, noc_summary, number_of_clicks
from medseg_edu.interactive.prompts import (PROMPT_CHANNELS, Click, box_from_mask, box_map, click_map,
                                            encode_prompts, next_click)
from medseg_edu.interactive.refine import add_prompts, click_session, refine

__all__ = ["PROMPT_CHANNELS", "Click", "box_map", "click_map", "encode_prompts", "box_from_mask", "next_click",
           "add_prompts", "refine", "click_session", "number_of_clicks", "noc_summary", "box_vs_automatic_dice",
           "grey_channel"]
