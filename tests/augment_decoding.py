"""Recovering the random draws of the augmentation from the images it produces."""

import numpy as np

from tf_resnet9.data import augment

# Every pixel encodes where it came from: R = 8 * row, G = 8 * column of the 32x32 source.
ROWS, COLS = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
COORDINATE_IMAGE = np.stack([8 * ROWS, 8 * COLS, np.full((32, 32), 7)], axis=-1).astype(np.uint8)


def decode(batch):
    """Recovers (crop_y, crop_x, flip, cutout_y, cutout_x) of each augmented image.

    Cutout pixels are exactly 0 (the mean colour, which no integer pixel normalises to).
    Output pixel (i, j) with 4 <= i, j < 28 comes from the unreflected middle of the padded
    image for every crop offset, so its source row is crop_y + i - 4, and its source column
    crop_x + j - 4, or crop_x + 27 - j when flipped.
    """
    draws = []
    for image in batch:
        cut = (image == 0).all(axis=-1)
        cut_rows, cut_cols = np.nonzero(cut)
        assert cut.sum() == 64 and np.ptp(cut_rows) == 7 and np.ptp(cut_cols) == 7
        pixels = np.rint(image * np.float32(augment.STD) + np.float32(augment.MEAN)).astype(int)
        valid = ~cut
        valid[:4], valid[28:], valid[:, :4], valid[:, 28:] = False, False, False, False
        i, j = np.nonzero(valid)
        src_rows, src_cols = pixels[i, j, 0] // 8, pixels[i, j, 1] // 8
        crop_y = np.unique(src_rows - i + 4)
        unflipped, flipped = np.unique(src_cols - j + 4), np.unique(src_cols + j - 27)
        assert len(crop_y) == 1 and (len(unflipped) == 1) != (len(flipped) == 1)
        flip = len(flipped) == 1
        crop_x = flipped[0] if flip else unflipped[0]
        draws.append((crop_y[0], crop_x, int(flip), cut_rows.min(), cut_cols.min()))
    return np.array(draws)
