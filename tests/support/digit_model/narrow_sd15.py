"""The trained part of the digits model: a narrow network that *is* a full-width SD1.5 model with
most channels zero.

ComfyUI recognises SD1.5 only at full width (320 model channels, a 768-wide CLIP-L text encoder),
so the checkpoint has full-size tensors. Here only a few channels of each are in use, and every
other channel is exactly zero, with its biases and norm weights zero too, so it stays zero through
the whole network. The narrow modules below compute exactly what ComfyUI's full UNet and CLIP
compute on the zero-padded weights (tests/test_digit_model.py checks that against ComfyUI's own
classes), at a fraction of the cost:
- GroupNorm: the full model has 32 groups (10 channels each at 320, 20 each on the 640-channel
  skip concatenation); the active channels fill whole groups, so a narrow GroupNorm with fewer
  groups of the same size is the same computation.
- attention: heads are 40 channels wide in SD1.5 (8 heads of 320); the active channels fill whole
  heads; an all-zero head adds nothing.
- LayerNorm normalises over all 320 (or 768) channels, zeros included: `padded_layer_norm`
  computes those statistics from the active channels alone.
- the text encoder has zero position embeddings, one hand-set 64-wide attention head in its first
  layer and otherwise all-zero layers (each the identity through its residual connections): a
  trained vector per token, copied by that head into the positions after the digit, then its
  final LayerNorm; that is what carries the digit to the UNet.

`axes_of` says, for every tensor, which full-size indices each narrow axis fills; `compact`
stores the narrow tensors with those indices and zero-pads them back into the full checkpoint.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

FULL_CHANNELS = 320  # SD1.5 model channels: what ComfyUI's detection requires
FULL_TIME = 4 * FULL_CHANNELS  # time-embedding width
FULL_FEEDFORWARD = 4 * FULL_CHANNELS  # GEGLU inner width
FULL_TEXT = 768  # CLIP-L hidden width (the UNet's context_dim)
HEAD_CHANNELS = FULL_CHANNELS // 8  # SD1.5: 8 heads
TEXT_HEAD_CHANNELS = FULL_TEXT // 12  # CLIP-L: 12 heads
# Channel 0 of a token vector flags the tokens that name the digit. With the other channels about
# unit size, the value dominates the first layer's LayerNorm, so the flagged tokens' keys stand
# far above the rest (a logit near 20 against near 0).
CONTENT_FLAG = 0
CONTENT_VALUE = 10.0
# ComfyUI's GroupNorm has 32 groups: 10 channels each at 320, 20 on the 640-wide skip concatenation.
CHANNEL_GROUP = FULL_CHANNELS // 32
CONCAT_GROUP = 2 * FULL_CHANNELS // 32
LATENT_CHANNELS = 4
NO_TOKEN = -1


@dataclass(frozen=True)
class Widths:
    """How many channels of each full-size axis the narrow model uses."""

    channels: int = 40  # of 320: whole attention heads (40) and whole skip-concat groups (20)
    time: int = 160  # of 1280
    feedforward: int = 160  # of 1280
    text: int = 32  # of 768

    def __post_init__(self):
        if self.channels % HEAD_CHANNELS or not 0 < self.channels <= FULL_CHANNELS:
            raise ValueError(f"channels must be a multiple of {HEAD_CHANNELS} up to {FULL_CHANNELS}")
        for name, full in (("time", FULL_TIME), ("feedforward", FULL_FEEDFORWARD), ("text", FULL_TEXT)):
            if not 0 < getattr(self, name) <= full:
                raise ValueError(f"{name} must be between 1 and {full}")


def index_sets(widths: Widths, token_ids: list[int]) -> dict[str, torch.Tensor]:
    """Full-size indices of each kind of narrow axis."""
    c, f = widths.channels, widths.feedforward
    return {
        "channels": torch.arange(c),
        # output blocks read cat([h, skip]): h's channels, then skip's from 320 on
        "skip_concat": torch.cat([torch.arange(c), FULL_CHANNELS + torch.arange(c)]),
        "time": torch.arange(widths.time),
        "feedforward": torch.arange(f),
        # GEGLU's projection is [value | gate], each FULL_FEEDFORWARD wide
        "geglu": torch.cat([torch.arange(f), FULL_FEEDFORWARD + torch.arange(f)]),
        "text": torch.arange(widths.text),
        "text_head": torch.arange(TEXT_HEAD_CHANNELS),
        "tokens": torch.tensor(token_ids, dtype=torch.long),
    }


def padded_layer_norm(x, weight, bias, full_width: int, eps: float = 1e-5):
    """LayerNorm over `full_width` channels of which only x's are non-zero (the rest are zeros)."""
    mean = x.sum(-1, keepdim=True) / full_width
    centred = x - mean
    squares = centred.square().sum(-1, keepdim=True) + (full_width - x.shape[-1]) * mean.square()
    return centred * torch.rsqrt(squares / full_width + eps) * weight + bias


