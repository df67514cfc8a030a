"""Receptive fields of any model's layers, read from the computation itself.

For every named layer (as `cnnjax.models.layer_outputs` names them: 'block5_pool', 'layer4',
'layer1/0/conv2'), the report gives, along the rows and the columns of the input image:

- the receptive field size: how many input pixels one unit of the layer's output depends on, the
  theoretical field of Araujo et al., "Computing Receptive Fields of Convolutional Neural
  Networks" (Distill, 2019): r = 1 + sum over layers of (k_l - 1) * d_l * (product of the strides
  before l), padding included (a border unit's field reaches into the padding);
- the jump: the input pixels between the fields of two neighbouring units (the product of the
  strides: the effective stride);
- the start: the first input pixel of unit 0's field (negative where it starts in the padding), so
  unit i's field is [start + i * jump, start + i * jump + size - 1];
- the output size.

Nothing is hand-written per layer type: the model is traced once (`jax.make_jaxpr`, shapes only, no
compute: VGG16 at 224x224 costs a trace) and its jaxpr is walked, propagating for every array and
every image axis an affine map from an element's index to the first input pixel it depends on,
plus the field's size. Convolutions (any stride, padding and dilation), window reductions
(`reduce_window`: pooling), pads, slices, reshapes (so the reshape-based 2x2 pooling and Flatten),
transposes, broadcasts, reductions (global pooling), matrix products, stacks and concatenations
and every elementwise operation have rules; calls (`jit`, `custom_jvp`, `custom_vjp`: the
im2col and taps convolutions) are walked inside. Where several arrays meet (an Add of a residual
block, a Concatenate of Inception's branches, any elementwise operation) a unit's field is the
union of its inputs' fields: their bounding interval, which is the largest of them when the
branches are centred alike (Distill's "max over paths"). Rows and columns are followed
separately, so a 1x7 convolution grows the columns' field only. An operation the walk does not
know (a loop, a gather, a cumulative sum) is an error naming it, never a guess.

The field is what CAN influence a unit: a ReLU that is off or a max pooling's losing inputs give
zero gradient for one image without leaving the field. BatchNorm in training mode (batch
statistics) makes every unit depend on the whole image; the report traces the model with the
`apply` arguments it is given, by default the model's inference mode.

Measured (tests/test_receptive_field.py, which checks fields against the input pixels with a
nonzero gradient of a unit): VGG16's block5_conv3 196 and block5_pool 212 (jump 32), torchvision's
ResNet50 layer4 427 (jump 32; its v1.5 blocks stride on the 3x3 convolution), Keras' ResNet50
conv5_block3_out 483 (jump 32; v1 strides on the first 1x1).

Command line: `python -m cnnjax.receptive_field --model vgg16 --size 224 [--depth 2]`.
"""

import argparse
import dataclasses
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np


class Term(NamedTuple):
  """coef * ((index along `axis` // div) % ext): one axis's (or one digit of a merged axis's)
  contribution to the first input pixel an element depends on."""

  axis: int
  div: int
  ext: int
  coef: int


@dataclasses.dataclass(frozen=True)
class Span:
  """Along one image axis, the input pixels an element of an array depends on: from
  start + sum(term values at the element's index), `size` of them."""

  start: int
  size: int
  terms: tuple[Term, ...] = ()

  def on(self, axis: int) -> tuple[Term, ...]:
    return tuple(t for t in self.terms if t.axis == axis)

  def collapse(self, axes: Sequence[int]) -> 'Span':
    """The union over every index of `axes`: those axes no longer move the field."""
    start, size, kept = self.start, self.size, []
    for t in self.terms:
      if t.axis in axes:
        start += min(0, t.coef * (t.ext - 1))
        size += abs(t.coef) * (t.ext - 1)
      else:
        kept.append(t)
    return Span(start, size, _normalize(kept))

  def relabel(self, mapping: Mapping[int, int]) -> 'Span':
    return Span(self.start, self.size, _normalize(t._replace(axis=mapping[t.axis])
                                                  for t in self.terms))

  def envelope(self) -> tuple[int, int]:
    """(first, last + 1) over every element."""
    whole = self.collapse({t.axis for t in self.terms})
    return whole.start, whole.start + whole.size


