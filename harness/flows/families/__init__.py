"""One module per architecture family; each registers its architectures with
:func:`harness.flows.zoo.register` when imported.

The registry (:mod:`harness.flows.zoo`) imports every module here whose name does not start
with ``_`` on first use; nothing else imports them for their side effect. Modules starting with
``_`` hold parts the families share.
"""