class PaddedLayerNorm(nn.Module):
    def __init__(self, width: int, full_width: int):
        super().__init__()
        self.full_width = full_width
        # Normalised over the full width, the active channels come out sqrt(full / width) times
        # larger than a plain LayerNorm's; start at unit scale so attention logits start small
        # (large ones saturate the softmax on CLIP's many padding tokens and stop the prompt's
        # gradient).
        self.weight = nn.Parameter(torch.full((width,), (width / full_width) ** 0.5))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        return padded_layer_norm(x, self.weight, self.bias, self.full_width)


def group_norm(channels: int, group_size: int, eps: float = 1e-5) -> nn.GroupNorm:
    """The narrow part of ComfyUI's GroupNorm(32, full width): groups keep the full model's size."""
    return nn.GroupNorm(channels // group_size, channels, eps=eps)


def timestep_embedding(timesteps: torch.Tensor, dim: int = FULL_CHANNELS, max_period: float = 10000.0):
    """ComfyUI's (and LDM's) sinusoidal embedding: [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, channels: int, context_channels: int):
        super().__init__()
        self.heads = channels // HEAD_CHANNELS
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(context_channels, channels, bias=False)
        self.to_v = nn.Linear(context_channels, channels, bias=False)
        self.to_out = nn.Sequential(nn.Linear(channels, channels))

    def forward(self, x, context=None):
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        split = [t.unflatten(-1, (self.heads, HEAD_CHANNELS)).transpose(1, 2) for t in (q, k, v)]
        out = F.scaled_dot_product_attention(*split)
        return self.to_out(out.transpose(1, 2).flatten(2))


class GEGLU(nn.Module):
    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(channels, 2 * inner)

    def forward(self, x):
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.net = nn.Sequential(GEGLU(channels, inner), nn.Identity(), nn.Linear(inner, channels))

    def forward(self, x):
        return self.net(x)


class TransformerBlock(nn.Module):
    def __init__(self, widths: Widths):
        super().__init__()
        c = widths.channels
        self.attn1 = Attention(c, c)
        self.ff = FeedForward(c, widths.feedforward)
        self.attn2 = Attention(c, widths.text)
        self.norm1 = PaddedLayerNorm(c, FULL_CHANNELS)
        self.norm2 = PaddedLayerNorm(c, FULL_CHANNELS)
        self.norm3 = PaddedLayerNorm(c, FULL_CHANNELS)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, widths: Widths):
        super().__init__()
        c = widths.channels
        self.norm = group_norm(c, CHANNEL_GROUP, eps=1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(widths)])
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, emb, context):
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return self.proj_out(tokens.transpose(1, 2).reshape(b, c, h, w)) + x


class ResBlock(nn.Module):
    def __init__(self, widths: Widths, reads_skip_concat: bool = False):
        super().__init__()
        c = widths.channels
        in_channels, group = (2 * c, CONCAT_GROUP) if reads_skip_concat else (c, CHANNEL_GROUP)
        self.in_layers = nn.Sequential(
            group_norm(in_channels, group), nn.SiLU(), nn.Conv2d(in_channels, c, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(widths.time, c))
        self.out_layers = nn.Sequential(
            group_norm(c, CHANNEL_GROUP), nn.SiLU(), nn.Identity(), nn.Conv2d(c, c, 3, padding=1)
        )
        self.skip_connection = nn.Conv2d(in_channels, c, 1) if in_channels != c else nn.Identity()

    def forward(self, x, emb, context):
        h = self.in_layers(x) + self.emb_layers(emb)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Conv(nn.Conv2d):
    def forward(self, x, emb, context):
        return super().forward(x)


class Sequence(nn.ModuleList):
    """ComfyUI's TimestepEmbedSequential: numbered children, each given (x, emb, context)."""

    def forward(self, x, emb, context):
        for layer in self:
            x = layer(x, emb, context)
        return x


class NarrowUNet(nn.Module):
    """SD1.5's UNet with one level (8x8 latents need no downsampling): an input ResBlock and
    transformer, a middle ResBlock, two output ResBlocks and transformers. Parameter names are
    ComfyUI's, under model.diffusion_model."""

    def __init__(self, widths: Widths):
        super().__init__()
        c = widths.channels
        self.time_embed = nn.Sequential(
            nn.Linear(FULL_CHANNELS, widths.time), nn.SiLU(), nn.Linear(widths.time, widths.time)
        )
        self.input_blocks = nn.ModuleList(
            [
                Sequence([Conv(LATENT_CHANNELS, c, 3, padding=1)]),
                Sequence([ResBlock(widths), SpatialTransformer(widths)]),
            ]
        )
        self.middle_block = Sequence([ResBlock(widths)])
        self.output_blocks = nn.ModuleList(
            [
                Sequence([ResBlock(widths, reads_skip_concat=True), SpatialTransformer(widths)])
                for _ in range(2)
            ]
        )
        self.out = nn.Sequential(
            group_norm(c, CHANNEL_GROUP), nn.SiLU(), nn.Conv2d(c, LATENT_CHANNELS, 3, padding=1)
        )

    def forward(self, x, timesteps, context):
        emb = self.time_embed(timestep_embedding(timesteps))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)


