"""The order in which Keras lists a functional model's layers, from the model's graph alone.

Keras pairs weight files with models by this order where names cannot be trusted: a legacy HDF5
file loads into a Keras 3 model by position (the file's layers that have weights, against the
model's), and a Keras 3 `.weights.h5` keys each layer by its class and its rank among that class's
layers in this order ('conv2d_5' is the sixth Conv2D listed). For a model whose layers are named
automatically (InceptionV3's `conv2d_N`), this order is the only stable identity a layer has.

Keras (`keras/src/ops/function.py`, `map_graph`) orders a functional model's layers by depth, the
length of the longest path from the layer to the output, deepest first; layers of equal depth in
the order a depth-first walk from the output first reaches them (a layer's inputs visited in the
order they were given). So in an Inception block the first layers of the longest branch come
first, and the layers that are as far from the block's end come branch after branch.

`LayerGraph` records a graph as a model builds it (each layer's name and inputs, in creation
order); `keras_order` applies Keras' rule to it.
"""

import dataclasses
from typing import Sequence


@dataclasses.dataclass
class LayerGraph:
  """A functional model's layers in creation order, each with the names of its inputs."""

  inputs: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

  def add(self, name: str, inputs: Sequence[str] = ()) -> str:
    """Records layer `name` fed by the layers `inputs`; returns `name`."""
    if name in self.inputs:
      raise ValueError(f'layer name {name!r} is used twice in the graph')
    unknown = [i for i in inputs if i not in self.inputs]
    if unknown:
      raise ValueError(f'layer {name!r} is fed by {unknown}, which are not in the graph yet')
    self.inputs[name] = tuple(inputs)
    return name


def keras_order(graph: LayerGraph, output: str) -> list[str]:
  """The layers that lead to `output`, in the order Keras' `model.layers` lists them."""
  if output not in graph.inputs:
    raise ValueError(f'output {output!r} is not a layer of the graph')
  # First visit in a depth-first walk from the output, inputs in order (Keras' operation indices).
  first_visit: dict[str, int] = {}
  stack = [output]
  while stack:
    name = stack.pop()
    if name in first_visit:
      continue
    first_visit[name] = len(first_visit)
    stack.extend(reversed(graph.inputs[name]))
  # Longest distance to the output: layers were created after their inputs, so walking the
  # creation order backwards settles each layer's depth before it is passed on to its inputs.
  depth = {name: 0 for name in first_visit}
  for name in reversed(list(graph.inputs)):
    if name in first_visit:
      for parent in graph.inputs[name]:
        depth[parent] = max(depth[parent], depth[name] + 1)
  return sorted(first_visit, key=lambda name: (-depth[name], first_visit[name]))
