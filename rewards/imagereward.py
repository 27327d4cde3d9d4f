"""ImageReward (Xu et al. 2023), rebuilt in plain torch from the official ImageReward.pt.

The model is BLIP: a ViT-L/16 image encoder, and a BERT-base text encoder whose layers also
cross-attend to the image tokens; the [CLS] output goes through an MLP 768-1024-128-64-16-1
(no activations) and the result is normalised with the published mean and std. Scores are
about -2 to 2.

The checkpoint holds no tokenizer. ImageReward uses bert-base-uncased's WordPiece vocabulary
(plus [DEC] and [ENC]); put its `vocab.txt` next to the weights file in the rewards folder (as
`vocab.txt`, `bert-base-uncased-vocab.txt`, or `bert-base-uncased/vocab.txt`).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from . import preprocess as pre
from .aesthetic import HEAD_LINEAR_INDICES, aesthetic_head
from .base import RewardError
from .checkpoints import load_checkpoint, require_keys
from .clip_arch import count_blocks
from .model_manager import ModelManager
from .neural import NeuralReward

# From ImageReward.py: the reward is (mlp(cls) - MEAN) / STD.
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
MAX_PROMPT_TOKENS = 35
HEAD_WIDTH = 64
VISION_LAYER_NORM_EPS = 1e-6
TEXT_LAYER_NORM_EPS = 1e-12  # med_config.json
# BERT's additive mask value for padding (med.py), kept for exact parity.
MASKED = -10000.0
VOCAB_NAMES = ("vocab.txt", "bert-base-uncased-vocab.txt", os.path.join("bert-base-uncased", "vocab.txt"))
EXPECTED = "an ImageReward checkpoint (ImageReward.pt: keys blip.visual_encoder.*, blip.text_encoder.*, mlp.layers.*)"
REQUIRED_KEYS = (
    "blip.visual_encoder.patch_embed.proj.weight",
    "blip.visual_encoder.pos_embed",
    "blip.text_encoder.embeddings.word_embeddings.weight",
    "blip.text_encoder.encoder.layer.0.crossattention.self.key.weight",
    "mlp.layers.0.weight",
)


# ---- BLIP image encoder (BLIP's vit.py) ---------------------------------------------------------


class VitAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class VitMlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class VitBlock(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=VISION_LAYER_NORM_EPS)
        self.attn = VitAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=VISION_LAYER_NORM_EPS)
        self.mlp = VitMlp(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, width: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class BlipVisionTransformer(nn.Module):
    def __init__(
        self, width: int, layers: int, heads: int, hidden: int, patch_size: int, tokens: int
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(width, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        self.blocks = nn.ModuleList(VitBlock(width, heads, hidden) for _ in range(layers))
        self.norm = nn.LayerNorm(width, eps=VISION_LAYER_NORM_EPS)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed[:, : x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


# ---- BLIP text encoder with cross-attention (BLIP's med.py, "multimodal" mode) ----------------


class BertEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, positions: int, width: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width)
        self.position_embeddings = nn.Embedding(positions, width)
        self.LayerNorm = nn.LayerNorm(width, eps=TEXT_LAYER_NORM_EPS)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions)[None])


class BertSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, source_width: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(source_width, width)
        self.value = nn.Linear(source_width, width)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, source: torch.Tensor, additive_mask: torch.Tensor | None
    ) -> torch.Tensor:
        query, key, value = (
            self.split_heads(self.query(x)),
            self.split_heads(self.key(source)),
            self.split_heads(self.value(source)),
        )
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=additive_mask)
        return out.transpose(1, 2).reshape(x.shape)


class BertSelfOutput(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=TEXT_LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, width: int, heads: int, source_width: int) -> None:
        super().__init__()
        self.self = BertSelfAttention(width, heads, source_width)
        self.output = BertSelfOutput(width)

    def forward(self, x, source, additive_mask=None):
        return self.output(self.self(x, source, additive_mask), x)


class BertDense(nn.Module):
    def __init__(self, width_in: int, width_out: int, with_norm: bool) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width_out)
        if with_norm:
            self.LayerNorm = nn.LayerNorm(width_out, eps=TEXT_LAYER_NORM_EPS)


class BertLayer(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, image_width: int) -> None:
        super().__init__()
        self.attention = BertAttention(width, heads, width)
        self.crossattention = BertAttention(width, heads, image_width)
        self.intermediate = BertDense(width, hidden, with_norm=False)
        self.output = BertDense(hidden, width, with_norm=True)

    def forward(self, x, text_mask, image_tokens):
        x = self.attention(x, x, text_mask)
        x = self.crossattention(x, image_tokens)  # every image token is attended (mask of ones)
        hidden = F.gelu(self.intermediate.dense(x))
        return self.output.LayerNorm(self.output.dense(hidden) + x)


class BertEncoder(nn.Module):
    def __init__(self, layers: int, **sizes) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(**sizes) for _ in range(layers))


class BlipTextEncoder(nn.Module):
    def __init__(self, vocab_size, positions, width, layers, heads, hidden, image_width) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(vocab_size, positions, width)
        self.encoder = BertEncoder(layers, width=width, heads=heads, hidden=hidden, image_width=image_width)

    def forward(self, input_ids, attention_mask, image_tokens) -> torch.Tensor:
        x = self.embeddings(input_ids)
        additive = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * MASKED
        for layer in self.encoder.layer:
            x = layer(x, additive, image_tokens)
        return x


class Blip(nn.Module):
    def __init__(self, visual_encoder: BlipVisionTransformer, text_encoder: BlipTextEncoder) -> None:
        super().__init__()
        self.visual_encoder = visual_encoder
        self.text_encoder = text_encoder


class ImageRewardModel(nn.Module):
    def __init__(self, blip: Blip, mlp_sizes: list[int]) -> None:
        super().__init__()
        self.blip = blip
        self.mlp = nn.Module()
        self.mlp.layers = aesthetic_head(mlp_sizes)

    def forward(self, pixels, input_ids, attention_mask) -> torch.Tensor:
        image_tokens = self.blip.visual_encoder(pixels)
        batch = pixels.shape[0]
        text = self.blip.text_encoder(
            input_ids.expand(batch, -1), attention_mask.expand(batch, -1), image_tokens
        )
        raw = self.mlp.layers(text[:, 0, :].float().to(self.mlp.layers[0].weight.dtype)).squeeze(-1)
        return (raw.float() - REWARD_MEAN) / REWARD_STD


# ---- building from a checkpoint -----------------------------------------------------------------


def model_from_state(state: dict, path: str = "") -> ImageRewardModel:
    require_keys(state, REQUIRED_KEYS, "imagereward", EXPECTED, path)
    vision, text = "blip.visual_encoder.", "blip.text_encoder."
    patch = state[vision + "patch_embed.proj.weight"]
    image_width = patch.shape[0]
    visual = BlipVisionTransformer(
        width=image_width,
        layers=count_blocks(state, vision + "blocks."),
        heads=max(1, image_width // HEAD_WIDTH),
        hidden=state[vision + "blocks.0.mlp.fc1.weight"].shape[0],
        patch_size=patch.shape[-1],
        tokens=state[vision + "pos_embed"].shape[1],
    )
    vocab_size, width = state[text + "embeddings.word_embeddings.weight"].shape
    text_encoder = BlipTextEncoder(
        vocab_size=vocab_size,
        positions=state[text + "embeddings.position_embeddings.weight"].shape[0],
        width=width,
        layers=count_blocks(state, text + "encoder.layer."),
        heads=max(1, width // HEAD_WIDTH),
        hidden=state[text + "encoder.layer.0.intermediate.dense.weight"].shape[0],
        image_width=image_width,
    )
    head = [state[f"mlp.layers.{i}.weight"] for i in HEAD_LINEAR_INDICES]
    with torch.device("meta"):
        model = ImageRewardModel(Blip(visual, text_encoder), [head[0].shape[1], *(w.shape[0] for w in head)])
    wanted = model.state_dict().keys()
    # ImageReward.pt also holds BLIP's pre-training parts (vision_proj, text_proj, ...): unused.
    try:
        model.load_state_dict({key: state[key] for key in wanted}, strict=True, assign=True)
    except (KeyError, RuntimeError) as error:
        raise RewardError(
            f"reward 'imagereward': the weights do not fit {EXPECTED}: {str(error)[:600]}"
        ) from error
    return model.eval()


def find_vocab(weights_path: str) -> str:
    folder = os.path.dirname(weights_path)
    for name in VOCAB_NAMES:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    raise RewardError(
        "reward 'imagereward': the BERT tokenizer vocabulary was not found; put bert-base-uncased's "
        f"vocab.txt in '{folder}' as one of: {', '.join(VOCAB_NAMES)}"
    )


def bert_tokenizer(vocab_path: str):
    """transformers' BertTokenizer from a vocab.txt; version 4 takes `vocab_file`, 5 takes `vocab`."""
    import inspect

    from transformers import BertTokenizer

    if "vocab_file" in inspect.signature(BertTokenizer.__init__).parameters:
        return BertTokenizer(vocab_file=vocab_path)
    with open(vocab_path, encoding="utf-8") as handle:
        vocab = {line.rstrip("\n"): index for index, line in enumerate(handle)}
    return BertTokenizer(vocab=vocab)


