"""Front views of the 18 classes' signs, drawn once with PIL.

Each template is a square RGBA picture of one sign filling its canvas the way
a LISA crop does: LISA boxes are resized to 32x32 whatever their aspect, so a
24"x30" speed-limit plate is drawn at its true aspect and then squeezed to a
square, exactly the distortion a real crop has. The synthetic generator warps
these templates into scenes; nothing here is random except the choice of
variant, which is fixed by the variant index.

Only Pillow's bundled font is used (`ImageFont.load_default(size)`, Pillow >=
10.1), so templates are the same on every machine with the same Pillow.
"""

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from blurnet_jax.classes import CLASS_NAMES

CANVAS = 128  # drawing resolution of a template (square)
TEMPLATE = 32  # stored resolution (a sign's size in a crop), from CANVAS

RED = (196, 22, 34)
WHITE = (246, 246, 242)
BLACK = (18, 18, 18)
YELLOW = (250, 196, 18)
FLUOR = (196, 222, 38)  # fluorescent yellow-green of school signs
GREEN = (16, 110, 56)
BLUE = (20, 64, 160)
ORANGE = (240, 120, 20)


@functools.lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.load_default(size=size)


def _text_mask(text: str, *, weight: int) -> Image.Image:
  """A tight 'L' mask of `text` in the bundled font, `weight` = stroke px."""
  font = _font(96)
  probe = ImageDraw.Draw(Image.new("L", (1, 1)))
  x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=font, stroke_width=weight)
  mask = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4), 0)
  ImageDraw.Draw(mask).text((2 - x0, 2 - y0), text, font=font, fill=255,
                            stroke_width=weight, stroke_fill=255)
  return mask


def _put_text(img: Image.Image, text: str, box, color, *, weight: int = 4):
  """Draws `text` stretched to fill box=(x0, y0, x1, y1) (highway-sign style)."""
  x0, y0, x1, y1 = (int(round(v)) for v in box)
  mask = _text_mask(text, weight=weight).resize((x1 - x0, y1 - y0),
                                                 Image.LANCZOS)
  img.paste(Image.new("RGBA", mask.size, color + (255,)), (x0, y0), mask)


def _polygon(n, cx, cy, r, rot):
  return [(cx + r * math.cos(rot + 2 * math.pi * i / n),
           cy + r * math.sin(rot + 2 * math.pi * i / n)) for i in range(n)]


def _canvas(w=CANVAS, h=CANVAS):
  img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
  return img, ImageDraw.Draw(img)


def _lane_dots(d, ys, x=64):
  """A dotted lane line down the middle: one 8 px dash centred near each y."""
  for y in ys:
    d.line([(x, y + 5), (x, y - 3)], fill=BLACK, width=4)


def _arrow(d, pts, width, color, head=14):
  """A polyline with a triangular head at its last point."""
  d.line(pts, fill=color, width=width, joint="curve")
  (xa, ya), (xb, yb) = pts[-2], pts[-1]
  ang = math.atan2(yb - ya, xb - xa)
  tip = (xb + head * 0.9 * math.cos(ang), yb + head * 0.9 * math.sin(ang))
  left = (xb + head * math.cos(ang + 2.1), yb + head * math.sin(ang + 2.1))
  right = (xb + head * math.cos(ang - 2.1), yb + head * math.sin(ang - 2.1))
  d.polygon([tip, left, right], fill=color)


# ---- sign shapes -------------------------------------------------------------


def _octagon(fill, ring=WHITE, c=CANVAS):
  img, d = _canvas(c, c)
  rot = math.pi / 8
  r = c / 2 / math.cos(math.pi / 8)  # flat sides touch the canvas
  d.polygon(_polygon(8, c / 2, c / 2, r, rot), fill=ring)
  d.polygon(_polygon(8, c / 2, c / 2, r * 0.92, rot), fill=fill)
  return img, d


def _diamond(fill=YELLOW, c=CANVAS):
  """A MUTCD warning diamond: the field's colour out to the edge, and a
  black border (3/4" on a 30" sign) inset by a margin (1/2")."""
  img, d = _canvas(c, c)
  h = c / 2
  d.polygon([(h, 0), (c, h), (h, c), (0, h)], fill=fill)
  m = 3  # the margin along the diagonal, in canvas px
  d.polygon([(h, m), (c - m, h), (h, c - m), (m, h)], outline=BLACK,
            width=4)
  return img, d


