"""digpt_torch: the workbench's D-iGPT pretraining in PyTorch, for scale-out runs (torch >= 1.13 and numpy only).

Models, teachers, AdamW and checkpoint files match the TypeScript workbench number for number (checked by
`python3 -m digpt_torch.parity`); the data, checkpoint folder and training loop live in the package's other modules.
"""
from .model import (OBJECTIVES, ConfigError, WeightsError, build_classifier, build_pretrain, load_official_state,
                    load_workbench_state, official_name, official_state, resolve_model_config, save_workbench_state)
from .optim import (load_optimizer_from_workbench, lr_at, make_adamw, optimizer_state_to_workbench, save_optimizer)
from .safetensors_io import SafetensorsError, SafetensorsFile, read_safetensors, write_safetensors
from .teacher import Teacher, load_teacher

__all__ = [
    "OBJECTIVES", "ConfigError", "WeightsError", "build_pretrain", "build_classifier", "resolve_model_config",
    "load_workbench_state", "save_workbench_state", "official_name", "load_official_state", "official_state",
    "make_adamw", "lr_at", "optimizer_state_to_workbench", "save_optimizer", "load_optimizer_from_workbench",
    "SafetensorsError", "SafetensorsFile", "read_safetensors", "write_safetensors", "Teacher", "load_teacher",
]