class BlipTokenizer:
    """bert-base-uncased WordPiece plus BLIP's [DEC] and [ENC] tokens, as blip.init_tokenizer()."""

    def __init__(self, vocab_path: str, vocab_size: int) -> None:
        self.tokenizer = bert_tokenizer(vocab_path)
        self.tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        self.tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        if len(self.tokenizer) != vocab_size:
            raise RewardError(
                f"reward 'imagereward': tokenizer vocabulary '{vocab_path}' has {len(self.tokenizer)} tokens "
                f"(with [DEC], [ENC]) but the checkpoint embeds {vocab_size}; use bert-base-uncased's vocab.txt"
            )

    def __call__(self, prompt: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(
            prompt, padding="max_length", truncation=True, max_length=MAX_PROMPT_TOKENS, return_tensors="pt"
        )
        return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)


class ImageReward(NeuralReward):
    name = "imagereward"
    needs_prompt = True
    expected = EXPECTED

    def __init__(
        self,
        model: ImageRewardModel,
        tokenizer: BlipTokenizer,
        dtype_name: str,
        manager: ModelManager | None = None,
    ) -> None:
        visual = model.blip.visual_encoder
        self.image_size = (
            round((visual.pos_embed.shape[1] - 1) ** 0.5) * visual.patch_embed.proj.kernel_size[0]
        )
        self.width, self.tokens = visual.pos_embed.shape[2], visual.pos_embed.shape[1]
        self.tokenizer = tokenizer
        super().__init__(model, dtype_name, manager=manager)

    def bytes_per_image(self) -> int:
        per_layer = self.tokens * self.width * 14 + 16 * self.tokens * self.tokens * 2
        return int(per_layer * self.element_size() * 2)

    def encode_prompt(self, module, prompt: str, device: torch.device):
        return self.tokenizer(prompt, device)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        pixels = pre.to_channels_first(images)
        return pre.normalize(pre.resize_shortest_center_crop(pixels, self.image_size))

    def score_pixels(self, module, pixels, context) -> torch.Tensor:
        input_ids, attention_mask = context
        return module(pixels, input_ids, attention_mask)


def imagereward_from_state(
    state: dict, vocab_path: str, dtype_name: str, path: str = "", manager: ModelManager | None = None
) -> ImageReward:
    model = model_from_state(state, path)
    vocab_size = model.blip.text_encoder.embeddings.word_embeddings.weight.shape[0]
    return ImageReward(model, BlipTokenizer(vocab_path, vocab_size), dtype_name, manager)


def load_imagereward(path: str, dtype_name: str, manager: ModelManager | None = None) -> ImageReward:
    state = load_checkpoint(path, "imagereward")
    require_keys(state, REQUIRED_KEYS, "imagereward", EXPECTED, path)
    return imagereward_from_state(state, find_vocab(path), dtype_name, path, manager)