class CausalSelfAttention(nn.Module):
    """One 64-wide head of a CLIP layer's causal self-attention (CLIP-L has 12 of them)."""

    def __init__(self, width: int):
        super().__init__()
        self.q_proj = nn.Linear(width, TEXT_HEAD_CHANNELS)
        self.k_proj = nn.Linear(width, TEXT_HEAD_CHANNELS)
        self.v_proj = nn.Linear(width, TEXT_HEAD_CHANNELS)
        self.out_proj = nn.Linear(TEXT_HEAD_CHANNELS, width)

    def forward(self, x):
        q, k, v = (projection(x).unsqueeze(1) for projection in (self.q_proj, self.k_proj, self.v_proj))
        return self.out_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).squeeze(1))

    @torch.no_grad()
    def set_to_copy_content(self) -> None:
        """Hand-set: every position attends to the earlier tokens whose channel 0 (the content
        flag) is set, and adds their channels 1.. to its own. Positions after the digit, CLIP's
        many end-of-text paddings above all, then carry it too; without this the UNet's
        cross-attention sees the digit in one position of 77 and learns to read it far slower
        (measured: 10 % against 60 % of prompts drawn right after 300 steps)."""
        for linear in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            linear.weight.zero_()
            linear.bias.zero_()
        self.q_proj.bias[0] = TEXT_HEAD_CHANNELS**0.5  # logit = the key's channel 0
        self.k_proj.weight[0, CONTENT_FLAG] = 1.0
        width = self.out_proj.out_features
        copied = torch.arange(1, width)
        self.v_proj.weight[copied, copied] = 1.0
        self.out_proj.weight[copied, copied] = 1.0


class TextLayer(nn.Module):
    """CLIP's first layer with one attention head in use and an all-zero MLP (so it adds nothing)."""

    def __init__(self, width: int):
        super().__init__()
        self.layer_norm1 = PaddedLayerNorm(width, FULL_TEXT)
        self.self_attn = CausalSelfAttention(width)

    def forward(self, x):
        return x + self.self_attn(self.layer_norm1(x))


class NarrowTextEncoder(nn.Module):
    """CLIP-L with zero position embeddings, one attention head in its first layer and the other
    layers all-zero (identity through their residual connections): a trained vector per known
    token (every other token is the zero vector); the head copies the prompt's content tokens
    (digits, number words) into the positions after them, as CLIP's end-of-text positions carry a
    prompt; then CLIP's final LayerNorm over all 768 channels. Parameter names are ComfyUI's,
    under cond_stage_model.transformer.text_model.

    Built for training (`content_ids` given), channel 0 of each token vector is a fixed flag
    (CONTENT_VALUE for content tokens, else 0) and the head and its LayerNorm are hand-set and
    frozen; the other channels of the token vectors are learned."""

    def __init__(
        self, token_ids: list[int], widths: Widths, content_ids=(), synonyms=None, vocab_size: int = 49408
    ):
        super().__init__()
        self.token_ids = list(token_ids)
        # synonyms: token -> token whose vector it shares (e.g. "three" -> "3"), while training.
        synonyms = dict(synonyms or {})
        own = [token for token in self.token_ids if token not in synonyms]
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(len(own), widths.text)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([TextLayer(widths.text)])
        self.final_layer_norm = PaddedLayerNorm(widths.text, FULL_TEXT)
        row_of = torch.full((vocab_size,), NO_TOKEN, dtype=torch.long)
        row_of[torch.tensor(own)] = torch.arange(len(own))
        for token, same_as in synonyms.items():
            row_of[token] = row_of[same_as]
        self.register_buffer("row_of", row_of, persistent=False)
        self._hand_set(content_ids)

    def token_table(self) -> torch.Tensor:
        """[len(token_ids), width]: each known token's vector, synonyms written out."""
        return self.embeddings.token_embedding.weight[self.row_of[torch.tensor(self.token_ids)]]

    @torch.no_grad()
    def _hand_set(self, content_ids) -> None:
        vectors = self.embeddings.token_embedding.weight
        nn.init.normal_(vectors, std=1.0)
        vectors[:, CONTENT_FLAG] = 0.0
        for token in content_ids:
            vectors[self.row_of[token], CONTENT_FLAG] = CONTENT_VALUE
        layer = self.encoder.layers[0]
        layer.layer_norm1.weight.fill_(1.0)
        layer.self_attn.set_to_copy_content()
        layer.requires_grad_(False)
        vectors.register_hook(_keep_flag_fixed)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = self.row_of[tokens]
        x = self.embeddings.token_embedding(rows.clamp(min=0)) * (rows >= 0).unsqueeze(-1)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.final_layer_norm(x)


