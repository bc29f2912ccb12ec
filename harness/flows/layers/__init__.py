"""The invertible building blocks flows are stacked from.

Coupling (:mod:`.coupling`), autoregressive (:mod:`.autoregressive`, its sequential direction
in :mod:`.made_solve` following MADE's step plan, :mod:`harness.flows.made_plan`), element-wise
transforms (:mod:`.elementwise`, rational-quadratic splines in :mod:`.splines`), linear maps and
ActNorm (:mod:`.linear`), the multi-scale squeeze/factor-out wrapper (:mod:`.multiscale`), and
the layer stacks the architecture families share (:mod:`.stacks`). Each layer follows the
contract of :class:`harness.flows.base.Layer`.
"""