def _plate(w, h, fill=WHITE, border=BLACK):
  """A MUTCD rectangular sign: the field out to the edge, a thin border
  (1/2" on a 24" sign) inset by a margin (3/8"), rounded corners (1.5")."""
  img, d = _canvas(w, h)
  d.rounded_rectangle([0, 0, w - 1, h - 1], radius=7, fill=fill)
  d.rounded_rectangle([1.5, 1.5, w - 2.5, h - 2.5], radius=6, outline=border,
                      width=2)
  return img, d


def _square(img):
  return img.resize((CANVAS, CANVAS), Image.LANCZOS)


# ---- the 17 named classes ------------------------------------------------------


def stop(v):
  img, d = _octagon(RED)
  weight = (4, 2, 6)[v % 3]
  _put_text(img, "STOP", (18, 42, 110, 86) if v < 3 else (14, 38, 114, 90),
            WHITE, weight=weight)
  return img


def yield_(v):
  img, d = _canvas()
  c = CANVAS
  d.polygon([(0, 4), (c, 4), (c / 2, c - 2)], fill=RED)
  d.polygon([(26, 19), (c - 26, 19), (c / 2, c - 44)], fill=WHITE)
  if v == 1:
    _put_text(img, "YIELD", (44, 28, 84, 44), RED, weight=2)
  return img


def _person(d, cx, cy, s, color=BLACK, walking=True):
  d.ellipse([cx - 5 * s, cy - 28 * s, cx + 5 * s, cy - 18 * s], fill=color)
  d.line([(cx, cy - 17 * s), (cx - 2 * s, cy + 4 * s)], fill=color,
         width=int(7 * s))
  spread = 9 if walking else 4
  d.line([(cx - 2 * s, cy + 2 * s), (cx - spread * s, cy + 20 * s)],
         fill=color, width=int(5 * s))
  d.line([(cx - 2 * s, cy + 2 * s), (cx + spread * s, cy + 19 * s)],
         fill=color, width=int(5 * s))
  d.line([(cx - 9 * s, cy - 4 * s), (cx, cy - 14 * s), (cx + 9 * s, cy - 6 * s)],
         fill=color, width=int(4 * s))


def pedestrian_crossing(v):
  img, d = _diamond()
  _person(d, 64, 62, 1.55)
  if v == 1:  # crosswalk bars under the figure
    for x in (38, 58, 78):
      d.rectangle([x, 96, x + 10, 102], fill=BLACK)
  return img


def signal_ahead(v):
  img, d = _diamond()
  d.rounded_rectangle([48, 26, 80, 102], radius=7, fill=BLACK)
  for cy, col in ((41, (220, 30, 30)), (64, (250, 210, 20)),
                  (87, (30, 170, 60))):
    r = 9 if v == 0 else 10
    d.ellipse([64 - r, cy - r, 64 + r, cy + r], fill=col)
  return img


def merge(v):
  img, d = _diamond()
  d.line([(64, 104), (64, 40)], fill=BLACK, width=11)
  _arrow(d, [(64, 60), (64, 40)], 11, BLACK, head=16)
  sx = 38 if v == 0 else 90
  d.line([(sx, 100), (sx + (26 if v == 0 else -26) * 0.5, 80), (64, 64)],
         fill=BLACK, width=8, joint="curve")
  return img


def added_lane(v):
  """W4-3: two lanes' arrows pointing ahead, a dotted lane line between
  them: one straight, the other entering from the side with a curved tail
  (from the right, or mirrored from the left)."""
  img, d = _diamond()
  _arrow(d, [(48, 104), (48, 44)], 11, BLACK, head=17)
  _arrow(d, [(94, 96), (84, 86), (80, 74), (80, 44)], 11, BLACK, head=17)
  _lane_dots(d, (98, 84, 70, 56))
  return img if v == 0 else img.transpose(Image.FLIP_LEFT_RIGHT)


def lane_ends(v):
  """W4-2: the left lane's edge straight, the right one angling in halfway
  up and going on at half the gap (the right lane ends)."""
  img, d = _diamond()
  d.line([(48, 102), (48, 26)], fill=BLACK, width=10)
  d.line([(80, 102), (80, 74), (66, 54), (66, 26)], fill=BLACK, width=10,
         joint="curve")
  if v == 1:  # the 2003 design: a dotted lane line along the lane that ends
    _lane_dots(d, (96, 84))
  return img


def turn_right(v):
  img, d = _diamond()
  _arrow(d, [(52, 100), (52, 56), (82, 56)], 12, BLACK, head=18)
  return img


