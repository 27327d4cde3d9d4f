"""The digits model's VAE: a TAESD-layout autoencoder whose weights are set by hand, not learned.

Why TAESD and why by hand: ComfyUI builds an SD VAE ("decoder.conv_in.weight" ...) at a fixed width
(ch=128, ch_mult 1,2,4,4: 83M parameters) on 0.3.75 and 0.33.0 alike, whatever the weights' shapes;
the one small VAE layout its checkpoint loader accepts under `first_stage_model.` is TAESD (a
fixed 64 wide, 2.4M parameters, detected by `taesd_decoder.1.weight`). load_digits is 8x8, and a
64x64 image has an 8x8 latent, so the latent can hold each digit exactly: no learning is needed.

Latent (ComfyUI's LATENT, SD1.5 scale 0.18215 applied by the model): per 8x8 pixel block,
  channel 0: ink, 2 * ink - 1 (ink 0 is white paper, 1 is black);
  channels 1, 2: colour, the block's RGB along two axes orthogonal to grey (0 for the digits);
  channel 3: unused (0).
Decoder: bilinear 8x upsampling (three stages of nearest x2 then a [1 2 1]/4 filter, which is
exactly bilinear x2) of ink and colour, then RGB = 1 - ink + colour. Zero padding at the border
means paper beyond the edge. Encoder: the exact 8x8 box average (three 2x2 averages). The
encoder is here for img2img; training never uses it (it reads the 8x8 digits directly).

Every other TAESD weight is zero: each residual Block is then the identity (plus the ReLU that
keeps these non-negative signals as they are). Signed colour travels as a (positive, negative)
pair of channels for that reason.
"""

from __future__ import annotations

import torch

SD15_LATENT_SCALE = 0.18215
# Decoder input is the latent times vae_scale: keep it small (|x| <= 0.25 for in-range values)
# so TAESD's soft clamp tanh(x / 3) * 3 is linear to within 0.06 %.
DECODER_INPUT_SCALE = 0.25
VAE_SCALE = SD15_LATENT_SCALE * DECODER_INPUT_SCALE

GREY = torch.tensor([1.0, 1.0, 1.0]) / 3.0
COLOUR_AXES = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]])
COLOUR_AXES = COLOUR_AXES / COLOUR_AXES.norm(dim=1, keepdim=True)
# Codec channels inside TAESD's 64: ink, colour 1 (+, -), colour 2 (+, -).
CODEC_CHANNELS = 5
INK = 0

ENCODER = "first_stage_model.taesd_encoder."
DECODER = "first_stage_model.taesd_decoder."
ENCODER_DOWNSAMPLES = (2, 6, 10)
ENCODER_OUT = 14
DECODER_IN = 1
DECODER_UPSAMPLES = (7, 12, 17)
DECODER_OUT = 19


def _centre_tap(matrix: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv weight that applies `matrix` [out, in] at each pixel."""
    weight = torch.zeros(*matrix.shape, 3, 3)
    weight[:, :, 1, 1] = matrix
    return weight


def _per_channel(kernel: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv weight that filters each codec channel by `kernel` on its own."""
    weight = torch.zeros(CODEC_CHANNELS, CODEC_CHANNELS, 3, 3)
    for channel in range(CODEC_CHANNELS):
        weight[channel, channel] = kernel
    return weight


def _signed_pairs(matrix: torch.Tensor) -> torch.Tensor:
    """Rows for (ink, c1, -c1, c2, -c2) from rows for (ink, c1, c2)."""
    return torch.stack([matrix[0], matrix[1], -matrix[1], matrix[2], -matrix[2]])


def codec_tensors() -> dict[str, tuple[torch.Tensor, tuple]]:
    """The non-zero TAESD tensors under their checkpoint keys, narrowed to the codec channels
    ("codec" axes) and the index set of each axis, as narrow_sd15.axes_of gives the UNet's."""
    box = torch.zeros(3, 3)
    box[1:, 1:] = 0.25  # stride 2, padding 1: taps 2i and 2i+1 in each direction
    tent = torch.tensor([1.0, 2.0, 1.0]) / 4.0
    tent = tent[:, None] * tent[None, :]
    s = DECODER_INPUT_SCALE

    # Encoder input is the image in [0, 1]: ink = 1 - mean(RGB), colour = RGB . axes.
    to_codec = _signed_pairs(torch.cat([-GREY[None], COLOUR_AXES]))
    codec_bias = torch.zeros(CODEC_CHANNELS)
    codec_bias[INK] = 1.0
    # Latent times vae_scale = s * (2 ink - 1, c1, c2, 0).
    to_latent = torch.zeros(4, CODEC_CHANNELS)
    to_latent[0, INK] = 2 * s
    to_latent[1, 1], to_latent[1, 2] = s, -s
    to_latent[2, 3], to_latent[2, 4] = s, -s
    latent_bias = torch.tensor([-s, 0.0, 0.0, 0.0])
    # Decoder input is s * (2 ink - 1, c1, c2, .): back to (ink, c1+, c1-, c2+, c2-).
    from_latent = _signed_pairs(torch.eye(3, 4) / s)
    from_latent[INK, 0] = 1 / (2 * s)
    from_bias = torch.zeros(CODEC_CHANNELS)
    from_bias[INK] = 0.5
    # RGB = 1 - ink + c1 axis1 + c2 axis2.
    to_rgb = torch.stack(
        [-torch.ones(3), COLOUR_AXES[0], -COLOUR_AXES[0], COLOUR_AXES[1], -COLOUR_AXES[1]], dim=1
    )

    codec_in, codec_both, codec_out = (
        ("codec", None, None, None),
        ("codec", "codec", None, None),
        (None, "codec", None, None),
    )
    tensors = {
        f"{ENCODER}0.weight": (_centre_tap(to_codec), codec_in),
        f"{ENCODER}0.bias": (codec_bias, ("codec",)),
        f"{ENCODER}{ENCODER_OUT}.weight": (_centre_tap(to_latent), codec_out),
        f"{ENCODER}{ENCODER_OUT}.bias": (latent_bias, (None,)),
        f"{DECODER}{DECODER_IN}.weight": (_centre_tap(from_latent), codec_in),
        f"{DECODER}{DECODER_IN}.bias": (from_bias, ("codec",)),
        f"{DECODER}{DECODER_OUT}.weight": (_centre_tap(to_rgb), codec_out),
        f"{DECODER}{DECODER_OUT}.bias": (torch.ones(3), (None,)),
        "first_stage_model.vae_scale": (torch.tensor(VAE_SCALE), ()),
        "first_stage_model.vae_shift": (torch.tensor(0.0), ()),
    }
    for index in ENCODER_DOWNSAMPLES:
        tensors[f"{ENCODER}{index}.weight"] = (_per_channel(box), codec_both)
    for index in DECODER_UPSAMPLES:
        tensors[f"{DECODER}{index}.weight"] = (_per_channel(tent), codec_both)
    return tensors


def codec_index_sets() -> dict[str, torch.Tensor]:
    return {"codec": torch.arange(CODEC_CHANNELS)}


def ink_to_latent(ink: torch.Tensor) -> torch.Tensor:
    """[B, 8, 8] ink in [0, 1] -> the model-space latent [B, 4, 8, 8] (ComfyUI's LATENT times
    0.18215) that the decoder renders as that digit."""
    latent = torch.zeros(ink.shape[0], 4, *ink.shape[1:])
    latent[:, 0] = 2 * ink - 1
    return latent
