"""Decide what a file is from its first bytes, never from its name.

``sniff(path)`` reads a small head of the file and returns a :class:`Sniffed` with a ``kind``:
``"video"`` (a container that can hold video), ``"audio"``, ``"image"``, ``"animated_image"``,
``"playlist"`` (a file that points at other files or URLs: refused, never followed), ``"text"``,
``"document"``, ``"archive"``, ``"empty"`` or ``"unknown"``. ``describe`` gives the plain words a
message uses ("a text file", "a PNG image").

Only ``video`` (and ``unknown`` binary data, which the prober then judges) go on to the prober.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sniffed", "sniff", "sniff_bytes", "HEAD_BYTES"]

#: How much of the head is read. MPEG-TS needs a few 188-byte packets; playlists declare themselves
#: in their first line.
HEAD_BYTES = 4096


@dataclass(frozen=True)
class Sniffed:
    kind: str          # see module docstring
    name: str          # short format name, e.g. "mp4", "matroska", "png", "hls"
    describe: str      # plain words for messages: "an MP4 video", "a text file"


_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"}


def _ftyp(head: bytes) -> Sniffed | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand in _AUDIO_BRANDS:
        return Sniffed("audio", "m4a", "an M4A audio file")
    if brand in _IMAGE_BRANDS:
        return Sniffed("image", brand.decode("latin-1").strip(), "a HEIF/AVIF image")
    if brand == b"qt  ":
        return Sniffed("video", "mov", "a QuickTime (MOV) video")
    return Sniffed("video", "mp4", "an MP4 video")


def _ebml(head: bytes) -> Sniffed | None:
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    if b"webm" in head[:64]:
        return Sniffed("video", "webm", "a WebM video")
    return Sniffed("video", "matroska", "a Matroska (MKV) video")


def _mpegts(head: bytes) -> bool:
    # Sync byte 0x47 every 188 bytes (or 192 for M2TS with a 4-byte timestamp prefix).
    for size, start in ((188, 0), (192, 4)):
        if len(head) >= start + 3 * size and all(
                head[start + i * size] == 0x47 for i in range(min(5, (len(head) - start) // size))):
            return True
    return False


def _text_kind(head: bytes) -> Sniffed | None:
    """Text-like heads: playlists first (they must be refused by name), then markup, then text."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    low = stripped[:512].lower()
    if low.startswith(b"#extm3u") or b"#ext-x-" in low:
        return Sniffed("playlist", "hls", "an HLS/M3U playlist")
    if low.startswith(b"ffconcat"):
        return Sniffed("playlist", "concat", "an ffmpeg concat list")
    if low.startswith(b"[playlist]"):
        return Sniffed("playlist", "pls", "a PLS playlist")
    if b"<mpd" in low:
        return Sniffed("playlist", "dash", "a DASH manifest")
    if b"<smil" in low or b"<asx" in low:
        return Sniffed("playlist", "smil", "a SMIL/ASX playlist")
    if low.startswith((b"<!doctype html", b"<html")):
        return Sniffed("text", "html", "a web page (HTML)")
    if low.startswith(b"<svg") or (low.startswith(b"<?xml") and b"<svg" in low):
        return Sniffed("image", "svg", "an SVG image")
    if low.startswith(b"<?xml"):
        return Sniffed("text", "xml", "an XML file")
    if low.startswith(b"file '") or low.startswith(b"file \""):
        return Sniffed("playlist", "concat", "an ffmpeg concat list")
    if not head or b"\x00" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the head's end is still text.
        if exc.start < len(head) - 4:
            return None
    if stripped[:1] in (b"{", b"["):
        return Sniffed("text", "json", "a JSON text file")
    return Sniffed("text", "text", "a text file")


