"""An independent re-statement of the reference network, for parity tests only.

Written from METHOD.md section 1 with the reference's module structure and key
names (encoder incl. layer4, which it runs and discards; decoder blocks that
upsample with nn.Upsample and concatenate). It shares no code with the package.
"""

import torch
from torch import nn


class RefBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            # the reference names these '-1', '0', '1'
            self.downsample = nn.Sequential()
            self.downsample.add_module("-1", nn.AvgPool2d(stride))
            self.downsample.add_module("0", nn.Conv2d(inplanes, planes * 4, 1, stride=1, bias=False))
            self.downsample.add_module("1", nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu3(out + identity)


class RefEncoder(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)

    def _make_layer(self, planes, blocks, stride=1):
        layers = [RefBottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * 4
        layers += [RefBottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        outs = [x]
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        outs.append(x)
        x = self.avgpool(x)
        x = self.layer1(x)
        outs.append(x)
        x = self.layer2(x)
        outs.append(x)
        x = self.layer3(x)
        outs.append(x)
        self.layer4(x)  # computed and thrown away, as in the reference
        return outs


class RefConvBlock(nn.Module):
    def __init__(self, cin, cout, slope=0.2, bias=False):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias),
            nn.LeakyReLU(slope, inplace=False),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
            nn.LeakyReLU(slope, inplace=False),
        )

    def forward(self, x):
        return self.block(x)


class RefUpBlock(nn.Module):
    def __init__(self, cin, cout, bias=False, cat=True):
        super().__init__()
        self.cat = cat
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv_block = RefConvBlock(cin, cout, bias=bias)

    def forward(self, x, bridge=None):
        if not self.cat:
            return self.conv_block(x)
        return self.conv_block(torch.cat([self.up(x), bridge], 1))


class RefCLIPDenoising(nn.Module):
    def __init__(self, inp_channels=3, out_channels=3, bias=False):
        super().__init__()
        self.inp_channels = inp_channels
        if inp_channels == 1:
            self.first = nn.Conv2d(1, 3, 1, bias=bias)
        self.encoder = RefEncoder()
        self.up_path = nn.ModuleList(
            [
                RefUpBlock(1024, 512, bias, cat=False),
                RefUpBlock(512 + 512, 256, bias),
                RefUpBlock(256 + 256, 128, bias),
                RefUpBlock(128 + 64, 64, bias),
                RefUpBlock(64 + 3, 64, bias),
            ]
        )
        self.last = nn.Conv2d(64, out_channels, 3, padding=1, bias=bias)

    def forward(self, x):
        if self.inp_channels == 1:
            x = self.first(x)
        feats = self.encoder(x)
        y = self.up_path[0](feats[-1])
        for i in range(1, 5):
            y = self.up_path[i](y, feats[-i - 1])
        return self.last(y)