def stop_ahead(v):
  """W3-1: an upward-pointing arrow above a red octagon (the MUTCD's own
  description of the figure: "an upward-pointing black arrow above an
  octagonal red stop sign symbol"); the octagon has a white rim, no legend."""
  img, d = _diamond()
  _arrow(d, [(64, 50), (64, 34)], 12, BLACK, head=18)
  size = 54  # the octagon dominates, about 0.4 of the sign's width
  oct_img, _ = _octagon(RED, ring=WHITE, c=size)
  img.alpha_composite(oct_img, ((CANVAS - size) // 2, 52))
  return img


def _child(d, cx, top, h, color=BLACK):
  """A solid walking child facing left, `h` px tall from `top`, centred on
  `cx`: a head, a coat (a trapezoid, not a stick), thick legs apart and a
  swinging arm, as the S1-1 symbol draws its figures."""
  u = h / 60  # the figure's unit: 60 units tall
  head_r = 6 * u
  d.ellipse([cx - head_r, top, cx + head_r, top + 2 * head_r], fill=color)
  neck, hip = top + 13 * u, top + 36 * u
  d.polygon([(cx - 6 * u, neck), (cx + 6 * u, neck), (cx + 9 * u, hip),
             (cx - 9 * u, hip)], fill=color)
  w = max(2, int(round(5 * u)))
  d.line([(cx - 3 * u, hip - 2 * u), (cx - 12 * u, top + h)], fill=color,
         width=w)  # the leading leg, forward (left)
  d.line([(cx + 3 * u, hip - 2 * u), (cx + 9 * u, top + h)], fill=color,
         width=w)
  d.line([(cx - 5 * u, neck + 3 * u), (cx - 13 * u, neck + 17 * u)],
         fill=color, width=max(2, int(round(4 * u))))
  d.line([(cx + 5 * u, neck + 3 * u), (cx + 12 * u, neck + 15 * u)],
         fill=color, width=max(2, int(round(4 * u))))


def school(v):
  """S1-1: a pentagon (point up) with two children walking, solid figures
  that fill most of its height, the taller on the right."""
  img, d = _canvas()
  fill = FLUOR if v == 0 else YELLOW
  c = CANVAS
  d.polygon([(c / 2, 0), (c, 46), (c, c), (0, c), (0, 46)], fill=BLACK)
  d.polygon([(c / 2, 7), (c - 5, 49), (c - 5, c - 5), (5, c - 5), (5, 49)],
            fill=fill)
  _child(d, 44, 46, 66)
  _child(d, 82, 36, 78)
  return img


def _speed_plate(digits, *, school_top=False, blur_digits=False, v=0):
  """R2-1 (24" x 30"), or S5-1 (24" x 48": SCHOOL on a yellow or
  fluorescent yellow-green panel, SPEED LIMIT 25, WHEN FLASHING)."""
  w, h = (96, 120) if not school_top else (96, 192)
  img, d = _plate(w, h)
  y = 10
  if school_top:
    d.rectangle([5, 5, w - 6, 46], fill=FLUOR if v == 0 else YELLOW)
    _put_text(img, "SCHOOL", (12, 14, w - 12, 38), BLACK, weight=3)
    y = 50
  _put_text(img, "SPEED", (16, y + 4, w - 16, y + 20), BLACK, weight=2)
  _put_text(img, "LIMIT", (20, y + 26, w - 20, y + 42), BLACK, weight=2)
  num = Image.new("RGBA", (w, h), (0, 0, 0, 0))
  _put_text(num, digits, (14, y + 50, w - 14, y + 100), BLACK, weight=4)
  if blur_digits:  # "urdbl": an annotator could not read the value
    num = num.filter(ImageFilter.GaussianBlur(5))
  img.alpha_composite(num)
  if school_top:
    _put_text(img, "WHEN", (30, 160, w - 30, 170), BLACK, weight=1)
    _put_text(img, "FLASHING", (16, 174, w - 16, 184), BLACK, weight=1)
  return _square(img)


def speed_limit(value):
  return lambda v: _speed_plate(value, v=v)


def speed_limit_urdbl(v):
  return _speed_plate(("15", "40", "50", "55", "65", "20")[v], blur_digits=True)


def school_speed_limit_25(v):
  return _speed_plate("25", school_top=True, v=v)


def keep_right(v):
  """R4-7: at the top left, the plan view of a traffic island's nose (from
  the sign's top edge down to a rounded end); an upward-pointing arrow curving
  to pass to the right of the nose."""
  img, d = _plate(96, 120)
  d.rectangle([18, 8, 44, 44], fill=BLACK)  # the island, from the top
  d.ellipse([18, 31, 44, 57], fill=BLACK)  # its rounded nose
  _arrow(d, [(40, 110), (40, 88), (50, 74), (64, 62), (68, 50), (68, 30)], 11,
         BLACK, head=16)
  return _square(img)


# ---- class 0: other signs (and, in the generator, no sign at all) --------------


def other(v):
  kind = v % 10
  if kind == 0:  # blue square service sign
    img, d = _plate(100, 100, fill=BLUE, border=WHITE)
    _put_text(img, "PH"[v // 10 % 2], (30, 20, 70, 80), WHITE, weight=3)
  elif kind == 1:  # green guide sign
    img, d = _plate(120, 80, fill=GREEN, border=WHITE)
    _put_text(img, "MAIN ST", (12, 28, 108, 52), WHITE, weight=2)
  elif kind == 2:  # do not enter
    img, d = _canvas()
    d.ellipse([0, 0, 127, 127], fill=WHITE)
    d.ellipse([4, 4, 123, 123], fill=(200, 20, 30))
    d.rectangle([18, 54, 110, 74], fill=WHITE)
  elif kind == 3:  # one way
    img, d = _plate(128, 56, fill=BLACK, border=WHITE)
    d.polygon([(14, 22), (80, 22), (80, 12), (114, 28), (80, 44), (80, 34),
               (14, 34)], fill=WHITE)
  elif kind == 4:  # curve ahead warning (not one of the 18)
    img, d = _diamond()
    _arrow(d, [(56, 104), (56, 80), (76, 62), (76, 40)], 10, BLACK, head=15)
  elif kind == 5:  # intersection warning
    img, d = _diamond()
    d.rectangle([58, 26, 70, 102], fill=BLACK)
    d.rectangle([28, 58, 100, 70], fill=BLACK)
  elif kind == 6:  # construction diamond
    img, d = _diamond(fill=ORANGE)
    _put_text(img, "WORK", (34, 54, 94, 74), BLACK, weight=2)
  elif kind == 7:  # no parking
    img, d = _plate(96, 120)
    d.ellipse([18, 28, 78, 88], outline=(200, 20, 30), width=7)
    _put_text(img, "P", (36, 40, 60, 78), BLACK, weight=2)
    d.line([(26, 36), (70, 80)], fill=(200, 20, 30), width=7)
  elif kind == 8:  # turn left (mirror of the class it is easily mixed up with)
    img = turn_right(0).transpose(Image.FLIP_LEFT_RIGHT)
  else:  # white regulatory plate with text
    img, d = _plate(96, 120)
    _put_text(img, "NO", (28, 18, 68, 44), BLACK, weight=3)
    _put_text(img, "TURN", (18, 54, 78, 76), BLACK, weight=3)
    _put_text(img, "ON RED", (12, 86, 84, 104), BLACK, weight=2)
  return _square(img)


DRAWERS = {
    "other": (other, 11),
    "addedLane": (added_lane, 2),
    "keepRight": (keep_right, 1),
    "laneEnds": (lane_ends, 2),
    "merge": (merge, 2),
    "pedestrianCrossing": (pedestrian_crossing, 2),
    "school": (school, 2),
    "schoolSpeedLimit25": (school_speed_limit_25, 2),
    "signalAhead": (signal_ahead, 2),
    "speedLimit25": (speed_limit("25"), 1),
    "speedLimit30": (speed_limit("30"), 1),
    "speedLimit35": (speed_limit("35"), 1),
    "speedLimit45": (speed_limit("45"), 1),
    "speedLimitUrdbl": (speed_limit_urdbl, 6),
    "stop": (stop, 4),
    "stopAhead": (stop_ahead, 1),
    "turnRight": (turn_right, 1),
    "yield": (yield_, 2),
}


@functools.lru_cache(maxsize=None)
def template_bank() -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
  """All templates, drawn once per process.

  Returns:
    templates: float32 (T+1, TEMPLATE+2, TEMPLATE+2, 4) premultiplied RGBA in
      [0, 1] with a one-pixel transparent border (so bilinear sampling outside
      a sign reads transparency). Index 0 is the empty template used for
      background-only crops of class 0.
    per_class: for each class, the int32 indices of its templates.
  """
  images = [np.zeros((TEMPLATE, TEMPLATE, 4), np.float32)]
  per_class = []
  for name in CLASS_NAMES:
    draw, variants = DRAWERS[name]
    idx = []
    for v in range(variants):
      rgba = draw(v).resize((TEMPLATE, TEMPLATE), Image.LANCZOS)
      a = np.asarray(rgba, np.float32) / 255.0
      a[..., :3] *= a[..., 3:]
      idx.append(len(images))
      images.append(a)
    per_class.append(np.asarray(idx, np.int32))
  bank = np.pad(np.stack(images), ((0, 0), (1, 1), (1, 1), (0, 0)))
  return bank, tuple(per_class)
