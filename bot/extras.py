"""Optional ML dependencies: say exactly which install command adds what is missing.

`labelbot finetune`, `finetune compare`, `/label finetune`, scheduled fine-tunes and generation with a
local model need the `ml` extra (torch, transformers, trl, peft, datasets, accelerate). Without it they
used to fail deep inside a trainer process; now they refuse up front with one line naming the modules
and the command for this very installation (an editable checkout or a package from PyPI). Checks use
`importlib.util.find_spec`, so nothing heavy is imported to find out.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from bot.core.errors import InvalidInput

TORCH_PIN = "torch==2.13.0"  # CPU build; an unpinned torch pulls several GB of CUDA wheels
# what each trainer imports (scheduler/finetune/train_*.py), by variant
TRAINING_MODULES = {
    "reward": ("torch", "transformers", "accelerate"),
    "dpo": ("torch", "transformers", "trl", "datasets"),
    "sft": ("torch", "transformers", "trl", "datasets"),
}
LORA_MODULES = ("peft",)
GENERATION_MODULES = ("torch", "transformers")


def missing(modules: Iterable[str]) -> list[str]:
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def install_target() -> str:
    """`'labelbot[ml]'`, or `-e '/path/to/checkout[ml]'` when this labelbot is an editable install."""
    try:
        dist = metadata.distribution("labelbot")
        raw = dist.read_text("direct_url.json")
        info = json.loads(raw) if raw else {}
    except (metadata.PackageNotFoundError, ValueError):
        info = {}
    url = str(info.get("url", ""))
    if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return "-e " + shlex.quote(f"{Path(url[len('file://'):])}[ml]")
    return shlex.quote("labelbot[ml]")


def install_command() -> str:
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    return f"{pip} {TORCH_PIN} && {pip} {install_target()}"


def require(purpose: str, modules: Iterable[str]) -> None:
    """Raise InvalidInput (one line: what is missing and the exact install command) unless all are importable."""
    lacking = missing(modules)
    if lacking:
        raise InvalidInput(f"{purpose} needs the ML extras ({', '.join(lacking)} not installed). Install them with: "
                           f"{install_command()}")


def require_training(method: str, variant: str = "full") -> None:
    modules = list(TRAINING_MODULES.get(method, ("torch", "transformers")))
    if variant == "lora":
        modules += LORA_MODULES
    require(f"Fine-tuning ({method}, {variant})", modules)
