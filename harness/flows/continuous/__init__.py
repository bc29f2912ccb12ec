"""Continuous-time flows: the ODE layer (:mod:`.ode_layer`), its dynamics networks
(:mod:`.nets`) and the divergence (trace) estimators (:mod:`.trace`)."""
