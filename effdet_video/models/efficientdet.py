"""EfficientDet (AutoML's `EfficientDetNet`): EfficientNet backbone -> extra levels -> BiFPN -> class/box heads.

Input: normalized images [B, 3, H, W] (any H, W: every stride-2 op halves with ceil, like TF 'same').
Output: per level min..max, class logits [B, A*num_classes, h, w] and box codes [B, A*4, h, w] (ty, tx, th, tw).
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import ModelConfig
from .bifpn import BiFpn, FpnFlags, ResampleFeatureMap
from .efficientnet import EfficientNetFeatures
from .heads import box_head, class_head

BACKBONE_MAX_LEVEL = 5


class EfficientDet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.fpn_name != "bifpn":
            raise ValueError(f"unsupported fpn_name {config.fpn_name!r} (only 'bifpn')")
        self.config = config
        eps = config.batchnorm_epsilon
        backbone_levels = range(config.min_level, min(config.max_level, BACKBONE_MAX_LEVEL) + 1)
        self.backbone = EfficientNetFeatures(config.backbone_name, backbone_levels, config.act_type, eps)

        # Levels above the backbone's come from max-pooling the level below (1x1 conv first if widths differ).
        channels = list(self.backbone.feature_channels)
        extra = []
        for _level in range(BACKBONE_MAX_LEVEL + 1, config.max_level + 1):
            extra.append(ResampleFeatureMap(channels[-1], config.fpn_num_filters, config.apply_bn_for_resampling,
                                            config.conv_after_downsample, eps))
            channels.append(config.fpn_num_filters)
        self.extra_levels = nn.ModuleList(extra)

        flags = FpnFlags(
            apply_bn_for_resampling=config.apply_bn_for_resampling,
            conv_after_downsample=config.conv_after_downsample,
            conv_bn_act_pattern=config.conv_bn_act_pattern,
            separable_conv=config.separable_conv,
            act_type=config.act_type,
            bn_eps=eps,
        )
        self.fpn = BiFpn(config.min_level, config.max_level, channels, config.fpn_num_filters,
                         config.fpn_cell_repeats, config.fpn_weight_method, flags)
        num_levels = len(config.levels)
        self.class_net = class_head(config.fpn_num_filters, config.num_anchors, config.num_classes,
                                    config.box_class_repeats, num_levels, config.separable_conv, config.act_type, eps)
        self.box_net = box_head(config.fpn_num_filters, config.num_anchors, config.box_class_repeats, num_levels,
                                config.separable_conv, config.act_type, eps)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        feats = self.backbone(x)
        for resample in self.extra_levels:
            last = feats[-1]
            feats.append(resample(last, ((last.shape[-2] + 1) // 2, (last.shape[-1] + 1) // 2)))
        feats = self.fpn(feats)
        return self.class_net(feats), self.box_net(feats)
