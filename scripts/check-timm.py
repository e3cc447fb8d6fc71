# Loads a `digpt export --format timm` file (or a fine-tuning export) strictly into timm and runs it: python3 scripts/check-timm.py FILE
import sys, json, torch, timm
from safetensors.torch import load_file
from safetensors import safe_open
path = sys.argv[1]
with safe_open(path, "pt") as f:
    meta = f.metadata()
cfg = json.loads(meta["config"])
kind = meta.get("kind")
sd = load_file(path)
if kind == "vit_classifier":
    m = timm.models.vision_transformer.VisionTransformer(img_size=cfg["img_size"], patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"], depth=cfg["depth"], num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"], num_classes=cfg["num_classes"], global_pool="avg" if cfg["global_pool"] else "token")
else:
    m = timm.models.vision_transformer.VisionTransformer(img_size=cfg["img_size"], patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"], depth=cfg["depth"], num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"], num_classes=0, global_pool="avg")
r = m.load_state_dict(sd, strict=True)
m.eval()
x = torch.randn(2, 3, cfg["img_size"], cfg["img_size"])
with torch.no_grad():
    y = m(x)
print("strict load OK", kind, tuple(y.shape), float(y.abs().mean()))