def _normalize(terms) -> tuple[Term, ...]:
  merged: dict[tuple[int, int, int], int] = {}
  for t in terms:
    if t.ext > 1 and t.coef:
      merged[(t.axis, t.div, t.ext)] = merged.get((t.axis, t.div, t.ext), 0) + t.coef
  return tuple(sorted(Term(a, d, e, c) for (a, d, e), c in merged.items() if c))


Geometry = tuple[Span, Span] | None  # (rows, cols); None: the array does not depend on the image.


class UnsupportedOperation(NotImplementedError):
  """The walk met an operation whose receptive field it cannot follow exactly."""


def _each(geometry: Geometry, fn: Callable[[Span], Span]) -> Geometry:
  return None if geometry is None else (fn(geometry[0]), fn(geometry[1]))


def _simple(span: Span, axis: int, extent: int, where: str) -> Term | None:
  """The one plain term of `axis` (index times coef), None if the axis does not move the field."""
  terms = span.on(axis)
  if not terms:
    return None
  if len(terms) > 1 or terms[0].div != 1 or terms[0].ext != extent:
    raise UnsupportedOperation(f'{where} on an axis that mixes image rows and columns or digits of '
                               f'a flattened axis ({terms}); the walk cannot follow it')
  return terms[0]


def _window(span: Span, axis: int, extent: int, out_axis: int, out_extent: int, window: int,
            stride: int, pad_low: int, dilation: int, where: str) -> Span:
  """Output index o reads input indices o * stride - pad_low + t * dilation, t < window."""
  term = _simple(span, axis, extent, where)
  others = tuple(t for t in span.terms if t.axis != axis)
  if term is None:
    return Span(span.start, span.size, others)
  c, reach = term.coef, (window - 1) * dilation
  start = span.start - c * pad_low + min(0, c * reach)
  return Span(start, span.size + abs(c) * reach,
              _normalize(others + (Term(out_axis, 1, out_extent, c * stride),)))


def _union(geometries: Sequence[Geometry], where: str) -> Geometry:
  present = [g for g in geometries if g is not None]
  if not present:
    return None
  return tuple(_union_spans([g[k] for g in present], where) for k in range(2))


def _union_spans(spans: Sequence[Span], where: str) -> Span:
  result = spans[0]
  for span in spans[1:]:
    if span.terms == result.terms:
      start = min(result.start, span.start)
      end = max(result.start + result.size, span.start + span.size)
      result = Span(start, end - start, result.terms)
      continue
    # A field that does not move (a global statistic) absorbs one it covers everywhere.
    for outer, inner in ((result, span), (span, result)):
      first, end = inner.envelope()
      if not outer.terms and outer.start <= first and end <= outer.start + outer.size:
        result = outer
        break
    else:
      raise UnsupportedOperation(f'{where} joins arrays whose fields move at different jumps '
                                 f'({result.terms} and {span.terms}): not one field per unit')
  return result


def _shape(var) -> tuple[int, ...]:
  return tuple(var.aval.shape)


# ---------------------------------------------------------------------------------------------
# Rules: (equation, input geometries) -> output geometries.