_SIMPLE: list[tuple[int, bytes, Sniffed]] = [
    (0, b"\x89PNG\r\n\x1a\n", Sniffed("image", "png", "a PNG image")),
    (0, b"\xff\xd8\xff", Sniffed("image", "jpeg", "a JPEG image")),
    (0, b"GIF87a", Sniffed("animated_image", "gif", "a GIF image")),
    (0, b"GIF89a", Sniffed("animated_image", "gif", "a GIF image")),
    (0, b"BM", Sniffed("image", "bmp", "a BMP image")),
    (0, b"II*\x00", Sniffed("image", "tiff", "a TIFF image")),
    (0, b"MM\x00*", Sniffed("image", "tiff", "a TIFF image")),
    (0, b"%PDF", Sniffed("document", "pdf", "a PDF document")),
    (0, b"PK\x03\x04", Sniffed("archive", "zip", "a ZIP archive (or an Office document)")),
    (0, b"\x1f\x8b", Sniffed("archive", "gzip", "a gzip archive")),
    (0, b"7z\xbc\xaf\x27\x1c", Sniffed("archive", "7z", "a 7-Zip archive")),
    (0, b"Rar!", Sniffed("archive", "rar", "a RAR archive")),
    (0, b"\x7fELF", Sniffed("archive", "elf", "a program (ELF executable)")),
    (0, b"MZ", Sniffed("archive", "exe", "a Windows program")),
    (0, b"ID3", Sniffed("audio", "mp3", "an MP3 audio file")),
    (0, b"fLaC", Sniffed("audio", "flac", "a FLAC audio file")),
    (0, b"FLV\x01", Sniffed("video", "flv", "an FLV video")),
    (0, b"\x00\x00\x01\xba", Sniffed("video", "mpeg", "an MPEG program stream video")),
    (0, b"\x00\x00\x01\xb3", Sniffed("video", "mpegvideo", "an MPEG video elementary stream")),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", Sniffed("video", "asf", "a Windows Media (ASF/WMV) file")),
    (0, b"\x00\x00\x00\x01\x67", Sniffed("video", "h264", "a raw H.264 stream")),
    (0, b"YUV4MPEG2", Sniffed("video", "yuv4mpegpipe", "a Y4M raw video")),
]


def _riff(head: bytes) -> Sniffed | None:
    if head[:4] != b"RIFF" or len(head) < 12:
        return None
    sub = head[8:12]
    if sub == b"AVI ":
        return Sniffed("video", "avi", "an AVI video")
    if sub == b"WAVE":
        return Sniffed("audio", "wav", "a WAV audio file")
    if sub == b"WEBP":
        if b"ANIM" in head[:64]:
            return Sniffed("animated_image", "webp", "an animated WebP image")
        return Sniffed("image", "webp", "a WebP image")
    return Sniffed("unknown", "riff", "a RIFF file of an unknown kind")


def _ogg(head: bytes) -> Sniffed | None:
    if not head.startswith(b"OggS"):
        return None
    first_page = head[:256]
    if b"theora" in first_page or b"\x80theora" in first_page:
        return Sniffed("video", "ogg", "an Ogg (Theora) video")
    return Sniffed("audio", "ogg", "an Ogg audio file")


def sniff_bytes(head: bytes) -> Sniffed:
    """Classify a file from its first bytes (see ``HEAD_BYTES``)."""
    if not head:
        return Sniffed("empty", "empty", "an empty file")
    for found in (_ftyp(head), _ebml(head), _riff(head), _ogg(head)):
        if found is not None:
            return found
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return Sniffed("video", "mov", "a QuickTime (MOV) video")
    if _mpegts(head):
        return Sniffed("video", "mpegts", "an MPEG transport stream video")
    for offset, magic, found in _SIMPLE:
        if head[offset:offset + len(magic)] == magic:
            return found
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06):
        return Sniffed("audio", "mp3", "an MP3 audio file")
    text = _text_kind(head)
    if text is not None:
        return text
    return Sniffed("unknown", "unknown", "a file of an unknown kind")


def sniff(path: str | Path) -> Sniffed:
    """Classify the file at ``path`` by its first ``HEAD_BYTES`` bytes."""
    with open(path, "rb") as fh:
        return sniff_bytes(fh.read(HEAD_BYTES))
