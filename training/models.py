"""The models the trainer trains, each behind the same few calls: start (fresh, from weights,
or from a run folder), save, and how its text side takes captions.

  * clapdex-compact: trained from scratch, or fine-tuned from a checkpoint (the shipped one
    by default from ``clapdex train``); captions enter as MiniLM features computed when the
    clips are packed, since MiniLM is frozen. Checkpoints are safetensors; the run's result
    is a float16 copy, as shipped.
  * msclap-2023: fine-tuned from the official weights; captions are tokenized in the data
    loader, since GPT-2 trains too. Checkpoints are in the official layout
    (``{'model': state_dict}``, official key names, everything the official file holds), with
    the GPT-2 tokenizer files beside them, so ``load_encoder("msclap-2023", weights=...)`` and
    msclap itself load them.

Freezing a tower (``freeze``) freezes its encoder and its projection, so that side's
embeddings stay exactly what they were; its modules are kept in eval mode while training
(``train_mode``), so batch-norm statistics and dropout do not move it either.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import torch
from torch import nn

from encoders.compact import CONFIGS, CompactClap, read_compact, save_compact
from encoders.msclap import MSClapModel, load_gpt2_tokenizer, tokenize_captions
from encoders.weights import GPT2_TOKENIZER_FILES, resolve_gpt2_tokenizer, resolve_msclap_2023

MODELS = ("clapdex-compact", "msclap-2023")
TOWERS = {"audio": ("audio_tower", "audio_projection"), "text": ("text_tower", "text_projection")}


class CompactTrainee:
    name = "clapdex-compact"
    last_file, best_file, result_file = "model.safetensors", "best.safetensors", "clapdex-compact.safetensors"
    fine_tuning_rate = 1e-4  # a tenth of the from-scratch rate: a small library should adjust it, not replace it
    tokenize = None  # caption features come precomputed from the shards

    def __init__(self, model: CompactClap):
        self.model = model

    @classmethod
    def start(cls, weights: str | Path | None, model_config: str) -> CompactTrainee:
        """From ``weights`` (fine-tuning), else freshly initialised as ``model_config`` says."""
        return cls(read_compact(weights)[0] if weights else CompactClap(CONFIGS[model_config]))

    @classmethod
    def resume(cls, out: Path) -> CompactTrainee:
        return cls(read_compact(out / cls.last_file)[0])

    def set_augmentation(self, freq_masks: int, freq_width: int, time_masks: int, time_width: int) -> None:
        if freq_masks or time_masks:
            self.model.audio_tower.spec_augment = (freq_masks, freq_width, time_masks, time_width)

    def save(self, path: Path) -> None:
        save_compact(self.model, path)

    def finish(self, out: Path) -> Path:
        """The run's result: a float16 copy of the best epoch (by held-out recall), else the last."""
        chosen = read_compact(out / self.best_file)[0] if (out / self.best_file).exists() else self.model
        return save_compact(chosen, out / self.result_file, torch.float16)


class MSClapTrainee:
    name = "msclap-2023"
    last_file, best_file, result_file = "model.pth", "best.pth", "msclap-2023.pth"
    fine_tuning_rate = 1e-5  # GPT-2 and HTSAT are large and pretrained: small steps keep what they know

    def __init__(self, model: MSClapModel, template: dict[str, torch.Tensor], tokenizer_folder: Path):
        self.model = model
        self.template = template  # the official state dict it came from: the layout checkpoints keep
        self.tokenizer_folder = tokenizer_folder
        self.tokenize = partial(tokenize_captions, load_gpt2_tokenizer(tokenizer_folder), model.config)

    @classmethod
    def start(cls, weights: str | Path | None, model_config: str = "") -> MSClapTrainee:
        """From ``weights`` (path), else the official weights where ``load_encoder`` finds them."""
        return cls.read(resolve_msclap_2023(weights))

    @classmethod
    def resume(cls, out: Path) -> MSClapTrainee:
        return cls.read(out / cls.last_file)

    @classmethod
    def read(cls, path: Path) -> MSClapTrainee:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or "model" not in checkpoint:
            raise ValueError(f"{path} is not an MS-CLAP checkpoint: expected a dict with a 'model' state dict")
        state = checkpoint["model"]
        return cls(MSClapModel.from_official_state_dict(state), state, resolve_gpt2_tokenizer(path))

    def set_augmentation(self, freq_masks: int, freq_width: int, time_masks: int, time_width: int) -> None:
        if freq_masks or time_masks:
            raise ValueError("SpecAugment masks are a clapdex-compact option")

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_path = path.with_name(path.name + ".partial")
        torch.save({"model": self.model.to_official_state_dict(self.template)}, partial_path)
        partial_path.replace(path)
        for name in GPT2_TOKENIZER_FILES:
            if not (path.parent / name).exists():
                shutil.copyfile(self.tokenizer_folder / name, path.parent / name)

    def finish(self, out: Path) -> Path:
        """The run's result: the best epoch (by held-out recall), else the last, float32 as trained."""
        chosen = out / (self.best_file if (out / self.best_file).exists() else self.last_file)
        shutil.copyfile(chosen, out / self.result_file)
        return out / self.result_file


TRAINEES = {trainee.name: trainee for trainee in (CompactTrainee, MSClapTrainee)}


def freeze(model: nn.Module, audio: bool, text: bool) -> list[nn.Module]:
    """Stop the gradients of the named towers; returns their modules for ``train_mode``."""
    frozen = [module for side, wanted in (("audio", audio), ("text", text)) if wanted
              for name, module in model.named_children() if name in TOWERS[side]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()