def _conv(eqn, ins):
  lhs, rhs = ins
  if rhs is not None:
    raise UnsupportedOperation('conv_general_dilated with a kernel computed from the image')
  p = eqn.params
  if any(d != 1 for d in p['lhs_dilation']):
    raise UnsupportedOperation('conv_general_dilated with lhs_dilation (a transposed convolution)')
  dn = p['dimension_numbers']
  lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
  in_shape, kernel_shape = _shape(eqn.invars[0]), _shape(eqn.invars[1])
  out_shape = _shape(eqn.outvars[0])

  def rule(span: Span) -> Span:
    span = span.collapse({lhs_spec[1]})  # The input features: every one is read.
    for k, (axis, out_axis) in enumerate(zip(lhs_spec[2:], out_spec[2:])):
      span = _window(span, axis, in_shape[axis], -1 - k, out_shape[out_axis],
                     kernel_shape[rhs_spec[2 + k]], p['window_strides'][k], p['padding'][k][0],
                     p['rhs_dilation'][k], 'conv_general_dilated')
    mapping = {lhs_spec[0]: out_spec[0], **{-1 - k: a for k, a in enumerate(out_spec[2:])}}
    return span.relabel(mapping)

  return [_each(lhs, rule)]


def _reduce_window(eqn, ins):
  p = eqn.params
  n = len(eqn.outvars)
  operands = ins[:n]
  if any(d != 1 for d in p['base_dilation']):
    raise UnsupportedOperation(f'{eqn.primitive.name} with base_dilation')
  in_shape, out_shape = _shape(eqn.invars[0]), _shape(eqn.outvars[0])

  def rule(span: Span) -> Span:
    for axis, (window, stride, (low, _), dilation) in enumerate(zip(
        p['window_dimensions'], p['window_strides'], p['padding'], p['window_dilation'])):
      span = _window(span, axis, in_shape[axis], -1 - axis, out_shape[axis], window, stride, low,
                     dilation, eqn.primitive.name)
    return span.relabel({-1 - a: a for a in range(len(in_shape))})

  joined = _union([_each(g, rule) for g in operands], eqn.primitive.name)
  return [joined] * n


def _reduce(eqn, ins):
  axes = tuple(eqn.params['axes'])
  rank = len(_shape(eqn.invars[0]))
  kept = [a for a in range(rank) if a not in axes]
  mapping = {a: i for i, a in enumerate(kept)}
  outs = [_each(g, lambda s: s.collapse(axes).relabel(mapping)) for g in ins]
  return [_union(outs, eqn.primitive.name)] * len(eqn.outvars)


def _pad(eqn, ins):
  operand = ins[0]
  in_shape, out_shape = _shape(eqn.invars[0]), _shape(eqn.outvars[0])

  def rule(span: Span) -> Span:
    for axis, (low, _, interior) in enumerate(eqn.params['padding_config']):
      if interior and span.on(axis):
        raise UnsupportedOperation('pad with interior padding along an image axis')
      span = _window(span, axis, in_shape[axis], -1 - axis, out_shape[axis], 1, 1, low, 1, 'pad')
    return span.relabel({-1 - a: a for a in range(len(in_shape))})

  return [_each(operand, rule)]


def _slice(eqn, ins):
  p = eqn.params
  in_shape, out_shape = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
  strides = p['strides'] or (1,) * len(in_shape)

  def rule(span: Span) -> Span:
    for axis, (first, stride) in enumerate(zip(p['start_indices'], strides)):
      span = _window(span, axis, in_shape[axis], -1 - axis, out_shape[axis], 1, stride, -first, 1,
                     'slice')
    return span.relabel({-1 - a: a for a in range(len(in_shape))})

  return [_each(ins[0], rule)]


def _rev(eqn, ins):
  shape = _shape(eqn.invars[0])

  def rule(span: Span) -> Span:
    for axis in eqn.params['dimensions']:
      term = _simple(span, axis, shape[axis], 'rev')
      if term is not None:  # Index i reads n - 1 - i.
        others = tuple(t for t in span.terms if t.axis != axis)
        span = Span(span.start + term.coef * (shape[axis] - 1), span.size,
                    _normalize(others + (term._replace(coef=-term.coef),)))
    return span

  return [_each(ins[0], rule)]


def _transpose(eqn, ins):
  mapping = {old: new for new, old in enumerate(eqn.params['permutation'])}
  return [_each(ins[0], lambda s: s.relabel(mapping))]


def _broadcast_in_dim(eqn, ins):
  mapping = dict(enumerate(eqn.params['broadcast_dimensions']))
  return [_each(ins[0], lambda s: s.relabel(mapping))] + [None] * (len(eqn.outvars) - 1)