def _keep_flag_fixed(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.clone()
    grad[:, CONTENT_FLAG] = 0.0
    return grad


UNET_PREFIX = "model.diffusion_model."
TEXT_PREFIX = "cond_stage_model.transformer.text_model."
_OUTPUT_RESBLOCK = re.compile(r"output_blocks\.\d+\.0\.")


def unet_axes(name: str, ndim: int) -> tuple:
    """Which index set each axis of a narrow UNet tensor fills in the full tensor (None: all)."""
    reads_concat = bool(_OUTPUT_RESBLOCK.match(name)) and (
        ".in_layers." in name or ".skip_connection." in name
    )
    into = "skip_concat" if reads_concat else "channels"
    if name.startswith("time_embed.0."):
        axes = ("time", None)
    elif name.startswith("time_embed.2."):
        axes = ("time", "time")
    elif name.startswith("input_blocks.0.0."):
        axes = ("channels", None, None, None)
    elif name.startswith("out.2."):
        axes = (None, "channels", None, None)
    elif ".in_layers.0." in name:
        axes = (into,)
    elif ".emb_layers.1." in name:
        axes = ("channels", "time")
    elif ".attn2.to_k." in name or ".attn2.to_v." in name:
        axes = ("channels", "text")
    elif ".ff.net.0.proj." in name:
        axes = ("geglu", "channels")
    elif ".ff.net.2." in name:
        axes = ("channels", "feedforward")
    else:
        axes = ("channels", into, None, None)
    return axes[:ndim]


def text_axes(name: str, ndim: int) -> tuple:
    if name == "embeddings.token_embedding.weight":
        return ("tokens", "text")
    if name.startswith(("final_layer_norm.", "encoder.layers.0.layer_norm1.")):
        return ("text",)
    if name.startswith("encoder.layers.0.self_attn.out_proj."):
        return ("text", "text_head")[:ndim]
    if name.startswith("encoder.layers.0.self_attn."):
        return ("text_head", "text")[:ndim]
    raise KeyError(f"no full-size layout for text-encoder tensor {name}")


def axes_of(unet: NarrowUNet, text: NarrowTextEncoder) -> dict[str, tuple[torch.Tensor, tuple]]:
    """Every trained tensor under its checkpoint key, with the index set of each axis."""
    out = {}
    for name, tensor in unet.state_dict().items():
        out[UNET_PREFIX + name] = (tensor, unet_axes(name, tensor.ndim))
    for name, tensor in text.state_dict().items():
        if name == "embeddings.token_embedding.weight":
            tensor = text.token_table().detach()
        out[TEXT_PREFIX + name] = (tensor, text_axes(name, tensor.ndim))
    return out


def load_narrow(path) -> tuple[NarrowUNet, NarrowTextEncoder]:
    """The narrow UNet and text encoder stored in a compact file (widths from its index sets)."""
    from safetensors.torch import load_file

    from .compact import INDEX_PREFIX

    tensors = load_file(str(path))
    sets = {
        key[len(INDEX_PREFIX) :]: value.long()
        for key, value in tensors.items()
        if key.startswith(INDEX_PREFIX)
    }
    widths = Widths(
        channels=len(sets["channels"]),
        time=len(sets["time"]),
        feedforward=len(sets["feedforward"]),
        text=len(sets["text"]),
    )
    unet, text = NarrowUNet(widths), NarrowTextEncoder(sets["tokens"].tolist(), widths)
    for module, prefix in ((unet, UNET_PREFIX), (text, TEXT_PREFIX)):
        state = {
            key[len(prefix) :]: value.float() for key, value in tensors.items() if key.startswith(prefix)
        }
        module.load_state_dict(state)
    return unet.eval(), text.eval()
