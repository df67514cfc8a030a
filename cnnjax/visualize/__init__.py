"""Seeing inside a convnet: convolution by hand, activations, filter patterns, activation maps.

Modules, each one concept, all pure functions of (model, variables, images) built on `jax.grad`,
`jax.vmap` and `jax.jit`, with no hooks and no global state:

- `kernels`: hand-made kernels (edges, edge detector, Sobel), Gabor kernels and filter banks.
- `convolution`: convolution with padding, strides and border modes, pooling, Gabor response
  magnitudes: the lectures' worked examples on plain images.
- `layer_probe`: a named layer's output (the forward pass stopped there) and the model run with a
  perturbation added to it, the functional way to take gradients with respect to a layer.
- `activations`: the feature maps of every conv and pool layer and their channel grids.
- `filter_patterns`: gradient ascent in input space (the reference recipe, vmapped over filters)
  and the Lucid-style mode, with `image_parameterization` and `transform_robustness`.
- `cam`: CAM, Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM, Score-CAM and Eigen-CAM; `overlay`: the
  jet colormap and heatmaps superimposed on images.
- `figures`: the matplotlib figures; `job`: the visualize job (`run(config, workdir)`).

Import the modules themselves (`from cnnjax.visualize import cam`); this package imports nothing,
so that importing one module does not load the others (or matplotlib).
"""