def _squeeze(eqn, ins):
  rank = len(_shape(eqn.invars[0]))
  dropped = {d % rank for d in eqn.params['dimensions']}
  kept = [a for a in range(rank) if a not in dropped]
  mapping = {a: i for i, a in enumerate(kept)}
  return [_each(ins[0], lambda s: s.collapse(dropped).relabel(mapping))]


def _flat_strides(shape: Sequence[int]) -> list[int]:
  return [math.prod(shape[a + 1:]) for a in range(len(shape))]


def _reshape(eqn, ins):
  """Row-major reshape: every term is a digit of the flat index, re-expressed in the new axes."""
  if eqn.params.get('dimensions') is not None:
    raise UnsupportedOperation('reshape with dimensions (a transpose inside a reshape)')
  old, new = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
  old_strides, new_strides = _flat_strides(old), _flat_strides(new)

  def digit(stride: int, ext: int, coef: int) -> list[Term]:
    pieces = []
    while ext > 1:
      axis = next((b for b in range(len(new)) if new_strides[b] <= stride
                   < new_strides[b] * new[b]), None)
      if axis is None or stride % new_strides[axis]:
        return None
      div = stride // new_strides[axis]
      if new[axis] % div:
        return None
      room = new[axis] // div
      take = min(ext, room)
      if room % take or ext % take:
        return None
      pieces.append(Term(axis, div, take, coef))
      stride, ext, coef = stride * take, ext // take, coef * take
    return pieces

  def rule(span: Span) -> Span:
    terms = []
    for t in span.terms:
      pieces = digit(old_strides[t.axis] * t.div, t.ext, t.coef)
      if pieces is None:
        raise UnsupportedOperation(f'reshape {old} -> {new} splits an image axis unevenly')
      terms += pieces
    return Span(span.start, span.size, _normalize(terms))

  return [_each(ins[0], rule)]


def _dot_general(eqn, ins):
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params['dimension_numbers']
  lhs_free = len(_shape(eqn.invars[0])) - len(lhs_contract) - len(lhs_batch)
  outs = []
  for side, (contract, batch) in enumerate(((lhs_contract, lhs_batch),
                                            (rhs_contract, rhs_batch))):
    rank = len(_shape(eqn.invars[side]))
    free = [a for a in range(rank) if a not in contract and a not in batch]
    first_free = len(batch) + (lhs_free if side else 0)
    mapping = {a: i for i, a in enumerate(batch)}
    mapping.update({a: first_free + i for i, a in enumerate(free)})
    outs.append(_each(ins[side], lambda s, c=tuple(contract), m=mapping: s.collapse(c).relabel(m)))
  return [_union(outs, 'dot_general')]


def _concatenate(eqn, ins):
  axis = eqn.params['dimension']
  if any(g is not None and (g[0].on(axis) or g[1].on(axis)) for g in ins):
    raise UnsupportedOperation('concatenate along an image axis')
  return [_union(ins, 'concatenate')]


def _stack(eqn, ins):
  """A new axis whose index picks the input: the union of the inputs (as concatenating them)."""
  axis = eqn.params['axis']
  rank = len(_shape(eqn.invars[0]))
  mapping = {a: a + (a >= axis) for a in range(rank)}
  return [_union([_each(g, lambda s: s.relabel(mapping)) for g in ins], 'stack')]


def _split(eqn, ins):
  axis, sizes = eqn.params['axis'], eqn.params['sizes']
  shape = _shape(eqn.invars[0])
  outs, offset = [], 0
  for size in sizes:
    def rule(span: Span, offset=offset, size=size) -> Span:
      span = _window(span, axis, shape[axis], -1, size, 1, 1, -offset, 1, 'split')
      return span.relabel({**{a: a for a in range(len(shape)) if a != axis}, -1: axis})
    outs.append(_each(ins[0], rule))
    offset += size
  return outs


