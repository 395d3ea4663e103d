"""The zoo: which networks ship, at what resolution, and how they are trained.

Ranks order each task's ladder from cheapest (0) to best. The teacher is trained per fold to
distil the students; it is reported but not shipped (too slow for the device's CPU budget).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import arch


@dataclass(frozen=True)
class TierSpec:
    name: str
    task: str            # classify | segment
    rank: int            # -1 = teacher (not shipped)
    res: int
    build: callable = field(repr=False)
    description: str = ""

    @property
    def file(self) -> str:
        return self.name.replace("-", "_") + ".tflite"


N_BUSI = 3

BUSI_TEACHER = TierSpec(
    "busi-cls-teacher-resnet-r128", "classify", -1, 128,
    lambda tf, name: arch.resnet_teacher(tf, 128, N_BUSI, name, widths=(24, 48, 96, 128)),
    "residual CNN teacher, 4 stages")
BUSI_STUDENTS = (
    # Batch norm in the fire modules and width 14 (3.6 M MACs, 8.6x below the largest tier): fold 1 at
    # 0.4x epochs, balanced accuracy 0.48 without BN (width 12), 0.58 with BN at width 12, 0.67 at 14.
    TierSpec("busi-cls-fire-r64", "classify", 0, 64,
             lambda tf, name: arch.squeezenet(tf, 64, N_BUSI, name, width=14),
             "SqueezeNet fire modules with batch norm, 64 px"),
    TierSpec("busi-cls-mnv2-a050-r96", "classify", 1, 96,
             lambda tf, name: arch.mobilenet_v2(tf, 96, N_BUSI, 0.5, False, name),
             "MobileNetV2 blocks, width 0.5, 96 px"),
    TierSpec("busi-cls-mnv2se-a100-r128", "classify", 2, 128,
             lambda tf, name: arch.mobilenet_v2(tf, 128, N_BUSI, 1.0, True, name),
             "MobileNetV2 blocks + squeeze-and-excitation, width 1.0, 128 px"),
    # Fire modules with an SE gate after each, 128 px, 37 M MACs. Fold 1 / fold 2 at 0.4x epochs
    # (int8 accuracy, malignant AUC): 76.8 % / 0.845 and 77.6 % / 0.928, against mnv2se's 76.0 % /
    # 0.782 and 64.8 % / 0.860; the same net without SE reached 69.6 % on fold 1.
    TierSpec("busi-cls-firese-r128", "classify", 3, 128,
             lambda tf, name: arch.squeezenet(tf, 128, N_BUSI, name, width=24, se=True),
             "SqueezeNet fire modules with batch norm + squeeze-and-excitation, 128 px"),
)

DDTI_TEACHER = TierSpec(
    "ddti-seg-teacher-unet-r128", "segment", -1, 128,
    lambda tf, name: arch.seg_net(tf, 128, name, widths=(8, 16, 32, 64), separable=False),
    "U-Net teacher (plain 3x3 conv pairs)")
DDTI_STUDENTS = (
    TierSpec("ddti-seg-ds-r64", "segment", 0, 64,
             lambda tf, name: arch.seg_net(tf, 64, name, widths=(8, 16, 32, 64)),
             "depthwise-separable encoder-decoder, 64 px"),
    TierSpec("ddti-seg-ds-r96", "segment", 1, 96,
             lambda tf, name: arch.seg_net(tf, 96, name, widths=(12, 24, 48, 96)),
             "depthwise-separable encoder-decoder, 96 px"),
    # Four downsamplings at 128 px (three at 64/96 px) keep the bottleneck's receptive field
    # covering the nodule: with three, the 128 px tier scored below the 96 px one (Dice 0.77 vs 0.80).
    TierSpec("ddti-seg-dsse-r128", "segment", 2, 128,
             lambda tf, name: arch.seg_net(tf, 128, name, widths=(16, 32, 64, 96, 160), se=True),
             "depthwise-separable encoder-decoder, 4 levels + squeeze-and-excitation bottleneck, 128 px"),
)


# Augmentation strength per task (UltrasoundAugment keyword arguments). BUSI fold 0, teacher, 100
# epochs: the lighter set reached 89 % validation accuracy against 83 % with the defaults, which
# stay for DDTI (the masks follow the geometry, and its teacher reached Dice 0.84 with them).
AUGMENT = {
    "classify": dict(rotate_deg=5.0, zoom=0.08, gain=0.15, gamma=0.15, speckle=0.05),
    "segment": dict(),
}
# Issue 16's device profile (TrainSettings.augment = "device"): what the daemon feeds besides a
# full linear frame. Rotations to +-12 deg with fill corners, sector fill on 30 % of the images,
# gain 0.6-1.4 (the robustness suite tests x0.7 and x1.4), TGC ramps +-0.1 of the display range,
# displayed dynamic range x exp(+-0.25), blur sigma 0.3-2 px on 40 %, speckle up to 0.15. The
# fill is the daemon's (perturb.DEVICE_FILL, the manifest's preprocess.fill). DDTI keeps its set.
AUGMENT_DEVICE = {
    "classify": dict(rotate_deg=12.0, zoom=0.08, gain=0.4, gamma=0.15, speckle=0.15, sector_p=0.3,
                     tgc=0.1, dynamic_range=0.25, blur=2.0, blur_p=0.4),
    "segment": dict(),
}


def augment_kwargs(task: str, profile: str) -> dict:
    """UltrasoundAugment keyword arguments of `task` ('classify' | 'segment') under `profile`."""
    from .perturb import DEVICE_FILL

    if profile == "basic":
        return dict(AUGMENT[task])
    if profile == "device":
        kw = dict(AUGMENT_DEVICE[task])
        return dict(kw, fill=DEVICE_FILL) if kw else dict(AUGMENT[task])
    raise ValueError(f"augment profile {profile!r}: pick basic (the shipped tiers' recipe) or device")


@dataclass
class TrainSettings:
    seed: int = 1234
    batch: int = 32
    # From-scratch nets on ~450 images need long schedules: the BUSI teacher's validation accuracy
    # kept climbing to epoch 80-100 (77 % at 20 epochs, 84-87 % at 80, fold 0, heavy augmentation).
    teacher_epochs: int = 100
    student_epochs: int = 80        # dense distillation
    prune_epochs: int = 15          # gradual magnitude pruning + fine-tune
    prune_target: float = 0.5
    lr: float = 2e-3
    prune_lr: float = 3e-4
    alpha: float = 0.5              # weight of the hard-label loss in distillation
    temperature: float = 4.0
    qat_epochs: int = 5
    qat_trigger: float = 0.01       # PTQ accuracy/Dice loss on validation that triggers QAT
    val_fraction: float = 0.15      # carved from the training folds for the QAT decision
    max_train: int | None = None    # smoke runs: cap the training set
    augment: str = "device"         # augment_kwargs profile: device (issue 16) or basic (shipped tiers)
    prune_gate: float = 0.01        # pruned int8 worse than dense int8 by more on validation: ship dense

    def scaled(self, factor: float) -> "TrainSettings":
        import dataclasses
        f = lambda e: max(1, int(round(e * factor)))
        return dataclasses.replace(self, teacher_epochs=f(self.teacher_epochs),
                                   student_epochs=f(self.student_epochs), prune_epochs=f(self.prune_epochs),
                                   qat_epochs=f(self.qat_epochs))
