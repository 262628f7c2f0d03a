"""One image file as training and inference see it: decoded by Pillow, made RGB, resized to
the training size. The class-folder reader (`tf_resnet9.data.folders`), the tensorflow-
datasets reader (`tf_resnet9.data.tfds_source`) and `predict` follow these rules, so that a
model sees a file the way it was trained.

The rules, and why:
- Files: JPEG, PNG, BMP and GIF, the formats `keras.utils.image_dataset_from_directory`
  decodes; the content decides, not the extension (a PNG named .jpg is read as PNG).
- Colour: `PIL.Image.convert("RGB")`, as torchvision's `ImageFolder` loader does: grey is
  copied to the three channels, a palette looked up, alpha dropped (not composited: the
  colour under a transparent pixel is kept, as Keras' `decode_image(channels=3)` keeps it),
  CMYK converted by Pillow. 16-bit and float pixels (modes I;16, I, F) are refused: Pillow's
  conversion to 8 bits clips them rather than scaling. An animated GIF gives its first
  frame, as Keras' reader does. EXIF orientation is not applied (nor is it by either).
- Size: other sizes are resized with Pillow's BICUBIC filter, the aspect ratio not kept (as
  CIFAR's images were made, and as `predict` does); Pillow widens the filter when it
  shrinks, so large photos are averaged, not aliased.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")  # the files a class folder reads
FORMATS = ("JPEG", "PNG", "BMP", "GIF")  # Pillow's names of their formats
# Pillow modes with 8 bits per channel, which convert("RGB") maps without loss of meaning.
EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")


class ImageFileError(Exception):
    """A file is not an image these rules accept; the message says why, without the path
    (the caller names the file)."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What a file's header says, read without decoding its pixels.

    Attributes:
        size: (width, height), Pillow's order.
        mode: Pillow's mode ("RGB", "L", "P", "RGBA", ...).
        format: Pillow's format name, one of `FORMATS`.
        frames: Frames in the file (more than 1: an animated GIF).
    """

    size: tuple[int, int]
    mode: str
    format: str
    frames: int = 1


def read_header(path: str | os.PathLike) -> Header:
    """Opens an image file and checks its header against the rules (module docstring).

    Raises:
        ImageFileError: the file cannot be opened, is no image Pillow knows, is in a format
            other than `FORMATS`, or has 16-bit or float pixels.
    """
    with _opened(path) as image:
        return _checked(image)


def decode(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Decodes an image file as training sees it (module docstring).

    Args:
        path: The file.
        size: Resize to size x size unless it is that already; None: keep its size.

    Returns:
        uint8 (height, width, 3).

    Raises:
        ImageFileError: as `read_header`, or the pixels cannot be decoded (a truncated or
            corrupt file).
    """
    with _opened(path) as image:
        _checked(image)
        try:
            rgb = image.convert("RGB")  # decodes the (first) frame
        except (OSError, SyntaxError, ValueError) as e:
            # Pillow's decoders raise OSError ("image file is truncated"), some SyntaxError
            # or ValueError, for a file cut short or damaged after a valid header.
            raise ImageFileError(f"truncated or corrupt ({_one_line(e)}).") from None
    return to_size(rgb, size)


def _checked(image) -> Header:
    header = Header(image.size, image.mode, image.format, getattr(image, "n_frames", 1))
    if header.format not in FORMATS:
        raise ImageFileError(f"a {header.format} image: expected {', '.join(FORMATS)}.")
    if header.mode not in EIGHT_BIT_MODES:
        raise ImageFileError(
            f"mode {header.mode} (16-bit or float pixels): expected 8 bits per channel."
        )
    return header


def from_array(array: np.ndarray, size: int | None = None) -> np.ndarray:
    """An image already decoded (tensorflow-datasets gives them so) under the same rules:
    uint8 (H, W, C) with C 1 (grey), 3 (RGB) or 4 (RGBA) -> uint8 (size, size, 3).

    Raises:
        ImageFileError: not uint8, or another number of channels.
    """
    from PIL import Image

    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageFileError(
            f"an array {array.dtype} {array.shape}: expected uint8 (H, W, 1, 3 or 4)."
        )
    if array.shape[-1] == 1:
        rgb = np.repeat(array, 3, axis=-1)  # what convert("RGB") does to mode L
    else:
        rgb = array[..., :3]  # alpha dropped, as convert("RGB") drops it
    if size is None or array.shape[:2] == (size, size):
        return np.ascontiguousarray(rgb)
    return to_size(Image.fromarray(np.ascontiguousarray(rgb)), size)


def to_size(image, size: int | None) -> np.ndarray:
    """A Pillow RGB image as uint8 (size, size, 3), resized with BICUBIC where it is
    another size; None: as it is."""
    from PIL import Image

    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def resized(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB images (N, H, W, 3) made (N, size, size, 3) by `to_size`, one by one."""
    from PIL import Image

    out = np.empty((len(images), size, size, 3), np.uint8)
    for k, image in enumerate(images):
        out[k] = to_size(Image.fromarray(np.ascontiguousarray(image)), size)
    return out


def size_text(size: tuple[int, int]) -> str:
    """(width, height) as "WxH", how the records and messages write a size."""
    return f"{size[0]}x{size[1]}"


class _opened:
    """`PIL.Image.open(path)` as a context manager whose failures are `ImageFileError`s."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        from PIL import Image, UnidentifiedImageError

        try:
            self.image = Image.open(self.path)
        except UnidentifiedImageError:
            raise ImageFileError("not an image Pillow can read.") from None
        except FileNotFoundError:
            raise ImageFileError("cannot read it (no such file: a broken link?).") from None
        except Image.DecompressionBombError as e:
            raise ImageFileError(f"too large ({_one_line(e)}).") from None
        except OSError as e:
            if e.errno is None:  # Pillow's own, for a header cut short ("Truncated File Read")
                raise ImageFileError(f"truncated or corrupt ({_one_line(e)}).") from None
            raise ImageFileError(f"cannot read it ({e.strerror}).") from None
        except (SyntaxError, ValueError) as e:  # a damaged header, for some formats
            raise ImageFileError(f"corrupt header ({_one_line(e)}).") from None
        return self.image

    def __exit__(self, *exc):
        self.image.close()
        return False


def _one_line(error: Exception) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text[:200]