RULES = {
    'conv_general_dilated': _conv,
    'reduce_window_max': _reduce_window,
    'reduce_window_min': _reduce_window,
    'reduce_window_sum': _reduce_window,
    'reduce_window': _reduce_window,
    'reduce_sum': _reduce,
    'reduce_max': _reduce,
    'reduce_min': _reduce,
    'reduce_prod': _reduce,
    'reduce_and': _reduce,
    'reduce_or': _reduce,
    'reduce_xor': _reduce,
    'argmax': _reduce,
    'argmin': _reduce,
    'pad': _pad,
    'slice': _slice,
    'rev': _rev,
    'transpose': _transpose,
    'broadcast_in_dim': _broadcast_in_dim,
    'squeeze': _squeeze,
    'reshape': _reshape,
    'dot_general': _dot_general,
    'concatenate': _concatenate,
    'stack': _stack,
    'split': _split,
}
# Same-shaped operations that are not elementwise: their element i reads other elements.
NOT_ELEMENTWISE = ('cum', 'sort', 'fft', 'scatter', 'gather', 'dynamic_', 'while', 'scan', 'cond',
                   'top_k', 'psum', 'pmax', 'pmin', 'ppermute', 'all_', 'reduce_scatter')
CALL_PARAMS = ('jaxpr', 'call_jaxpr', 'fun_jaxpr')


def _sub_jaxpr(eqn) -> jax_core.ClosedJaxpr | jax_core.Jaxpr | None:
  for name in CALL_PARAMS:
    sub = eqn.params.get(name)
    jaxpr = sub.jaxpr if isinstance(sub, jax_core.ClosedJaxpr) else sub
    if isinstance(jaxpr, jax_core.Jaxpr) and len(jaxpr.invars) == len(eqn.invars) and len(
        jaxpr.outvars) == len(eqn.outvars):
      return jaxpr
  return None


def _broadcasts_to(shape: tuple[int, ...], out: tuple[int, ...]) -> bool:
  """Whether an operand of `shape` is elementwise with `out`: a scalar, or the same rank with
  each axis out's or 1 (lax broadcasts size-1 axes)."""
  return not shape or (len(shape) == len(out) and all(n in (1, m) for n, m in zip(shape, out)))


def _elementwise(eqn, ins):
  name = eqn.primitive.name
  out_shapes = {_shape(v) for v in eqn.outvars}
  if name.startswith(NOT_ELEMENTWISE) or len(out_shapes) != 1 or not all(
      g is None or _broadcasts_to(_shape(v), *out_shapes) for g, v in zip(ins, eqn.invars)):
    raise UnsupportedOperation(f'the receptive field walk has no rule for {name!r}')
  return [_union(ins, name)] * len(eqn.outvars)


def _walk(jaxpr: jax_core.Jaxpr, ins: Sequence[Geometry]) -> list[Geometry]:
  env: dict[Any, Geometry] = {}

  def read(var) -> Geometry:
    return None if isinstance(var, jax_core.Literal) else env.get(var)

  for var, geometry in zip(jaxpr.invars, ins):
    env[var] = geometry
  for eqn in jaxpr.eqns:
    geometries = [read(v) for v in eqn.invars]
    if all(g is None for g in geometries):
      outs = [None] * len(eqn.outvars)
    elif (sub := _sub_jaxpr(eqn)) is not None:
      outs = _walk(sub, geometries)
    else:
      outs = RULES.get(eqn.primitive.name, _elementwise)(eqn, geometries)
    for var, geometry in zip(eqn.outvars, outs):
      env[var] = geometry
  return [read(v) for v in jaxpr.outvars]


# ---------------------------------------------------------------------------------------------
# The report.


