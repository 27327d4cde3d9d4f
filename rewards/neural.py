"""What every neural reward shares: a module run by a model manager (ComfyUI's, injected by the
adapter, or plain torch), a prompt encoded once per call, and images scored in chunks sized from the
free memory of the device."""

from __future__ import annotations

from abc import abstractmethod

import torch

from .base import Reward
from .model_manager import ModelManager, TorchModelManager


class NeuralReward(Reward):
    #: Shown in errors, e.g. "an HPSv2 checkpoint (OpenCLIP ViT-H-14)".
    expected: str = "a reward checkpoint"

    def __init__(
        self,
        module: torch.nn.Module,
        dtype_name: str,
        name: str | None = None,
        manager: ModelManager | None = None,
    ) -> None:
        super().__init__()
        if name:
            self.name = name
        self.manager = manager if manager is not None else TorchModelManager()
        self.dtype = self.manager.resolve_dtype(dtype_name)
        self.handle = self.manager.manage(module, self.dtype)
        # Samplers score many batches against one prompt: encode it once, not per call.
        self._prompt_cache: tuple | None = None

    def _score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        module, device = self.manager.load(self.handle)
        chunk = self.manager.chunk_size(device, self.bytes_per_image(), images.shape[0])
        parts = []
        with torch.no_grad():
            context = self.cached_prompt(module, prompt, device)
            for start in range(0, images.shape[0], chunk):
                self.manager.check_interrupt()
                pixels = self.preprocess(images[start : start + chunk].to(device))
                parts.append(self.score_pixels(module, pixels.to(self.dtype), context).float().cpu())
        return torch.cat(parts)

    def cached_prompt(self, module: torch.nn.Module, prompt: str, device: torch.device):
        key = (prompt, str(device))
        if self._prompt_cache is None or self._prompt_cache[0] != key:
            self._prompt_cache = (key, self.encode_prompt(module, prompt, device))
        return self._prompt_cache[1]

    def element_size(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    def encode_prompt(self, module: torch.nn.Module, prompt: str, device: torch.device):
        """Whatever the prompt contributes, computed once per call (None for image-only rewards)."""
        return None

    @abstractmethod
    def bytes_per_image(self) -> int:
        """Peak activation memory of one image, to size chunks."""

    @abstractmethod
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W, 3] in [0, 1] on the device -> the model's input pixels (float32)."""

    @abstractmethod
    def score_pixels(self, module: torch.nn.Module, pixels: torch.Tensor, context) -> torch.Tensor:
        """Scores [B] of preprocessed pixels."""


def tokenize_for_clip(prompt: str, context_length: int, device: torch.device) -> torch.Tensor:
    """Token ids [1, context_length] with OpenAI's CLIP BPE (shipped inside open_clip_torch, no
    download): start token, BPE, end token, zero padding; truncated keeping the end token.
    open_clip.tokenizer.tokenize has had this signature in every open_clip_torch release we support."""
    from open_clip.tokenizer import tokenize

    return tokenize([prompt], context_length=context_length).to(device)