@dataclasses.dataclass(frozen=True)
class AxisField:
  """A layer's receptive field along one image axis.

  Attributes:
    size: input pixels one unit depends on (the theoretical field, padding included).
    jump: input pixels between the fields of neighbouring units; None when the layer has no such
      axis (after global pooling or Flatten): then every unit has the same field.
    start: the first input pixel of unit 0's field (negative: it starts in the padding).
    length: units along this axis in the layer's output (None as for `jump`).
  """

  size: int
  jump: int | None
  start: int
  length: int | None

  def pixels(self, index: int = 0) -> tuple[int, int]:
    """(first, last) input pixel of unit `index`'s field, not clipped to the image."""
    first = self.start + index * (self.jump or 0)
    return first, first + self.size - 1


@dataclasses.dataclass(frozen=True)
class LayerField:
  """The receptive field of a layer's output units: along the rows and along the columns."""

  name: str
  rows: AxisField
  cols: AxisField
  shape: tuple[int, ...]

  def mask(self, unit: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """(H, W) booleans: the input pixels in unit (row, col)'s field, clipped to the image."""
    mask = np.zeros(image_size, bool)
    (r0, r1), (c0, c1) = self.rows.pixels(unit[0]), self.cols.pixels(unit[1])
    mask[max(r0, 0):r1 + 1, max(c0, 0):c1 + 1] = True
    return mask


def _axis_field(span: Span, shape: Sequence[int]) -> AxisField:
  if len(span.terms) == 1 and span.terms[0].div == 1 and span.terms[0].ext == shape[
      span.terms[0].axis] and span.terms[0].coef > 0:
    term = span.terms[0]
    return AxisField(span.size, term.coef, span.start, shape[term.axis])
  whole = span.collapse({t.axis for t in span.terms})
  return AxisField(whole.size, None, whole.start, None)


def _input_geometry(shape: Sequence[int], spatial_axes: tuple[int, int]) -> Geometry:
  return tuple(Span(0, 1, (Term(axis, 1, shape[axis], 1),)) for axis in spatial_axes)


def _as_struct(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)


def receptive_fields(model: nn.Module, variables: Mapping[str, Any] | None, images,
                     depth: int | None = 1, spatial_axes: tuple[int, int] = (1, 2),
                     **apply_kwargs) -> dict[str, LayerField]:
  """The receptive field of every named layer of `model`, in call order.

  Args:
    model: any Flax Linen model.
    variables: its variables, or None to take their shapes from `model.init` (never computed).
    images: a batch of images, or only its shape and dtype (`jax.ShapeDtypeStruct`, or a shape
      tuple for float32): only shapes matter; a 224x224 VGG16 is traced, not run.
    depth: the layers wanted by nesting: 1 for the model's direct layers (as `layer_outputs`
      returns them by default), 2 adds the layers inside those ('layer1/0' in torchvision's
      ResNet), ...; None for all.
    spatial_axes: the image's (rows, cols) axes (NHWC: (1, 2)).
    **apply_kwargs: passed on to `model.apply` (the model's inference mode by default).

  Returns:
    {layer name: LayerField}; a layer whose output does not depend on the image is left out.
  """
  if isinstance(images, tuple) and all(isinstance(n, int) for n in images):
    images = jax.ShapeDtypeStruct(images, jnp.float32)
  images = _as_struct(images)
  if variables is None:
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, **apply_kwargs), images)
  variables = _as_struct(variables)
  order: list[str] = []

  def record_order(next_fun, args, kwargs, context):
    if context.method_name == '__call__' and context.module.path:
      name = '/'.join(context.module.path)
      if name not in order:
        order.append(name)
    return next_fun(*args, **kwargs)

  def apply(variables, images):
    with nn.intercept_methods(record_order):
      return model.apply(variables, images, capture_intermediates=True,
                         mutable=['intermediates'], **apply_kwargs)

  closed, out_shapes = jax.make_jaxpr(apply, return_shape=True)(variables, images)
  geometries = [None] * len(jax.tree.leaves(variables)) + [
      _input_geometry(images.shape, spatial_axes)]
  outs = _walk(closed.jaxpr, geometries)
  leaves = jax.tree_util.tree_flatten_with_path(out_shapes)[0]
  recorded: dict[str, LayerField] = {}
  for (path, leaf), geometry in zip(leaves, outs):
    keys = [getattr(k, 'key', getattr(k, 'idx', None)) for k in path]
    if keys[:2] != [1, 'intermediates'] or '__call__' not in keys or geometry is None:
      continue
    at = keys.index('__call__')
    name = '/'.join(str(k) for k in keys[2:at])
    if keys[at + 1] != 0 or name in recorded or not name:  # The first call's first output.
      continue
    recorded[name] = LayerField(name, _axis_field(geometry[0], leaf.shape),
                                _axis_field(geometry[1], leaf.shape), tuple(leaf.shape))
  return {name: recorded[name] for name in order if name in recorded
          and (depth is None or name.count('/') < depth)}


def format_table(fields: Mapping[str, LayerField], markdown: bool = True) -> str:
  """The report as a table: layer, output size, field, jump and start (rows x cols each)."""

  def pair(rows, cols):
    return '-' if rows is None else f'{rows}x{cols}'

  header = ('layer', 'output', 'field', 'jump', 'start')
  lines = [(f.name, pair(f.rows.length, f.cols.length), pair(f.rows.size, f.cols.size),
            pair(f.rows.jump, f.cols.jump), f'{f.rows.start},{f.cols.start}')
           for f in fields.values()]
  if markdown:
    rows = [header, ('---',) * 5, *lines]
    return '\n'.join('| ' + ' | '.join(row) + ' |' for row in rows)
  widths = [max(len(row[i]) for row in [header, *lines]) for i in range(5)]
  return '\n'.join('  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                   for row in [header, *lines])


def unit_gradients(model: nn.Module, variables: Mapping[str, Any], images: jax.Array,
                   units: Mapping[str, tuple[int, int]], **apply_kwargs) -> dict[str, np.ndarray]:
  """For each layer, |d (its output at unit (row, col) of image 0, summed over channels) / d image
  0|, summed over the input channels: {layer: (H, W)}.

  The pixels with a nonzero gradient are those the unit depends on for these weights and images:
  the whole receptive field where no ReLU or max pooling blocks the gradient, a part of it
  otherwise. One compiled reverse pass per layer (`jax.jacrev`).
  """
  from cnnjax.models.layer_outputs import layer_outputs  # pylint: disable=import-outside-toplevel
  names = list(units)

  def unit_values(images):
    outputs = layer_outputs(model, variables, images, names=names, **apply_kwargs)
    return jnp.stack([jnp.sum(outputs[name][0, units[name][0], units[name][1]])
                      for name in names])

  jacobian = jax.jit(jax.jacrev(unit_values))(images)  # (layers, N, H, W, C)
  return {name: np.asarray(jnp.sum(jnp.abs(jacobian[i, 0]), axis=-1))
          for i, name in enumerate(names)}


def main(argv: Sequence[str] | None = None) -> None:
  from cnnjax.models import MODELS  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(prog='python -m cnnjax.receptive_field',
                                   description='Receptive field, jump and output size per layer.')
  parser.add_argument('--model', required=True, choices=sorted(MODELS))
  parser.add_argument('--size', type=int, nargs='+', default=[224],
                      help='input height [width] in pixels (default 224)')
  parser.add_argument('--channels', type=int, default=3)
  parser.add_argument('--depth', type=int, default=1,
                      help="nesting of the layers listed: 1 the model's own, 2 the ones inside "
                           'them, 0 all (default 1)')
  parser.add_argument('--text', action='store_true', help='a plain text table, not markdown')
  args = parser.parse_args(argv)
  height, width = (args.size * 2)[:2]
  fields = receptive_fields(MODELS[args.model](), None, (1, height, width, args.channels),
                            depth=args.depth or None)
  print(f'{args.model} at {height}x{width}x{args.channels}: receptive field, jump (effective '
        "stride) and start (first pixel of unit 0's field) in input pixels, rows x cols\n")
  print(format_table(fields, markdown=not args.text))


if __name__ == '__main__':
  main()
